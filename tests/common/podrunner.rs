//! Running manifests in the pod runner (`tests/podrunner/podrunner.py`), with
//! the STS emulator inside the pod's own network namespace and old SDK
//! clients (`tests/legacy/run-client`) in place of the app containers: what
//! `tests/legacy.rs` and `tests/webhook.rs` share.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_irsa-proxy");
/// The STS emulator's port inside a pod's own network namespace.
pub const POD_STS_PORT: u16 = 9912;
/// The sidecar image the manifests name; the runner maps it to [`BIN`].
pub const IMAGE: &str = "ghcr.io/irsa-proxy/irsa-proxy:0.1.0";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pod runner makes network namespaces: it needs root (CI runs as root).
/// A failure, never a skip, without it.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests make network namespaces and run as root (CI does); run them as root"
    );
}

/// Runs `cmd`, killing it after `limit`; returns its output.
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// The argv that runs an old SDK client (`tests/legacy/run-client NAME`).
pub fn client_argv(client: &str) -> Vec<String> {
    vec![
        root().join("tests/legacy/run-client").display().to_string(),
        client.to_string(),
    ]
}

/// Runs the manifests in the pod runner with the STS emulator in the pod's
/// namespace. `apps` maps each app container to the argv it runs instead of
/// its image. Returns the runner's output and each app container's log.
pub fn run_pod(
    manifests: &[&Path],
    apps: &[(&str, Vec<String>)],
    extra: &[&str],
    work: &Path,
) -> (Output, Vec<(String, String)>) {
    run_pod_with_emulator(manifests, apps, extra, &[], work)
}

/// [`run_pod`] with more flags for the emulator (`sts-emulator`).
pub fn run_pod_with_emulator(
    manifests: &[&Path],
    apps: &[(&str, Vec<String>)],
    extra: &[&str],
    emulator_flags: &[&str],
    work: &Path,
) -> (Output, Vec<(String, String)>) {
    let mut c = Command::new("python3");
    c.arg(root().join("tests/podrunner/podrunner.py"));
    for m in manifests {
        c.arg("--manifest").arg(m);
    }
    let mut service = vec![
        BIN.to_string(),
        "sts-emulator".into(),
        "--listen".into(),
        format!("127.0.0.1:{POD_STS_PORT}"),
        "--issuer-key".into(),
        "{issuer_public_key}".into(),
        "--credential-ttl".into(),
        "15m".into(),
    ];
    service.extend(emulator_flags.iter().map(|f| f.to_string()));
    let service = serde_json::json!(service);
    c.args(["--binary", &format!("/irsa-proxy={BIN}")])
        .args(["--image", &format!("{IMAGE}=[\"/irsa-proxy\",\"serve\"]")])
        .args(["--service", &service.to_string()])
        .args(["--service-wait-port", &POD_STS_PORT.to_string()])
        .args([
            "--env",
            &format!("irsa-proxy=AWS_ENDPOINT_URL_STS=http://127.0.0.1:{POD_STS_PORT}"),
        ])
        .args(["--env", "irsa-proxy=AWS_REGION=us-east-1"])
        .args(["--timeout", "120", "--keep", "--workdir"])
        .arg(work)
        .args(extra);
    for (name, argv) in apps {
        c.args([
            "--replace-command",
            &format!("{name}={}", serde_json::json!(argv)),
        ]);
        c.args([
            "--env",
            &format!("{name}=IRSA_TEST_STS_ENDPOINT=http://127.0.0.1:{POD_STS_PORT}"),
        ]);
    }
    let out = run(c, Duration::from_secs(150));
    let logs = apps
        .iter()
        .map(|(name, _)| {
            let log = std::fs::read_to_string(work.join("logs").join(format!("{name}.log")))
                .unwrap_or_default();
            (name.to_string(), log)
        })
        .collect();
    (out, logs)
}

/// A process's exit code and output, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// [`describe`] plus every app container's log.
pub fn describe_pod(out: &Output, logs: &[(String, String)]) -> String {
    let mut context = describe(out);
    for (name, log) in logs {
        context.push_str(&format!("\n--- {name}.log\n{log}"));
    }
    context
}
