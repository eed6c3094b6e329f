//! Private clusters (issue 12): STS through a real HTTP CONNECT proxy
//! (Debian's tinyproxy), over TLS with a certificate from a test CA, at a host
//! name that only the proxy resolves (it runs in a mount namespace of its own
//! whose /etc/hosts has the name); plus the errors an operator meets on the way.
//!
//! The STS is the real emulator over HTTPS, in this process; `serve` is the
//! real binary with a clean environment.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::pki::Pki;
use common::{request, ProxyBuilder, ProxyProcess, TokenDir};
use irsa_proxy::tools::emulator::{
    self, EmulatorHandle, EmulatorSettings, Issuer, ServiceAccountToken,
};

/// Resolved by the proxy only.
const HOST: &str = "sts.private.test";
const ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/PRIVATE";
const SECRET: &str = "pa55-W0rd-never-logged";

/// The emulator over HTTPS, and a token it accepts.
struct Sts {
    handle: EmulatorHandle,
    tokens: TokenDir,
    _pki: Arc<Pki>,
}

async fn sts(pki: Arc<Pki>) -> Sts {
    let issuer = Issuer::generate_rsa(ISSUER).unwrap();
    let settings = EmulatorSettings::new(issuer.verifying_keys().unwrap());
    let tls = pki.server_config();
    let handle = emulator::spawn_with("127.0.0.1:0".parse().unwrap(), settings, Some(tls))
        .await
        .unwrap();
    let token = issuer
        .mint_service_account(&ServiceAccountToken {
            namespace: "default",
            service_account: "app",
            audience: "sts.amazonaws.com",
            issued_at: SystemTime::now(),
            ttl: Duration::from_secs(3600),
        })
        .unwrap();
    Sts {
        handle,
        tokens: TokenDir::new(&token),
        _pki: pki,
    }
}

impl Sts {
    fn port(&self) -> u16 {
        self.handle.addr().port()
    }

    /// The endpoint only the proxy can reach by name.
    fn private_url(&self) -> String {
        format!("https://{HOST}:{}", self.port())
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// tinyproxy in a mount namespace whose /etc/hosts maps HOST to 127.0.0.1.
struct Tinyproxy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start(extra_config: &str) -> Tinyproxy {
        common::podrunner::require_root();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        std::fs::write(
            dir.path().join("tinyproxy.conf"),
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nLogLevel Connect\nLogFile \"{}\"\n{extra_config}\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("hosts"),
            format!("127.0.0.1 localhost\n127.0.0.1 {HOST}\n"),
        )
        .unwrap();
        let script = format!(
            "mount --bind {hosts} /etc/hosts && exec tinyproxy -d -c {conf}",
            hosts = dir.path().join("hosts").display(),
            conf = dir.path().join("tinyproxy.conf").display()
        );
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                &script,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinyproxy (apt-get install tinyproxy; .ci/run does)");
        let proxy = Tinyproxy { child, port, dir };
        // Ready when it accepts connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tinyproxy did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }

    /// The CONNECT requests it saw for `target`.
    fn connects_to(&self, target: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| {
                l.contains("Request (file descriptor") && l.contains(&format!("CONNECT {target} "))
            })
            .count()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `sh` execs tinyproxy, so the child is tinyproxy itself.
    }
}

fn serve(sts: &Sts, endpoint: &str) -> ProxyBuilder {
    ProxyBuilder::serve(&sts.tokens.path(), endpoint)
}

/// Waits for /readyz to answer 200.
async fn ready(p: &ProxyProcess) {
    readyz_until(p, |status, _| status == 200).await;
}

/// Waits for /readyz to answer 503 naming `code`, and returns its body.
async fn not_ready_with(p: &ProxyProcess, code: &str) -> String {
    readyz_until(p, |status, body| {
        status == 503 && body.contains(&format!("not ready: {code}:"))
    })
    .await
}

async fn readyz_until(p: &ProxyProcess, done: impl Fn(u16, &str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = request(p.addr, "GET", "/readyz", &[]).await;
        if done(r.status, &r.body) {
            return r.body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {} {:?}; logs:\n{}",
            r.status,
            r.body,
            p.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sts_calls(metrics: &str, result: &str) -> usize {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("irsa_proxy_sts_requests_total")
                && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as usize
}

#[tokio::test(flavor = "multi_thread")]
async fn sts_should_be_reached_through_the_proxy_with_the_private_ca() {
    let pki = Arc::new(Pki::new(HOST));
    let sts = sts(pki.clone()).await;
    let tp = Tinyproxy::start("");
    let target = format!("{HOST}:{}", sts.port());
    let p = serve(&sts, &sts.private_url())
        .env("HTTPS_PROXY", &tp.url())
        .env("AWS_CA_BUNDLE", pki.ca().to_str().unwrap())
        .start();
    ready(&p).await;
    let creds = p.ecs(None).await;
    assert_eq!(creds.status, 200, "{}", creds.body);
    assert!(creds.json()["AccessKeyId"]
        .as_str()
        .unwrap()
        .starts_with("ASIA"));

    // Every STS call went through the proxy: the name resolves nowhere else,
    // and the proxy logged a CONNECT for each (more if the SDK retried an
    // attempt on a loaded machine; its log may trail a little).
    let calls = sts_calls(&p.metrics().await, "success");
    assert!(calls >= 1);
    let seen = common::eventually(Duration::from_secs(5), || async {
        tp.connects_to(&target) >= calls
    })
    .await;
    assert!(seen, "{calls} STS calls; tinyproxy log:\n{}", tp.log());
    let logs = p.logs();
    assert!(logs.contains("STS route"), "{logs}");
    assert!(logs.contains("from HTTPS_PROXY"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_bundle_the_certificate_error_should_be_named() {
    let pki = Arc::new(Pki::new(HOST));
    let sts = sts(pki.clone()).await;
    let tp = Tinyproxy::start("");
    let p = serve(&sts, &sts.private_url())
        .env("HTTPS_PROXY", &tp.url())
        .start();
    let body = not_ready_with(&p, "CertificateNotTrusted").await;
    assert!(body.contains("CertificateNotTrusted"), "{body}");
    assert!(
        body.contains(&format!("TLS certificate of {HOST}")),
        "{body}"
    );
    assert!(body.contains("AWS_CA_BUNDLE"), "{body}");
    let metrics = p.metrics().await;
    assert!(
        metrics.contains("error=\"CertificateNotTrusted\""),
        "{metrics}"
    );
    assert!(tp.connects_to(&format!("{HOST}:{}", sts.port())) >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_proxy_should_bypass_the_proxy() {
    let pki = Arc::new(Pki::new(HOST));
    let sts = sts(pki.clone()).await;
    let tp = Tinyproxy::start("");

    // Matching NO_PROXY (a CIDR here): straight to 127.0.0.1, not one CONNECT.
    let direct = format!("https://127.0.0.1:{}", sts.port());
    let p = serve(&sts, &direct)
        .env("HTTPS_PROXY", &tp.url())
        .env("NO_PROXY", "localhost,127.0.0.0/8")
        .env("AWS_CA_BUNDLE", pki.ca().to_str().unwrap())
        .start();
    ready(&p).await;
    assert_eq!(p.ecs(None).await.status, 200);
    assert!(
        p.logs().contains("NO_PROXY matches 127.0.0.1"),
        "{}",
        p.logs()
    );
    drop(p);

    // NO_PROXY matching the private name: this process cannot resolve it, and
    // says so.
    let p = serve(&sts, &sts.private_url())
        .env("HTTPS_PROXY", &tp.url())
        .env("no_proxy", ".private.test")
        .env("AWS_CA_BUNDLE", pki.ca().to_str().unwrap())
        .start();
    let body = not_ready_with(&p, "EndpointNotResolved").await;
    assert!(body.contains("EndpointNotResolved"), "{body}");
    assert!(body.contains(&format!("{HOST} does not resolve")), "{body}");
    assert_eq!(
        tp.connects_to(&format!("{HOST}:{}", sts.port())),
        0,
        "{}",
        tp.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_credentials_should_work_and_never_be_logged() {
    let pki = Arc::new(Pki::new(HOST));
    let sts = sts(pki.clone()).await;
    let tp = Tinyproxy::start(&format!("BasicAuth alice {SECRET}"));
    let with = |password: &str| format!("http://alice:{password}@127.0.0.1:{}", tp.port);

    // The right password, in the URL, as HTTPS_PROXY takes it.
    let p = serve(&sts, &sts.private_url())
        .env("https_proxy", &with(SECRET))
        .env("AWS_CA_BUNDLE", pki.ca().to_str().unwrap())
        .start();
    ready(&p).await;
    let logs = p.logs();
    assert!(logs.contains("alice:***@"), "{logs}");
    assert!(!logs.contains(SECRET), "{logs}");
    drop(p);

    // A wrong one: tinyproxy answers CONNECT with 401 (not 407); the error
    // names the status, and neither password shows anywhere.
    let wrong = "wr0ng-Secret-also-hidden";
    let p = serve(&sts, &sts.private_url())
        .env("HTTPS_PROXY", &with(wrong))
        .env("AWS_CA_BUNDLE", pki.ca().to_str().unwrap())
        .start();
    let body = not_ready_with(&p, "ProxyAuthenticationRequired").await;
    assert!(body.contains("ProxyAuthenticationRequired"), "{body}");
    assert!(body.contains("401"), "{body}");
    let metrics = p.metrics().await;
    assert!(
        metrics.contains("error=\"ProxyAuthenticationRequired\""),
        "{metrics}"
    );
    for text in [body, metrics, p.logs()] {
        assert!(!text.contains(wrong) && !text.contains(SECRET), "{text}");
    }
}

/// A proxy that answers every request with 407, as a conforming proxy does
/// to a CONNECT without credentials (tinyproxy says 401).
fn proxy_answering_407() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n",
                );
                let _ = stream.read(&mut [0u8; 1]);
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_407_should_get_its_own_error() {
    let pki = Arc::new(Pki::new(HOST));
    let sts = sts(pki.clone()).await;
    let addr = proxy_answering_407();
    let p = serve(&sts, &sts.private_url())
        .env("HTTPS_PROXY", &format!("http://{addr}"))
        .env("AWS_CA_BUNDLE", pki.ca().to_str().unwrap())
        .start();
    let body = not_ready_with(&p, "ProxyAuthenticationRequired").await;
    assert!(body.contains("ProxyAuthenticationRequired"), "{body}");
    assert!(body.contains("407 Proxy Authentication Required"), "{body}");
    assert!(body.contains("put them in the URL"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_that_denies_the_port_should_be_named() {
    let pki = Arc::new(Pki::new(HOST));
    let sts = sts(pki.clone()).await;
    // CONNECT to 443 only: the emulator's port is another, so 403.
    let tp = Tinyproxy::start("ConnectPort 443");
    let p = serve(&sts, &sts.private_url())
        .env("HTTPS_PROXY", &tp.url())
        .env("AWS_CA_BUNDLE", pki.ca().to_str().unwrap())
        .start();
    let body = not_ready_with(&p, "ProxyRefused").await;
    assert!(body.contains("ProxyRefused"), "{body}");
    assert!(body.contains("403"), "{body}");
    assert!(p.metrics().await.contains("error=\"ProxyRefused\""));
}

fn serve_exit(env: &[(&str, &str)]) -> (i32, String) {
    let home = tempfile::tempdir().unwrap();
    let tokens = TokenDir::new("x.y.z");
    let out = common::proxy::clean_command(home.path())
        .args(["serve", "--role-arn", "arn:aws:iam::123456789012:role/r"])
        .arg("--token-file")
        .arg(tokens.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_bundle_or_proxy_should_stop_start_up_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("bundle.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let missing = dir.path().join("missing.pem");
    for (env, expect) in [
        (
            vec![("AWS_CA_BUNDLE", missing.to_str().unwrap())],
            "AWS_CA_BUNDLE: ",
        ),
        (
            vec![("AWS_CA_BUNDLE", not_pem.to_str().unwrap())],
            "holds no PEM certificate",
        ),
        (
            vec![("HTTPS_PROXY", "socks5://u:hunter2hunter2@proxy:1080")],
            "SOCKS",
        ),
        (vec![("NO_PROXY", "10.0.0.0/99")], "NO_PROXY"),
        (
            vec![("AWS_STS_REGIONAL_ENDPOINTS", "global")],
            "regional or legacy",
        ),
    ] {
        let (code, stderr) = serve_exit(&env);
        assert_eq!(code, 2, "{env:?}: {stderr}");
        assert!(stderr.contains(expect), "{env:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(!stderr.contains("hunter2hunter2"), "{stderr}");
    }
}

/// The endpoint table of docs/private-clusters.md, checked against what
/// `serve --print-endpoint` resolves (the SDK's endpoint rules; no network).
#[test]
fn the_endpoint_table_should_be_what_serve_resolves() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/private-clusters.md"
    ))
    .unwrap();
    let table = page
        .split("<!-- endpoint-table -->")
        .nth(1)
        .expect("the section marks its endpoint table with <!-- endpoint-table -->");
    let mut rows = 0;
    for line in table.lines().skip_while(|l| l.trim().is_empty()) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() < 3 || cells[0].starts_with("---") || cells[0] == "Variables" {
            continue;
        }
        let (vars, region, expected) = (
            cells[0],
            cells[1].trim_matches('`'),
            cells[2].trim_matches('`'),
        );
        let home = tempfile::tempdir().unwrap();
        let mut cmd = common::proxy::clean_command(home.path());
        cmd.args(["serve", "--print-endpoint", "--region", region]);
        for pair in vars.split_whitespace().map(|v| v.trim_matches('`')) {
            if let Some((k, v)) = pair.split_once('=') {
                cmd.env(k, v);
            }
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let endpoint = stdout
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("endpoint: "))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default();
        assert_eq!(endpoint, expected, "table row: {line}");
        rows += 1;
    }
    assert!(rows >= 6, "the table has {rows} rows");
}

#[test]
fn the_profile_ca_bundle_should_be_used_when_the_variable_is_unset() {
    let pki = Pki::new(HOST);
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    std::fs::write(
        &config,
        format!(
            "[profile corp]\nca_bundle = {}\nsts_regional_endpoints = legacy\n",
            pki.ca().display()
        ),
    )
    .unwrap();
    let out = common::proxy::clean_command(home.path())
        .args(["serve", "--print-endpoint", "--region", "eu-west-1"])
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_PROFILE", "corp")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("endpoint: https://sts.amazonaws.com "),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 certificate(s) from")
            && stdout.contains("ca_bundle of profile \"corp\""),
        "{stdout}"
    );

    // The variable wins over the profile.
    let out = common::proxy::clean_command(home.path())
        .args(["serve", "--print-endpoint"])
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_PROFILE", "corp")
        .env("AWS_CA_BUNDLE", pki.ca())
        .env("AWS_STS_REGIONAL_ENDPOINTS", "regional")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(AWS_CA_BUNDLE)"), "{stdout}");
    assert!(
        stdout.contains("https://sts.us-east-1.amazonaws.com"),
        "{stdout}"
    );

    // A profile bundle that is not there: one line, exit 2.
    std::fs::write(&config, "[default]\nca_bundle = /nonexistent/ca.pem\n").unwrap();
    let out = common::proxy::clean_command(home.path())
        .args(["serve", "--print-endpoint"])
        .env("AWS_CONFIG_FILE", &config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ca_bundle of profile \"default\""),
        "{stderr}"
    );
}
