//! Session policies end to end: `serve --session-policy-file/--session-policy-arn`
//! sends them on the role's last call, the emulator checks them with STS's
//! errors and enforces them on the S3 calls a real SDK client (boto3) makes
//! with the credentials the proxy serves; and the STS side with the Rust
//! `aws-sdk-sts` in-process.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_sts::config::Credentials;
use aws_sdk_sts::error::ProvideErrorMetadata;
use aws_sdk_sts::types::PolicyDescriptorType;
use common::clients::{clients_dir, python_with_boto3};
use common::sdk::sts_client as client;
use common::ProxyBuilder;
use irsa_proxy::policy::Policy;
use irsa_proxy::tools::emulator::{
    self, EmulatorHandle, EmulatorSettings, Issuer, Ledger, ServiceAccountToken,
};
use serde_json::json;

const ISSUER: &str = "https://oidc.eks.us-east-2.amazonaws.com/id/EXAMPLE0123456789";
const INSIDE: &str = "team-reports";
const OUTSIDE: &str = "other-team";
const GUARD: &str = "arn:aws:iam::111122223333:policy/reports-guard";
const TARGET: &str = "arn:aws:iam::444455556666:role/target";
const THIRD: &str = "arn:aws:iam::777788889999:role/third";

/// The inline session policy: read and write objects of one bucket.
fn inline_policy() -> String {
    serde_json::to_string_pretty(&json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ObjectsOfOneBucket",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": format!("arn:aws:s3:::{INSIDE}/*"),
        }],
    }))
    .unwrap()
}

/// The managed one: the bucket itself, and nothing under private/.
fn guard_policy() -> Policy {
    Policy::parse_session(
        &json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": format!("arn:aws:s3:::{INSIDE}")},
                {"Effect": "Deny", "Action": "s3:*", "Resource": format!("arn:aws:s3:::{INSIDE}/private/*")},
            ],
        })
        .to_string(),
    )
    .unwrap()
}

struct Fixture {
    issuer: Issuer,
    sts: EmulatorHandle,
    ledger: Arc<Ledger>,
}

async fn start() -> Fixture {
    let issuer = Issuer::generate_rsa(ISSUER).unwrap();
    let mut settings = EmulatorSettings::new(issuer.verifying_keys().unwrap());
    settings.s3_buckets = vec![INSIDE.into(), OUTSIDE.into()];
    settings
        .managed_policies
        .insert(GUARD.into(), guard_policy());
    let ledger = settings.ledger.clone();
    let sts = emulator::spawn("127.0.0.1:0".parse().unwrap(), settings)
        .await
        .unwrap();
    Fixture {
        issuer,
        sts,
        ledger,
    }
}

fn token(issuer: &Issuer) -> String {
    issuer
        .mint_service_account(&ServiceAccountToken {
            namespace: "demo",
            service_account: "app",
            audience: "sts.amazonaws.com",
            issued_at: SystemTime::now(),
            ttl: Duration::from_secs(600),
        })
        .unwrap()
}

/// `tests/clients/session_policy_s3.py` with the proxy's credentials: its
/// exit status and output.
fn boto3_through(proxy: std::net::SocketAddr, emulator: &str) -> (bool, String) {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(python_with_boto3())
        .arg(clients_dir().join("session_policy_s3.py"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", home.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{proxy}/v1/credentials"),
        )
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL_S3", emulator)
        .env("AWS_ENDPOINT_URL_STS", emulator)
        .env("INSIDE_BUCKET", INSIDE)
        .env("OUTSIDE_BUCKET", OUTSIDE)
        .output()
        .expect("run python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.display().to_string()
}

/// What boto3 sees with the role narrowed: inside the session policy the
/// calls succeed, outside it (though the role allows everything) they are
/// AccessDenied with AWS's wording, an explicit Deny of the managed policy
/// wins over the inline Allow, and GetCallerIdentity is never denied.
fn assert_narrowed(ok: bool, out: &str, session: &str) {
    assert!(ok, "boto3 checks failed:\n{out}");
    assert!(
        out.contains(&format!(
            "denied put outside: User: {session} is not authorized to perform: s3:PutObject on resource: \"arn:aws:s3:::{OUTSIDE}/k\" because no session policy allows the s3:PutObject action"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "denied put under private: User: {session} is not authorized to perform: s3:PutObject on resource: \"arn:aws:s3:::{INSIDE}/private/k\" with an explicit deny in a session policy"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("arn {session}")), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_policy_should_narrow_the_role_for_a_real_sdk_client() {
    let f = start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = write(dir.path(), "token", &token(&f.issuer));
    let policy_file = write(dir.path(), "policy.json", &inline_policy());
    let proxy = ProxyBuilder::serve(Path::new(&token_file), &f.sts.endpoint_url())
        .args(["--session-policy-file", &policy_file])
        .env("IRSA_PROXY_SESSION_POLICY_ARNS", GUARD)
        .start();
    let emulator = f.sts.endpoint_url();
    let (ok, out) = tokio::task::spawn_blocking(move || boto3_through(proxy.addr, &emulator))
        .await
        .unwrap();
    let session_prefix = "arn:aws:sts::123456789012:assumed-role/test-role/";
    let session = out
        .lines()
        .find_map(|l| l.strip_prefix("arn "))
        .filter(|a| a.starts_with(session_prefix))
        .unwrap_or_else(|| panic!("no caller identity in:\n{out}"))
        .to_string();
    assert_narrowed(ok, &out, &session);

    // The ledger: the set was issued with the policy; the refusals by action.
    let snap = f.ledger.snapshot();
    assert!(snap.sets.iter().all(|s| s
        .session_policy
        .as_deref()
        .is_some_and(|p| p.contains(GUARD) && p.starts_with("an inline policy of "))));
    let denied: Vec<(&str, &str)> = snap
        .session_policy_denials
        .iter()
        .map(|d| (d.action.as_str(), d.resource.as_str()))
        .collect();
    for (action, resource) in [
        ("s3:PutObject", format!("arn:aws:s3:::{OUTSIDE}/k")),
        ("s3:GetObject", format!("arn:aws:s3:::{OUTSIDE}/k")),
        (
            "s3:DeleteObject",
            format!("arn:aws:s3:::{INSIDE}/reports/q1.csv"),
        ),
        (
            "s3:CreateBucket",
            "arn:aws:s3:::made-by-the-app".to_string(),
        ),
    ] {
        assert!(
            denied.contains(&(action, resource.as_str())),
            "{action} on {resource} not in {denied:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_chain_the_session_policy_should_narrow_only_the_last_role() {
    let f = start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = write(dir.path(), "token", &token(&f.issuer));
    let policy_file = write(dir.path(), "policy.json", &inline_policy());
    let proxy = ProxyBuilder::serve(Path::new(&token_file), &f.sts.endpoint_url())
        .args(["--chain-role-arn", TARGET])
        .args(["--session-policy-file", &policy_file])
        .args(["--session-policy-arn", GUARD])
        .start();
    let emulator = f.sts.endpoint_url();
    let (ok, out) = tokio::task::spawn_blocking(move || boto3_through(proxy.addr, &emulator))
        .await
        .unwrap();
    let session = out
        .lines()
        .find_map(|l| l.strip_prefix("arn "))
        .unwrap_or_else(|| panic!("no caller identity in:\n{out}"))
        .to_string();
    assert!(
        session.starts_with("arn:aws:sts::444455556666:assumed-role/target/"),
        "{session}"
    );
    assert_narrowed(ok, &out, &session);
    // The web-identity role was not narrowed (it signed the hop); the hop was.
    let snap = f.ledger.snapshot();
    let policy_of = |role: &str| -> Vec<Option<String>> {
        snap.sets
            .iter()
            .filter(|s| s.session.contains(role))
            .map(|s| s.session_policy.clone())
            .collect()
    };
    let first = policy_of(":assumed-role/test-role/");
    let last = policy_of(":assumed-role/target/");
    assert!(
        !first.is_empty() && first.iter().all(Option::is_none),
        "{first:?}"
    );
    assert!(
        !last.is_empty() && last.iter().all(Option::is_some),
        "{last:?}"
    );
}

#[test]
fn serve_should_refuse_a_session_policy_sts_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = write(dir.path(), "token", "a.b.c");
    let bad = write(dir.path(), "bad.json", "{\"Statement\": [");
    let home = tempfile::tempdir().unwrap();
    let out = common::proxy::clean_command(home.path())
        .args([
            "serve",
            "--role-arn",
            "arn:aws:iam::123456789012:role/app",
            "--token-file",
            &token_file,
            "--session-policy-file",
            &bad,
            "--session-policy-arn",
            "arn:aws:iam::123456789012:role/not-a-policy",
        ])
        .env(
            "IRSA_PROXY_SESSION_POLICY_ARNS",
            "ignored: the flag wins over the variable",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].contains(&format!("--session-policy-file: {bad:?} is not JSON (")),
        "{stderr}"
    );
    assert!(
        lines[1].contains("--session-policy-arn: \"arn:aws:iam::123456789012:role/not-a-policy\" is not a managed policy ARN; expected arn:<partition>:iam::<12-digit account or aws>:policy/<optional/path/>name"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------
// STS: the parameters, with the Rust SDK

fn arn(a: &str) -> PolicyDescriptorType {
    PolicyDescriptorType::builder().arn(a).build()
}

type WebResult = Result<
    aws_sdk_sts::operation::assume_role_with_web_identity::AssumeRoleWithWebIdentityOutput,
    (String, String),
>;

async fn web(f: &Fixture, policy: Option<String>, arns: Vec<&str>) -> WebResult {
    client(&f.sts.endpoint_url(), None)
        .assume_role_with_web_identity()
        .role_arn("arn:aws:iam::111122223333:role/demo-role")
        .role_session_name("web")
        .web_identity_token(token(&f.issuer))
        .set_policy(policy)
        .set_policy_arns((!arns.is_empty()).then(|| arns.into_iter().map(arn).collect()))
        .send()
        .await
        .map_err(|e| {
            (
                e.code().unwrap_or("no code").to_string(),
                e.message().unwrap_or_default().to_string(),
            )
        })
}

fn creds_of(c: &aws_sdk_sts::types::Credentials) -> Credentials {
    Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        None,
        "test",
    )
}

#[tokio::test]
// PackedPolicySize: STS still answers it; the SDK marks it deprecated.
#[allow(deprecated)]
async fn policy_parameters_should_get_the_errors_sts_gives() {
    let f = start().await;
    let ok = web(&f, Some(inline_policy()), vec![GUARD]).await.unwrap();
    let size = ok.packed_policy_size().expect("PackedPolicySize");
    assert!((1..=100).contains(&size), "{size}");
    assert!(web(&f, None, vec![])
        .await
        .unwrap()
        .packed_policy_size()
        .is_none());

    let code = |r: WebResult| r.map(|_| ()).unwrap_err();
    let (c, m) = code(web(&f, Some("{\"Statement\": [".into()), vec![]).await);
    assert_eq!(c, "MalformedPolicyDocument", "{m}");
    let with_principal = json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}});
    let (c, m) = code(web(&f, Some(with_principal.to_string()), vec![]).await);
    assert_eq!(c, "MalformedPolicyDocument");
    assert!(m.contains("Principal"), "{m}");
    let long = json!({"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": format!("arn:aws:s3:::{}", "b".repeat(2100))}});
    let (c, m) = code(web(&f, Some(long.to_string()), vec![]).await);
    assert_eq!(c, "ValidationError");
    assert!(m.contains("'policy'"), "{m}");
    let (c, m) = code(web(&f, None, vec!["arn:aws:iam::aws:policy/ReadOnlyAccess"]).await);
    assert_eq!(
        (c.as_str(), m.as_str()),
        (
            "MalformedPolicyDocument",
            "Policy arn:aws:iam::aws:policy/ReadOnlyAccess does not exist or is not attachable."
        )
    );
    let (c, m) = code(web(&f, None, vec![GUARD; 11]).await);
    assert_eq!(c, "ValidationError");
    assert!(
        m.contains("'policyArns'") && m.contains("less than or equal to 10"),
        "{m}"
    );

    // AssumeRole: the new session's own policy and the packed budget it
    // shares with the session tags.
    let caller = ok.credentials().unwrap();
    let tags: Vec<aws_sdk_sts::types::Tag> = (0..40)
        .map(|i| {
            aws_sdk_sts::types::Tag::builder()
                .key(format!("key-{i}-{}", "k".repeat(100)))
                .value("v".repeat(200))
                .build()
                .unwrap()
        })
        .collect();
    // The caller's session policy has no sts:AssumeRole: refused first.
    let e = client(&f.sts.endpoint_url(), Some(creds_of(caller)))
        .assume_role()
        .role_arn(TARGET)
        .role_session_name("hop")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("AccessDenied"));
    assert!(
        e.message().unwrap().ends_with(&format!(
            "is not authorized to perform: sts:AssumeRole on resource: {TARGET} because no session policy allows the sts:AssumeRole action"
        )),
        "{:?}",
        e.message()
    );
    let free = web(&f, None, vec![]).await.unwrap();
    let free = free.credentials().unwrap();
    let e = client(&f.sts.endpoint_url(), Some(creds_of(free)))
        .assume_role()
        .role_arn(TARGET)
        .role_session_name("hop")
        .set_tags(Some(tags))
        .policy(inline_policy())
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("PackedPolicyTooLarge"), "{:?}", e.message());
    assert!(e.message().unwrap().contains("% of allotted space"));
}

/// The session policy of the call that issued the credentials applies, and
/// only it: a hop's session allowed to assume one more role (and nothing
/// else) can; the session it gets, issued without a policy, is not bound by
/// its caller's.
#[tokio::test]
// PackedPolicySize: STS still answers it; the SDK marks it deprecated.
#[allow(deprecated)]
async fn a_chained_session_should_have_its_own_calls_policy_only() {
    let f = start().await;
    let free = web(&f, None, vec![]).await.unwrap();
    let only_third =
        json!({"Statement": {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": THIRD}})
            .to_string();
    let hop = client(
        &f.sts.endpoint_url(),
        Some(creds_of(free.credentials().unwrap())),
    )
    .assume_role()
    .role_arn(TARGET)
    .role_session_name("hop")
    .policy(only_third)
    .send()
    .await
    .unwrap();
    assert!(hop.packed_policy_size().is_some());
    let hop_creds = creds_of(hop.credentials().unwrap());
    // Its policy names THIRD only.
    let e = client(&f.sts.endpoint_url(), Some(hop_creds.clone()))
        .assume_role()
        .role_arn("arn:aws:iam::777788889999:role/elsewhere")
        .role_session_name("hop2")
        .send()
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("AccessDenied"), "{:?}", e.message());
    let third = client(&f.sts.endpoint_url(), Some(hop_creds.clone()))
        .assume_role()
        .role_arn(THIRD)
        .role_session_name("hop2")
        .send()
        .await
        .unwrap();
    // GetCallerIdentity is never denied, whatever the policy.
    let me = client(&f.sts.endpoint_url(), Some(hop_creds))
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert!(me.arn().unwrap().contains(":assumed-role/target/hop"));
    // The third session has no policy of its own: not bound by its caller's.
    client(
        &f.sts.endpoint_url(),
        Some(creds_of(third.credentials().unwrap())),
    )
    .assume_role()
    .role_arn("arn:aws:iam::777788889999:role/elsewhere")
    .role_session_name("hop3")
    .send()
    .await
    .unwrap();
}

#[test]
fn the_emulator_should_refuse_a_managed_policy_it_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let with_principal = write(
        dir.path(),
        "p.json",
        r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}}"#,
    );
    let home = tempfile::tempdir().unwrap();
    let out = common::proxy::clean_command(home.path())
        .args([
            "sts-emulator",
            "--managed-policy",
            "no-equals-sign",
            "--managed-policy",
            &format!("arn:aws:iam::111122223333:role/x={with_principal}"),
            "--managed-policy",
            &format!("{GUARD}={with_principal}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "--managed-policy: \"no-equals-sign\" is not ARN=FILE",
        "is not a managed policy ARN",
        "is not usable: Statement 1: has a \"Principal\"",
    ] {
        assert!(stderr.contains(needle), "{needle} not in:\n{stderr}");
    }
}
