//! Real old AWS SDK releases (`tests/legacy/`, installed by `tests/legacy/install.sh`)
//! get the role's credentials from the sidecar and make a signed
//! `GetCallerIdentity` call that the STS emulator accepts, on every route:
//!
//! | route | clients |
//! | --- | --- |
//! | FULL_URI + the token as a value | `js-v2-2017` (aws-sdk 2.100.0), `botocore-debian` (1.29) |
//! | RELATIVE_URI on `169.254.170.2:80` | `botocore-2019` (1.13.45) |
//! | IMDS on `169.254.169.254:80` | `boto2` (2.49.0, IMDSv1 only), `ruby-v3-debian` (3.168) |
//!
//! Each runs twice: through `irsa-proxy dev` (what a user runs on a laptop) and
//! through the pod runner (`tests/podrunner/`), which runs what `irsa-proxy inject`
//! writes the way kubelet would, so that the manifests themselves are proven.
//!
//! The link-local addresses exist only inside network namespaces these tests
//! make (`unshare --net`, the pod runner's, or dev's own, entered from one the
//! test made), which have no route out: `dev
//! --link-local` and `irsa-proxy link-local` both refuse a namespace with a route
//! out, and a test below proves that refusal. Nothing here sends to a 169.254.*
//! address from the machine's own namespace. The tests need root (CI runs as
//! root) and fail, never skip, without it or without the installed clients.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::podrunner::{
    client_argv, describe, describe_pod, require_root, run, run_pod, run_pod_with_emulator, IMAGE,
    POD_STS_PORT,
};

const BIN: &str = env!("CARGO_BIN_EXE_irsa-proxy");
const ROLE: &str = "arn:aws:iam::111122223333:role/legacy-app";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_client() -> String {
    root().join("tests/legacy/run-client").display().to_string()
}

/// The JSON lines the clients printed, by client name.
fn client_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(|v| v.get("client").is_some())
        .collect()
}

/// A client's line says it used role credentials from our STS: an `ASIA` key
/// and the assumed role of `role_name`.
fn assert_client_ok(lines: &[serde_json::Value], client: &str, role_name: &str, context: &str) {
    let line = lines
        .iter()
        .find(|v| v["client"] == client)
        .unwrap_or_else(|| panic!("{client} printed no result\n{context}"));
    let key = line["access_key_id"].as_str().unwrap_or_default();
    assert!(key.starts_with("ASIA"), "{client}: key {key:?}\n{context}");
    let arn = line["arn"].as_str().unwrap_or_default();
    assert!(
        arn.starts_with("arn:aws:sts::") && arn.contains(&format!(":assumed-role/{role_name}/")),
        "{client}: arn {arn:?}\n{context}"
    );
}

/// The session is one the Pod Identity agent made (EKS names it
/// `eks-<cluster>-<pod>-...`), not a web-identity one.
fn assert_pod_identity_session(lines: &[serde_json::Value], client: &str, context: &str) {
    let line = lines.iter().find(|v| v["client"] == client).unwrap();
    let arn = line["arn"].as_str().unwrap_or_default();
    assert!(
        arn.contains("/eks-irsa-proxy-dev-"),
        "{client}: not a Pod Identity session: {arn:?}\n{context}"
    );
}

// ---------------------------------------------------------------------------
// Through `irsa-proxy dev`

/// `dev -- sh -c SCRIPT`: the client gets exactly what `dev` exports; the
/// script only tells the old SDK where the emulator is (they know no
/// `AWS_ENDPOINT_URL_STS`).
fn dev_command(dev_flags: &[&str], script: &str) -> Command {
    let mut c = Command::new(BIN);
    c.arg("dev")
        .args(["--listen", "127.0.0.1:0"])
        .args(dev_flags)
        .args(["--", "sh", "-c", script]);
    c
}

fn client_script(clients: &[&str], unset: &str) -> String {
    let mut s = String::from("set -e; export IRSA_TEST_STS_ENDPOINT=$AWS_ENDPOINT_URL_STS; ");
    for client in clients {
        s.push_str(&format!("({unset} exec {} {client}); ", run_client()));
    }
    s
}

#[test]
fn token_value_clients_should_get_credentials_through_dev() {
    let script = client_script(&["js-v2-2017", "botocore-debian"], "");
    let out = run(dev_command(&[], &script), Duration::from_secs(90));
    let context = describe(&out);
    assert!(out.status.success(), "{context}");
    let lines = client_lines(&String::from_utf8_lossy(&out.stdout));
    for client in ["js-v2-2017", "botocore-debian"] {
        assert_client_ok(&lines, client, "irsa-proxy-dev", &context);
    }
}

/// `dev --link-local` in a namespace of its own, as docs/legacy-apps.md shows it.
fn dev_link_local(script: &str) -> Output {
    dev_link_local_with("", script)
}

/// [`dev_link_local`] with more dev flags.
fn dev_link_local_with(dev_flags: &str, script: &str) -> Output {
    let inner = format!(
        "ip link set lo up && exec {BIN} dev --link-local {dev_flags} --listen 127.0.0.1:0 -- sh -c {}",
        shell_quote(script)
    );
    let mut c = Command::new("unshare");
    c.args(["--net", "--", "sh", "-c", &inner]);
    run(c, Duration::from_secs(90))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn relative_uri_clients_should_get_credentials_through_dev_link_local() {
    require_root();
    // The relative URI is what dev exports; FULL_URI removed so the 2019
    // botocore cannot take the loopback route instead.
    let script = client_script(
        &["botocore-2019", "ruby-v3-debian"],
        "unset AWS_CONTAINER_CREDENTIALS_FULL_URI;",
    );
    let out = dev_link_local(&script);
    let context = describe(&out);
    assert!(out.status.success(), "{context}");
    let lines = client_lines(&String::from_utf8_lossy(&out.stdout));
    for client in ["botocore-2019", "ruby-v3-debian"] {
        assert_client_ok(&lines, client, "irsa-proxy-dev", &context);
    }
}

#[test]
fn imds_only_clients_should_get_credentials_through_dev_link_local() {
    require_root();
    // No container variables at all: these SDKs find IMDS at 169.254.169.254.
    let script = client_script(
        &["boto2", "ruby-v3-debian", "botocore-2019"],
        "unset AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;",
    );
    let out = dev_link_local(&script);
    let context = describe(&out);
    assert!(out.status.success(), "{context}");
    let lines = client_lines(&String::from_utf8_lossy(&out.stdout));
    for client in ["boto2", "ruby-v3-debian", "botocore-2019"] {
        assert_client_ok(&lines, client, "irsa-proxy-dev", &context);
    }
}

/// EKS Pod Identity for SDKs that cannot use it: `dev --source pod-identity`
/// makes the emulator the node's agent and the proxy its client; the old SDKs
/// get the Pod Identity role's credentials from the proxy on every route.
#[test]
fn old_sdks_should_get_pod_identity_credentials_through_dev() {
    let script = client_script(&["js-v2-2017", "botocore-debian"], "");
    let out = run(
        // --verbose: the source line checked below is INFO.
        dev_command(&["--source", "pod-identity", "--verbose"], &script),
        Duration::from_secs(90),
    );
    let context = describe(&out);
    assert!(out.status.success(), "{context}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("credential source: EKS Pod Identity agent"),
        "{context}"
    );
    let lines = client_lines(&String::from_utf8_lossy(&out.stdout));
    for client in ["js-v2-2017", "botocore-debian"] {
        assert_client_ok(&lines, client, "irsa-proxy-dev", &context);
        assert_pod_identity_session(&lines, client, &context);
    }
}

#[test]
fn link_local_sdks_should_get_pod_identity_credentials_through_dev() {
    require_root();
    let script = format!(
        "{} {}",
        client_script(
            &["botocore-2019"],
            "unset AWS_CONTAINER_CREDENTIALS_FULL_URI;",
        ),
        client_script(
            &["boto2", "ruby-v3-debian"],
            "unset AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;",
        )
    );
    let out = dev_link_local_with("--source pod-identity", &script);
    let context = describe(&out);
    assert!(out.status.success(), "{context}");
    let lines = client_lines(&String::from_utf8_lossy(&out.stdout));
    for client in ["botocore-2019", "boto2", "ruby-v3-debian"] {
        assert_client_ok(&lines, client, "irsa-proxy-dev", &context);
        assert_pod_identity_session(&lines, client, &context);
    }
}

/// The safety rule: never put 169.254.169.254 on `lo` of a namespace with a
/// route out (on a cloud VM that hijacks the real metadata service). Shown in
/// a namespace made here, with a dummy route out that leads nowhere.
#[test]
fn link_local_should_be_refused_in_a_namespace_with_a_route_out() {
    require_root();
    let setup = "ip link set lo up && ip link add d0 type veth peer name d1 && ip link set d1 up && ip link set d0 up && ip addr add 10.255.0.1/24 dev d0 && ip route add default via 10.255.0.2";
    for (what, cmd) in [
        (
            // Without a command dev stays in the namespace it was started in.
            "dev",
            format!("{BIN} dev --link-local --listen 127.0.0.1:0"),
        ),
        ("link-local", format!("{BIN} link-local")),
        (
            "link-local as a hostNetwork pod",
            format!("{BIN} link-local --pod-ip 10.0.0.5 --host-ip 10.0.0.5"),
        ),
    ] {
        let script = format!(
            "{setup} && {cmd}; code=$?; if ip -4 addr show dev lo | grep -q 169.254; then echo ADDED; fi; exit $code"
        );
        let mut c = Command::new("unshare");
        c.args(["--net", "--", "sh", "-c", &script]);
        let out = run(c, Duration::from_secs(30));
        let context = describe(&out);
        assert_eq!(out.status.code(), Some(2), "{what}: {context}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("route out") || stderr.contains("hostNetwork"),
            "{what}: {context}"
        );
        assert_eq!(stderr.lines().count(), 1, "{what}: one line: {context}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("ADDED"),
            "{what} added an address: {context}"
        );
    }
}

/// `dev --link-local -- CMD` makes a network namespace of its own, as root and
/// as an ordinary user (through a user namespace). Started here inside a
/// namespace that has a route out, where dev refuses to add the addresses: so
/// the client can only succeed if dev really moved into a namespace of its own.
#[test]
fn dev_link_local_should_make_its_own_namespace_for_a_command() {
    require_root();
    let setup = "ip link set lo up && ip link add d0 type veth peer name d1 && ip link set d1 up && ip link set d0 up && ip addr add 10.255.0.1/24 dev d0 && ip route add default via 10.255.0.2";
    let script = client_script(
        &["boto2"],
        "unset AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;",
    );
    for user in ["root", "nobody"] {
        let dev = format!(
            "{BIN} dev --link-local --listen 127.0.0.1:0 -- sh -c {}",
            shell_quote(&script)
        );
        let as_user = if user == "root" {
            dev
        } else {
            format!("setpriv --reuid 65534 --regid 65534 --clear-groups {dev}")
        };
        let mut c = Command::new("unshare");
        c.args(["--net", "--", "sh", "-c", &format!("{setup} && {as_user}")]);
        let out = run(c, Duration::from_secs(90));
        let context = format!("as {user}: {}", describe(&out));
        assert!(out.status.success(), "{context}");
        let lines = client_lines(&String::from_utf8_lossy(&out.stdout));
        assert_client_ok(&lines, "boto2", "irsa-proxy-dev", &context);
    }
}

// ---------------------------------------------------------------------------
// Through the pod runner: inject's manifests, run as kubelet would

/// A pod with one app container per client, each an old SDK.
fn pod_yaml(apps: &[&str]) -> String {
    let mut y = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: legacy\n  namespace: apps\nspec:\n  serviceAccountName: legacy-sa\n  restartPolicy: Never\n  containers:\n",
    );
    for app in apps {
        y.push_str(&format!("  - name: {app}\n    image: legacy/{app}:1\n"));
    }
    y
}

fn inject(args: &[&str], input: &str, dir: &Path) -> PathBuf {
    let mut c = Command::new(BIN);
    c.arg("inject")
        .args(["--image", IMAGE])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("inject");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("inject");
    assert!(out.status.success(), "inject: {}", describe(&out));
    let path = dir.join("pod.yaml");
    std::fs::write(&path, &out.stdout).expect("write manifest");
    path
}

fn check_pod(out: &Output, logs: &[(String, String)], clients: &[(&str, &str)]) {
    let context = describe_pod(out, logs);
    assert!(out.status.success(), "{context}");
    for (container, client) in clients {
        let log = logs
            .iter()
            .find(|(n, _)| n == container)
            .map(|(_, l)| l.as_str())
            .unwrap_or_default();
        assert_client_ok(&client_lines(log), client, "legacy-app", &context);
    }
}

/// `inject`'s default manifest: the token as a value from the Secret it emits.
#[test]
fn token_value_clients_should_get_credentials_from_injected_manifests() {
    require_root();
    let work = tempfile::tempdir().expect("tempdir");
    let manifest = inject(
        &["--role-arn", ROLE],
        &pod_yaml(&["js", "debian-boto3"]),
        work.path(),
    );
    let (out, logs) = run_pod(
        &[&manifest],
        &[
            ("js", client_argv("js-v2-2017")),
            ("debian-boto3", client_argv("botocore-debian")),
        ],
        &[],
        &work.path().join("pod"),
    );
    check_pod(
        &out,
        &logs,
        &[("js", "js-v2-2017"), ("debian-boto3", "botocore-debian")],
    );
}

/// `inject --link-local`: the init step adds the addresses and redirects their
/// port 80 to the non-root sidecar's port on the same address. The configured container
/// takes the relative URI; the two left unconfigured (`--container`) find
/// IMDS at 169.254.169.254 by themselves, as a legacy app nobody touched would.
#[test]
fn link_local_clients_should_get_credentials_from_injected_manifests() {
    require_root();
    let work = tempfile::tempdir().expect("tempdir");
    let manifest = inject(
        &["--role-arn", ROLE, "--link-local", "--container", "py2019"],
        &pod_yaml(&["py2019", "boto2", "ruby"]),
        work.path(),
    );
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    assert!(
        text.contains("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        "{text}"
    );
    let (out, logs) = run_pod(
        &[&manifest],
        &[
            ("py2019", client_argv("botocore-2019")),
            ("boto2", client_argv("boto2")),
            ("ruby", client_argv("ruby-v3-debian")),
        ],
        &[],
        &work.path().join("pod"),
    );
    check_pod(
        &out,
        &logs,
        &[
            ("py2019", "botocore-2019"),
            ("boto2", "boto2"),
            ("ruby", "ruby-v3-debian"),
        ],
    );
}

/// The seed's own Deployment (`k8s/deployment-plain.yaml`: an app on port 80)
/// with `inject --link-local`: the app binds `0.0.0.0:80` and answers there,
/// while in the same container an old SDK that knows only IMDS (boto 2) gets
/// the role's credentials from `169.254.169.254:80`. The init step redirects
/// that port to the sidecar's own, so the two never compete for port 80.
#[test]
fn an_app_on_port_80_and_an_imds_only_sdk_should_share_the_pod() {
    require_root();
    let work = tempfile::tempdir().expect("tempdir");
    let plain = std::fs::read_to_string(root().join("k8s/deployment-plain.yaml")).expect("k8s");
    assert!(plain.contains("containerPort: 80"), "{plain}");
    let manifest = inject(&["--role-arn", ROLE, "--link-local"], &plain, work.path());
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    assert!(!text.contains("ip_unprivileged_port_start"), "{text}");
    // The app: a server on 0.0.0.0:80, then the old SDK, then the server again.
    let app = format!(
        r#"
import http.server, json, socket, subprocess, sys, threading, urllib.request
class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"the app")
    def log_message(self, *a): pass
server = http.server.HTTPServer(("0.0.0.0", 80), App)
threading.Thread(target=server.serve_forever, daemon=True).start()
def app_answers(host):
    return urllib.request.urlopen("http://%s:80/" % host, timeout=5).read() == b"the app"
assert app_answers("127.0.0.1"), "the app does not answer on 127.0.0.1:80"
sdk = subprocess.run([{run_client:?}, "boto2"], capture_output=True, text=True, timeout=60)
sys.stdout.write(sdk.stdout); sys.stderr.write(sdk.stderr)
assert sdk.returncode == 0, "boto2 failed"
ip = socket.gethostbyname(socket.gethostname())
assert app_answers("127.0.0.1") and app_answers(ip), "the app lost port 80"
print("app-on-port-80-ok", ip)
"#,
        run_client = run_client()
    );
    let (out, logs) = run_pod(
        &[&manifest],
        &[("api", vec!["python3".to_string(), "-c".to_string(), app])],
        &[],
        &work.path().join("pod"),
    );
    check_pod(&out, &logs, &[("api", "boto2")]);
    let context = describe_pod(&out, &logs);
    assert!(
        logs[0]
            .1
            .lines()
            .any(|l| l.starts_with("app-on-port-80-ok")),
        "{context}"
    );
}

/// On EKS the pod-identity webhook mutates the pod at admission, after
/// `inject`. The `skip-containers` annotation that `inject` writes keeps web
/// identity away from the app containers, so a current SDK that knows web
/// identity (boto3) still goes through the sidecar; the sidecar gets the role
/// from the webhook (no `--role-arn` given to inject).
#[test]
fn the_eks_webhook_should_leave_injected_app_containers_to_the_sidecar() {
    require_root();
    let work = tempfile::tempdir().expect("tempdir");
    let sa = work.path().join("sa.yaml");
    std::fs::write(
        &sa,
        format!("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: legacy-sa\n  namespace: apps\n  annotations:\n    eks.amazonaws.com/role-arn: {ROLE}\n"),
    )
    .expect("sa");
    let manifest = inject(&[], &pod_yaml(&["current", "old-js"]), work.path());
    let boto3 = vec![
        "python3".to_string(),
        root()
            .join("tests/clients/boto3_credentials.py")
            .display()
            .to_string(),
    ];
    let (out, logs) = run_pod(
        &[&manifest, &sa],
        &[("current", boto3), ("old-js", client_argv("js-v2-2017"))],
        &["--eks-webhook", "--eks-webhook-region", "us-east-1"],
        &work.path().join("pod"),
    );
    let context = describe_pod(&out, &logs);
    assert!(out.status.success(), "{context}");
    let current = &logs[0].1;
    assert!(current.lines().any(|l| l.starts_with("ASIA")), "{context}");
    assert!(
        current.lines().any(|l| l.trim() == "container-role"),
        "boto3 did not use the sidecar: {context}"
    );
    assert_client_ok(
        &client_lines(&logs[1].1),
        "js-v2-2017",
        "legacy-app",
        &context,
    );
    // The webhook really ran and gave the sidecar the role.
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let webhook = &report["webhook"];
    assert_eq!(webhook["mutated"], true, "{context}");
    let listed = |key: &str, name: &str| {
        webhook[key]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == name))
    };
    assert!(listed("containers", "irsa-proxy"), "{context}");
    assert!(!listed("containers", "current"), "{context}");
    assert!(
        listed("skipped", "current") && listed("skipped", "old-js"),
        "{context}"
    );
}

// ---------------------------------------------------------------------------
// Role chaining: every route carries the last role of the chain

const TARGET: &str = "arn:aws:iam::444455556666:role/legacy-target";

/// `dev --chain-role-arn` in a namespace of its own: FULL_URI with the token
/// as a value, the relative URI and IMDS each reach their old clients, and
/// every GetCallerIdentity answers the chained role, not the first one.
#[test]
fn every_route_should_carry_the_chained_role_through_dev() {
    require_root();
    let routes = [
        ("js-v2-2017", ""),
        ("botocore-debian", ""),
        (
            "botocore-2019",
            "unset AWS_CONTAINER_CREDENTIALS_FULL_URI;",
        ),
        (
            "boto2",
            "unset AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;",
        ),
        (
            "ruby-v3-debian",
            "unset AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE;",
        ),
    ];
    let mut script = String::from("set -e; export IRSA_TEST_STS_ENDPOINT=$AWS_ENDPOINT_URL_STS; ");
    for (client, unset) in routes {
        script.push_str(&format!("({unset} exec {} {client}); ", run_client()));
    }
    let inner = format!(
        "ip link set lo up && exec {BIN} dev --link-local --listen 127.0.0.1:0 --chain-role-arn {TARGET} --session-name '{{namespace}}.{{pod}}' -- sh -c {}",
        shell_quote(&script)
    );
    let mut c = Command::new("unshare");
    c.args(["--net", "--", "sh", "-c", &inner]);
    let out = run(c, Duration::from_secs(120));
    let context = describe(&out);
    assert!(out.status.success(), "{context}");
    let lines = client_lines(&String::from_utf8_lossy(&out.stdout));
    for (client, _) in routes {
        assert_client_ok(&lines, client, "legacy-target", &context);
        let arn = lines.iter().find(|v| v["client"] == client).unwrap()["arn"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            arn.starts_with("arn:aws:sts::444455556666:assumed-role/legacy-target/default.app-"),
            "{client}: {arn}\n{context}"
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("served role:             {TARGET}")),
        "{stderr}"
    );
}

/// `inject --chain-role-arn` run by the pod runner as kubelet would: the
/// sidecar chains from the web-identity role to the target, and the old SDKs
/// on FULL_URI, the relative URI and IMDS all get the target.
#[test]
fn every_route_should_carry_the_chained_role_from_injected_manifests() {
    require_root();
    let work = tempfile::tempdir().expect("tempdir");
    let manifest = inject(
        &[
            "--role-arn",
            ROLE,
            "--chain-role-arn",
            TARGET,
            "--link-local",
            "--container",
            "js",
            "--container",
            "py2019",
        ],
        &pod_yaml(&["js", "py2019", "boto2", "ruby"]),
        work.path(),
    );
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    assert!(text.contains("IRSA_PROXY_CHAIN_ROLE_ARN"), "{text}");
    let (out, logs) = run_pod(
        &[&manifest],
        &[
            ("js", client_argv("js-v2-2017")),
            ("py2019", client_argv("botocore-2019")),
            ("boto2", client_argv("boto2")),
            ("ruby", client_argv("ruby-v3-debian")),
        ],
        &[],
        &work.path().join("pod"),
    );
    let context = describe_pod(&out, &logs);
    assert!(out.status.success(), "{context}");
    for (container, client) in [
        ("js", "js-v2-2017"),
        ("py2019", "botocore-2019"),
        ("boto2", "boto2"),
        ("ruby", "ruby-v3-debian"),
    ] {
        let log = logs
            .iter()
            .find(|(n, _)| n == container)
            .map(|(_, l)| l.as_str())
            .unwrap_or_default();
        assert_client_ok(&client_lines(log), client, "legacy-target", &context);
    }
}

/// On an EKS Pod Identity cluster: `inject`'s manifest, then the EKS webhook's
/// Pod Identity mutation at admission (the pod runner's simulation). The
/// `skip-containers` annotation keeps the agent's variables away from the
/// apps; the sidecar gets them with the token volume, and the old SDKs get the
/// Pod Identity role's credentials from the sidecar. The sidecar asks the
/// agent at the URL the EKS webhook writes, `http://169.254.170.23/v1/credentials`:
/// the pod runner puts that address on the pod's lo, in the pod's own network
/// namespace with no route out, and relays it to the emulator playing the
/// agent (with the association for the pod's service account).
#[test]
fn old_sdks_should_get_pod_identity_credentials_in_an_injected_pod() {
    require_root();
    let work = tempfile::tempdir().expect("tempdir");
    let manifest = inject(&[], &pod_yaml(&["js", "debian-boto3"]), work.path());
    let agent = "http://169.254.170.23/v1/credentials";
    let upstream = format!("127.0.0.1:{POD_STS_PORT}");
    let association = format!("apps/legacy-sa={ROLE}");
    let (out, logs) = run_pod_with_emulator(
        &[&manifest],
        &[
            ("js", client_argv("js-v2-2017")),
            ("debian-boto3", client_argv("botocore-debian")),
        ],
        &[
            "--eks-pod-identity",
            agent,
            "--pod-identity-agent",
            &upstream,
            "--eks-webhook-region",
            "us-east-1",
        ],
        &["--pod-identity-association", &association],
        &work.path().join("pod"),
    );
    let context = describe_pod(&out, &logs);
    check_pod(
        &out,
        &logs,
        &[("js", "js-v2-2017"), ("debian-boto3", "botocore-debian")],
    );
    for (container, client) in [("js", "js-v2-2017"), ("debian-boto3", "botocore-debian")] {
        let log = &logs.iter().find(|(n, _)| n == container).unwrap().1;
        let lines = client_lines(log);
        let arn = lines
            .iter()
            .find(|v| v["client"] == client)
            .and_then(|v| v["arn"].as_str())
            .unwrap_or_default()
            .to_string();
        assert!(
            arn.contains("/eks-"),
            "{client}: not a Pod Identity session: {arn}\n{context}"
        );
    }
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("pod-identity"),
        "the mutation was not simulated: {context}"
    );
    // The agent answered at its real address inside the pod, and nowhere else.
    let report: serde_json::Value =
        serde_json::from_str(&report).expect("the runner's JSON report");
    let addresses = report["pod_identity_agent"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        addresses.iter().any(|a| a == "169.254.170.23:80"),
        "{addresses:?}\n{context}"
    );
    let sidecar = std::fs::read_dir(work.path().join("pod/logs"))
        .expect("the pod's logs")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .find(|log| log.contains("credential source: EKS Pod Identity agent"))
        .unwrap_or_default();
    assert!(
        sidecar.contains("http://169.254.170.23/v1/credentials"),
        "the sidecar did not use the agent's real address:\n{sidecar}\n{context}"
    );
}
