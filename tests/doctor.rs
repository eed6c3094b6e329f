//! `irsa-proxy doctor` run as a binary against fixture trust policies under
//! `tests/fixtures/doctor/` and tokens made here (unsigned: doctor does not verify).
//! One test per diagnosis: exit code and hint.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

const ISSUER: &str = "https://oidc.eks.us-east-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";
const ROLE: &str = "arn:aws:iam::111122223333:role/demo-role";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/doctor")
        .join(name)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes an unsigned JWT with the default claims of a demo/app token, overridden.
fn token_file(dir: &Path, overrides: Value) -> PathBuf {
    let n = now();
    let mut claims = json!({
        "iss": ISSUER, "sub": "system:serviceaccount:demo:app", "aud": ["sts.amazonaws.com"],
        "iat": n - 60, "nbf": n - 60, "exp": n + 86_400,
    });
    for (k, v) in overrides.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let jwt = format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let path = dir.join(format!("token-{}", rand_suffix()));
    std::fs::write(&path, jwt).unwrap();
    path
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn doctor(args: &[&str]) -> Run {
    doctor_env(args, &[])
}

fn doctor_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_irsa-proxy"));
    cmd.arg("doctor")
        .args(args)
        .env_remove("AWS_ROLE_ARN")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn with_policy(token: &Path, policy: &str) -> Run {
    doctor(&[
        "--token-file",
        token.to_str().unwrap(),
        "--role-arn",
        ROLE,
        "--trust-policy",
        fixture(policy).to_str().unwrap(),
    ])
}

#[test]
fn matching_policy_should_be_allowed_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(dir.path(), json!({}));
    let r = with_policy(&t, "trust-ok.json");
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(
        "issuer     https://oidc.eks.us-east-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
    ));
    assert!(r
        .stdout
        .contains("subject    system:serviceaccount:demo:app"));
    assert!(r.stdout.contains("audience   sts.amazonaws.com"));
    assert!(r.stdout.contains("issued     "));
    assert!(r.stdout.contains(" left)"), "{}", r.stdout);
    assert!(r.stdout.contains("ALLOWS this token"));
}

#[test]
fn service_account_pattern_on_aud_should_hint_sub() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(dir.path(), json!({}));
    let r = with_policy(&t, "trust-sa-pattern-on-aud.json");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("statement 1"), "{}", r.stdout);
    assert!(r.stdout.contains("[sa_pattern_on_aud]"), "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "move the pattern to \"oidc.eks.us-east-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:sub\""
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn wildcard_under_string_equals_should_hint_string_like() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(dir.path(), json!({}));
    let r = with_policy(&t, "trust-wildcard-string-equals.json");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("[wildcard_in_string_equals]"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("use StringLike for wildcards"),
        "{}",
        r.stdout
    );
}

#[test]
fn https_in_a_condition_key_should_hint_the_bare_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(dir.path(), json!({}));
    let r = with_policy(&t, "trust-https-condition-key.json");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("[https_in_condition_key]"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains(
            "without the scheme: \"oidc.eks.us-east-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:sub\""
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn https_in_the_principal_should_hint_the_bare_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(dir.path(), json!({}));
    let r = with_policy(&t, "trust-https-principal.json");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("[https_in_issuer]"), "{}", r.stdout);
    assert!(r.stdout.contains("without https://"), "{}", r.stdout);
}

#[test]
fn other_namespace_should_name_both_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(dir.path(), json!({}));
    let r = with_policy(&t, "trust-other-namespace.json");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("[namespace_mismatch]"), "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "the policy allows namespace [\"prod\"], the token is from namespace \"demo\""
        ),
        "{}",
        r.stdout
    );
}

#[test]
fn other_service_account_should_name_both_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(dir.path(), json!({}));
    let r = with_policy(&t, "trust-other-service-account.json");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("[service_account_mismatch]"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("serviceAccountName: worker"),
        "{}",
        r.stdout
    );
}

#[test]
fn audience_other_than_sts_should_be_diagnosed() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(
        dir.path(),
        json!({"aud": ["https://kubernetes.default.svc"]}),
    );
    let r = with_policy(&t, "trust-ok.json");
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("[audience_mismatch]"), "{}", r.stdout);
    assert!(
        r.stdout.contains("set `audience: sts.amazonaws.com`"),
        "{}",
        r.stdout
    );
    // The policy's own :aud condition is explained too.
    assert!(
        r.stdout.contains("[audience_condition_mismatch]"),
        "{}",
        r.stdout
    );
}

#[test]
fn expired_token_should_be_diagnosed() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(
        dir.path(),
        json!({"iat": now() - 7200, "exp": now() - 3600}),
    );
    let r = doctor(&["--token-file", t.to_str().unwrap(), "--role-arn", ROLE]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("[token_expired]"), "{}", r.stdout);
    assert!(r.stdout.contains("expired 1h"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("hint: kubelet rewrites a projected token"),
        "{}",
        r.stdout
    );
}

#[test]
fn token_file_that_is_not_a_jwt_should_be_diagnosed() {
    let r = doctor(&[
        "--token-file",
        fixture("not-a-jwt.token").to_str().unwrap(),
        "--role-arn",
        ROLE,
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("[token_not_jwt]"), "{}", r.stdout);
    assert!(r.stdout.contains("three base64url parts"), "{}", r.stdout);
}

#[test]
fn bad_role_arn_should_be_diagnosed() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(dir.path(), json!({}));
    let r = doctor(&[
        "--token-file",
        t.to_str().unwrap(),
        "--role-arn",
        "arn:aws:iam::1234:role/x",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("[role_arn_invalid]"), "{}", r.stdout);
}

#[test]
fn environment_should_supply_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(dir.path(), json!({}));
    let r = doctor_env(
        &["--trust-policy", fixture("trust-ok.json").to_str().unwrap()],
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", t.to_str().unwrap()),
            ("AWS_ROLE_ARN", ROLE),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains(ROLE));
}

#[test]
fn bad_input_should_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(dir.path(), json!({}));
    let t = t.to_str().unwrap();
    let bad_policy = fixture("bad-policy.json");
    let missing = dir.path().join("missing");
    for (args, needle) in [
        (
            vec![],
            "--token-file (AWS_WEB_IDENTITY_TOKEN_FILE) is required; expected the path of the projected token file",
        ),
        (
            vec!["--token-file", missing.to_str().unwrap()],
            "\" cannot be used (token file",
        ),
        (
            vec![
                "--token-file",
                t,
                "--trust-policy",
                bad_policy.to_str().unwrap(),
            ],
            "bad-policy.json\" is not usable: not valid JSON",
        ),
        (
            vec![
                "--token-file",
                t,
                "--trust-policy",
                missing.to_str().unwrap(),
            ],
            "--trust-policy",
        ),
        (
            vec!["--token-file", t, "--output", "yaml"],
            "--output: \"yaml\" is not a format; expected text or json",
        ),
    ] {
        let r = doctor(&args);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn json_output_should_carry_the_verdict_and_the_findings() {
    let dir = tempfile::tempdir().unwrap();
    let t = token_file(dir.path(), json!({}));
    let r = doctor(&[
        "--token-file",
        t.to_str().unwrap(),
        "--role-arn",
        ROLE,
        "--trust-policy",
        fixture("trust-sa-pattern-on-aud.json").to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 1);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["verdict"], "denied");
    assert_eq!(v["token"]["subject"], "system:serviceaccount:demo:app");
    assert_eq!(v["trust_policy"]["allowed"], false);
    assert_eq!(
        v["trust_policy"]["evaluation"]["decision"]["decision"],
        "implicit_deny"
    );
    let codes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"sa_pattern_on_aud"), "{codes:?}");
    let hint = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "sa_pattern_on_aud")
        .unwrap()["hint"]
        .as_str()
        .unwrap();
    assert!(hint.contains(":sub"));

    let ok = doctor(&[
        "--token-file",
        t.to_str().unwrap(),
        "--role-arn",
        ROLE,
        "--trust-policy",
        fixture("trust-ok.json").to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert_eq!(ok.code, 0);
    let v: Value = serde_json::from_str(&ok.stdout).unwrap();
    assert_eq!(v["verdict"], "allowed");
    assert_eq!(v["findings"].as_array().unwrap().len(), 0);
}
