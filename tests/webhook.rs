//! `irsa-proxy webhook`, the real binary, over real TLS.
//!
//! Each test makes a CA with rcgen, lays the serving certificate out as kubelet
//! lays out a Secret volume (`..data` symlink to a timestamped directory),
//! starts the binary, and sends AdmissionReviews shaped like the API server's
//! (a ReplicaSet's pod: `generateName`, no name, the namespace on the request,
//! ownerReferences) with a hyper client over tokio-rustls. Patches are applied
//! with the `json-patch` crate and with Python's `jsonpatch`, the result is
//! checked with `kubernetes-validate --strict`, and run in the pod runner
//! (`tests/podrunner/`) where an old SDK (`js-v2-2017`, which needs the token
//! as a value) gets credentials. The pod-runner tests need root, as in
//! tests/legacy.rs.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use common::podrunner::{client_argv, describe_pod, require_root};
use http_body_util::{BodyExt, Full};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_irsa-proxy");
const HOST: &str = "irsa-proxy-webhook.irsa-proxy-system.svc";
const ROLE: &str = "arn:aws:iam::111122223333:role/legacy-app";
const KUBERNETES_VERSION: &str = "1.33.0";
/// The sidecar image injected pods get (required: none is published): the
/// one the pod runner knows how to run.
const IMAGE: &str = common::podrunner::IMAGE;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------
// Certificates, laid out like a Secret volume

struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer =
            CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca");
        TestCa { issuer }
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A new serving certificate and key, PEM.
    fn leaf(&self) -> (String, String) {
        let mut p = CertificateParams::new(vec![HOST.to_string()]).expect("params");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer).expect("leaf");
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes `tls.crt`/`tls.key` as kubelet does: a new `..<n>` directory, then
/// an atomic rename of a new `..data` symlink over the old one.
fn publish(dir: &Path, generation: usize, cert: &str, key: &str) {
    let data = dir.join(format!("..gen_{generation}"));
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("tls.crt"), cert).expect("crt");
    std::fs::write(data.join("tls.key"), key).expect("key");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..gen_{generation}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap");
    for f in ["tls.crt", "tls.key"] {
        let link = dir.join(f);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), &link).expect("symlink");
        }
    }
}

// ---------------------------------------------------------------------------
// The webhook process and a TLS client

struct Webhook {
    child: Child,
    addr: SocketAddr,
    ca: CertificateDer<'static>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn start(dir: &Path, ca: &TestCa, extra: &[&str]) -> Webhook {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let child = Command::new(BIN)
        .arg("webhook")
        .args(["--listen", &addr.to_string()])
        .arg("--tls-cert-file")
        .arg(dir.join("tls.crt"))
        .arg("--tls-key-file")
        .arg(dir.join("tls.key"))
        .args(["--image", IMAGE])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the webhook");
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "webhook did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Webhook {
        child,
        addr,
        ca: ca.der(),
    }
}

fn tls_connector(ca: &CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // Full handshakes only: a resumed session shows the certificate of the
    // session it resumes, and the rotation test wants to see what is served.
    let mut config = config;
    config.resumption = rustls::client::Resumption::disabled();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A new TLS connection; the serial-ish fingerprint of the certificate served.
async fn connect(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
) -> Result<(Sender, Vec<u8>), Box<dyn std::error::Error + Send + Sync>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let tls = connector.connect(ServerName::try_from(HOST)?, tcp).await?;
    let served = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok((sender, served))
}

async fn send(
    sender: &mut Sender,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), Box<dyn std::error::Error + Send + Sync>> {
    sender.ready().await?;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", HOST)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes().to_vec();
    Ok((status, body))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// One request on a new connection.
fn call(w: &Webhook, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let connector = tls_connector(&w.ca);
    runtime().block_on(async {
        let (mut s, _) = connect(w.addr, &connector).await.expect("connect");
        send(&mut s, method, path, body).await.expect("request")
    })
}

// ---------------------------------------------------------------------------
// Reviews shaped like the API server's

/// A pod as the ReplicaSet controller creates it: generateName, no name and
/// no namespace (those are on the request), ownerReferences, the template's
/// labels plus pod-template-hash.
fn replicaset_pod(annotations: Value, apps: &[&str]) -> Value {
    let containers: Vec<Value> = apps
        .iter()
        .map(|a| json!({"name": a, "image": format!("legacy/{a}:1"), "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}))
        .collect();
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "legacy-5c9d7b8f6-",
            "creationTimestamp": null,
            "labels": {"app": "legacy", "pod-template-hash": "5c9d7b8f6"},
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "legacy-5c9d7b8f6",
                "uid": "0b4f3f0e-4a4b-4f69-8f5e-1b0cf3a3e0a1", "controller": true, "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "serviceAccountName": "legacy-sa",
            "serviceAccount": "legacy-sa",
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "containers": containers
        },
        "status": {}
    })
}

fn review(object: Value, operation: &str, kind: &str) -> Vec<u8> {
    let (group, resource) = match kind {
        "Deployment" => ("apps", "deployments"),
        _ => ("", "pods"),
    };
    serde_json::to_vec(&json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "d7a2e6c3-5b1f-4c1e-9a0b-7f3c2b1a9e8d",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "namespace": "apps",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    }))
    .expect("review")
}

/// The `response` of an answer, and its patch decoded.
fn response(body: &[u8]) -> (Value, Option<Value>) {
    let v: Value = serde_json::from_slice(body).expect("answer is JSON");
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    let r = v["response"].clone();
    assert_eq!(r["uid"], "d7a2e6c3-5b1f-4c1e-9a0b-7f3c2b1a9e8d");
    assert_eq!(r["allowed"], true, "the webhook never denies: {r}");
    let patch = r["patch"].as_str().map(|p| {
        assert_eq!(r["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p)
            .expect("base64");
        serde_json::from_slice(&bytes).expect("patch JSON")
    });
    (r, patch)
}

/// Applies `patch` with the json-patch crate and with Python's jsonpatch;
/// both must agree.
fn apply(pod: &Value, patch: &Value) -> Value {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).expect("RFC 6902 ops");
    let mut ours = pod.clone();
    json_patch::patch(&mut ours, &ops).expect("patch applies");
    let script = "import json,sys,jsonpatch; d=json.load(sys.stdin); print(json.dumps(jsonpatch.apply_patch(d['pod'], d['patch'])))";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 with jsonpatch (pip install jsonpatch)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(&serde_json::to_vec(&json!({"pod": pod, "patch": patch})).expect("json"))
            .expect("write");
    }
    let out = child.wait_with_output().expect("python");
    assert!(out.status.success(), "python jsonpatch refused the patch");
    let theirs: Value = serde_json::from_slice(&out.stdout).expect("python output");
    assert_eq!(ours, theirs, "the two JSON-patch implementations disagree");
    ours
}

/// What the API server does after admission: name and namespace.
fn as_created(mut pod: Value, name: &str) -> Value {
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["namespace"] = json!("apps");
    if let Some(m) = pod["metadata"].as_object_mut() {
        m.remove("generateName");
        m.remove("creationTimestamp");
    }
    if let Some(m) = pod.as_object_mut() {
        m.remove("status");
    }
    pod
}

fn kubernetes_validate(path: &Path) {
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .arg(path)
        .output()
        .expect("kubernetes-validate (pip install kubernetes-validate)");
    assert!(
        out.status.success(),
        "kubernetes-validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// The pod runner (as tests/legacy.rs)

/// Runs the manifests in the pod runner (`tests/common/podrunner.rs`), each
/// app container running an old SDK client. Returns the report and a context
/// for assertion messages (the output and every app log).
fn run_pod(
    manifests: &[&Path],
    apps: &[(&str, &str)],
    extra: &[&str],
    work: &Path,
) -> (Output, String) {
    let apps: Vec<(&str, Vec<String>)> = apps
        .iter()
        .map(|(name, client)| (*name, client_argv(client)))
        .collect();
    let (out, logs) = common::podrunner::run_pod(manifests, &apps, extra, work);
    let context = describe_pod(&out, &logs);
    (out, context)
}

/// The client printed a JSON line with role credentials from our STS.
fn assert_client_ok(context: &str, client: &str, role_name: &str) {
    let ok = context
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .any(|v| {
            v["client"] == client
                && v["access_key_id"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("ASIA"))
                && v["arn"]
                    .as_str()
                    .is_some_and(|a| a.contains(&format!(":assumed-role/{role_name}/")))
        });
    assert!(ok, "{client} got no credentials for {role_name}\n{context}");
}

/// Mutates `pod` through the webhook, checks the patch (two implementations,
/// schema), and writes the pod as the API server would store it.
fn admit_and_write(w: &Webhook, pod: &Value, dir: &Path, name: &str) -> (Value, PathBuf) {
    let (status, body) = call(w, "POST", "/mutate", review(pod.clone(), "CREATE", "Pod"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (_, patch) = response(&body);
    let patch = patch.expect("an opted-in pod gets a patch");
    let mutated = as_created(apply(pod, &patch), name);
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&mutated).expect("json")).expect("write");
    kubernetes_validate(&path);
    (mutated, path)
}

fn env_of<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["env"].as_array()?.iter().find(|e| e["name"] == name)
}

fn sidecar(pod: &Value) -> &Value {
    pod["spec"]["initContainers"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "irsa-proxy"))
        .expect("the sidecar in initContainers")
}

fn setup() -> (tempfile::TempDir, TestCa, Webhook) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (cert, key) = ca.leaf();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    publish(&certs, 1, &cert, &key);
    let w = start(&certs, &ca, &[]);
    (dir, ca, w)
}

// ---------------------------------------------------------------------------
// The tests

/// The main path: a ReplicaSet's pod in an enabled namespace, the role from
/// the pod annotation (no EKS webhook). The patch applies with two
/// implementations, validates, gives every container the same fresh token as
/// a value, and the pod runs: the 2017 JavaScript SDK gets credentials.
#[test]
fn a_replicaset_pod_should_get_a_patch_that_validates_and_runs_an_old_sdk() {
    require_root();
    let (dir, _ca, w) = setup();
    let pod = replicaset_pod(json!({"irsa-proxy.io/role-arn": ROLE}), &["js"]);
    let (mutated, path) = admit_and_write(&w, &pod, dir.path(), "legacy-5c9d7b8f6-x7k2p");
    let token =
        env_of(sidecar(&mutated), "IRSA_PROXY_AUTH_TOKEN").expect("sidecar token")["value"].clone();
    assert!(token.as_str().is_some_and(|t| t.len() == 64), "{token}");
    let app = &mutated["spec"]["containers"][0];
    assert_eq!(
        env_of(app, "AWS_CONTAINER_AUTHORIZATION_TOKEN").expect("app token")["value"],
        token
    );
    assert!(env_of(sidecar(&mutated), "AWS_ROLE_ARN").is_some_and(|e| e["value"] == ROLE));
    // A second pod of the same ReplicaSet gets another token.
    let (again, _) = admit_and_write(&w, &pod, dir.path(), "legacy-5c9d7b8f6-q9z8w");
    assert_ne!(
        env_of(sidecar(&again), "IRSA_PROXY_AUTH_TOKEN").expect("token")["value"],
        token,
        "tokens must be per pod"
    );
    let (out, context) = run_pod(
        &[&path],
        &[("js", "js-v2-2017")],
        &[],
        &dir.path().join("pod"),
    );
    assert!(out.status.success(), "{context}");
    assert_client_ok(&context, "js-v2-2017", "legacy-app");
}

/// Order 1: our webhook first, then the EKS pod-identity webhook (the pod
/// runner's simulation) mutates the result. No role annotation: the sidecar
/// gets AWS_ROLE_ARN from the EKS webhook, which leaves the app containers
/// (skip-containers) to the sidecar.
#[test]
fn the_eks_webhook_after_ours_should_give_the_role_to_the_sidecar() {
    require_root();
    let (dir, _ca, w) = setup();
    let pod = replicaset_pod(json!({}), &["js"]);
    let (mutated, path) = admit_and_write(&w, &pod, dir.path(), "legacy-5c9d7b8f6-eks01");
    assert_eq!(
        mutated["metadata"]["annotations"]["eks.amazonaws.com/skip-containers"],
        "js"
    );
    let sa = dir.path().join("sa.yaml");
    std::fs::write(
        &sa,
        format!("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: legacy-sa\n  namespace: apps\n  annotations:\n    eks.amazonaws.com/role-arn: {ROLE}\n"),
    )
    .expect("sa");
    let (out, context) = run_pod(
        &[&path, &sa],
        &[("js", "js-v2-2017")],
        &["--eks-webhook", "--eks-webhook-region", "us-east-1"],
        &dir.path().join("pod"),
    );
    assert!(out.status.success(), "{context}");
    assert_client_ok(&context, "js-v2-2017", "legacy-app");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let listed = |key: &str, name: &str| {
        report["webhook"][key]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == name))
    };
    assert!(
        listed("containers", "irsa-proxy") && listed("skipped", "js"),
        "{context}"
    );
}

/// Order 2: the EKS webhook ran first (the pod carries its volume, mount and
/// variables, as tests/fixtures/inject/webhook.yaml). The sidecar reads the
/// EKS token volume and inherits the role, the app loses the web-identity
/// pair; the pod runs.
#[test]
fn a_pod_the_eks_webhook_mutated_first_should_run_through_the_sidecar() {
    require_root();
    let (dir, _ca, w) = setup();
    let mut pod = replicaset_pod(json!({}), &["js"]);
    pod["spec"]["containers"][0]["env"] = json!([
        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
        {"name": "AWS_DEFAULT_REGION", "value": "us-east-1"},
        {"name": "AWS_REGION", "value": "us-east-1"},
        {"name": "AWS_ROLE_ARN", "value": ROLE},
        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"}
    ]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "aws-iam-token", "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount", "readOnly": true}
    ]);
    pod["spec"]["volumes"] = json!([{"name": "aws-iam-token", "projected": {"sources": [
        {"serviceAccountToken": {"audience": "sts.amazonaws.com", "expirationSeconds": 86400, "path": "token"}}
    ]}}]);
    let (mutated, path) = admit_and_write(&w, &pod, dir.path(), "legacy-5c9d7b8f6-eks02");
    // The app loses the pair (its SDK would bypass the sidecar), the sidecar
    // keeps the role.
    let app = &mutated["spec"]["containers"][0];
    for name in ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"] {
        assert!(env_of(app, name).is_none(), "{name} left in {app}");
    }
    let side = sidecar(&mutated);
    assert!(
        env_of(side, "AWS_ROLE_ARN").is_some_and(|e| e["value"] == ROLE),
        "{side}"
    );
    assert!(
        side["args"]
            .to_string()
            .contains("/var/run/secrets/eks.amazonaws.com/serviceaccount/token"),
        "{side}"
    );
    let (out, context) = run_pod(
        &[&path],
        &[("js", "js-v2-2017")],
        &[],
        &dir.path().join("pod"),
    );
    assert!(out.status.success(), "{context}");
    assert_client_ok(&context, "js-v2-2017", "legacy-app");
}

/// Every "never break pod creation" case: allowed, no patch, a warning where
/// the pod asked for the sidecar and cannot have it; 400 and 413 for what is
/// not a review.
#[test]
fn pod_creation_should_never_break_for_the_wrong_reason() {
    let (_dir, _ca, w) = setup();
    let plain = replicaset_pod(json!({}), &["app"]);
    let mut host_network = plain.clone();
    host_network["spec"]["hostNetwork"] = json!(true);
    let mut windows = plain.clone();
    windows["spec"]["os"] = json!({"name": "windows"});
    let mut windows_selector = plain.clone();
    windows_selector["spec"]["nodeSelector"] = json!({"kubernetes.io/os": "windows"});
    let mut injected = plain.clone();
    {
        let (_, body) = call(
            &w,
            "POST",
            "/mutate",
            review(plain.clone(), "CREATE", "Pod"),
        );
        let (_, patch) = response(&body);
        injected = apply(&injected, &patch.expect("patch"));
    }
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {}});
    // (what, path, review, warning must name)
    let cases: Vec<(&str, &str, Vec<u8>, Option<&str>)> = vec![
        (
            "not opted in (opt-in entry, no annotation)",
            "/mutate/opt-in",
            review(plain.clone(), "CREATE", "Pod"),
            None,
        ),
        (
            "annotation \"false\" in an enabled namespace",
            "/mutate",
            review(
                replicaset_pod(json!({"irsa-proxy.io/inject": "false"}), &["app"]),
                "CREATE",
                "Pod",
            ),
            None,
        ),
        (
            "hostNetwork",
            "/mutate",
            review(host_network, "CREATE", "Pod"),
            Some("hostNetwork"),
        ),
        (
            "a Windows pod (spec.os.name), which the API server would refuse with the sidecar",
            "/mutate",
            review(windows, "CREATE", "Pod"),
            Some("Windows nodes (spec.os.name is windows)"),
        ),
        (
            "a pod for Windows nodes (nodeSelector), where the sidecar could not start",
            "/mutate",
            review(windows_selector, "CREATE", "Pod"),
            Some("Windows nodes (its nodeSelector"),
        ),
        (
            "a Deployment",
            "/mutate",
            review(deployment, "CREATE", "Deployment"),
            None,
        ),
        (
            "an UPDATE",
            "/mutate",
            review(plain.clone(), "UPDATE", "Pod"),
            None,
        ),
        (
            "already injected (reinvocation)",
            "/mutate",
            review(injected, "CREATE", "Pod"),
            None,
        ),
        (
            "bad port annotation",
            "/mutate",
            review(
                replicaset_pod(json!({"irsa-proxy.io/port": "http"}), &["app"]),
                "CREATE",
                "Pod",
            ),
            Some("irsa-proxy.io/port"),
        ),
        (
            "bad inject annotation",
            "/mutate",
            review(
                replicaset_pod(json!({"irsa-proxy.io/inject": "yes"}), &["app"]),
                "CREATE",
                "Pod",
            ),
            Some("irsa-proxy.io/inject"),
        ),
        (
            "unknown container",
            "/mutate",
            review(
                replicaset_pod(json!({"irsa-proxy.io/containers": "nope"}), &["app"]),
                "CREATE",
                "Pod",
            ),
            Some("irsa-proxy.io/containers"),
        ),
    ];
    for (what, path, body, warning) in cases {
        let (status, answer) = call(&w, "POST", path, body);
        assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&answer));
        let (r, patch) = response(&answer);
        assert!(patch.is_none(), "{what}: no patch expected, got {patch:?}");
        match warning {
            Some(name) => assert!(
                r["warnings"].to_string().contains(name),
                "{what}: a warning naming {name}: {r}"
            ),
            None => assert!(r.get("warnings").is_none(), "{what}: no warning: {r}"),
        }
    }
    for (what, body, needle) in [
        ("not JSON", b"{\"apiVersion\":".to_vec(), "not JSON"),
        ("v1beta1", br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#.to_vec(), "admission.k8s.io/v1"),
        ("no uid", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#.to_vec(), "request.uid"),
    ] {
        let (status, answer) = call(&w, "POST", "/mutate", body);
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, 400, "{what}: {text}");
        assert!(text.contains(needle), "{what}: {text}");
    }
    let answer = oversized(&w);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("3145728 bytes"),
        "the limit is stated: {answer}"
    );
    for (path, status) in [("/healthz", 200), ("/readyz", 200), ("/metrics", 200)] {
        assert_eq!(call(&w, "GET", path, Vec::new()).0, status, "{path}");
    }
    let metrics = String::from_utf8_lossy(&call(&w, "GET", "/metrics", Vec::new()).1).into_owned();
    assert!(
        metrics.contains("irsa_proxy_webhook_reviews_total{result=\"warned\"}"),
        "{metrics}"
    );
}

/// Announces a 4 MiB review and sends the first part of it over a raw TLS
/// stream; the answer comes before the body is read, so the write may fail
/// (the server closes), which a client library reports instead of the answer.
fn oversized(w: &Webhook) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connector = tls_connector(&w.ca);
    runtime().block_on(async {
        let mut tls = post_head(w.addr, &connector, 4 * 1024 * 1024).await;
        let _ = tls.write_all(&[b' '; 64 * 1024]).await;
        let _ = tls.flush().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// A raw TLS stream on which the head of `POST /mutate` announcing
/// `content_length` bytes was sent (not flushed), for writing the body by hand.
async fn post_head(
    addr: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    content_length: usize,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut tls = connector
        .connect(ServerName::try_from(HOST).expect("name"), tcp)
        .await
        .expect("handshake");
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\n\r\n"
    );
    let _ = tls.write_all(head.as_bytes()).await;
    tls
}

/// Issue 21: a review whose body is still arriving when SIGTERM comes (head
/// and part of the body before it, the rest 6.5 s after, past the 5 s of
/// serving on) gets its 200 with a patch, while a kept-alive connection is
/// open too; readiness is 503 meanwhile; the process then exits 0.
#[test]
fn a_review_in_flight_at_sigterm_should_get_its_answer_then_exit_0() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, _ca, mut w) = setup();
    let body = review(
        replicaset_pod(json!({"irsa-proxy.io/role-arn": ROLE}), &["app"]),
        "CREATE",
        "Pod",
    );
    let connector = tls_connector(&w.ca);
    let (status, answer) = runtime().block_on(async {
        // The kept-alive connection: one answered request, then idle.
        let (mut idle, _) = connect(w.addr, &connector).await.expect("connect");
        assert_eq!(
            send(&mut idle, "GET", "/healthz", Vec::new())
                .await
                .expect("healthz")
                .0,
            200
        );
        let mut tls = post_head(w.addr, &connector, body.len()).await;
        let (first, rest) = body.split_at(body.len() / 2);
        tls.write_all(first).await.expect("first half");
        tls.flush().await.expect("flush");
        // Let the server read the head, so the review is in flight.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pid = i32::try_from(w.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid, with a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
        let sigterm = Instant::now();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (mut fresh, _) = connect(w.addr, &connector)
            .await
            .expect("still accepting during the delay");
        assert_eq!(
            send(&mut fresh, "GET", "/readyz", Vec::new())
                .await
                .expect("readyz")
                .0,
            503,
            "readiness fails once SIGTERM arrived"
        );
        drop(fresh);
        tokio::time::sleep_until((sigterm + Duration::from_millis(6500)).into()).await;
        tls.write_all(rest).await.expect("the rest of the body");
        tls.flush().await.expect("flush");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut out)).await;
        drop(idle);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1).unwrap_or("").to_string();
        let answer = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.as_bytes().to_vec())
            .unwrap_or_default();
        (status, answer)
    });
    assert_eq!(status, "200", "{}", String::from_utf8_lossy(&answer));
    let (_, patch) = response(&answer);
    assert!(patch.is_some(), "the review in flight got its patch");
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = w.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the webhook did not exit after its drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

/// cert-manager renews, kubelet swaps `..data`: requests keep succeeding on
/// new and kept-alive connections, and new handshakes see the new certificate.
#[test]
fn certificate_rotation_under_load_should_fail_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    let (cert, key) = ca.leaf();
    publish(&certs, 0, &cert, &key);
    let w = start(&certs, &ca, &[]);
    let leaves: Vec<(String, String)> = (0..4).map(|_| ca.leaf()).collect();
    let body = review(replicaset_pod(json!({}), &["app"]), "CREATE", "Pod");
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let rt = runtime();
    let served = rt.block_on(async {
        let connector = tls_connector(&w.ca);
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut tasks = Vec::new();
        for worker in 0..8 {
            let (connector, body, failures, done) = (
                connector.clone(),
                body.clone(),
                failures.clone(),
                done.clone(),
            );
            let addr = w.addr;
            tasks.push(tokio::spawn(async move {
                let mut seen = std::collections::HashSet::new();
                let mut kept: Option<Sender> = None;
                while Instant::now() < deadline {
                    // Half the workers keep connections alive across the
                    // rotation, half open one per request.
                    let mut sender = match kept.take() {
                        Some(s) => s,
                        None => match connect(addr, &connector).await {
                            Ok((s, cert)) => {
                                seen.insert(cert);
                                s
                            }
                            Err(_) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        },
                    };
                    match send(&mut sender, "POST", "/mutate", body.clone()).await {
                        Ok((200, _)) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    if worker % 2 == 0 {
                        kept = Some(sender);
                    }
                }
                seen
            }));
        }
        for (i, (cert, key)) in leaves.iter().enumerate() {
            tokio::time::sleep(Duration::from_millis(800)).await;
            publish(&certs, i + 1, cert, key);
        }
        let mut served = std::collections::HashSet::new();
        for t in tasks {
            served.extend(t.await.unwrap_or_default());
        }
        served
    });
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "failed requests across rotation"
    );
    assert!(
        done.load(Ordering::Relaxed) > 100,
        "too few requests to prove anything"
    );
    assert!(
        served.len() >= 3,
        "new certificates were served: {} distinct",
        served.len()
    );
}

/// `webhook certs` prints a Secret whose certificate the webhook serves for
/// the Service name, trusted through the printed ca.crt; the caBundle patch
/// command carries the same CA.
#[test]
fn webhook_certs_should_print_a_secret_the_webhook_can_serve() {
    let out = Command::new(BIN)
        .args([
            "webhook",
            "certs",
            "--service",
            "irsa-proxy-webhook",
            "--namespace",
            "irsa-proxy-system",
        ])
        .output()
        .expect("certs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let secret: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    let field = |k: &str| {
        let b64 = secret["data"][k].as_str().expect("data key");
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("b64"),
        )
        .expect("pem")
    };
    assert_eq!(secret["type"].as_str(), Some("kubernetes.io/tls"));
    let ca_b64 = secret["data"]["ca.crt"].as_str().expect("ca");
    assert!(
        text.contains(&format!("\"value\":\"{ca_b64}\"")),
        "the patch carries the CA"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    publish(dir.path(), 1, &field("tls.crt"), &field("tls.key"));
    let manifest = dir.path().join("secret.yaml");
    std::fs::write(&manifest, &text).expect("write");
    kubernetes_validate(&manifest);
    let ca_der = rustls::pki_types::pem::PemObject::from_pem_slice(field("ca.crt").as_bytes())
        .expect("ca pem");
    let mut w = start_raw(dir.path());
    w.ca = ca_der;
    assert_eq!(call(&w, "GET", "/readyz", Vec::new()).0, 200);
}

/// The "Try it on your machine" block of docs/webhook.md, exactly as written
/// there: its lines run in one shell (as when pasted), inside a network
/// namespace and a private /tmp of their own, so port 8443 and the files are
/// this test's. The patch printed must add the sidecar with the image given and
/// the role of the review's annotation.
#[test]
fn the_try_it_block_of_the_manual_should_work_as_pasted() {
    require_root();
    let page = std::fs::read_to_string(root().join("docs/webhook.md")).expect("docs/webhook.md");
    let section = page
        .split_once("## Try it on your machine")
        .expect("the section")
        .1;
    let block = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a sh block")
        .0;
    assert_eq!(block.lines().count(), 5, "five lines: {block}");
    let bin_dir = Path::new(BIN).parent().expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // lo up (a new namespace has it down), a private /tmp, then the block
    // in a shell that stops at its first failure.
    let setup =
        r#"ip link set lo up && mount -t tmpfs tmpfs /tmp && exec bash -euo pipefail -c "$BLOCK""#;
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--mount", "--", "bash", "-c", setup])
        .current_dir(root())
        .env("PATH", path)
        .env("BLOCK", block)
        .env("RUST_LOG", "warn");
    let out = common::podrunner::run(cmd, Duration::from_secs(60));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "{block}\nstdout: {stdout}\nstderr: {stderr}"
    );
    let patch: Value = serde_json::from_str(&stdout).expect("the patch, as JSON");
    let sidecar = patch
        .as_array()
        .into_iter()
        .flatten()
        .find(|op| op["path"] == "/spec/initContainers")
        .map(|op| &op["value"][0])
        .unwrap_or_else(|| panic!("no sidecar in the patch: {stdout}"));
    assert_eq!(sidecar["name"], "irsa-proxy", "{sidecar}");
    assert_eq!(sidecar["image"], "irsa-proxy:dev", "{sidecar}");
    assert!(
        env_of(sidecar, "AWS_ROLE_ARN")
            .is_some_and(|e| e["value"] == "arn:aws:iam::111122223333:role/api"),
        "{sidecar}"
    );
}

/// `webhook certs --out-dir --localhost`: the three PEM files (the key
/// readable by its owner only), and a certificate the webhook serves for
/// `localhost` and `127.0.0.1`, trusted through ca.crt; bad flags exit 2.
#[test]
fn webhook_certs_should_write_pem_files_for_localhost() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("new/certs");
    let out = Command::new(BIN)
        .args(["webhook", "certs", "--localhost", "--out-dir"])
        .arg(&out_dir)
        .output()
        .expect("certs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed with --out-dir");
    assert!(stderr.contains("localhost, 127.0.0.1, ::1"), "{stderr}");
    let mode = |f: &str| {
        std::fs::metadata(out_dir.join(f))
            .expect(f)
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("tls.key"), 0o600);
    assert_eq!(mode("tls.crt"), 0o644);
    let ca: CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_file(out_dir.join("ca.crt"))
            .expect("ca.crt is PEM");
    let mut w = start(&out_dir, &TestCa::new(), &[]);
    w.ca = ca;
    let connector = tls_connector(&w.ca);
    runtime().block_on(async {
        for name in ["localhost", "127.0.0.1"] {
            let tcp = tokio::net::TcpStream::connect(w.addr)
                .await
                .expect("connect");
            let server_name = ServerName::try_from(name).expect("name").to_owned();
            connector
                .connect(server_name, tcp)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    });
    for (flag, value) in [("--days", "0"), ("--service", "Bad_Name")] {
        let out = Command::new(BIN)
            .args(["webhook", "certs", "--out-dir"])
            .arg(dir.path().join("bad"))
            .args([flag, value])
            .output()
            .expect("certs");
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag} not named: {err}");
        assert!(!dir.path().join("bad").exists(), "nothing written");
    }
}

fn start_raw(dir: &Path) -> Webhook {
    let throwaway = TestCa::new();
    start(dir, &throwaway, &[])
}

/// Bad configuration: one line per bad flag, naming it, exit 2.
#[test]
fn bad_flags_should_exit_2_naming_each_flag() {
    let out = Command::new(BIN)
        .args([
            "webhook",
            "--listen",
            "nope",
            "--header-timeout",
            "0s",
            "--port",
            "0",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for flag in [
        "--listen",
        "--header-timeout",
        "--tls-cert-file",
        "--tls-key-file",
        "--port",
        "--image",
    ] {
        assert!(
            err.lines().any(|l| l.contains(flag)),
            "{flag} not named: {err}"
        );
    }
}

/// The kustomization lists every manifest of k8s/webhook/base (and of the cert-manager overlay),
/// each validates with kubernetes-validate --strict, and `kubectl kustomize`
/// builds both when kubectl is installed.
#[test]
fn webhook_manifests_should_validate_and_be_listed() -> TestResult {
    for dir in ["k8s/webhook/base", "k8s/webhook/cert-manager"] {
        let dir = root().join(dir);
        let kustomization: serde_norway::Value =
            serde_norway::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml"))?)?;
        let listed: Vec<String> = kustomization["resources"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".yaml") && name != "kustomization.yaml" && !name.contains("patch") {
                files.push(name);
            }
        }
        for f in &files {
            assert!(
                listed.contains(f),
                "{f} is not in {}/kustomization.yaml",
                dir.display()
            );
            kubernetes_validate(&dir.join(f));
        }
        if Command::new("kubectl")
            .arg("version")
            .arg("--client")
            .output()
            .is_ok()
        {
            let out = Command::new("kubectl")
                .arg("kustomize")
                .arg(&dir)
                .output()?;
            assert!(
                out.status.success(),
                "kubectl kustomize {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let built = std::env::temp_dir().join(format!(
                "irsa-proxy-webhook-built-{}.yaml",
                std::process::id()
            ));
            std::fs::write(&built, &out.stdout)?;
            kubernetes_validate(&built);
            let _ = std::fs::remove_file(&built);
        }
    }
    Ok(())
}

/// Several roles by annotation (`irsa-proxy.io/container-roles`): the patched
/// pod validates, and in the pod runner each container's old SDK gets its own
/// role through its own token.
#[test]
fn container_roles_by_annotation_should_give_each_sdk_its_own_role() {
    require_root();
    let (dir, _ca, w) = setup();
    let pod = replicaset_pod(
        json!({"irsa-proxy.io/container-roles":
            "js=arn:aws:iam::111122223333:role/js-role,boto=arn:aws:iam::111122223333:role/boto-role"}),
        &["js", "boto"],
    );
    let (mutated, path) = admit_and_write(&w, &pod, dir.path(), "legacy-5c9d7b8f6-r0l3s");
    let apps = mutated["spec"]["containers"]
        .as_array()
        .expect("containers");
    let token =
        |c: &Value| env_of(c, "AWS_CONTAINER_AUTHORIZATION_TOKEN").expect("token")["value"].clone();
    assert_ne!(token(&apps[0]), token(&apps[1]), "every role its own token");
    assert_eq!(
        env_of(sidecar(&mutated), "IRSA_PROXY_AUTH_TOKEN_JS").expect("js token")["value"],
        token(&apps[0])
    );
    let (out, context) = run_pod(
        &[&path],
        &[("js", "js-v2-2017"), ("boto", "botocore-debian")],
        &[],
        &dir.path().join("pod"),
    );
    assert!(out.status.success(), "{context}");
    assert_client_ok(&context, "js-v2-2017", "js-role");
    assert_client_ok(&context, "botocore-debian", "boto-role");
}
