//! `irsa-proxy dev`: the whole chain on one machine, driven as a user would.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::clients::python_with_boto3;
use common::proxy::clean_command;

#[test]
fn boto3_should_survive_rotations_through_dev_for_70_seconds() {
    let home = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/dev_e2e.py");
    let out = clean_command(home.path())
        // A caller's own credentials must not reach the command.
        .env("AWS_ACCESS_KEY_ID", "AKIACALLERSOWNKEY000")
        .env("AWS_SECRET_ACCESS_KEY", "caller-secret")
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--credential-ttl",
            "30s",
            "--token-ttl",
            "20s",
            // The log lines below are INFO: beside a command, dev logs them
            // only when asked.
            "--verbose",
            "--",
            &python_with_boto3(),
            script,
            "70",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
    assert!(!stdout.contains("AKIACALLERSOWNKEY000"));
    assert!(
        stderr.contains("dev: wrote a new web-identity token"),
        "{stderr}"
    );
    assert!(stderr.contains("web-identity token rotated"), "{stderr}");
    assert!(
        stderr.matches("obtained credentials from STS").count() >= 3,
        "{stderr}"
    );
    assert!(!stderr.contains("caller-secret"));
}

#[test]
fn dev_should_exit_4_when_the_command_fails_and_give_it_its_environment() {
    let home = tempfile::tempdir().unwrap();
    let out = clean_command(home.path())
        .env("AWS_PROFILE", "someone-elses")
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--",
            "sh",
            "-c",
            "env; exit 7",
        ])
        .output()
        .unwrap();
    // The verdict "the command failed" (4); the report names its own code.
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("FAILED: the command failed (exit 4)"),
        "{stderr}"
    );
    assert!(stderr.contains("sh exited with 7"), "{stderr}");
    let env = String::from_utf8_lossy(&out.stdout);
    for var in [
        "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=",
        "AWS_ENDPOINT_URL_STS=http://127.0.0.1:",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:",
        "AWS_ENDPOINT_URL_S3=http://127.0.0.1:",
        "IRSA_PROXY_DEV_BUCKET=irsa-proxy-dev",
        "IRSA_PROXY_DEV_CONTROL_URL=http://127.0.0.1:",
    ] {
        assert!(env.contains(var), "{var} missing in:\n{env}");
    }
    assert!(!env.contains("AWS_PROFILE"), "{env}");
}

#[test]
fn dev_should_print_exports_serve_credentials_and_clean_up_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let mut child = clean_command(home.path())
        .args(["dev", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut exports = std::collections::HashMap::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while exports.len() < 4 {
        let line = lines
            .next()
            .expect("dev printed fewer export lines")
            .unwrap();
        let (k, v) = line
            .strip_prefix("export ")
            .and_then(|l| l.split_once('='))
            .unwrap_or_else(|| panic!("not an export line: {line}"));
        exports.insert(k.to_string(), v.to_string());
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let url = &exports["AWS_CONTAINER_CREDENTIALS_FULL_URI"];
    let token_file = exports["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"].clone();
    let token = std::fs::read_to_string(&token_file).unwrap();
    let addr: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches("/v1/credentials")
        .parse()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let reply = rt.block_on(common::request(
        addr,
        "GET",
        "/v1/credentials",
        &[("Authorization", &token)],
    ));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["AccessKeyId"]
        .as_str()
        .unwrap()
        .starts_with("ASIA"));

    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !std::path::Path::new(&token_file).exists(),
        "the temporary directory was not removed"
    );
}

#[test]
fn bad_dev_flags_should_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let out = clean_command(home.path())
        .args(["dev", "--credential-ttl", "5s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--credential-ttl: \"5s\" is out of range"),
        "{stderr}"
    );
}

#[test]
fn dev_should_suggest_a_free_port_when_its_port_is_taken() {
    let home = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let out = clean_command(home.path())
        .args(["dev", "--listen", &listen])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("--listen {listen}: the port is taken"))
            && stderr.contains("--listen 127.0.0.1:0"),
        "{stderr}"
    );
}

#[test]
fn dev_should_exit_127_with_one_line_for_a_command_that_does_not_exist() {
    let home = tempfile::tempdir().unwrap();
    let out = clean_command(home.path())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--",
            "irsa-proxy-no-such-command",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("cannot run \"irsa-proxy-no-such-command\""),
        "{stderr}"
    );
}

/// `dev --chain-role-arn`: boto3 gets the chained role's credentials, its
/// GetCallerIdentity answers the last role with the templated session name at
/// every refresh, and the report names the role and says the principal never
/// changed.
#[test]
fn dev_should_run_a_chain_and_report_a_stable_principal() {
    let home = tempfile::tempdir().unwrap();
    let script = "import boto3, sys, time\n\
                  sts = boto3.client('sts')\n\
                  arns = []\n\
                  end = time.time() + float(sys.argv[1])\n\
                  while time.time() < end:\n\
                  \x20   arn = sts.get_caller_identity()['Arn']\n\
                  \x20   arns.append(arn) if arn not in arns else None\n\
                  \x20   time.sleep(0.5)\n\
                  print('ARNS', ' '.join(arns))\n";
    let out = clean_command(home.path())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--credential-ttl",
            "10s",
            "--token-ttl",
            "20s",
            "--chain-role-arn",
            "arn:aws:iam::444455556666:role/target",
            "--session-name",
            "{namespace}.{pod}",
            "--session-tags",
            "pod-identity",
            "--source-identity",
            "{pod}",
            "--report",
            "json",
            // The refreshes are counted in the INFO log.
            "--verbose",
            "--",
            &python_with_boto3(),
            "-c",
            script,
            "25",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let arns: Vec<&str> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ARNS "))
        .unwrap_or_else(|| panic!("no ARNS line in {stdout}"))
        .split(' ')
        .collect();
    assert_eq!(arns.len(), 1, "one principal for the whole run: {arns:?}");
    assert!(
        arns[0].starts_with("arn:aws:sts::444455556666:assumed-role/target/default.app-"),
        "{arns:?}"
    );
    assert!(
        stderr.matches("obtained credentials from STS").count() >= 3,
        "{stderr}"
    );
    let json_start = stderr.find("{\n").unwrap();
    let report: serde_json::Value = serde_json::from_str(stderr[json_start..].trim_end())
        .unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(report["verdict"], "passed");
    assert_eq!(
        report["served_role"],
        "arn:aws:iam::444455556666:role/target"
    );
    assert_eq!(report["principal_stable"], true);
    assert_eq!(report["served_principals"], serde_json::json!([arns[0]]));
}

/// docs/pod-identity.md: `dev --source pod-identity -- aws sts
/// get-caller-identity` runs the whole Pod Identity chain on one machine: the
/// emulator plays the agent, the proxy uses it, the CLI gets a Pod Identity
/// session (named `eks-<cluster>-<pod>-...`) through the proxy.
#[test]
fn dev_should_run_the_pod_identity_chain_for_the_aws_cli() {
    let (stdout, stderr) = pod_identity_caller(&[]);
    assert!(
        stdout.contains(":assumed-role/irsa-proxy-dev/eks-irsa-proxy-dev-"),
        "{stdout}"
    );
    assert!(
        stderr.contains("obtained credentials from the EKS Pod Identity agent"),
        "{stderr}"
    );
}

/// `dev --source pod-identity EXTRA... -- aws sts get-caller-identity`, which
/// must succeed and say it uses the agent: its stdout and stderr.
fn pod_identity_caller(extra: &[&str]) -> (String, String) {
    let home = tempfile::tempdir().unwrap();
    let out = clean_command(home.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // The lines checked are INFO, logged beside a command when asked.
        .args(["dev", "--source", "pod-identity", "--verbose"])
        .args(extra)
        .args(["--listen", "127.0.0.1:0", "--"])
        .args(["aws", "sts", "get-caller-identity"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "stdout:
{stdout}
stderr:
{stderr}"
    );
    assert!(
        stderr.contains("credential source: EKS Pod Identity agent"),
        "{stderr}"
    );
    (stdout, stderr)
}

/// Chaining on top of the Pod Identity source (issue 17): the agent's role is
/// the first, `AssumeRole` signed with its credentials the hop, and the CLI
/// sees only the last role, its session named from the Pod Identity token's
/// claims.
#[test]
fn dev_should_run_a_chain_on_the_pod_identity_source() {
    let (stdout, stderr) = pod_identity_caller(&[
        "--chain-role-arn",
        "arn:aws:iam::444455556666:role/target",
        "--session-name",
        "{namespace}.{pod}",
    ]);
    assert!(
        stdout.contains("arn:aws:sts::444455556666:assumed-role/target/default.app-"),
        "{stdout}"
    );
    // The log names the session name sent, rendered from the token's claims.
    let listening = stderr
        .lines()
        .find(|l| l.contains("listening on"))
        .unwrap_or_else(|| panic!("no listening line in {stderr}"));
    assert!(
        listening.contains("session_name=default.app-"),
        "{listening}"
    );
}

/// A session policy under dev: the proxy sends it, the emulator enforces it,
/// boto3's calls outside it are AccessDenied and the report lists them.
#[test]
fn dev_should_show_the_calls_a_session_policy_leaves_out() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inline = dir.path().join("inline.json");
    std::fs::write(
        &inline,
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::irsa-proxy-dev/*"}]}"#,
    )
    .unwrap();
    let guard = dir.path().join("guard.json");
    std::fs::write(
        &guard,
        r#"{"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::irsa-proxy-dev"},
            {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::irsa-proxy-dev/private/*"}]}"#,
    )
    .unwrap();
    let guard_arn = "arn:aws:iam::111122223333:policy/reports-guard";
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/session_policy_s3.py"
    );
    let out = clean_command(home.path())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--report",
            "json",
            "--session-policy-file",
            &inline.display().to_string(),
            "--session-policy-arn",
            guard_arn,
            "--managed-policy",
            &format!("{guard_arn}={}", guard.display()),
            "--",
            &python_with_boto3(),
            script,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("because no session policy allows the s3:PutObject action"),
        "{stdout}"
    );
    let json_start = stderr.find("{\n").expect("a JSON report");
    let report: serde_json::Value = serde_json::from_str(&stderr[json_start..]).unwrap();
    assert_eq!(report["verdict"], "passed");
    let denied: Vec<String> = report["denied_by_session_policy"]
        .as_array()
        .unwrap_or_else(|| panic!("no denials in {report}"))
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d["action"].as_str().unwrap(),
                d["resource"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "s3:PutObject arn:aws:s3:::other-team/k",
        "s3:DeleteObject arn:aws:s3:::irsa-proxy-dev/reports/q1.csv",
        "s3:PutObject arn:aws:s3:::irsa-proxy-dev/private/k",
    ] {
        assert!(denied.iter().any(|d| d == want), "{want} not in {denied:?}");
    }
    assert!(report["credential_sets"][0]["session_policy"]
        .as_str()
        .is_some_and(|p| p.contains(guard_arn)));

    // An ARN the emulator holds no document for is refused at start-up.
    let out = clean_command(home.path())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--session-policy-arn",
            guard_arn,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("--session-policy-arn: \"{guard_arn}\" names a managed policy the emulator does not hold; expected --managed-policy {guard_arn}=FILE too")),
        "{stderr}"
    );
}

/// The roles file of the several-roles tests: `app` (dev's role, IMDS's),
/// `copier` (a role of its own) and `reader` (dev's role narrowed by a session
/// policy to reading the dev bucket).
fn roles_file(dir: &std::path::Path) -> String {
    let path = dir.join("roles.json");
    std::fs::write(
        &path,
        r#"{"imds_role": "app",
            "roles": {
              "app": {},
              "copier": {"role_arn": "arn:aws:iam::111122223333:role/s3-copy"},
              "reader": {"session_policy": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::irsa-proxy-dev/*"}]}}}}"#,
    )
    .unwrap();
    path.display().to_string()
}

/// `dev --roles-file --run NAME=COMMAND`: each command gets its own role's
/// variables and so its own role; the one narrowed by a session policy is
/// denied what it leaves out; the report names every command and the denial.
#[test]
fn dev_should_run_a_command_per_role() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let roles = roles_file(dir.path());
    let python = python_with_boto3();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/roles_whoami.py");
    let out = clean_command(home.path())
        .args(["dev", "--listen", "127.0.0.1:0", "--report", "json"])
        .args(["--roles-file", &roles])
        .args(["--run", &format!("app={python} {script} app")])
        .args(["--run", &format!("copier={python} {script} copier")])
        .args(["--run", &format!("reader={python} {script} reader")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for want in [
        "app arn arn:aws:sts::111122223333:assumed-role/irsa-proxy-dev/",
        "copier arn arn:aws:sts::111122223333:assumed-role/s3-copy/",
        "reader arn arn:aws:sts::111122223333:assumed-role/irsa-proxy-dev/",
        "app put ok",
        "copier put ok",
        "reader put AccessDenied",
        "app imds enabled",
        "copier imds disabled",
        "reader imds disabled",
    ] {
        assert!(stdout.contains(want), "{want:?} not in:\n{stdout}");
    }
    let json_start = stderr.find("{\n").expect("a JSON report");
    let report: serde_json::Value = serde_json::from_str(&stderr[json_start..]).unwrap();
    assert_eq!(report["verdict"], "passed", "{report}");
    let commands: Vec<String> = report["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c["role"], c["ended"], c["exit_code"]))
        .collect();
    assert_eq!(
        commands,
        [
            "\"app\" \"exited\" 0",
            "\"copier\" \"exited\" 0",
            "\"reader\" \"exited\" 0"
        ]
    );
    let denial = &report["denied_by_session_policy"][0];
    assert_eq!(denial["action"], "s3:PutObject");
    assert_eq!(
        denial["resource"],
        "arn:aws:s3:::irsa-proxy-dev/from/reader"
    );
}

/// `dev --roles-file --as NAME -- COMMAND` gives the command that role; without
/// a command, every role's export lines are printed, one block each.
#[test]
fn dev_should_give_one_command_the_role_it_names() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let roles = roles_file(dir.path());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/roles_whoami.py");
    let out = clean_command(home.path())
        .args(["dev", "--listen", "127.0.0.1:0", "--roles-file", &roles])
        .args([
            "--as",
            "copier",
            "--",
            &python_with_boto3(),
            script,
            "copier",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("copier arn arn:aws:sts::111122223333:assumed-role/s3-copy/"),
        "{stdout}"
    );

    let out = clean_command(home.path())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--roles-file",
            &roles,
            "--for",
            "1s",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let mut tokens = Vec::new();
    for role in ["app", "copier", "reader"] {
        let block = stdout
            .split(&format!("# role {role}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no block for {role} in:\n{stdout}"));
        let file = block
            .lines()
            .find_map(|l| l.strip_prefix("export AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="))
            .unwrap();
        assert!(file.ends_with(&format!("/roles/{role}/token")), "{file}");
        tokens.push(
            block
                .lines()
                .find_map(|l| l.strip_prefix("export AWS_CONTAINER_AUTHORIZATION_TOKEN="))
                .unwrap()
                .to_string(),
        );
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "every role its own token");
}

#[test]
fn dev_role_flags_should_be_refused_one_line_each() {
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let roles = roles_file(dir.path());
    let run = |args: &[&str]| {
        let out = clean_command(home.path())
            .args(["dev", "--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--as", "app", "--run", "app=true"]);
    assert!(
        e.contains("--as: \"app\" needs several roles; expected --roles-file too"),
        "{e}"
    );
    assert!(e.contains("--run: \"app=true\" needs several roles"), "{e}");
    let e = run(&[
        "--roles-file",
        &roles,
        "--run",
        "nobody=true",
        "--run",
        "app",
    ]);
    assert!(
        e.contains("--run: \"nobody=true\" is not a role of --roles-file; expected one of app, copier, reader"),
        "{e}"
    );
    assert!(e.contains("--run: \"app\" is not NAME=COMMAND"), "{e}");
    let e = run(&["--roles-file", &roles, "--", "true"]);
    assert!(
        e.contains("--as is required; expected the role the command gets"),
        "{e}"
    );
    let e = run(&[
        "--roles-file",
        &roles,
        "--session-policy-arn",
        "arn:aws:iam::aws:policy/X",
    ]);
    assert!(e.contains("--session-policy-arn: \"arn:aws:iam::aws:policy/X\" is given together with --roles-file"), "{e}");
    // A role's session_policy_arns need their documents in the emulator.
    let with_arn = dir.path().join("with-arn.json");
    std::fs::write(
        &with_arn,
        r#"{"roles": {"app": {"session_policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}}}"#,
    )
    .unwrap();
    let e = run(&["--roles-file", &with_arn.display().to_string()]);
    assert!(
        e.contains("has roles.app.session_policy_arns \"arn:aws:iam::aws:policy/ReadOnlyAccess\", a managed policy the emulator does not hold; expected --managed-policy arn:aws:iam::aws:policy/ReadOnlyAccess=FILE too"),
        "{e}"
    );
}

/// Validates `xml` against tests/fixtures/junit/junit.xsd (Python's
/// xmlschema, from tests/requirements.txt); returns the suite's attributes and
/// each test case's name and outcome (`passed`, `failure`, `skipped`).
fn junit_suite(xml: &str) -> (serde_json::Value, Vec<(String, String)>) {
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/junit/junit.xsd"
    );
    let script = r#"
import json, sys, xmlschema
import xml.etree.ElementTree as ET
schema = xmlschema.XMLSchema(sys.argv[1])
doc = sys.stdin.read()
schema.validate(doc)
root = ET.fromstring(doc)
cases = []
for case in root.iter("testcase"):
    outcome = "passed"
    for child in case:
        if child.tag in ("failure", "error", "skipped"):
            outcome = child.tag
    cases.append([case.get("name"), outcome])
print(json.dumps({"suite": dict(root.attrib), "cases": cases}))
"#;
    let mut child = std::process::Command::new(python_with_boto3())
        .args(["-c", script, schema])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(xml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the JUnit report does not validate (pip install -r tests/requirements.txt for xmlschema):\n{}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cases = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap().to_string(),
                c[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (v["suite"].clone(), cases)
}

/// `dev ARGS -- sh -c SCRIPT` with `--report junit --report-file`: the output
/// and the JUnit document.
fn dev_junit(args: &[&str], script: &str) -> (std::process::Output, String) {
    let home = tempfile::tempdir().unwrap();
    let report = home.path().join("report.xml");
    let mut all = vec![
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--report",
        "junit",
        "--report-file",
        report.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    all.extend(["--", "sh", "-c", script]);
    let out = clean_command(home.path()).args(&all).output().unwrap();
    let xml = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, xml)
}

/// The README's first run lives a second: it passes, but says that it tested
/// no refresh and no rotation and which scenario would; dev's own log is quiet
/// (warnings only) beside a command, full with --verbose; and the verdict is a
/// JUnit suite the Jenkins schema accepts, one test case per check, the
/// untested ones skipped and a failed command a failure.
#[test]
fn a_one_second_run_should_say_what_it_did_not_test_quietly_and_as_junit() {
    let (out, xml) = dev_junit(&[], "exit 0");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("irsa-proxy dev report: PASSED (exit 0), but the app went through no credential refresh and no token rotation: --scenario hour-in-production tests them"),
        "{stderr}"
    );
    assert!(
        stderr.contains("availability:            the proxy had credentials to serve all along"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("INFO"),
        "dev logged INFO lines beside a command:\n{stderr}"
    );
    let (suite, cases) = junit_suite(&xml);
    assert_eq!(
        (
            &suite["tests"],
            &suite["failures"],
            &suite["errors"],
            &suite["skipped"]
        ),
        (
            &serde_json::json!("6"),
            &serde_json::json!("0"),
            &serde_json::json!("0"),
            &serde_json::json!("2")
        ),
        "{xml}"
    );
    let outcome = |name: &str| {
        cases
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, o)| o.as_str())
            .unwrap_or_else(|| panic!("no test case {name:?} in {xml}"))
    };
    assert_eq!(outcome("no expired credentials presented"), "passed");
    assert_eq!(outcome("credential refreshes lived through"), "skipped");
    assert_eq!(outcome("token rotations lived through"), "skipped");
    assert_eq!(outcome("time the proxy had nothing to serve"), "passed");
    assert_eq!(outcome("the command succeeded"), "passed");
    assert!(
        xml.contains("--scenario hour-in-production refreshes them"),
        "{xml}"
    );

    // A failing command: a failure in the suite, as in the exit code.
    let (out, xml) = dev_junit(&["--verbose"], "exit 7");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("INFO"),
        "--verbose logs everything: {stderr}"
    );
    assert!(stderr.contains("STS emulator listening"), "{stderr}");
    let (suite, cases) = junit_suite(&xml);
    assert_eq!(suite["failures"], "1", "{xml}");
    assert!(
        cases.contains(&("the command succeeded".into(), "failure".into())),
        "{xml}"
    );
    assert!(xml.contains("sh exited with 7"), "{xml}");
}

/// An STS outage longer than the cached credentials' slack: the proxy has
/// nothing to serve for a while, and the report says how long and how many
/// credential requests it answered 503, the same number the app counted.
/// Passing is still right: the app never presented expired credentials.
#[test]
fn the_report_should_show_the_time_the_proxy_had_nothing_to_serve() {
    // 10 s credentials, served until 7.5 s (a quarter as margin); STS is
    // down from 2 s to 10 s, and the proxy's back-off retries after it.
    let poller = r#"
import os, time, urllib.request, urllib.error
url = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
refused = 0
end = time.time() + 15
while time.time() < end:
    request = urllib.request.Request(url, headers={"Authorization": token})
    try:
        urllib.request.urlopen(request, timeout=5).read()
    except urllib.error.HTTPError as e:
        if e.code != 503:
            raise
        refused += 1
    time.sleep(0.2)
print("answered 503:", refused)
"#;
    let home = tempfile::tempdir().unwrap();
    let report = home.path().join("report.json");
    let out = clean_command(home.path())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--credential-ttl",
            "10s",
            "--sts-outage",
            "8s@2s",
            "--for",
            "40s",
            "--report",
            "json",
            "--report-file",
            report.to_str().unwrap(),
            "--",
            &python_with_boto3(),
            "-c",
            poller,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(0), "{why}");
    let seen: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("answered 503: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("the app printed no count: {why}"));
    assert!(seen > 0, "the outage never emptied the proxy: {why}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let unavailable = &json["proxy_unavailable"];
    assert_eq!(
        unavailable["requests_answered_503"], seen,
        "{why}\n{json:#}"
    );
    let seconds = unavailable["seconds"].as_f64().unwrap_or_default();
    assert!(seconds >= 1.0, "{why}\n{json:#}");
    assert!(unavailable["periods"].as_u64() >= Some(1), "{json:#}");
    assert_eq!(json["verdict"], "passed", "{json:#}");
    let check = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "proxy_unavailable")
        .cloned()
        .unwrap_or_default();
    assert_eq!(check["result"], "passed", "{json:#}");
    // The text on the terminal says it too, in the same words.
    let line = match seen {
        1 => "1 request answered 503".to_string(),
        n => format!("{n} requests answered 503"),
    };
    assert!(
        stderr.contains("availability:            proxy unavailable ") && stderr.contains(&line),
        "{why}"
    );
    assert_eq!(
        check["message"].as_str().map(|m| m.contains(&line)),
        Some(true),
        "{json:#}"
    );
}
