//! The STS emulator against real clients on 127.0.0.1: the Rust `aws-sdk-sts`
//! in-process, boto3 against the real binary, and the binary's logs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_sts::config::Credentials;
use aws_sdk_sts::error::ProvideErrorMetadata;
use common::sdk::sts_client as client;
use irsa_proxy::clock::OffsetClock;
use irsa_proxy::policy::Policy;
use irsa_proxy::tools::emulator::{
    self, EmulatorHandle, EmulatorSettings, Issuer, ServiceAccountToken, VerifyingKeys,
};
use serde_json::json;

const ISSUER: &str = "https://oidc.eks.us-east-2.amazonaws.com/id/EXAMPLE0123456789";
const ROLE: &str = "arn:aws:iam::111122223333:role/demo-role";

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sa_token(issuer: &Issuer, namespace: &str, audience: &str) -> String {
    issuer
        .mint_service_account(&ServiceAccountToken {
            namespace,
            service_account: "app",
            audience,
            issued_at: SystemTime::now(),
            ttl: Duration::from_secs(600),
        })
        .unwrap()
}

fn claims_token(issuer: &Issuer, overrides: serde_json::Value) -> String {
    let now = now_secs();
    let mut claims = json!({
        "iss": ISSUER, "sub": "system:serviceaccount:demo:app", "aud": ["sts.amazonaws.com"],
        "iat": now, "nbf": now, "exp": now + 600,
    });
    for (k, v) in overrides.as_object().unwrap() {
        claims[k] = v.clone();
    }
    issuer.mint(&claims).unwrap()
}

struct Fixture {
    issuer: Issuer,
    sts: EmulatorHandle,
    clock: OffsetClock,
}

async fn start_with(configure: impl FnOnce(&mut EmulatorSettings)) -> Fixture {
    let issuer = Issuer::generate_rsa(ISSUER).unwrap();
    let clock = OffsetClock::default();
    let mut settings = EmulatorSettings::new(issuer.verifying_keys().unwrap());
    settings.clock = Arc::new(clock.clone());
    configure(&mut settings);
    let sts = emulator::spawn("127.0.0.1:0".parse().unwrap(), settings)
        .await
        .unwrap();
    Fixture { issuer, sts, clock }
}

async fn start() -> Fixture {
    start_with(|_| {}).await
}

async fn assume(
    endpoint: &str,
    token: &str,
    session: &str,
    duration: Option<i32>,
) -> Result<
    aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityOutput,
    String,
> {
    client(endpoint, None)
        .assume_role_with_web_identity()
        .role_arn(ROLE)
        .role_session_name(session)
        .web_identity_token(token)
        .set_duration_seconds(duration)
        .send()
        .await
        .map_err(|e| e.code().unwrap_or("no code").to_string())
}

/// The error code of an AssumeRoleWithWebIdentity (session `s1`) with `token`,
/// which must be refused.
async fn refusal(f: &Fixture, token: &str) -> String {
    assume(&f.sts.endpoint_url(), token, "s1", None)
        .await
        .unwrap_err()
}

fn sdk_credentials(out: &aws_sdk_sts::types::Credentials) -> Credentials {
    Credentials::new(
        out.access_key_id(),
        out.secret_access_key(),
        Some(out.session_token().to_string()),
        None,
        "test",
    )
}

#[tokio::test]
async fn assume_role_should_issue_credentials_the_sdk_accepts() {
    let f = start().await;
    let token = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    let out = assume(&f.sts.endpoint_url(), &token, "my-session", Some(900))
        .await
        .unwrap();
    let creds = out.credentials().unwrap();
    let akid = creds.access_key_id();
    assert!(akid.starts_with("ASIA") && akid.len() == 20, "{akid}");
    assert!(akid[4..]
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    assert_eq!(creds.secret_access_key().len(), 40);
    assert!(!creds.session_token().is_empty());
    let left = creds.expiration().secs() - now_secs();
    assert!((895..=901).contains(&left), "{left}");
    assert_eq!(
        out.subject_from_web_identity_token(),
        Some("system:serviceaccount:demo:app")
    );
    let user = out.assumed_role_user().unwrap();
    assert_eq!(
        user.arn(),
        "arn:aws:sts::111122223333:assumed-role/demo-role/my-session"
    );
    assert!(user.assumed_role_id().starts_with("AROA"));
    assert!(user.assumed_role_id().ends_with(":my-session"));
    assert_eq!(out.audience(), Some("sts.amazonaws.com"));
    assert_eq!(
        out.provider(),
        Some("arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-2.amazonaws.com/id/EXAMPLE0123456789")
    );
}

#[tokio::test]
async fn credential_ttl_should_cap_the_lifetime() {
    let f = start_with(|s| s.credential_ttl = Duration::from_secs(30)).await;
    let token = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    let out = assume(&f.sts.endpoint_url(), &token, "s1", Some(3600))
        .await
        .unwrap();
    let left = out.credentials().unwrap().expiration().secs() - now_secs();
    assert!((25..=31).contains(&left), "{left}");
}

#[tokio::test]
async fn es256_tokens_should_verify_through_a_jwks() {
    let issuer = Issuer::generate_ec(ISSUER).unwrap();
    let keys = VerifyingKeys::from_jwks(&issuer.jwks_json()).unwrap();
    let sts = emulator::spawn("127.0.0.1:0".parse().unwrap(), EmulatorSettings::new(keys))
        .await
        .unwrap();
    let token = sa_token(&issuer, "demo", "sts.amazonaws.com");
    assert!(assume(&sts.endpoint_url(), &token, "s1", None)
        .await
        .is_ok());
    let rsa = Issuer::generate_rsa(ISSUER).unwrap();
    let other = sa_token(&rsa, "demo", "sts.amazonaws.com");
    assert_eq!(
        assume(&sts.endpoint_url(), &other, "s1", None)
            .await
            .unwrap_err(),
        "InvalidIdentityToken"
    );
}

#[tokio::test]
async fn token_signed_by_another_key_should_be_invalid_identity_token() {
    let f = start().await;
    let stranger = Issuer::generate_rsa(ISSUER).unwrap();
    let token = sa_token(&stranger, "demo", "sts.amazonaws.com");
    assert_eq!(refusal(&f, &token).await, "InvalidIdentityToken");
    // A token whose payload was edited after signing.
    let good = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[1] = claims_token(
        &f.issuer,
        json!({"sub": "system:serviceaccount:kube-system:admin"}),
    )
    .split('.')
    .nth(1)
    .unwrap()
    .to_string();
    assert_eq!(
        assume(&f.sts.endpoint_url(), &parts.join("."), "s1", None)
            .await
            .unwrap_err(),
        "InvalidIdentityToken"
    );
    assert_eq!(
        assume(&f.sts.endpoint_url(), "not.a-jwt", "s1", None)
            .await
            .unwrap_err(),
        "InvalidIdentityToken"
    );
}

#[tokio::test]
async fn wrong_audience_should_be_invalid_identity_token() {
    let f = start().await;
    let token = sa_token(&f.issuer, "demo", "vault");
    assert_eq!(refusal(&f, &token).await, "InvalidIdentityToken");
}

#[tokio::test]
async fn expired_token_should_be_expired_token_exception() {
    let f = start().await;
    let token = claims_token(
        &f.issuer,
        json!({"iat": now_secs() - 700, "exp": now_secs() - 100}),
    );
    assert_eq!(refusal(&f, &token).await, "ExpiredTokenException");
    // The same happens when the emulator's clock passes a valid token's expiry.
    let token = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    f.clock.advance(Duration::from_secs(601));
    assert_eq!(refusal(&f, &token).await, "ExpiredTokenException");
}

#[tokio::test]
async fn future_nbf_should_be_invalid_identity_token() {
    let f = start().await;
    let token = claims_token(&f.issuer, json!({"nbf": now_secs() + 300}));
    assert_eq!(refusal(&f, &token).await, "InvalidIdentityToken");
}

#[tokio::test]
async fn trust_policy_should_allow_its_subject_and_deny_others() {
    let policy = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
        "Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-2.amazonaws.com/id/EXAMPLE0123456789"},
        "Action":"sts:AssumeRoleWithWebIdentity",
        "Condition":{"StringEquals":{"oidc.eks.us-east-2.amazonaws.com/id/EXAMPLE0123456789:aud":"sts.amazonaws.com"},
                     "StringLike":{"oidc.eks.us-east-2.amazonaws.com/id/EXAMPLE0123456789:sub":"system:serviceaccount:demo:*"}}}]}"#,
    )
    .unwrap();
    let f = start_with(|s| s.trust_policy = Some(policy)).await;
    let ok = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    assert!(assume(&f.sts.endpoint_url(), &ok, "s1", None).await.is_ok());
    let other = sa_token(&f.issuer, "other", "sts.amazonaws.com");
    assert_eq!(refusal(&f, &other).await, "AccessDenied");
}

#[tokio::test]
async fn bad_session_name_should_be_validation_error() {
    let f = start().await;
    let token = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    for bad in ["has space", "x", &"a".repeat(65), "sémantique"] {
        assert_eq!(
            assume(&f.sts.endpoint_url(), &token, bad, None)
                .await
                .unwrap_err(),
            "ValidationError",
            "{bad}"
        );
    }
}

#[tokio::test]
async fn duration_out_of_range_should_be_validation_error() {
    let f = start().await;
    let token = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    for bad in [899, 43201, -1] {
        assert_eq!(
            assume(&f.sts.endpoint_url(), &token, "s1", Some(bad))
                .await
                .unwrap_err(),
            "ValidationError",
            "{bad}"
        );
    }
    assert!(assume(&f.sts.endpoint_url(), &token, "s1", Some(43200))
        .await
        .is_ok());
}

async fn issued(f: &Fixture) -> aws_sdk_sts::types::Credentials {
    let token = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    assume(&f.sts.endpoint_url(), &token, "caller", None)
        .await
        .unwrap()
        .credentials()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn get_caller_identity_should_answer_the_assumed_role() {
    let f = start().await;
    let creds = issued(&f).await;
    let me = client(&f.sts.endpoint_url(), Some(sdk_credentials(&creds)))
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(
        me.arn(),
        Some("arn:aws:sts::111122223333:assumed-role/demo-role/caller")
    );
    assert_eq!(me.account(), Some("111122223333"));
    let user = me.user_id().unwrap();
    assert!(
        user.starts_with("AROA") && user.ends_with(":caller"),
        "{user}"
    );
}

/// The error code of a GetCallerIdentity signed with this key, secret and
/// session token.
async fn caller_identity_code(f: &Fixture, key: &str, secret: &str, token: &str) -> String {
    let creds = Credentials::new(key, secret, Some(token.to_string()), None, "test");
    let err = client(&f.sts.endpoint_url(), Some(creds))
        .get_caller_identity()
        .send()
        .await
        .unwrap_err();
    err.code().unwrap_or_default().to_string()
}

#[tokio::test]
async fn tampered_secret_should_be_signature_does_not_match() {
    let f = start().await;
    let creds = issued(&f).await;
    let mut secret = creds.secret_access_key().to_string();
    secret.replace_range(0..1, if secret.starts_with('A') { "B" } else { "A" });
    let code =
        caller_identity_code(&f, creds.access_key_id(), &secret, creds.session_token()).await;
    assert_eq!(code, "SignatureDoesNotMatch");
}

#[tokio::test]
async fn unknown_key_should_be_invalid_client_token_id() {
    let f = start().await;
    let creds = issued(&f).await;
    let (key, secret) = (creds.access_key_id(), creds.secret_access_key());
    let code =
        caller_identity_code(&f, "ASIAAAAAAAAAAAAAAAAA", secret, creds.session_token()).await;
    assert_eq!(code, "InvalidClientTokenId");
    // A known key with another session token is just as unknown.
    let code = caller_identity_code(&f, key, secret, "IRSAEMUforged").await;
    assert_eq!(code, "InvalidClientTokenId");
}

#[tokio::test]
async fn expired_credentials_should_be_expired_token() {
    let f = start_with(|s| s.credential_ttl = Duration::from_secs(5)).await;
    let creds = issued(&f).await;
    let c = client(&f.sts.endpoint_url(), Some(sdk_credentials(&creds)));
    assert!(c.get_caller_identity().send().await.is_ok());
    f.clock.advance(Duration::from_secs(6));
    let err = c.get_caller_identity().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ExpiredToken"));
}

/// Sends one raw HTTP/1.1 request and returns (status, body).
fn raw_http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn query_string_form_and_xml_errors_should_match_sts() {
    let f = start().await;
    let addr = f.sts.addr();
    let token = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    let (status, body) = tokio::task::spawn_blocking(move || {
        raw_http(
            addr,
            &format!(
                "GET /?Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={ROLE}&RoleSessionName=q&WebIdentityToken={token} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            ),
        )
    })
    .await
    .unwrap();
    // "q" is too short a session name: a ValidationError in STS's XML.
    assert_eq!(status, 400);
    assert!(body.contains("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"));
    assert!(body.contains("<Type>Sender</Type>"));
    assert!(body.contains("<Code>ValidationError</Code>"));
    assert!(body.contains("<RequestId>"));

    let token = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    let (status, body) = tokio::task::spawn_blocking(move || {
        raw_http(
            addr,
            &format!(
                "GET /?Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn={ROLE}&RoleSessionName=query&WebIdentityToken={token} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with(
        "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
    ));
    assert!(body.contains("<ResponseMetadata>"));

    let (status, body) = tokio::task::spawn_blocking(move || {
        let form = "Action=GetSessionToken&Version=2011-06-15";
        raw_http(
            addr,
            &format!(
                "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
                form.len()
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("<Code>InvalidAction</Code>"));

    let (status, body) = tokio::task::spawn_blocking(move || {
        raw_http(
            addr,
            &format!(
                "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n{}",
                "a".repeat(100_000)
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 413, "{body}");
}

// ---------------------------------------------------------------------------
// The real binary

/// The binary running `sts-emulator`, with its stderr collected.
struct Binary {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Binary {
    fn start(args: &[&str], rust_log: &str) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_irsa-proxy"))
            .arg("sts-emulator")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut reader = BufReader::new(child.stderr.take().unwrap());
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(rest) = line.split("listening on 127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port.parse::<u16>().unwrap());
                }
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "sts-emulator did not log its address; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        Binary {
            child,
            port,
            stderr,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the process (SIGTERM-equivalent kill) and returns everything it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        let s = self.stderr.lock().unwrap().clone();
        s
    }
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_string()
}

const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
  "Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-2.amazonaws.com/id/EXAMPLE0123456789"},
  "Action":"sts:AssumeRoleWithWebIdentity",
  "Condition":{"StringEquals":{"oidc.eks.us-east-2.amazonaws.com/id/EXAMPLE0123456789:sub":"system:serviceaccount:demo:app",
                              "oidc.eks.us-east-2.amazonaws.com/id/EXAMPLE0123456789:aud":"sts.amazonaws.com"}}}]}"#;

#[test]
fn boto3_should_accept_the_emulator_as_sts() {
    let python = Command::new("python3")
        .args(["-c", "import boto3, botocore; print(boto3.__version__)"])
        .output();
    match python {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "boto3 is not importable by python3 ({}); run `pip install boto3`",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => {
            panic!("python3 cannot be run ({e}); install Python 3 and run `pip install boto3`")
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::generate_rsa(ISSUER).unwrap();
    let stranger = Issuer::generate_rsa(ISSUER).unwrap();
    let key = write(dir.path(), "issuer.pem", &issuer.public_key_pem());
    let policy = write(dir.path(), "trust.json", TRUST_POLICY);
    let cases = json!({
        "role_arn": ROLE,
        "good": sa_token(&issuer, "demo", "sts.amazonaws.com"),
        "bad_signature": sa_token(&stranger, "demo", "sts.amazonaws.com"),
        "wrong_audience": sa_token(&issuer, "demo", "vault"),
        "expired": claims_token(&issuer, json!({"iat": now_secs() - 700, "exp": now_secs() - 100})),
        "not_yet_valid": claims_token(&issuer, json!({"nbf": now_secs() + 300})),
        "other_namespace": sa_token(&issuer, "other", "sts.amazonaws.com"),
        "credential_ttl_seconds": 2,
    });
    let cases_file = write(dir.path(), "cases.json", &cases.to_string());
    let bin = Binary::start(
        &[
            "--issuer-key",
            &key,
            "--trust-policy",
            &policy,
            "--credential-ttl",
            "2s",
        ],
        "info",
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/emulator_boto3.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(bin.endpoint())
        .arg(&cases_file)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_STS")
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let logs = bin.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "boto3 conformance failed:\n{stdout}\n{}\nemulator log:\n{logs}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn binary_should_never_log_the_token_or_the_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::generate_rsa(ISSUER).unwrap();
    let key = write(dir.path(), "issuer.pem", &issuer.public_key_pem());
    // Trace level: nothing may leak even there.
    let bin = Binary::start(&["--issuer-key", &key], "trace");
    let endpoint = bin.endpoint();
    let token = sa_token(&issuer, "demo", "sts.amazonaws.com");
    let expired = claims_token(&issuer, json!({"exp": now_secs() - 10}));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let creds = rt.block_on(async {
        let creds = assume(&endpoint, &token, "logcheck", None)
            .await
            .unwrap()
            .credentials()
            .unwrap()
            .clone();
        assert_eq!(
            assume(&endpoint, &expired, "logcheck", None)
                .await
                .unwrap_err(),
            "ExpiredTokenException"
        );
        client(&endpoint, Some(sdk_credentials(&creds)))
            .get_caller_identity()
            .send()
            .await
            .unwrap();
        creds
    });
    let logs = bin.stop();
    assert!(
        logs.contains(creds.access_key_id()),
        "the key id may be logged:\n{logs}"
    );
    for (what, secret) in [
        ("web-identity token", token.as_str()),
        ("expired web-identity token", expired.as_str()),
        ("token signature", token.rsplit('.').next().unwrap()),
        ("secret access key", creds.secret_access_key()),
        ("session token", creds.session_token()),
    ] {
        assert!(
            !logs.contains(secret),
            "the {what} appears in the log:\n{logs}"
        );
    }
}

#[test]
fn binary_should_refuse_bad_flags_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad_policy = write(dir.path(), "bad.json", "{not json");
    let not_pem = write(dir.path(), "key.pem", "hello");
    for (args, needle) in [
        (vec![], "--issuer-key or --jwks is required"),
        (
            vec!["--issuer-key", "/nonexistent/key.pem"],
            "--issuer-key: \"/nonexistent/key.pem\" cannot be read",
        ),
        (vec!["--issuer-key", not_pem.as_str()], "not a PEM"),
        (vec!["--jwks", not_pem.as_str()], "not a JWKS"),
        (
            vec![
                "--issuer-key",
                not_pem.as_str(),
                "--trust-policy",
                bad_policy.as_str(),
            ],
            "--trust-policy",
        ),
        (
            vec!["--issuer-key", not_pem.as_str(), "--credential-ttl", "soon"],
            "--credential-ttl: \"soon\" is not a duration",
        ),
        (
            vec!["--issuer-key", not_pem.as_str(), "--credential-ttl", "13h"],
            "--credential-ttl: \"13h\" is out of range; expected 1s to 12h",
        ),
        (
            vec![
                "--issuer-key",
                not_pem.as_str(),
                "--role-trust-policy",
                "nope",
            ],
            "--role-trust-policy: \"nope\" is not ARN=FILE",
        ),
        (
            vec![
                "--issuer-key",
                not_pem.as_str(),
                "--role-trust-policy",
                &format!("arn:aws:iam::444455556666:role/target={bad_policy}"),
            ],
            "is not usable: not valid JSON",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_irsa-proxy"))
            .arg("sts-emulator")
            .args(["--listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn presigned_get_caller_identity_should_verify() {
    use aws_sigv4::http_request::{
        sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    };
    let f = start().await;
    let creds = issued(&f).await;
    let addr = f.sts.addr();
    let presign = |secret: &str| {
        let identity = Credentials::new(
            creds.access_key_id(),
            secret,
            Some(creds.session_token().to_string()),
            None,
            "test",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(60));
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("sts")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let url = format!("http://{addr}/?Action=GetCallerIdentity&Version=2011-06-15");
        let signable = SignableRequest::new(
            "GET",
            url.clone(),
            std::iter::empty(),
            SignableBody::Bytes(b""),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::builder().uri(url).body(()).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        req.uri().path_and_query().unwrap().to_string()
    };
    let good = presign(creds.secret_access_key());
    let bad = presign("0000000000000000000000000000000000000000");
    let (status, body) = tokio::task::spawn_blocking(move || {
        raw_http(
            addr,
            &format!("GET {good} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Arn>arn:aws:sts::111122223333:assumed-role/demo-role/caller</Arn>"));
    let (status, body) = tokio::task::spawn_blocking(move || {
        raw_http(
            addr,
            &format!("GET {bad} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<Code>SignatureDoesNotMatch</Code>"));
}

/// The example of docs/emulator.md, as a new user runs it: an openssl key, `mint` for the
/// token, the emulator with the public key and the example trust policy, curl.
#[test]
fn a_token_from_mint_should_assume_the_role_in_the_emulator() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("issuer-key.pem");
    let public = dir.path().join("issuer.pub.pem");
    let token = dir.path().join("token");
    let run = |program: &str, args: &[&std::ffi::OsStr]| {
        let out = Command::new(program).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(
        "openssl",
        &[
            "genrsa".as_ref(),
            "-out".as_ref(),
            key.as_os_str(),
            "2048".as_ref(),
        ],
    );
    run(
        "openssl",
        &[
            "rsa".as_ref(),
            "-in".as_ref(),
            key.as_os_str(),
            "-pubout".as_ref(),
            "-out".as_ref(),
            public.as_os_str(),
        ],
    );
    let minted = run(
        env!("CARGO_BIN_EXE_irsa-proxy"),
        &[
            "mint".as_ref(),
            "--issuer-key".as_ref(),
            key.as_os_str(),
            "--sub".as_ref(),
            "system:serviceaccount:demo:app".as_ref(),
            "--ttl".as_ref(),
            "1h".as_ref(),
        ],
    );
    std::fs::write(&token, &minted).unwrap();
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/doctor/trust-ok.json");
    let emulator = Binary::start(
        &[
            "--issuer-key",
            &public.display().to_string(),
            "--trust-policy",
            &policy.display().to_string(),
        ],
        "info",
    );
    let answer = run(
        "curl",
        &[
            "-s".as_ref(),
            emulator.endpoint().as_ref(),
            "-d".as_ref(),
            "Action=AssumeRoleWithWebIdentity".as_ref(),
            "-d".as_ref(),
            "Version=2011-06-15".as_ref(),
            "-d".as_ref(),
            "RoleArn=arn:aws:iam::111122223333:role/demo-role".as_ref(),
            "-d".as_ref(),
            "RoleSessionName=demo".as_ref(),
            "--data-urlencode".as_ref(),
            format!("WebIdentityToken@{}", token.display()).as_ref(),
        ],
    );
    let answer = String::from_utf8_lossy(&answer);
    let logs = emulator.stop();
    assert!(answer.contains("<AccessKeyId>ASIA"), "{answer}\n{logs}");
    assert!(
        answer.contains("<SubjectFromWebIdentityToken>system:serviceaccount:demo:app<"),
        "{answer}"
    );
}

#[test]
fn mint_should_name_every_bad_flag_at_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_irsa-proxy"))
        .args([
            "mint",
            "--issuer-key",
            "/nonexistent/key.pem",
            "--sub",
            "x",
            "--ttl",
            "soon",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(stderr.contains("--ttl: \"soon\""), "{stderr}");
    assert!(
        stderr.contains("--issuer-key: \"/nonexistent/key.pem\" cannot be read"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// AssumeRole: the hop of a role chain

const TARGET: &str = "arn:aws:iam::444455556666:role/target";
const THIRD: &str = "arn:aws:iam::777788889999:role/third";
const WEB_SESSION: &str = "arn:aws:sts::111122223333:assumed-role/demo-role/web";

type HopResult = Result<aws_sdk_sts::operation::assume_role::AssumeRoleOutput, (String, String)>;

/// `AssumeRole` of `role`, signed with `creds`, as an app's SDK sends it.
async fn hop(
    endpoint: &str,
    creds: &aws_sdk_sts::types::Credentials,
    role: &str,
    customize: impl FnOnce(
        aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder,
    )
        -> aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder,
) -> HopResult {
    let call = client(endpoint, Some(sdk_credentials(creds)))
        .assume_role()
        .role_arn(role)
        .role_session_name("hop");
    customize(call).send().await.map_err(|e| {
        (
            e.code().unwrap_or("no code").to_string(),
            e.message().unwrap_or_default().to_string(),
        )
    })
}

fn tag(k: &str, v: &str) -> aws_sdk_sts::types::Tag {
    aws_sdk_sts::types::Tag::builder()
        .key(k)
        .value(v)
        .build()
        .unwrap()
}

/// A trust policy of one Allow statement for `principal` and `actions`.
fn trust(principal: serde_json::Value, actions: &[&str], condition: serde_json::Value) -> Policy {
    let mut statement =
        json!({"Effect": "Allow", "Principal": {"AWS": principal}, "Action": actions});
    if !condition.is_null() {
        statement["Condition"] = condition;
    }
    Policy::parse(&json!({"Version": "2012-10-17", "Statement": [statement]}).to_string()).unwrap()
}

/// The web-identity session every hop below starts from.
async fn web_session(f: &Fixture) -> aws_sdk_sts::types::Credentials {
    let token = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    assume(&f.sts.endpoint_url(), &token, "web", None)
        .await
        .unwrap()
        .credentials()
        .unwrap()
        .clone()
}

type Customize = fn(
    aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder,
) -> aws_sdk_sts::operation::assume_role::builders::AssumeRoleFluentBuilder;

/// The final assumed-role ARN, or the STS error code and message.
type Expected = Result<String, (String, String)>;

/// Each case: the target's trust policy, the request, and what the app sees:
/// the final assumed-role ARN, or the STS error code and its message.
#[tokio::test]
async fn assume_role_should_follow_the_target_trust_policy_like_sts() {
    let denied = |action: &str| {
        Err((
            "AccessDenied".to_string(),
            format!(
                "User: {WEB_SESSION} is not authorized to perform: {action} on resource: {TARGET}"
            ),
        ))
    };
    let ok = Ok("arn:aws:sts::444455556666:assumed-role/target/hop".to_string());
    let plain: Customize = |c| c;
    let with_tags: Customize = |c| c.tags(tag("team", "payments"));
    let with_source: Customize = |c| c.source_identity("pod-a");
    let with_id: Customize = |c| c.external_id("ext-1234");
    let wrong_id: Customize = |c| c.external_id("ext-9999");
    let long: Customize = |c| c.duration_seconds(7200);
    let other_team: Customize = |c| c.tags(tag("team", "other"));
    let bad_transitive: Customize = |c| c.tags(tag("team", "payments")).transitive_tag_keys("nope");
    let cases: Vec<(&str, Policy, Customize, Expected)> = vec![
        ("the calling role's ARN", trust(json!(ROLE), &["sts:AssumeRole"], json!(null)), plain, ok.clone()),
        ("the calling account", trust(json!("111122223333"), &["sts:AssumeRole"], json!(null)), plain, ok.clone()),
        ("the calling account's root", trust(json!("arn:aws:iam::111122223333:root"), &["sts:AssumeRole"], json!(null)), plain, ok.clone()),
        ("the calling session's ARN", trust(json!(WEB_SESSION), &["sts:AssumeRole"], json!(null)), plain, ok.clone()),
        ("another role", trust(json!("arn:aws:iam::111122223333:role/other"), &["sts:AssumeRole"], json!(null)), plain, denied("sts:AssumeRole")),
        ("another account", trust(json!("999999999999"), &["sts:AssumeRole"], json!(null)), plain, denied("sts:AssumeRole")),
        ("the web-identity action only", trust(json!(ROLE), &["sts:AssumeRoleWithWebIdentity"], json!(null)), plain, denied("sts:AssumeRole")),
        ("tags without sts:TagSession", trust(json!(ROLE), &["sts:AssumeRole"], json!(null)), with_tags, denied("sts:TagSession")),
        ("tags with sts:TagSession", trust(json!(ROLE), &["sts:AssumeRole", "sts:TagSession"], json!(null)), with_tags, ok.clone()),
        ("SourceIdentity without sts:SetSourceIdentity", trust(json!(ROLE), &["sts:AssumeRole"], json!(null)), with_source, denied("sts:SetSourceIdentity")),
        ("SourceIdentity with sts:SetSourceIdentity", trust(json!(ROLE), &["sts:AssumeRole", "sts:SetSourceIdentity"], json!(null)), with_source, ok.clone()),
        ("the ExternalId that matches", trust(json!(ROLE), &["sts:AssumeRole"], json!({"StringEquals": {"sts:ExternalId": "ext-1234"}})), with_id, ok.clone()),
        ("another ExternalId", trust(json!(ROLE), &["sts:AssumeRole"], json!({"StringEquals": {"sts:ExternalId": "ext-1234"}})), wrong_id, denied("sts:AssumeRole")),
        ("no ExternalId", trust(json!(ROLE), &["sts:AssumeRole"], json!({"StringEquals": {"sts:ExternalId": "ext-1234"}})), plain, denied("sts:AssumeRole")),
        ("aws:RequestTag that matches", trust(json!(ROLE), &["sts:AssumeRole", "sts:TagSession"], json!({"StringEquals": {"aws:RequestTag/team": "payments"}})), with_tags, ok.clone()),
        ("aws:RequestTag that does not", trust(json!(ROLE), &["sts:AssumeRole", "sts:TagSession"], json!({"StringEquals": {"aws:RequestTag/team": "payments"}})), other_team, denied("sts:AssumeRole")),
        ("a duration over the chained cap", trust(json!(ROLE), &["sts:AssumeRole"], json!(null)), long, Err(("ValidationError".into(), "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.".into()))),
        ("a transitive key that is not a tag", trust(json!(ROLE), &["sts:AssumeRole", "sts:TagSession"], json!(null)), bad_transitive, Err(("InvalidParameterValue".into(), "The specified transitive tag key must be included in the requested tags: nope".into()))),
    ];
    for (case, policy, customize, expected) in cases {
        let f = start_with(|s| {
            s.role_trust_policies.insert(TARGET.into(), policy);
        })
        .await;
        let web = web_session(&f).await;
        let got = hop(&f.sts.endpoint_url(), &web, TARGET, customize).await;
        let got = match got {
            Ok(out) => {
                // What the app's GetCallerIdentity says with the new credentials.
                let creds = out.credentials().unwrap();
                let id = client(&f.sts.endpoint_url(), Some(sdk_credentials(creds)))
                    .get_caller_identity()
                    .send()
                    .await
                    .unwrap();
                assert_eq!(id.account(), Some("444455556666"), "{case}");
                let left = creds.expiration().secs() - now_secs();
                assert!(
                    left <= 3600,
                    "{case}: a chained session lives at most an hour ({left}s)"
                );
                Ok(id.arn().unwrap().to_string())
            }
            Err(e) => Err(e),
        };
        assert_eq!(got, expected, "{case}");
    }
}

/// Three roles: transitive tags and the SourceIdentity of the first hop reach
/// the second, where the trust policy can test them; neither can be replaced.
#[tokio::test]
async fn transitive_tags_and_source_identity_should_carry_down_the_chain() {
    let f = start_with(|s| {
        s.role_trust_policies.insert(
            TARGET.into(),
            trust(json!(ROLE), &["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"], json!(null)),
        );
        s.role_trust_policies.insert(
            THIRD.into(),
            trust(
                json!(TARGET),
                &["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
                json!({"StringEquals": {"aws:PrincipalTag/team": "payments", "sts:SourceIdentity": "pod-a"}}),
            ),
        );
    })
    .await;
    let url = f.sts.endpoint_url();
    let web = web_session(&f).await;
    let second = hop(&url, &web, TARGET, |c| {
        c.tags(tag("team", "payments"))
            .tags(tag("local", "x"))
            .transitive_tag_keys("team")
            .source_identity("pod-a")
    })
    .await
    .unwrap();
    assert_eq!(second.source_identity(), Some("pod-a"));
    let second = second.credentials().unwrap().clone();
    let third = hop(&url, &second, THIRD, |c| c).await.unwrap();
    assert_eq!(
        third.source_identity(),
        Some("pod-a"),
        "kept without being sent"
    );
    assert_eq!(
        third.assumed_role_user().unwrap().arn(),
        "arn:aws:sts::777788889999:assumed-role/third/hop"
    );
    let (code, message) = hop(&url, &second, THIRD, |c| c.source_identity("pod-b"))
        .await
        .unwrap_err();
    assert_eq!(code, "InvalidParameterValue");
    assert!(message.contains("cannot be changed"), "{message}");
    let (code, message) = hop(&url, &second, THIRD, |c| c.tags(tag("Team", "other")))
        .await
        .unwrap_err();
    assert_eq!(code, "InvalidParameterValue");
    assert!(
        message.contains("transitive tag of the calling session"),
        "{message}"
    );
    // Without the transitive tag the third role's condition fails.
    let plain = hop(&url, &web, TARGET, |c| c.source_identity("pod-a"))
        .await
        .unwrap();
    let (code, _) = hop(&url, plain.credentials().unwrap(), THIRD, |c| c)
        .await
        .unwrap_err();
    assert_eq!(code, "AccessDenied");
}

#[tokio::test]
async fn unsigned_assume_role_should_be_missing_authentication_token() {
    let f = start().await;
    let addr = f.sts.addr();
    let body = "Action=AssumeRole&Version=2011-06-15&RoleArn=x&RoleSessionName=y";
    let request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = tokio::task::spawn_blocking(move || raw_http(addr, &request))
        .await
        .unwrap();
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer.contains("<Code>MissingAuthenticationToken</Code>"),
        "{answer}"
    );
}

/// docs/cross-account.md's trust policy of role B, as the page shows it: the
/// hop it describes (tags, SourceIdentity, its ExternalId) is allowed, and
/// GetCallerIdentity answers what the page says.
#[tokio::test]
async fn the_cross_account_page_should_hold() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/cross-account.md"
    ))
    .unwrap();
    let blocks: Vec<&str> = page
        .split("```json\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    let target_policy = blocks
        .iter()
        .find(|b| b.contains("\"AWS\""))
        .expect("role B's trust policy");
    let target = "arn:aws:iam::444455556666:role/target";
    let web_role = "arn:aws:iam::111122223333:role/irsa";
    let f = start_with(|s| {
        s.role_trust_policies
            .insert(target.into(), Policy::parse(target_policy).unwrap());
    })
    .await;
    let token = sa_token(&f.issuer, "payments", "sts.amazonaws.com");
    let web = client(&f.sts.endpoint_url(), None)
        .assume_role_with_web_identity()
        .role_arn(web_role)
        .role_session_name("payments.api-7d9f8-x2x4z")
        .web_identity_token(token)
        .send()
        .await
        .unwrap();
    let hop_out = hop(
        &f.sts.endpoint_url(),
        web.credentials().unwrap(),
        target,
        |c| {
            c.role_session_name("payments.api-7d9f8-x2x4z")
                .external_id("payments-7f3a")
                .tags(tag("kubernetes-namespace", "payments"))
                .transitive_tag_keys("kubernetes-namespace")
                .source_identity("api-7d9f8-x2x4z")
        },
    )
    .await
    .unwrap();
    assert_eq!(
        hop_out.assumed_role_user().unwrap().arn(),
        "arn:aws:sts::444455556666:assumed-role/target/payments.api-7d9f8-x2x4z"
    );
    let (code, message) = hop(
        &f.sts.endpoint_url(),
        web.credentials().unwrap(),
        target,
        |c| {
            c.external_id("payments-7f3a")
                .tags(tag("kubernetes-namespace", "other"))
        },
    )
    .await
    .unwrap_err();
    assert_eq!(code, "AccessDenied", "{message}");
}

/// `--sts-rate`: above the rate, `AssumeRoleWithWebIdentity` is STS's
/// `Throttling` ("Rate exceeded"), which the SDK classifies as throttling.
#[tokio::test]
async fn assume_role_should_be_throttled_above_the_rate() {
    let f = start_with(|s| s.max_assume_per_second = Some(4)).await;
    let token = sa_token(&f.issuer, "demo", "sts.amazonaws.com");
    let mut codes = Vec::new();
    for i in 0..4 {
        let r = assume(&f.sts.endpoint_url(), &token, &format!("s{i}"), None).await;
        codes.push(r.err().unwrap_or_else(|| "ok".into()));
    }
    // A bucket of rate / 2.
    assert_eq!(codes, ["ok", "ok", "Throttling", "Throttling"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(assume(&f.sts.endpoint_url(), &token, "later", None)
        .await
        .is_ok());
}
