//! Several roles in one pod (issue 18), proven in the pod runner
//! (`tests/podrunner/`): `irsa-proxy inject --container-role` writes the pod of
//! `tests/fixtures/inject/roles.yaml` (an init container that copies from S3,
//! two app containers, each with a role of its own, and one container with
//! none), the runner runs it the way kubelet would with the STS emulator in the
//! pod's network namespace, and:
//!
//! - each container with a role gets its own role from a real SDK client: the
//!   init container `copier` through an old one (`js-v2-2017`, the token as a
//!   value), `api` and `worker` through Debian's botocore;
//! - from inside `worker`, every way to reach `api`'s role fails: `api`'s token
//!   file (by the path `api` reads it at, and by where the sidecar writes it),
//!   `api`'s variable, a guessed token on `/v1/credentials` and in
//!   `/v2/credentials/<guess>` (401), and paths naming `api`'s role with
//!   `worker`'s own token, which never yield `api`'s role;
//! - the container with no role has none of our variables and no token file.
//!
//! The same with `--link-local`: `botocore-2019` takes the relative URI at
//! 169.254.170.2:80 (inside the pod's namespace only), its token in the path.
//!
//! Needs root (network namespaces), like `tests/legacy.rs`, and the legacy
//! clients (`tests/legacy/install.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::podrunner::{client_argv, describe, describe_pod, require_root, run_pod, IMAGE};

const BIN: &str = env!("CARGO_BIN_EXE_irsa-proxy");
const ACCOUNT: &str = "111122223333";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn role(name: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{name}")
}

/// `inject` of the fixture with one role per container, written to `path`.
fn inject_roles(path: &Path, extra: &[&str]) {
    let fixture = root().join("tests/fixtures/inject/roles.yaml");
    let out = Command::new(BIN)
        .arg("inject")
        .args(["--image", IMAGE])
        .args(extra)
        .args(["--container-role", &format!("copier={}", role("s3-copy"))])
        .args(["--container-role", &format!("api={}", role("api"))])
        .args(["--container-role", &format!("worker={}", role("worker"))])
        .arg("-f")
        .arg(&fixture)
        .stdin(Stdio::null())
        .output()
        .expect("inject");
    assert!(out.status.success(), "inject: {}", describe(&out));
    std::fs::write(path, &out.stdout).expect("write manifest");
}

/// The JSON lines a log holds that have `key`.
fn json_lines(log: &str, key: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(|v| v.get(key).is_some())
        .collect()
}

/// What `worker` tries after its own client ran: one JSON line with what each
/// attempt on `api`'s role got. Standard library only; it never prints a token.
const ATTEMPTS: &str = r#"
import json, os, secrets, urllib.request, urllib.error
full = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
base = full.rsplit("/v1/", 1)[0]
mine = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
other, other_arn = os.environ["OTHER_ROLE"], os.environ["OTHER_ROLE_ARN"]
def read(path):
    try:
        open(path).read()
        return "read"
    except OSError as e:
        return e.strerror
def ask(path, token=None):
    req = urllib.request.Request(base + path, headers={"Authorization": token} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            body = r.read().decode()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read().decode(), e.code
    except OSError as e:
        return {"status": None, "error": str(e)}
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {}
    role = doc.get("RoleArn") if isinstance(doc, dict) else None
    return {"status": status, "role": role.split("/")[-1] if role else None,
            "has_key": isinstance(doc, dict) and "AccessKeyId" in doc}
guess = secrets.token_hex(32)
out = {
    "files": {p: read(p) for p in (
        "/var/run/irsa-proxy/" + other + "/token",
        "/var/run/irsa-proxy/roles/" + other + "/token",
        "/var/run/irsa-proxy/../roles/" + other + "/token",
        "/var/run/irsa-proxy/token/../" + other + "/token")},
    "listing": sorted(os.listdir("/var/run/irsa-proxy")),
    "env": sorted(k for k in os.environ if other.upper() in k or k.startswith("IRSA_PROXY")),
    "guessed_v1": ask("/v1/credentials", guess),
    "guessed_v2": ask("/v2/credentials/" + guess),
    "no_token": ask("/v1/credentials"),
    "mine": ask("/v1/credentials", mine),
    "by_name": [ask(p, mine) for p in (
        "/v1/credentials/" + other, "/v2/credentials/" + other,
        "/v2/credentials/" + mine + "/" + other, "/v1/credentials?role=" + other,
        "/role-arn/" + other_arn, "/latest/meta-data/iam/security-credentials/" + other)],
}
print("ATTEMPTS " + json.dumps(out))
"#;

/// What the container with no role sees.
const NOTHING: &str = r#"
import json, os
d = "/var/run/irsa-proxy"
print("NOTHING " + json.dumps({
    "env": sorted(k for k in os.environ if k.startswith("AWS_") or k.startswith("IRSA_PROXY")),
    "dir": sorted(os.listdir(d)) if os.path.isdir(d) else [],
}))
"#;

/// Each client's line says it got `role_name` from our STS.
fn assert_role(log: &str, container: &str, client: &str, role_name: &str, context: &str) {
    let lines = json_lines(log, "client");
    let line = lines
        .iter()
        .find(|v| v["client"] == client)
        .unwrap_or_else(|| panic!("{container}: {client} printed no result\n{context}"));
    let key = line["access_key_id"].as_str().unwrap_or_default();
    assert!(
        key.starts_with("ASIA"),
        "{container}: key {key:?}\n{context}"
    );
    let arn = line["arn"].as_str().unwrap_or_default();
    assert!(
        arn.starts_with(&format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/")),
        "{container}: arn {arn:?}, expected role {role_name}\n{context}"
    );
}

fn marked(log: &str, marker: &str) -> serde_json::Value {
    let line = log
        .lines()
        .find_map(|l| l.strip_prefix(marker))
        .unwrap_or_else(|| panic!("no {marker}line in:\n{log}"));
    serde_json::from_str(line).expect("json")
}

#[test]
fn each_container_should_get_only_its_own_role() {
    require_root();
    let work = tempfile::tempdir().expect("tempdir");
    // The manifest holds the Secret with every role's token: it goes inside
    // the runner's workdir, which no container sees (on a node, no container
    // sees the manifests either).
    let pod_dir = work.path().join("pod");
    std::fs::create_dir_all(&pod_dir).expect("mkdir");
    let manifest = pod_dir.join("roles.yaml");
    inject_roles(&manifest, &[]);

    let python = "/usr/bin/python3".to_string();
    let client = |name: &str| client_argv(name).join(" ");
    let worker = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!(
            "{} && exec {python} -c \"$ATTEMPTS\"",
            client("botocore-debian")
        ),
    ];
    let (out, logs) = run_pod(
        &[&manifest],
        &[
            ("copier", client_argv("js-v2-2017")),
            ("api", client_argv("botocore-debian")),
            ("worker", worker),
            ("metrics", vec![python.clone(), "-c".into(), NOTHING.into()]),
        ],
        &[
            "--env",
            &format!("worker=ATTEMPTS={ATTEMPTS}"),
            "--env",
            "worker=OTHER_ROLE=api",
            "--env",
            &format!("worker=OTHER_ROLE_ARN={}", role("api")),
        ],
        &pod_dir,
    );
    let context = describe_pod(&out, &logs);
    assert!(out.status.success(), "{context}");
    let log = |name: &str| {
        logs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };

    // Each one's SDK got its own role.
    for (container, client, role_name) in [
        ("copier", "js-v2-2017", "s3-copy"),
        ("api", "botocore-debian", "api"),
        ("worker", "botocore-debian", "worker"),
    ] {
        assert_role(&log(container), container, client, role_name, &context);
    }

    // worker cannot get api's role, whichever way it asks.
    let a = marked(&log("worker"), "ATTEMPTS ");
    for (path, got) in a["files"].as_object().expect("files") {
        assert!(
            got == "No such file or directory" || got == "Not a directory",
            "{path}: {got}\n{context}"
        );
    }
    assert_eq!(a["listing"], serde_json::json!(["token"]), "{context}");
    assert_eq!(a["env"], serde_json::json!([]), "{context}");
    for attempt in ["guessed_v1", "guessed_v2", "no_token"] {
        assert_eq!(
            a[attempt]["status"], 401,
            "{attempt}: {}\n{context}",
            a[attempt]
        );
    }
    assert_eq!(a["mine"]["status"], 200, "{context}");
    assert_eq!(a["mine"]["has_key"], true, "{context}");
    assert_eq!(a["mine"]["role"], "worker", "{context}");
    // A path or query naming api's role, with worker's token: refused, or
    // (where the route ignores the extra) worker's own role, never api's.
    for attempt in a["by_name"].as_array().expect("by_name") {
        if attempt["status"] == 200 {
            assert_eq!(attempt["role"], "worker", "{attempt}\n{context}");
        } else {
            assert_eq!(attempt["has_key"], false, "{attempt}\n{context}");
        }
    }

    // metrics has nothing of ours.
    let n = marked(&log("metrics"), "NOTHING ");
    assert_eq!(n["env"], serde_json::json!([]), "{context}");
    // (The runner's containers share this host's file system, where the
    // mount point may exist, empty; on a node it would not exist at all.)
    assert_eq!(n["dir"], serde_json::json!([]), "{context}");
}

/// With `--link-local`, a container with a role that finds the sidecar by
/// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` (at 169.254.170.2:80, the token in
/// the path, expanded from its own variable) gets its own role too.
#[test]
fn relative_uri_clients_should_get_their_own_role_with_link_local() {
    require_root();
    let work = tempfile::tempdir().expect("tempdir");
    let pod_dir = work.path().join("pod");
    std::fs::create_dir_all(&pod_dir).expect("mkdir");
    let manifest = pod_dir.join("roles.yaml");
    inject_roles(&manifest, &["--link-local"]);
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    assert!(
        text.contains("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        "{text}"
    );
    let (out, logs) = run_pod(
        &[&manifest],
        &[
            ("copier", client_argv("botocore-debian")),
            ("api", client_argv("botocore-2019")),
            ("worker", client_argv("js-v2-2017")),
            ("metrics", vec!["/bin/true".to_string()]),
        ],
        &[],
        &pod_dir,
    );
    let context = describe_pod(&out, &logs);
    assert!(out.status.success(), "{context}");
    let log = |name: &str| {
        logs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    for (container, client, role_name) in [
        ("copier", "botocore-debian", "s3-copy"),
        ("api", "botocore-2019", "api"),
        ("worker", "js-v2-2017", "worker"),
    ] {
        assert_role(&log(container), container, client, role_name, &context);
    }
}

/// The admission order on an EKS Pod Identity cluster: `inject`'s manifest
/// (each role with its `role_arn`), then the EKS webhook's Pod Identity
/// mutation (the pod runner's simulation, the agent at its real address in
/// the pod's namespace, relayed to the emulator). The sidecar runs on the
/// agent and assumes each container's role from the pod's Pod Identity role:
/// each container still gets its own role.
#[test]
fn each_container_should_get_its_own_role_when_pod_identity_is_added_after_inject() {
    require_root();
    let work = tempfile::tempdir().expect("tempdir");
    let pod_dir = work.path().join("pod");
    std::fs::create_dir_all(&pod_dir).expect("mkdir");
    let manifest = pod_dir.join("roles.yaml");
    inject_roles(&manifest, &[]);
    let upstream = format!("127.0.0.1:{}", common::podrunner::POD_STS_PORT);
    let association = format!("demo-namespace/shop={}", role("pod-role"));
    let (out, logs) = common::podrunner::run_pod_with_emulator(
        &[&manifest],
        &[
            ("copier", client_argv("js-v2-2017")),
            ("api", client_argv("botocore-debian")),
            ("worker", client_argv("botocore-debian")),
            ("metrics", vec!["/bin/true".to_string()]),
        ],
        &[
            "--eks-pod-identity",
            "http://169.254.170.23/v1/credentials",
            "--pod-identity-agent",
            &upstream,
            "--eks-webhook-region",
            "us-east-1",
        ],
        &["--pod-identity-association", &association],
        &pod_dir,
    );
    let context = describe_pod(&out, &logs);
    assert!(out.status.success(), "{context}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pod-identity"),
        "the mutation was not simulated: {context}"
    );
    let log = |name: &str| {
        logs.iter()
            .find(|(n, _)| n == name)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    };
    for (container, client, role_name) in [
        ("copier", "js-v2-2017", "s3-copy"),
        ("api", "botocore-debian", "api"),
        ("worker", "botocore-debian", "worker"),
    ] {
        assert_role(&log(container), container, client, role_name, &context);
    }
    let sidecar = std::fs::read_dir(pod_dir.join("logs"))
        .expect("the pod's logs")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .find(|log| log.contains("credential source: EKS Pod Identity agent"))
        .unwrap_or_default();
    for r in ["s3-copy", "api", "worker"] {
        let said = format!("{} assumed as a hop from the agent's role", role(r));
        assert!(sidecar.contains(&said), "{said:?} in\n{sidecar}\n{context}");
    }
}
