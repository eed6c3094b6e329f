//! `irsa-proxy dev` as a test bench (issue 13): real apps (boto3 and the AWS SDK
//! for JavaScript v3) under `dev -- CMD`, the verdict and its exit code, every
//! fault flag, the control endpoint and the signals. Each run is bounded by
//! `--for` or by the app's own loop, with 10-second credentials so that a few
//! tens of seconds hold several refreshes.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::clients::{clients_dir, python_with_boto3};
use common::proxy::clean_command;

fn node_with_sdk() -> &'static str {
    let sdk = clients_dir().join("node_modules/@aws-sdk/client-s3/package.json");
    assert!(
        sdk.is_file(),
        "the AWS SDK for JavaScript is not installed; run `npm ci --prefix tests/clients`"
    );
    "node"
}

/// Runs `dev ARGS` to the end with `--report json --report-file`; returns the
/// process output and the report.
fn dev(args: &[&str]) -> (Output, serde_json::Value) {
    let home = tempfile::tempdir().unwrap();
    let report = home.path().join("report.json");
    let mut all = vec![
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--report",
        "json",
        "--report-file",
        report.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = clean_command(home.path()).args(&all).output().unwrap();
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    (out, json)
}

fn describe(out: &Output, report: &serde_json::Value) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr (tail):\n{}\nreport:\n{report:#}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("-emulator: "))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn n(report: &serde_json::Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

fn assert_survived(out: &Output, report: &serde_json::Value) {
    let why = describe(out, report);
    assert_eq!(out.status.code(), Some(0), "{why}");
    assert_eq!(report["verdict"], "passed", "{why}");
    assert!(n(report, "/credential_refreshes") >= 2, "{why}");
    assert_eq!(n(report, "/signed_calls/expired"), 0, "{why}");
    assert!(n(report, "/signed_calls_by_service/s3") > 0, "{why}");
    assert!(n(report, "/signed_calls_by_service/sts") > 0, "{why}");
    // The text form went to standard error; no secret anywhere.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("irsa-proxy dev report: PASSED (exit 0)"),
        "{why}"
    );
}

#[test]
fn a_well_behaved_boto3_app_should_pass_with_refreshes() {
    let script = clients_dir().join("bench_app.py");
    let (out, report) = dev(&[
        "--credential-ttl",
        "10s",
        "--",
        &python_with_boto3(),
        script.to_str().unwrap(),
        "good",
        "25",
    ]);
    assert_survived(&out, &report);
    assert_eq!(report["command"]["ended"], "exited");
}

#[test]
fn a_well_behaved_js_v3_app_should_pass_with_refreshes() {
    let script = clients_dir().join("bench_app.mjs");
    let (out, report) = dev(&[
        "--credential-ttl",
        "10s",
        "--",
        node_with_sdk(),
        script.to_str().unwrap(),
        "25",
    ]);
    assert_survived(&out, &report);
}

#[test]
fn an_app_that_caches_credentials_once_should_fail_naming_the_expired_key() {
    let script = clients_dir().join("bench_app.py");
    let (out, report) = dev(&[
        "--credential-ttl",
        "10s",
        "--",
        &python_with_boto3(),
        script.to_str().unwrap(),
        "stale",
        "18",
    ]);
    let why = describe(&out, &report);
    // The app itself exits 0: it ignores its errors. The verdict does not.
    assert_eq!(out.status.code(), Some(3), "{why}");
    assert_eq!(report["verdict"], "expired_credentials", "{why}");
    assert_eq!(report["command"]["exit_code"], 0, "{why}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fetched = stdout
        .lines()
        .find_map(|l| l.strip_prefix("fetched "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{why}"));
    assert_eq!(
        report["expired_credentials"][0]["access_key_id"], fetched,
        "{why}"
    );
    assert!(n(&report, "/expired_credentials/0/calls") >= 1, "{why}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("EXPIRED: {fetched}"))
            && stderr.contains("FAILED: the app presented expired credentials (exit 3)"),
        "{why}"
    );
}

#[test]
fn the_well_behaved_app_should_survive_the_hour_in_production_scenario() {
    // T = 15s: token TTL 22.5s, STS failing 10%, an outage of 1.5s at 19.5s and
    // an expired token for 1.5s at 33s, for 45s; the app would loop longer and
    // is stopped by --for. (With T = 15s the proxy's cache covers 3.75s of
    // failed refreshes; shorter leaves a loaded machine little room.)
    let script = clients_dir().join("bench_app.py");
    let (out, report) = dev(&[
        "--scenario",
        "hour-in-production",
        "--credential-ttl",
        "15s",
        "--",
        &python_with_boto3(),
        script.to_str().unwrap(),
        "good",
        "120",
    ]);
    assert_survived(&out, &report);
    let why = describe(&out, &report);
    assert_eq!(report["command"]["ended"], "stopped_at_time_limit", "{why}");
    assert_eq!(report["faults"]["scenario"], "hour-in-production", "{why}");
    assert_eq!(report["faults"]["sts_fail_percent"], 10, "{why}");
    assert_eq!(
        report["faults"]["sts_outages"][0], "1s500ms@19s500ms",
        "{why}"
    );
    assert!(n(&report, "/expired_tokens_written") >= 1, "{why}");
    assert!(n(&report, "/token_rotations") >= 1, "{why}");
}

#[test]
fn sts_fail_100_percent_should_refuse_every_credential_request() {
    let (out, report) = dev(&["--sts-fail", "100%", "--for", "6s"]);
    let why = describe(&out, &report);
    assert_eq!(out.status.code(), Some(0), "{why}");
    assert_eq!(n(&report, "/credential_sets_issued"), 0, "{why}");
    assert!(n(&report, "/sts_refusals/ServiceUnavailable") >= 1, "{why}");
}

#[test]
fn an_sts_outage_should_refuse_the_refresh_inside_it_and_recover_after() {
    // 10s credentials, first at 0s, refreshed with about 5s left: inside 3s..9s;
    // the proxy's back-off (1s, 2s, 4s) gets the next set after it.
    let (out, report) = dev(&[
        "--credential-ttl",
        "10s",
        "--sts-outage",
        "6s@3s",
        "--for",
        "20s",
    ]);
    let why = describe(&out, &report);
    assert!(n(&report, "/sts_refusals/ServiceUnavailable") >= 1, "{why}");
    assert!(n(&report, "/credential_sets_issued") >= 2, "{why}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("injected STS outage"), "{why}");
}

#[test]
fn an_expired_token_should_be_refused_by_sts_until_a_fresh_one_is_written() {
    let (out, report) = dev(&[
        "--credential-ttl",
        "10s",
        "--expired-token",
        "6s@3s",
        "--for",
        "16s",
    ]);
    let why = describe(&out, &report);
    assert!(
        n(&report, "/sts_refusals/ExpiredTokenException") >= 1,
        "{why}"
    );
    assert_eq!(n(&report, "/expired_tokens_written"), 1, "{why}");
    // The fresh token at the window's end lets the proxy refresh again.
    assert!(n(&report, "/token_rotations") >= 1, "{why}");
    assert!(n(&report, "/credential_sets_issued") >= 2, "{why}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("wrote an EXPIRED web-identity token"),
        "{why}"
    );
}

#[test]
fn bad_fault_flags_should_be_one_line_each_and_exit_2() {
    let home = tempfile::tempdir().unwrap();
    let out = clean_command(home.path())
        .args([
            "dev",
            "--sts-fail",
            "120%",
            "--sts-outage",
            "30s",
            "--scenario",
            "monday",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines
        .iter()
        .any(|l| l.contains("--sts-fail: \"120%\" is not a percentage")));
    assert!(lines
        .iter()
        .any(|l| l.contains("--sts-outage: \"30s\" is not a window")));
    assert!(lines
        .iter()
        .any(|l| l.contains("--scenario: \"monday\" is not a scenario")));
}

// ---------------------------------------------------------------------------
// Interactive: the control endpoint, the signals, early expiry.

async fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let addr: std::net::SocketAddr = addr.trim_start_matches("http://").parse().unwrap();
    let reply = common::request(addr, method, path, headers).await;
    (reply.status, reply.body)
}

fn signal(pid: u32, sig: &str) {
    assert!(std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// Polls `GET /report` until `ok` holds (at most 20 s).
async fn report_until(control: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let (status, body) = http(control, "GET", "/report", &[]).await;
        assert_eq!(status, 200, "{body}");
        let report: serde_json::Value = serde_json::from_str(&body).unwrap();
        if ok(&report) {
            return report;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{report:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `GetCallerIdentity` signed by boto3 with these credentials: `accepted`, or
/// the error code.
async fn caller_identity(creds: &serde_json::Value, endpoint: &str, home: &Path) -> String {
    let out = tokio::process::Command::new(python_with_boto3())
        .args([
            "-c",
            "import boto3, os, sys\n\
             s = boto3.session.Session(aws_access_key_id=sys.argv[1], aws_secret_access_key=sys.argv[2], aws_session_token=sys.argv[3], region_name='us-east-1')\n\
             try:\n  s.client('sts', endpoint_url=sys.argv[4]).get_caller_identity()\n  print('accepted')\n\
             except Exception as e:\n  print(e.response['Error']['Code'])",
            creds["AccessKeyId"].as_str().unwrap_or_default(),
            creds["SecretAccessKey"].as_str().unwrap_or_default(),
            creds["Token"].as_str().unwrap_or_default(),
            endpoint,
        ])
        .env_clear()
        .env("HOME", home)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn the_control_endpoint_and_signals_should_rotate_and_expire_on_demand() {
    let home = tempfile::tempdir().unwrap();
    let report_file = home.path().join("report.json");
    let stderr_file = std::fs::File::create(home.path().join("stderr")).unwrap();
    let mut child = clean_command(home.path())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--credential-ttl",
            "40s",
            "--early-expiry",
            "100%",
            "--report",
            "json",
            "--report-file",
            report_file.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(stderr_file)
        .spawn()
        .unwrap();
    let mut exports = HashMap::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while !exports.contains_key("AWS_DEFAULT_REGION") {
        let line = lines.next().expect("dev ended early").unwrap();
        if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
            exports.insert(k.to_string(), v.to_string());
        }
    }
    let control = exports["IRSA_PROXY_DEV_CONTROL_URL"].clone();
    let proxy = exports["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        .trim_end_matches("/v1/credentials")
        .to_string();
    let token =
        std::fs::read_to_string(&exports["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"]).unwrap();

    // --early-expiry 100%: the set lives 1/4 to 1/2 of the 40s asked.
    let (status, body) = http(
        &proxy,
        "GET",
        "/v1/credentials",
        &[("Authorization", &token)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let creds: serde_json::Value = serde_json::from_str(&body).unwrap();
    let expiration = humantime::parse_rfc3339(creds["Expiration"].as_str().unwrap()).unwrap();
    let left = expiration
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    assert!(left <= Duration::from_secs(21), "{left:?} left: {body}");

    // Rotations: one through the endpoint, one through SIGUSR1.
    let (status, body) = http(&control, "POST", "/rotate-token", &[]).await;
    assert_eq!((status, body.as_str()), (200, r#"{"rotating":true}"#));
    report_until(&control, |r| n(r, "/token_rotations") >= 1).await;
    signal(child.id(), "-USR1");
    report_until(&control, |r| n(r, "/token_rotations") >= 2).await;

    // Expiry now: through the endpoint, then SIGUSR2.
    let (status, body) = http(&control, "POST", "/expire-credentials", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with(r#"{"expired_sets":"#), "{body}");
    signal(child.id(), "-USR2");
    report_until(&control, |r| n(r, "/faults/expiries_on_demand") == 2).await;
    // A call with the set fetched before is refused ExpiredToken, and counted
    // as revoked (not the app's fault), not as expired.
    assert_eq!(
        caller_identity(&creds, &exports["AWS_ENDPOINT_URL_STS"], home.path()).await,
        "ExpiredToken"
    );
    let r = report_until(&control, |r| n(r, "/signed_calls/revoked") == 1).await;
    assert_eq!(n(&r, "/signed_calls/expired"), 0, "{r:#}");
    // And the proxy fetched a fresh set at once (well before its own refresh,
    // 5 to 10 s into a set's life here): what it serves now is accepted.
    let mut fresh = serde_json::Value::Null;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let (status, body) = http(
            &proxy,
            "GET",
            "/v1/credentials",
            &[("Authorization", &token)],
        )
        .await;
        if status == 200 {
            fresh = serde_json::from_str(&body).unwrap();
            if caller_identity(&fresh, &exports["AWS_ENDPOINT_URL_STS"], home.path()).await
                == "accepted"
            {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ne!(fresh["AccessKeyId"], creds["AccessKeyId"], "{fresh}");
    assert_eq!(
        caller_identity(&fresh, &exports["AWS_ENDPOINT_URL_STS"], home.path()).await,
        "accepted"
    );
    assert_eq!(
        n(
            &report_until(&control, |_| true).await,
            "/faults/rotations_on_demand"
        ),
        2
    );
    let (status, _) = http(&control, "GET", "/rotate-token", &[]).await;
    assert_eq!(status, 405);
    let (status, _) = http(&control, "GET", "/nope", &[]).await;
    assert_eq!(status, 404);

    // Without a command, SIGTERM ends the run with the verdict.
    signal(child.id(), "-TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    assert_eq!(report["verdict"], "passed", "{report:#}");
    assert_eq!(report["faults"]["early_expiry_percent"], 100, "{report:#}");
    // Neither the secret nor the session token reaches the report or the log.
    let stderr = std::fs::read_to_string(home.path().join("stderr")).unwrap();
    let report = report.to_string();
    for secret in [&creds["SecretAccessKey"], &creds["Token"]] {
        let secret = secret.as_str().unwrap();
        assert!(!stderr.contains(secret) && !report.contains(secret));
    }
    assert!(stderr.contains(creds["AccessKeyId"].as_str().unwrap()));
}

#[test]
fn the_s3_emulation_should_answer_boto3_as_s3_does() {
    // Put/Get/Head/Delete, CreateBucket, a presigned PUT, and S3's errors:
    // NoSuchKey, NoSuchBucket, EntityTooLarge, NotImplemented,
    // InvalidAccessKeyId, SignatureDoesNotMatch (tests/clients/s3_errors.py).
    let script = clients_dir().join("s3_errors.py");
    let (out, report) = dev(&["--", &python_with_boto3(), script.to_str().unwrap()]);
    let why = describe(&out, &report);
    assert_eq!(out.status.code(), Some(0), "{why}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("FAILED"),
        "{why}"
    );
    assert_eq!(n(&report, "/signed_calls/never_issued"), 1, "{why}");
    assert_eq!(
        n(&report, "/never_issued_keys/ASIANEVERISSUED0000"),
        1,
        "{why}"
    );
    assert_eq!(n(&report, "/signed_calls/rejected"), 1, "{why}");
}

/// `dev --sts-tls`: the emulator over HTTPS with a CA made for the run; the
/// proxy trusts it, boto3 trusts it through AWS_CA_BUNDLE and the JavaScript
/// SDK through NODE_EXTRA_CA_CERTS (issue 12: the whole chain with TLS).
#[test]
fn sts_tls_should_run_the_whole_chain_over_https() {
    let home = tempfile::tempdir().unwrap();
    let out = clean_command(home.path())
        .args(["dev", "--listen", "127.0.0.1:0", "--sts-tls", "--", "sh", "-c"])
        .arg("echo $AWS_ENDPOINT_URL_STS $AWS_ENDPOINT_URL_S3; test -s \"$AWS_CA_BUNDLE\" && test \"$AWS_CA_BUNDLE\" = \"$NODE_EXTRA_CA_CERTS\"")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("https://127.0.0.1:"), "{stdout}");

    for argv in [
        vec![
            python_with_boto3(),
            clients_dir().join("bench_app.py").display().to_string(),
            "good".into(),
            "4".into(),
        ],
        vec![
            node_with_sdk().to_string(),
            clients_dir().join("bench_app.mjs").display().to_string(),
            "4".into(),
        ],
    ] {
        let mut args = vec!["--sts-tls", "--credential-ttl", "10s", "--"];
        args.extend(argv.iter().map(String::as_str));
        let (out, report) = dev(&args);
        let why = describe(&out, &report);
        assert_eq!(out.status.code(), Some(0), "{why}");
        assert_eq!(report["verdict"], "passed", "{why}");
        assert!(n(&report, "/signed_calls_by_service/s3") > 0, "{why}");
        assert!(n(&report, "/signed_calls_by_service/sts") > 0, "{why}");
    }
}
