//! Start-up validation: every bad value is refused with one line naming the flag,
//! the value and what is allowed, exit code 2, within a second, before anything is
//! bound or called.

mod common;

use std::net::TcpListener;
use std::process::Output;
use std::time::{Duration, Instant};

use common::proxy::clean_command;

/// Runs the binary; a process still running after 10 s (a configuration that was
/// wrongly accepted) is killed and fails the test instead of hanging it.
fn run(args: &[&str], env: &[(&str, &str)]) -> (Output, Duration) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = clean_command(home.path());
    cmd.args(args)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let t = Instant::now();
    let mut child = cmd.spawn().unwrap();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{args:?} still running after 10 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (out, t.elapsed())
}

fn token_file() -> (tempfile::TempDir, String) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("token");
    std::fs::write(&p, common::jwt("system:serviceaccount:a:b", 3600, "x")).unwrap();
    let s = p.display().to_string();
    (d, s)
}

/// Runs `serve` with a valid base plus `extra`, expects exit 2 and `needle` in
/// the error output.
fn refused(extra: &[&str], env: &[(&str, &str)], needle: &str) {
    let (_d, token) = token_file();
    // A free port: if anything were bound before validation, the test would see it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["serve", "--sts-endpoint", "http://127.0.0.1:1"];
    if !env.iter().any(|(k, _)| *k == "IRSA_PROXY_LISTEN") {
        args.extend(["--listen", &listen]);
    }
    if !extra.contains(&"--role-arn") && !env.iter().any(|(k, _)| *k == "AWS_ROLE_ARN") {
        args.extend(["--role-arn", "arn:aws:iam::123456789012:role/app"]);
    }
    if !extra.contains(&"--token-file") {
        args.extend(["--token-file", &token]);
    }
    args.extend(extra);
    let (out, took) = run(&args, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "args {extra:?}: {stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in:\n{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    for line in stderr.lines() {
        assert!(
            line.starts_with("irsa-proxy: error: "),
            "unexpected line {line:?}"
        );
    }
}

#[test]
fn missing_role_arn_should_be_refused() {
    refused(
        &[],
        &[("AWS_ROLE_ARN", "")],
        "--role-arn (AWS_ROLE_ARN) is required",
    );
}

#[test]
fn malformed_role_arn_should_be_refused() {
    refused(
        &["--role-arn", "arn:aws:iam::123:role/app"],
        &[],
        "--role-arn: \"arn:aws:iam::123:role/app\" is not a role ARN",
    );
    refused(
        &[],
        &[("AWS_ROLE_ARN", "my-role")],
        "--role-arn (AWS_ROLE_ARN): \"my-role\" is not a role ARN",
    );
}

#[test]
fn duration_outside_15m_to_12h_should_be_refused() {
    refused(
        &["--duration", "10m"],
        &[],
        "--duration: \"10m\" is out of range; expected 15m to 12h",
    );
    refused(&["--duration", "13h"], &[], "expected 15m to 12h");
    refused(
        &["--duration", "soon"],
        &[],
        "--duration: \"soon\" is not a duration",
    );
    refused(
        &[],
        &[("IRSA_PROXY_DURATION", "1d")],
        "--duration (IRSA_PROXY_DURATION)",
    );
}

#[test]
fn a_bad_token_value_should_be_refused_without_showing_it() {
    refused(
        &[],
        &[("IRSA_PROXY_AUTH_TOKEN", "short-SECRET")],
        "IRSA_PROXY_AUTH_TOKEN: a value of 12 characters is not allowed",
    );
    let (out, _) = run(&["serve"], &[("IRSA_PROXY_AUTH_TOKEN", "short-SECRET")]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("SECRET"));
}

#[test]
fn imds_v1_should_take_three_values_and_not_contradict_require_token() {
    refused(
        &["--imds-v1", "sometimes"],
        &[],
        "--imds-v1: \"sometimes\" is not allowed; expected never, link-local or always",
    );
    refused(
        &["--imds-v1", "always", "--imds-require-token"],
        &[],
        "--imds-v1: \"always\" contradicts --imds-require-token",
    );
    refused(
        &[],
        &[("IRSA_PROXY_IMDS_V1", "yes")],
        "--imds-v1 (IRSA_PROXY_IMDS_V1)",
    );
}

#[test]
fn link_local_credential_addresses_should_not_count_as_non_loopback() {
    // Accepted by validation; refused at start-up because 169.254.170.2 is not
    // on this namespace's lo (the test never adds it here).
    refused(
        &["--listen", "169.254.170.2:80"],
        &[],
        "--listen: 169.254.170.2:80: 169.254.170.2 is not on this network namespace's loopback interface",
    );
    refused(
        &["--listen", "169.254.1.1:80"],
        &[],
        "is not a loopback address",
    );
}

#[test]
fn non_loopback_listen_should_need_the_flag() {
    refused(
        &["--listen", "0.0.0.0:9911"],
        &[],
        "is not a loopback address",
    );
    refused(
        &[],
        &[("IRSA_PROXY_LISTEN", "10.1.2.3:80")],
        "IRSA_PROXY_LISTEN",
    );
}

#[test]
fn unreadable_token_directory_should_be_refused() {
    refused(
        &["--token-file", "/nonexistent/dir/token"],
        &[],
        "--token-file: \"/nonexistent/dir/token\" is in a directory that cannot be read (/nonexistent/dir",
    );
}

#[test]
fn bad_log_format_and_booleans_should_be_refused() {
    refused(
        &["--log-format", "xml"],
        &[],
        "--log-format: \"xml\" is not a format; expected text or json",
    );
    refused(
        &[],
        &[("IRSA_PROXY_IMDS", "maybe")],
        "IRSA_PROXY_IMDS: \"maybe\" is not a boolean",
    );
}

#[test]
fn unknown_flags_should_exit_2() {
    let (out, _) = run(&["serve", "--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_error_should_be_reported_at_once() {
    let (out, _) = run(
        &[
            "serve",
            "--role-arn",
            "nope",
            "--duration",
            "1m",
            "--listen",
            "1.2.3.4:1",
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    for needle in ["--role-arn", "--token-file", "--duration", "--listen"] {
        assert!(stderr.contains(needle), "{needle} missing in {stderr}");
    }
}

#[test]
fn help_should_document_every_serve_flag_and_its_variable() {
    let (out, _) = run(&["serve", "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "--role-arn",
        "AWS_ROLE_ARN",
        "--token-file",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "--session-name",
        "AWS_ROLE_SESSION_NAME",
        "--region",
        "AWS_DEFAULT_REGION",
        "--sts-endpoint",
        "AWS_ENDPOINT_URL_STS",
        "--listen",
        "IRSA_PROXY_LISTEN",
        "--allow-non-loopback",
        "--duration",
        "IRSA_PROXY_DURATION",
        "--refresh-before",
        "IRSA_PROXY_REFRESH_BEFORE",
        "--auth-token-file",
        "IRSA_PROXY_AUTH_TOKEN_FILE",
        "--imds",
        "--no-imds",
        "IRSA_PROXY_IMDS",
        "--imds-require-token",
        "IRSA_PROXY_IMDS_REQUIRE_TOKEN",
        "--log-format",
        "IRSA_PROXY_LOG_FORMAT",
        "--shutdown-delay",
        "IRSA_PROXY_SHUTDOWN_DELAY",
        "--header-timeout",
        "IRSA_PROXY_HEADER_TIMEOUT",
        "--max-connections",
        "IRSA_PROXY_MAX_CONNECTIONS",
    ] {
        assert!(help.contains(needle), "{needle} missing from serve --help");
    }
}

/// Issue 10: "keeping the cached credentials" was logged when nothing was cached.
#[test]
fn an_unreadable_token_at_start_should_not_claim_to_keep_cached_credentials() {
    // An empty token file: refused by the token reader before any STS call.
    let dir = common::TokenDir::new("");
    let mut p = common::ProxyBuilder::serve(&dir.path(), "http://127.0.0.1:1").start();
    let started = Instant::now();
    while !p.logs().contains("cannot read the web-identity token") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no token error logged:\n{}",
            p.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let logs = p.logs();
    assert!(logs.contains("no valid credentials are cached"), "{logs}");
    assert!(!logs.contains("keeping the cached credentials"), "{logs}");
    p.sigterm();
    p.wait_exit(Duration::from_secs(10));
}
