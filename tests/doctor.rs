//! `irsa-proxy doctor` run as a binary against fixture trust policies under
//! `tests/fixtures/doctor/` and tokens made here (unsigned: doctor does not verify).
//! The diagnoses are one table: token, policy, exit code, what the report says
//! and what it must not say.

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

/// One diagnosis: a token (the demo/app claims, overridden), a role and maybe a
/// policy, and what doctor must say about them.
struct Case {
    name: &'static str,
    /// Claims that differ from the demo/app token's.
    claims: Value,
    /// A fixture file used in place of a made token.
    token_fixture: Option<&'static str>,
    role: &'static str,
    policy: Option<&'static str>,
    code: i32,
    /// Text the report must contain (finding codes as `[code]`, hints).
    says: &'static [&'static str],
    /// Text it must not contain: a finding that would send the user the wrong way.
    never: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let case = |name, policy, code, says, never| Case {
        name,
        claims: json!({}),
        token_fixture: None,
        role: ROLE,
        policy,
        code,
        says,
        never,
    };
    vec![
        case(
            "a matching policy",
            Some("trust-ok.json"),
            0,
            &[
                "issuer     https://oidc.eks.us-east-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
                "subject    system:serviceaccount:demo:app",
                "audience   sts.amazonaws.com",
                "issued     ",
                " left)",
                "ALLOWS this token",
            ],
            &["[", "hint:"],
        ),
        case(
            "a service-account pattern on aud",
            Some("trust-sa-pattern-on-aud.json"),
            1,
            &[
                "statement 1",
                "[sa_pattern_on_aud]",
                "move the pattern to \"oidc.eks.us-east-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:sub\"",
            ],
            &[],
        ),
        // Issue 10: the wildcard is the whole problem; no "serviceAccountName: *".
        case(
            "a wildcard under StringEquals",
            Some("trust-wildcard-string-equals.json"),
            1,
            &["[wildcard_in_string_equals]", "use StringLike for wildcards"],
            &["[service_account_mismatch]", "[namespace_mismatch]", "serviceAccountName: *"],
        ),
        case(
            "https:// in a condition key",
            Some("trust-https-condition-key.json"),
            1,
            &[
                "[https_in_condition_key]",
                "without the scheme: \"oidc.eks.us-east-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE:sub\"",
            ],
            &["[issuer_mismatch]"],
        ),
        // Issue 10: both problems at once, not one per run.
        case(
            "https:// in a condition key and a wildcard under StringEquals",
            Some("trust-https-key-and-wildcard.json"),
            1,
            &["[https_in_condition_key]", "[wildcard_in_string_equals]"],
            &["[issuer_mismatch]", "[service_account_mismatch]"],
        ),
        case(
            "https:// in the principal",
            Some("trust-https-principal.json"),
            1,
            &["[https_in_issuer]", "without https://"],
            &[],
        ),
        case(
            "another namespace",
            Some("trust-other-namespace.json"),
            1,
            &[
                "[namespace_mismatch]",
                "the policy allows namespace [\"prod\"], the token is from namespace \"demo\"",
            ],
            &[],
        ),
        case(
            "another service account",
            Some("trust-other-service-account.json"),
            1,
            &["[service_account_mismatch]", "serviceAccountName: worker"],
            &[],
        ),
        Case {
            claims: json!({"aud": ["https://kubernetes.default.svc"]}),
            ..case(
                "an audience other than STS's, also against the policy's :aud",
                Some("trust-ok.json"),
                1,
                &[
                    "[audience_mismatch]",
                    "set `audience: sts.amazonaws.com`",
                    "[audience_condition_mismatch]",
                ],
                &[],
            )
        },
        Case {
            claims: json!({"iat": now() - 7200, "exp": now() - 3600}),
            ..case(
                "an expired token",
                None,
                1,
                &["[token_expired]", "expired 1h", "hint: kubelet rewrites a projected token"],
                &[],
            )
        },
        Case {
            token_fixture: Some("not-a-jwt.token"),
            ..case(
                "a token file that is not a JWT",
                None,
                1,
                &["[token_not_jwt]", "three base64url parts"],
                &[],
            )
        },
        Case {
            role: "arn:aws:iam::1234:role/x",
            ..case("a bad role ARN", None, 1, &["[role_arn_invalid]"], &[])
        },
    ]
}

#[test]
fn each_diagnosis_should_exit_and_explain_as_the_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for c in cases() {
        let token = match c.token_fixture {
            Some(f) => fixture(f),
            None => token_file(dir.path(), c.claims.clone()),
        };
        let mut args = vec![
            "--token-file".to_string(),
            token.display().to_string(),
            "--role-arn".to_string(),
            c.role.to_string(),
        ];
        if let Some(p) = c.policy {
            args.extend([
                "--trust-policy".to_string(),
                fixture(p).display().to_string(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = doctor(&args);
        if r.code != c.code {
            failures.push(format!("{}: exit {} not {}", c.name, r.code, c.code));
        }
        for needle in c.says {
            if !r.stdout.contains(needle) {
                failures.push(format!("{}: {needle:?} missing", c.name));
            }
        }
        for needle in c.never {
            if r.stdout.contains(needle) {
                failures.push(format!("{}: {needle:?} present", c.name));
            }
        }
        if !failures.is_empty() && failures.last().is_some_and(|f| f.starts_with(c.name)) {
            failures.push(format!(
                "{}: the report was\n{}{}",
                c.name, r.stdout, r.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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

// ---------------------------------------------------------------------------
// A role chain: each chained role's trust policy, evaluated for the AssumeRole
// the hop before it makes, with what serve would send.

const TARGET: &str = "arn:aws:iam::444455556666:role/target";
const MIDDLE: &str = "arn:aws:iam::222233334444:role/middle";

fn policy_file(dir: &Path, principal: &str, actions: &[&str], condition: Value) -> String {
    let mut statement =
        json!({"Effect": "Allow", "Principal": {"AWS": principal}, "Action": actions});
    if !condition.is_null() {
        statement["Condition"] = condition;
    }
    let path = dir.join(format!("policy-{}.json", rand_suffix()));
    std::fs::write(
        &path,
        json!({"Version": "2012-10-17", "Statement": [statement]}).to_string(),
    )
    .unwrap();
    path.display().to_string()
}

/// A case, its arguments, the exit code, the finding code and words its
/// message and hint must have.
type ChainCase<'a> = (&'a str, Vec<String>, i32, Option<&'a str>, &'a [&'a str]);

#[test]
fn each_chain_mistake_should_be_named_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = token_file(
        d,
        json!({"kubernetes.io": {"namespace": "demo", "pod": {"name": "app-7d9f8-x2x4z", "uid": "u-1"},
               "serviceaccount": {"name": "app"}}}),
    );
    let token = token.display().to_string();
    let all = ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"];
    let ext = json!({"StringEquals": {"sts:ExternalId": "ext-1234"}});
    let good = policy_file(d, ROLE, &all, ext.clone());
    let no_tag_session = policy_file(
        d,
        ROLE,
        &["sts:AssumeRole", "sts:SetSourceIdentity"],
        json!(null),
    );
    let no_source = policy_file(d, ROLE, &["sts:AssumeRole", "sts:TagSession"], json!(null));
    let wrong_principal = policy_file(d, "arn:aws:iam::111122223333:role/other", &all, json!(null));
    let by_account = policy_file(d, "111122223333", &["sts:AssumeRole"], json!(null));
    let from_middle = policy_file(d, MIDDLE, &["sts:AssumeRole"], ext.clone());
    let from_web = policy_file(d, ROLE, &["sts:AssumeRole"], ext.clone());
    let middle_with_ext = policy_file(d, ROLE, &all, ext.clone());
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--token-file",
            &token,
            "--role-arn",
            ROLE,
            "--output",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let tagged = [
        "--session-tags",
        "pod-identity",
        "--cluster-name",
        "prod",
        "--source-identity",
        "{pod}",
    ];
    let cases: Vec<ChainCase> = vec![
        (
            "everything allowed",
            base(
                &[
                    &[
                        "--chain-role-arn",
                        TARGET,
                        "--chain-trust-policy",
                        &good,
                        "--chain-external-id",
                        "ext-1234",
                    ][..],
                    &tagged[..],
                ]
                .concat(),
            ),
            0,
            None,
            &[],
        ),
        (
            "tags without sts:TagSession",
            base(
                &[
                    &[
                        "--chain-role-arn",
                        TARGET,
                        "--chain-trust-policy",
                        &no_tag_session,
                    ][..],
                    &tagged[..],
                ]
                .concat(),
            ),
            1,
            Some("chain_tag_session_missing"),
            &["sts:TagSession", "not AssumeRole", "intermittent"],
        ),
        (
            "SourceIdentity without sts:SetSourceIdentity",
            base(
                &[
                    &[
                        "--chain-role-arn",
                        TARGET,
                        "--chain-trust-policy",
                        &no_source,
                    ][..],
                    &tagged[..],
                ]
                .concat(),
            ),
            1,
            Some("chain_set_source_identity_missing"),
            &["sts:SetSourceIdentity"],
        ),
        (
            "an ExternalId condition and none configured",
            base(&["--chain-role-arn", TARGET, "--chain-trust-policy", &good]),
            1,
            Some("chain_external_id_mismatch"),
            &["no ExternalId is configured"],
        ),
        (
            "another ExternalId",
            base(&[
                "--chain-role-arn",
                TARGET,
                "--chain-trust-policy",
                &good,
                "--chain-external-id",
                "SECRET-ext-9999",
            ]),
            1,
            Some("chain_external_id_mismatch"),
            &["none of the 1 value(s)"],
        ),
        (
            "an ExternalId condition on a hop that is not the last",
            base(&[
                "--chain-role-arn",
                MIDDLE,
                "--chain-role-arn",
                TARGET,
                "--chain-trust-policy",
                &middle_with_ext,
                "--chain-trust-policy",
                &from_middle,
                "--chain-external-id",
                "ext-1234",
            ]),
            1,
            Some("chain_external_id_mismatch"),
            &["only with the last hop", "hop 2"],
        ),
        (
            "a principal that is not the previous role",
            base(&[
                "--chain-role-arn",
                TARGET,
                "--chain-trust-policy",
                &wrong_principal,
            ]),
            1,
            Some("chain_principal_not_previous_role"),
            &["role/other", ROLE],
        ),
        (
            "the second hop trusting the web-identity role, not the middle one",
            base(&[
                "--chain-role-arn",
                MIDDLE,
                "--chain-role-arn",
                TARGET,
                "--chain-trust-policy",
                &by_account,
                "--chain-trust-policy",
                &from_web,
                "--chain-external-id",
                "ext-1234",
            ]),
            1,
            Some("chain_principal_not_previous_role"),
            &["hop 3", MIDDLE],
        ),
        (
            "a duration over the chained cap",
            base(&[
                "--chain-role-arn",
                TARGET,
                "--chain-trust-policy",
                &by_account,
                "--duration",
                "2h",
            ]),
            1,
            Some("chain_duration_over_cap"),
            &["1 hour session limit"],
        ),
    ];
    for (case, args, code, finding, words) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = doctor(&args);
        assert_eq!(run.code, code, "{case}: {}{}", run.stdout, run.stderr);
        assert!(
            !run.stdout.contains("SECRET"),
            "{case}: the ExternalId is never printed"
        );
        let report: Value = serde_json::from_str(&run.stdout).unwrap();
        let findings = report["findings"].as_array().unwrap();
        match finding {
            None => assert!(
                findings.iter().all(|f| f["severity"] != "error"),
                "{case}: {findings:?}"
            ),
            Some(wanted) => {
                let f = findings
                    .iter()
                    .find(|f| f["code"] == wanted)
                    .unwrap_or_else(|| panic!("{case}: no {wanted} in {findings:#?}"));
                let text = format!("{} {}", f["message"], f["hint"]);
                for w in words {
                    assert!(text.contains(w), "{case}: {w:?} not in {text}");
                }
            }
        }
    }
    // The text report shows each hop's verdict.
    let run = doctor(&[
        "--token-file",
        &token,
        "--role-arn",
        ROLE,
        "--chain-role-arn",
        TARGET,
        "--chain-trust-policy",
        &no_tag_session,
        "--session-tags",
        "team=payments",
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains(&format!("AssumeRole {TARGET} by {ROLE}"))
            && run.stdout.contains("sts:TagSession DENIED"),
        "{}",
        run.stdout
    );
}
