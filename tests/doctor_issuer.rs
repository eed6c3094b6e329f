//! `irsa-proxy doctor --issuer`, offline: the emulator serves an issuer's
//! discovery document and JWKS over TLS with a certificate from a test CA, at
//! a public-looking host name that `--resolve` points at 127.0.0.1; doctor (the
//! real binary, clean environment) fetches them as STS would and says what is
//! wrong: nothing, a missing key, a discovery document for another issuer, an
//! issuer it cannot reach or trust, an issuer only the cluster can resolve.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use common::pki::Pki;
use irsa_proxy::tools::emulator::{self, EmulatorHandle, EmulatorSettings, Issuer, OidcDocuments};
use serde_json::{json, Value};

/// Public-looking, so only what is wrong on purpose is flagged.
const HOST: &str = "oidc.eks.us-east-1.amazonaws.com";
const ROLE: &str = "arn:aws:iam::111122223333:role/demo-role";

/// The emulator over HTTPS serving `docs(issuer)`; the issuer's URL names the
/// emulator's port, so it is made after the port is known.
struct Served {
    handle: EmulatorHandle,
    issuer: Issuer,
}

async fn serve(pki: &Pki, host: &str, docs: impl FnOnce(&Issuer) -> OidcDocuments) -> Served {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let issuer = Issuer::generate_rsa(format!("https://{host}:{port}/id/TEST")).unwrap();
    let mut settings = EmulatorSettings::new(issuer.verifying_keys().unwrap());
    settings.oidc = Some(docs(&issuer));
    let tls = pki.server_config();
    let handle = emulator::spawn_with(
        format!("127.0.0.1:{port}").parse().unwrap(),
        settings,
        Some(tls),
    )
    .await
    .unwrap();
    Served { handle, issuer }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A token of `issuer` (its `kid` in the header) claiming `iss`.
fn token(dir: &Path, issuer: &Issuer, iss: &str) -> PathBuf {
    let n = now();
    let jwt = issuer
        .mint(&json!({
            "iss": iss, "sub": "system:serviceaccount:demo:app", "aud": ["sts.amazonaws.com"],
            "iat": n - 60, "nbf": n - 60, "exp": n + 3600,
        }))
        .unwrap();
    let path = dir.join(format!("token-{}", n));
    std::fs::write(&path, jwt).unwrap();
    path
}

struct Run {
    code: i32,
    report: Value,
    stdout: String,
    stderr: String,
}

impl Run {
    fn codes(&self) -> Vec<String> {
        self.report["findings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| f["code"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn finding(&self, code: &str) -> &Value {
        self.report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["code"] == code)
            .unwrap_or_else(|| panic!("no {code}: {}", self.stdout))
    }
}

fn doctor(token: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_irsa-proxy"))
        .env_clear()
        .envs(env.iter().copied())
        .arg("doctor")
        .arg("--token-file")
        .arg(token)
        .args(["--role-arn", ROLE])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Run {
        code: out.status.code().unwrap_or(-1),
        report: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn resolve() -> String {
    format!("{HOST}=127.0.0.1")
}

/// `doctor --issuer --ca-file CA --resolve HOST=127.0.0.1 --output json`, then `extra`.
fn doctor_issuer(token: &Path, ca: &str, extra: &[&str]) -> Run {
    let resolve = resolve();
    let mut args = vec![
        "--issuer",
        "--ca-file",
        ca,
        "--resolve",
        &resolve,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    doctor(token, &args, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_issuer_should_pass_and_its_key_be_found() {
    let pki = Pki::new(HOST);
    let s = serve(&pki, HOST, OidcDocuments::for_issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let t = token(dir.path(), &s.issuer, s.issuer.url());
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let r = doctor_issuer(&t, ca, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let i = &r.report["issuer"];
    assert_eq!(i["url"], s.issuer.url());
    assert_eq!(i["discovery_issuer"], s.issuer.url());
    assert_eq!(i["token_kid"], s.issuer.kid());
    assert_eq!(i["kid_found"], true);
    assert_eq!(i["resolved"][0]["from"], "--resolve");
    assert!(r.codes().is_empty(), "{:?}", r.codes());

    // The same through AWS_CA_BUNDLE, in text.
    let r = doctor(
        &t,
        &["--issuer", "--resolve", &resolve()],
        &[("AWS_CA_BUNDLE", ca)],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("issuer matches"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("key {:?} found", s.issuer.kid())),
        "{}",
        r.stdout
    );

    // A trust policy for another cluster's provider is named with the issuer.
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        json!({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/OTHER"},
            "Action": "sts:AssumeRoleWithWebIdentity"}]})
        .to_string(),
    )
    .unwrap();
    let r = doctor_issuer(&t, ca, &["--trust-policy", policy.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.finding("principal_mismatch")["message"]
            .as_str()
            .unwrap()
            .contains("/id/TEST"),
        "{}",
        r.stdout
    );
    assert_eq!(r.report["issuer"]["kid_found"], true);
    s.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_and_a_foreign_discovery_document_should_be_named() {
    let pki = Pki::new(HOST);
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();

    // The JWKS of another key (a rotation not yet published).
    let other = Issuer::generate_rsa("https://elsewhere.example.com").unwrap();
    let other_jwks = other.jwks_json();
    let s = serve(&pki, HOST, |i| OidcDocuments {
        jwks: other_jwks,
        ..OidcDocuments::for_issuer(i)
    })
    .await;
    let t = token(dir.path(), &s.issuer, s.issuer.url());
    let r = doctor_issuer(&t, ca, &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.codes(), ["jwks_kid_missing"], "{}", r.stdout);
    let message = r.finding("jwks_kid_missing")["message"].as_str().unwrap();
    assert!(message.contains(s.issuer.kid()) && message.contains(other.kid()));
    assert_eq!(r.report["issuer"]["kid_found"], false);
    assert_eq!(r.report["verdict"], "denied");
    s.handle.stop().await;

    // A discovery document copied from another issuer.
    let s = serve(&pki, HOST, |i| OidcDocuments {
        discovery_issuer: "https://oidc.old-cluster.example.com".into(),
        ..OidcDocuments::for_issuer(i)
    })
    .await;
    let t = token(dir.path(), &s.issuer, s.issuer.url());
    let r = doctor_issuer(&t, ca, &[]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.codes(), ["issuer_discovery_mismatch"], "{}", r.stdout);
    assert!(r.finding("issuer_discovery_mismatch")["message"]
        .as_str()
        .unwrap()
        .contains("oidc.old-cluster.example.com"));
    s.handle.stop().await;

    // A jwks_uri at the API server's in-cluster address (sent to loopback,
    // not to DNS).
    let s = serve(&pki, HOST, |i| OidcDocuments {
        jwks_uri: "https://kubernetes.default.svc/openid/v1/jwks".into(),
        ..OidcDocuments::for_issuer(i)
    })
    .await;
    let t = token(dir.path(), &s.issuer, s.issuer.url());
    let r = doctor_issuer(&t, ca, &["--resolve", "kubernetes.default.svc=127.0.0.1"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.codes().contains(&"jwks_uri_internal_name".to_string()),
        "{}",
        r.stdout
    );
    s.handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_sts_cannot_reach_should_be_flagged() {
    let pki = Pki::new(HOST);
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = serve(&pki, HOST, OidcDocuments::for_issuer).await;

    // Its certificate is not trusted without the CA.
    let t = token(dir.path(), &s.issuer, s.issuer.url());
    let r = doctor(
        &t,
        &["--issuer", "--resolve", &resolve(), "--output", "json"],
        &[],
    );
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.codes(), ["issuer_unreachable"], "{}", r.stdout);
    let m = r.finding("issuer_unreachable")["message"].as_str().unwrap();
    assert!(m.to_lowercase().contains("certificate"), "{m}");

    // Nothing listens where it points.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let iss = format!("https://{HOST}:{closed}/id/TEST");
    let t = token(dir.path(), &s.issuer, &iss);
    let r = doctor_issuer(&t, ca, &[]);
    assert_eq!(r.codes(), ["issuer_unreachable"], "{}", r.stdout);

    // The API server's in-cluster name, a loopback address, plain HTTP.
    for (iss, code) in [
        ("https://kubernetes.default.svc", "issuer_internal_name"),
        (
            "https://kubernetes.default.svc.cluster.local/",
            "issuer_internal_name",
        ),
        (
            &format!("https://127.0.0.1:{}/id/TEST", s.handle.addr().port()),
            "issuer_private_address",
        ),
        ("http://oidc.example.com/id/TEST", "issuer_not_https"),
    ] {
        let t = token(dir.path(), &s.issuer, iss);
        // Doctor still tries them (it may run inside the cluster): the names
        // go to loopback, where nothing listens on 443, not to DNS.
        let r = doctor(
            &t,
            &[
                "--issuer",
                "--ca-file",
                ca,
                "--resolve",
                "kubernetes.default.svc=127.0.0.1",
                "--resolve",
                "kubernetes.default.svc.cluster.local=127.0.0.1",
                "--output",
                "json",
            ],
            &[],
        );
        assert_eq!(r.code, 1, "{iss}: {}", r.stdout);
        assert!(r.codes().contains(&code.to_string()), "{iss}: {}", r.stdout);
        assert!(r.finding(code)["hint"].is_string());
    }
    s.handle.stop().await;
}

#[test]
fn issuer_flags_should_need_issuer_and_be_checked() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::generate_rsa("https://oidc.example.com").unwrap();
    let t = token(dir.path(), &issuer, issuer.url());
    let r = doctor(&t, &["--ca-file", "/nonexistent.pem"], &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--ca-file: \"/nonexistent.pem\" needs --issuer"),
        "{}",
        r.stderr
    );
    let r = doctor(
        &t,
        &[
            "--issuer",
            "--resolve",
            "oidc.example.com",
            "--ca-file",
            "/nonexistent.pem",
        ],
        &[],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("--resolve: \"oidc.example.com\" has no '='"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--ca-file"), "{}", r.stderr);
}

/// A CONNECT proxy on loopback that tunnels every target to 127.0.0.1 (as
/// if it resolved the name) and records the targets it was asked for.
async fn connect_proxy() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut line = String::new();
                client.read_line(&mut line).await.unwrap();
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                loop {
                    let mut header = String::new();
                    client.read_line(&mut header).await.unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                }
                seen.lock().unwrap().push(target.clone());
                let port: u16 = target.rsplit(':').next().unwrap().parse().unwrap();
                let mut upstream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let mut client = client.into_inner();
                client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (port, asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documents_should_be_fetched_through_https_proxy_unless_no_proxy_names_the_host() {
    let pki = Pki::new(HOST);
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let s = serve(&pki, HOST, OidcDocuments::for_issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let t = token(dir.path(), &s.issuer, s.issuer.url());
    let (proxy_port, asked) = connect_proxy().await;
    let proxy = format!("http://127.0.0.1:{proxy_port}");

    // No --resolve: only the proxy knows where the name goes.
    let r = doctor(
        &t,
        &["--issuer", "--ca-file", ca, "--output", "json"],
        &[("HTTPS_PROXY", &proxy)],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.report["issuer"]["kid_found"], true);
    assert!(
        r.report["issuer"]["proxy"]
            .as_str()
            .unwrap()
            .contains("(from HTTPS_PROXY)"),
        "{}",
        r.stdout
    );
    let target = format!("{HOST}:{}", s.handle.addr().port());
    let tunnels = asked.lock().unwrap().clone();
    // Discovery and JWKS through the proxy (one tunnel, kept alive, or two).
    assert!(
        !tunnels.is_empty() && tunnels.iter().all(|t| *t == target),
        "{tunnels:?}"
    );

    // NO_PROXY names the host: straight there (here with --resolve), and a
    // fresh proxy is never asked.
    let (proxy_port, asked) = connect_proxy().await;
    let proxy = format!("http://127.0.0.1:{proxy_port}");
    let r = doctor(
        &t,
        &[
            "--issuer",
            "--ca-file",
            ca,
            "--resolve",
            &resolve(),
            "--output",
            "json",
        ],
        &[("HTTPS_PROXY", &proxy), ("NO_PROXY", ".amazonaws.com")],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.report["issuer"]["proxy"]
            .as_str()
            .unwrap()
            .starts_with("none: NO_PROXY matches"),
        "{}",
        r.stdout
    );
    assert!(asked.lock().unwrap().is_empty(), "the proxy was not asked");
    s.handle.stop().await;
}
