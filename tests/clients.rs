//! Real AWS SDK clients against the proxy: boto3, the AWS SDK for JavaScript v3
//! and `aws-config` for Rust each resolve credentials through the container
//! endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI` +
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`) and through IMDSv2
//! (`AWS_EC2_METADATA_SERVICE_ENDPOINT`), and must end up with exactly the access
//! key id the proxy is serving. When STS refuses the role, each client must report
//! an error within a few seconds.
//!
//! Every client runs as a child process with a cleared environment: PATH, a
//! temporary HOME (no `~/.aws`) and only the variables under test. The Rust
//! clients are this test binary run again with one test selected and
//! [`RUST_CLIENT`] set, because `aws-config` reads its environment from the
//! process (`ProviderConfig::with_env` is crate-private) and tests must not call
//! `std::env::set_var`.
//!
//! Every proxy here is started with `--auth-token-file` and
//! `--imds-require-token`, so a client that skipped the `Authorization` header or
//! fell back to IMDSv1 would fail.
//!
//! Prerequisites (the tests fail, never skip, without them):
//! `pip install boto3` and `npm ci --prefix tests/clients`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::clients::{clients_dir, python_with_boto3};
use common::fake_sts::Failure;
use common::{jwt, request, FakeSts, ProxyBuilder, ProxyProcess, TokenDir};

/// Set in a re-executed copy of this test binary to make it a Rust SDK client:
/// `ecs` or `imds`.
const RUST_CLIENT: &str = "IRSA_PROXY_TEST_RUST_CLIENT";
/// Line prefixes the Rust child prints, so they can be found among libtest's own.
const KEY_LINE: &str = "client-access-key-id=";
const EXPIRY_LINE: &str = "client-expiry-unix=";

/// How long any client may take, success or failure.
const CLIENT_DEADLINE: Duration = Duration::from_secs(30);
/// How long a client may take to report the proxy's 503 as an error.
const ERROR_DEADLINE: Duration = Duration::from_secs(12);

// ---------------------------------------------------------------------------
// The proxy and what it serves

/// A proxy in front of a fake STS, with an auth token file and IMDSv2 required.
struct Fixture {
    sts: FakeSts,
    proxy: ProxyProcess,
    auth_file: PathBuf,
    /// The clients' HOME: empty, so there is no `~/.aws`.
    home: tempfile::TempDir,
    _token_dir: TokenDir,
    _auth_dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        Fixture::start_with(None).await
    }

    /// With `failure`, STS answers every call with it.
    async fn start_with(failure: Option<Failure>) -> Fixture {
        let sts = FakeSts::start().await;
        sts.script().fail_all = failure;
        let token_dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "c"));
        let auth_dir = tempfile::tempdir().unwrap();
        let auth_file = auth_dir.path().join("auth-token");
        let proxy = ProxyBuilder::serve(&token_dir.path(), &sts.url())
            .set("--auth-token-file", auth_file.to_str().unwrap())
            .arg("--imds-require-token")
            .start();
        Fixture {
            sts,
            proxy,
            auth_file,
            home: tempfile::tempdir().unwrap(),
            _token_dir: token_dir,
            _auth_dir: auth_dir,
        }
    }

    /// The access key id the proxy serves right now, read directly.
    async fn served_key_id(&self) -> String {
        let token = std::fs::read_to_string(&self.auth_file).unwrap();
        let r = self.proxy.ecs(Some(&token)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let id = r.json()["AccessKeyId"].as_str().unwrap().to_string();
        assert!(id.starts_with("ASIA"), "{id}");
        id
    }

    /// Waits until STS has refused the first call and checks that the proxy now
    /// answers 503 at once on both endpoints.
    async fn expect_refusing(&self) {
        let refused = common::eventually(Duration::from_secs(10), || async {
            self.sts.call_count() > 0
        })
        .await;
        assert!(refused, "the proxy never called STS");
        let token = std::fs::read_to_string(&self.auth_file).unwrap();
        let started = Instant::now();
        let r = self.proxy.ecs(Some(&token)).await;
        assert_eq!(r.status, 503, "{}", r.body);
        assert!(started.elapsed() < Duration::from_secs(1));
        let r = request(
            self.proxy.addr,
            "PUT",
            "/latest/api/token",
            &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let t = r.body.clone();
        let r = request(
            self.proxy.addr,
            "GET",
            "/latest/meta-data/iam/security-credentials/test-role",
            &[("X-aws-ec2-metadata-token", t.as_str())],
        )
        .await;
        assert_eq!(r.status, 503, "{}", r.body);
    }

    /// The variables of an ECS task: the full URI and the token file.
    fn container_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://{}/v1/credentials", self.proxy.addr),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                self.auth_file.display().to_string(),
            ),
        ]
    }

    /// The variable that points an SDK's IMDS client at the proxy.
    fn imds_env(&self) -> Vec<(&'static str, String)> {
        vec![(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{}", self.proxy.addr),
        )]
    }

    /// A command with a cleared environment: PATH, the empty HOME and `vars`.
    fn client(&self, program: &Path, vars: &[(&str, String)]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }
}

/// Runs a client to completion, failing the test if it takes longer than
/// `deadline`. Returns its output and how long it took.
async fn run(mut cmd: tokio::process::Command, deadline: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let out = tokio::time::timeout(deadline, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("client still running after {deadline:?}: {cmd:?}"))
        .expect("start client");
    (out, started.elapsed())
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------
// The clients

fn boto3(f: &Fixture, vars: &[(&str, String)]) -> tokio::process::Command {
    let mut c = f.client(Path::new(&python_with_boto3()), vars);
    c.arg(clients_dir().join("boto3_credentials.py"));
    c
}

/// `node tests/clients/js_credentials.mjs <mode>`.
fn node(f: &Fixture, mode: &str, vars: &[(&str, String)]) -> tokio::process::Command {
    let dir = clients_dir();
    let sdk = dir.join("node_modules/@aws-sdk/credential-providers/package.json");
    assert!(
        sdk.is_file(),
        "the AWS SDK for JavaScript is not installed in {}; run `npm ci --prefix tests/clients`",
        dir.display()
    );
    let version = std::process::Command::new("node").arg("--version").output();
    assert!(
        matches!(&version, Ok(o) if o.status.success()),
        "node not found on PATH; install Node.js 20 or later, then `npm ci --prefix tests/clients`"
    );
    let mut c = f.client(Path::new("node"), vars);
    c.arg(dir.join("js_credentials.mjs")).arg(mode);
    c
}

/// This test binary, run again with only `test` selected, as a Rust SDK client.
fn rust(f: &Fixture, test: &str, mode: &str, vars: &[(&str, String)]) -> tokio::process::Command {
    let exe = std::env::current_exe().unwrap();
    let mut c = f.client(&exe, vars);
    c.env(RUST_CLIENT, mode)
        .args(["--exact", test, "--nocapture", "--test-threads=1"]);
    c
}

/// The body of a Rust test when it runs as a client: resolves credentials with
/// `aws-config` from the process environment and prints the key id and expiry.
/// Returns false when this process is not a client.
async fn rust_client() -> bool {
    use aws_config::ecs::EcsCredentialsProvider;
    use aws_config::imds::credentials::ImdsCredentialsProvider;
    use aws_credential_types::provider::ProvideCredentials;

    let Ok(mode) = std::env::var(RUST_CLIENT) else {
        return false;
    };
    let result = match mode.as_str() {
        "ecs" => {
            EcsCredentialsProvider::builder()
                .build()
                .provide_credentials()
                .await
        }
        "imds" => {
            let endpoint = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap();
            let client = aws_config::imds::Client::builder()
                .endpoint(endpoint)
                .unwrap()
                .build();
            ImdsCredentialsProvider::builder()
                .imds_client(client)
                .build()
                .provide_credentials()
                .await
        }
        other => panic!("unknown {RUST_CLIENT}={other}"),
    };
    match result {
        Ok(c) => {
            println!("{KEY_LINE}{}", c.access_key_id());
            let expiry = c.expiry().expect("temporary credentials have an expiry");
            let expiry = expiry.duration_since(UNIX_EPOCH).unwrap().as_secs();
            println!("{EXPIRY_LINE}{expiry}");
        }
        // `CredentialsError`'s Display carries no credential material.
        Err(e) => {
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain.push_str(&format!(": {s}"));
                source = s.source();
            }
            panic!("aws-config {mode} provider failed: {chain}");
        }
    }
    true
}

/// The key id and expiry a Rust child printed.
fn rust_output(out: &Output) -> (String, u64) {
    let lines = stdout_lines(out);
    let find = |prefix: &str| {
        lines
            .iter()
            // libtest prints "test <name> ... " on the same line.
            .find_map(|l| l.split_once(prefix))
            .map(|(_, value)| value.to_string())
            .unwrap_or_else(|| panic!("no {prefix} line\n{}", describe(out)))
    };
    let key = find(KEY_LINE);
    let expiry = find(EXPIRY_LINE).parse().unwrap();
    (key, expiry)
}

/// A successful client's output: the key id on the first line of stdout.
fn first_line(out: &Output) -> (String, Vec<String>) {
    assert!(out.status.success(), "client failed\n{}", describe(out));
    let lines = stdout_lines(out);
    let key = lines.first().cloned().unwrap_or_default();
    (key, lines)
}

/// A failed client: non-zero exit within `ERROR_DEADLINE`, saying `reason`.
fn assert_failed(out: &Output, took: Duration, reason: &str) {
    assert!(!out.status.success(), "client succeeded\n{}", describe(out));
    assert!(took < ERROR_DEADLINE, "took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("ASIA"), "{stdout}");
    assert!(
        describe(out).contains(reason),
        "{reason:?} not reported\n{}",
        describe(out)
    );
}

fn refused() -> Option<Failure> {
    Some(Failure::new(
        403,
        "AccessDenied",
        "Not authorized to perform sts:AssumeRoleWithWebIdentity",
    ))
}

// ---------------------------------------------------------------------------
// boto3

#[tokio::test]
async fn boto3_container_provider_should_get_the_served_key_id() {
    let f = Fixture::start().await;
    let served = f.served_key_id().await;
    let (out, _) = run(boto3(&f, &f.container_env()), CLIENT_DEADLINE).await;
    let (key, lines) = first_line(&out);
    assert_eq!(key, served, "{}", describe(&out));
    assert_eq!(lines.get(1).map(String::as_str), Some("container-role"));
}

#[tokio::test]
async fn boto3_imds_provider_should_get_the_served_key_id_over_imdsv2() {
    let f = Fixture::start().await;
    let served = f.served_key_id().await;
    let (out, _) = run(boto3(&f, &f.imds_env()), CLIENT_DEADLINE).await;
    let (key, lines) = first_line(&out);
    assert_eq!(key, served, "{}", describe(&out));
    assert_eq!(lines.get(1).map(String::as_str), Some("iam-role"));
}

#[tokio::test]
async fn boto3_container_provider_should_fail_fast_when_the_proxy_answers_503() {
    let f = Fixture::start_with(refused()).await;
    f.expect_refusing().await;
    let (out, took) = run(boto3(&f, &f.container_env()), ERROR_DEADLINE).await;
    assert_failed(&out, took, "Received non 200 response 503");
}

#[tokio::test]
async fn boto3_imds_provider_should_fail_fast_when_the_proxy_answers_503() {
    let f = Fixture::start_with(refused()).await;
    f.expect_refusing().await;
    let (out, took) = run(boto3(&f, &f.imds_env()), ERROR_DEADLINE).await;
    // botocore logs IMDS errors at debug level and moves on to the next provider.
    assert_failed(&out, took, "boto3 resolved no credentials");
}

// ---------------------------------------------------------------------------
// AWS SDK for JavaScript v3

#[tokio::test]
async fn js_node_provider_chain_should_get_the_served_key_id() {
    let f = Fixture::start().await;
    let served = f.served_key_id().await;
    let (out, _) = run(node(&f, "chain", &f.container_env()), CLIENT_DEADLINE).await;
    let (key, lines) = first_line(&out);
    assert_eq!(key, served, "{}", describe(&out));
    let expiry: u64 = lines[1].parse().unwrap();
    assert!(expiry > unix_now() + 60, "{expiry}");
}

#[tokio::test]
async fn js_instance_metadata_provider_should_get_the_served_key_id() {
    let f = Fixture::start().await;
    let served = f.served_key_id().await;
    let (out, _) = run(node(&f, "imds", &f.imds_env()), CLIENT_DEADLINE).await;
    let (key, lines) = first_line(&out);
    assert_eq!(key, served, "{}", describe(&out));
    let expiry: u64 = lines[1].parse().unwrap();
    assert!(expiry > unix_now() + 60, "{expiry}");
}

#[tokio::test]
async fn js_node_provider_chain_should_fail_fast_when_the_proxy_answers_503() {
    let f = Fixture::start_with(refused()).await;
    f.expect_refusing().await;
    let (out, took) = run(node(&f, "chain", &f.container_env()), ERROR_DEADLINE).await;
    assert_failed(&out, took, "Could not load credentials from any providers");
}

#[tokio::test]
async fn js_instance_metadata_provider_should_fail_fast_when_the_proxy_answers_503() {
    let f = Fixture::start_with(refused()).await;
    f.expect_refusing().await;
    let (out, took) = run(node(&f, "imds", &f.imds_env()), ERROR_DEADLINE).await;
    assert_failed(
        &out,
        took,
        "Error response received from instance metadata service",
    );
}

// ---------------------------------------------------------------------------
// aws-config for Rust

/// The ECS provider's environment, or the IMDS client's.
fn rust_env(f: &Fixture, mode: &str) -> Vec<(&'static str, String)> {
    match mode {
        "ecs" => f.container_env(),
        _ => f.imds_env(),
    }
}

/// `test` run again as a client, `aws-config`'s `mode` provider (ecs, imds):
/// it must get the served key id, with time left.
async fn rust_should_get_the_served_key_id(test: &str, mode: &str) {
    let f = Fixture::start().await;
    let served = f.served_key_id().await;
    let (out, _) = run(rust(&f, test, mode, &rust_env(&f, mode)), CLIENT_DEADLINE).await;
    assert!(out.status.success(), "{}", describe(&out));
    let (key, expiry) = rust_output(&out);
    assert_eq!(key, served);
    assert!(expiry > unix_now() + 60, "{expiry}");
}

/// `test` run again as a client against a proxy that answers 503: the `mode`
/// provider must fail fast, naming the status as `says`.
async fn rust_should_fail_fast_on_503(test: &str, mode: &str, says: &str) {
    let f = Fixture::start_with(refused()).await;
    f.expect_refusing().await;
    let (out, took) = run(rust(&f, test, mode, &rust_env(&f, mode)), ERROR_DEADLINE).await;
    assert_failed(&out, took, &format!("aws-config {mode} provider failed"));
    assert!(describe(&out).contains(says), "{}", describe(&out));
}

#[tokio::test]
async fn rust_ecs_provider_should_get_the_served_key_id() {
    if rust_client().await {
        return;
    }
    rust_should_get_the_served_key_id("rust_ecs_provider_should_get_the_served_key_id", "ecs")
        .await;
}

#[tokio::test]
async fn rust_imds_provider_should_get_the_served_key_id_over_imdsv2() {
    if rust_client().await {
        return;
    }
    rust_should_get_the_served_key_id(
        "rust_imds_provider_should_get_the_served_key_id_over_imdsv2",
        "imds",
    )
    .await;
}

#[tokio::test]
async fn rust_ecs_provider_should_fail_fast_when_the_proxy_answers_503() {
    if rust_client().await {
        return;
    }
    rust_should_fail_fast_on_503(
        "rust_ecs_provider_should_fail_fast_when_the_proxy_answers_503",
        "ecs",
        "503",
    )
    .await;
}

#[tokio::test]
async fn rust_imds_provider_should_fail_fast_when_the_proxy_answers_503() {
    if rust_client().await {
        return;
    }
    rust_should_fail_fast_on_503(
        "rust_imds_provider_should_fail_fast_when_the_proxy_answers_503",
        "imds",
        "code: 503",
    )
    .await;
}
