//! Hostile input: slow clients, thousands of idle connections, huge bodies and
//! headers, pipelining, path tricks, an IMDSv2 token flood, and token files that
//! are empty, binary, huge, a directory, a FIFO, unreadable or a dangling
//! symlink. The proxy must keep answering, keep its memory bounded, never serve
//! credentials it should not, and recover when the token file is fixed.
//!
//! Everything runs on 127.0.0.1 against the real binary; every loop is bounded in
//! count and in time.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;

use common::fake_sts::Failure;
use common::http::parse;
use common::{eventually, jwt, request, FakeSts, ProxyBuilder, ProxyProcess, TokenDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SUB: &str = "system:serviceaccount:default:app";

// ---------------------------------------------------------------- helpers

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Sends `head`, then `body` bytes of filler in 64 KiB writes, while reading the
/// answer; returns what was read when the server closed, the read failed or
/// `limit` passed. Reading while writing matters: a server that answers without
/// reading the body may reset the connection, and a reset discards what the
/// client has not read yet.
async fn exchange(addr: SocketAddr, head: Vec<u8>, body: usize, limit: Duration) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        if wr.write_all(&head).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = body;
        while left > 0 {
            let n = left.min(chunk.len());
            if wr.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
        // Keep the write side open: closing it could end the exchange early.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(wr);
    });
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if complete(&out) {
                    break;
                }
            }
        }
    }
    writer.abort();
    out
}

/// True once `buf` holds one whole answer (head and `Content-Length` body).
fn complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    buf.len() >= end + 4 + len
}

/// The status codes of every answer in `buf`, in order (pipelining).
fn statuses(buf: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(buf);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text[i + 9..].get(..3)?.parse().ok())
        .collect()
}

fn status_of(buf: &[u8]) -> Option<u16> {
    parse(buf, false).ok().map(|r| r.status)
}

async fn start_with_token(extra: &[&str]) -> (FakeSts, TokenDir, ProxyProcess) {
    let sts = FakeSts::start().await;
    let dir = TokenDir::new(&jwt(SUB, 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .args(extra.iter().copied())
        .start();
    let ready = eventually(Duration::from_secs(10), || async {
        request(p.addr, "GET", "/readyz", &[]).await.status == 200
    })
    .await;
    assert!(ready, "{}", p.logs());
    (sts, dir, p)
}

// ------------------------------------------------------------ slow clients

#[tokio::test]
async fn a_client_sending_a_byte_a_second_should_be_cut_off_while_others_are_served() {
    let (_sts, _dir, p) = start_with_token(&["--header-timeout", "3s"]).await;
    let stream = TcpStream::connect(p.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let opened = Instant::now();
    let slow = tokio::spawn(async move {
        let head = b"GET /v1/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for b in head.iter().take(20) {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        wr
    });
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(15), rd.read_to_end(&mut buf)).await;
        (opened.elapsed(), buf)
    });

    // Meanwhile, other clients are answered at once.
    let mut served = 0;
    while !reader.is_finished() && opened.elapsed() < Duration::from_secs(10) {
        let t = Instant::now();
        let r = p.ecs(None).await;
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        served += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (cut_after, answer) = reader.await.unwrap();
    slow.abort();
    assert!(served >= 10, "only {served} requests served meanwhile");
    assert!(
        cut_after >= Duration::from_millis(2900) && cut_after < Duration::from_secs(5),
        "the slow client was cut after {cut_after:?} with a 3 s header timeout"
    );
    // Never served: at most an error answer.
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("AccessKeyId"), "{text}");
}

#[tokio::test]
async fn thousands_of_idle_connections_should_not_stop_new_requests() {
    // The test process holds 5,000 sockets, the proxy up to 1,024 + a few.
    raise_fd_limit(12_000);
    let (_sts, _dir, p) = start_with_token(&[]).await;
    let pid = p.child.id();
    let rss_before = rss_kib(pid);

    let mut idle = Vec::with_capacity(5000);
    let started = Instant::now();
    for i in 0..5000 {
        let mut s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(p.addr))
            .await
            .unwrap_or_else(|_| panic!("connection {i} not accepted within 5 s"))
            .unwrap();
        match i % 3 {
            // Says nothing at all.
            0 => {}
            // Starts a request head and stops (slowloris).
            1 => {
                let _ = s.write_all(b"GET /v1/credentials HTTP/1.1\r\nHo").await;
            }
            // Makes one keep-alive request, reads nothing, then idles.
            _ => {
                let _ = s
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    .await;
            }
        }
        idle.push(s);
        // Pace the opening a little: a client that outruns the accept loop by a
        // whole backlog has its SYNs dropped and waits a 1 s retransmission,
        // which only makes the test slow.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "connecting took too long"
        );
    }

    eprintln!("connected 5000 in {:?}", started.elapsed());
    // New clients are answered promptly, one after another and concurrently.
    for _ in 0..20 {
        let t = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(3), p.ecs(None))
            .await
            .expect("no answer within 3 s while 5,000 idle connections are open");
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    let mut batch = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let addr = p.addr;
        batch.spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(5),
                request(addr, "GET", "/v1/credentials", &[]),
            )
            .await
            .map(|r| r.status)
        });
    }
    while let Some(r) = batch.join_next().await {
        assert_eq!(r.unwrap().expect("a concurrent request timed out"), 200);
    }

    // Bounded: open descriptors stay near the connection limit, memory too.
    let fds = open_fds(pid);
    let rss_after = rss_kib(pid);
    assert!(fds <= 1024 + 64, "{fds} descriptors open");
    assert!(
        rss_after < rss_before + 48 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    eprintln!(
        "5000 idle connections: proxy fds {fds}, RSS {rss_before} -> {rss_after} KiB in {:?}",
        started.elapsed()
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(p.logs().contains("reached the connection limit"));
}

/// Raises this process's soft open-files limit (the proxy it starts inherits it).
fn raise_fd_limit(want: libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write one rlimit through a valid pointer.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(
        lim.rlim_cur >= want,
        "the hard open-files limit {} is below {want}",
        lim.rlim_max
    );
}

// ------------------------------------------------------- bodies and headers

#[tokio::test]
async fn request_bodies_of_many_megabytes_should_be_ignored_on_every_route() {
    let (_sts, _dir, p) = start_with_token(&["--imds-v1", "always"]).await;
    let pid = p.child.id();
    let rss_before = rss_kib(pid);
    let routes: [(&str, &str, u16); 8] = [
        ("GET", "/v1/credentials", 200),
        ("POST", "/v1/credentials", 405),
        ("PUT", "/latest/api/token", 400),
        (
            "GET",
            "/latest/meta-data/iam/security-credentials/test-role",
            200,
        ),
        ("GET", "/healthz", 200),
        ("GET", "/readyz", 200),
        ("GET", "/metrics", 200),
        ("POST", "/nowhere", 404),
    ];
    for (method, path, want) in routes {
        for chunked in [false, true] {
            let body = 32 * 1024 * 1024;
            let framing = if chunked {
                // One chunk announcing 4 GiB: the server must not wait for it.
                "Transfer-Encoding: chunked\r\n\r\n100000000\r\n".to_string()
            } else {
                format!("Content-Length: {}\r\n\r\n", 64 * 1024 * 1024)
            };
            let head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}");
            let t = Instant::now();
            let answer = exchange(p.addr, head.into_bytes(), body, Duration::from_secs(10)).await;
            assert_eq!(
                status_of(&answer),
                Some(want),
                "{method} {path} chunked={chunked}: {:?}",
                String::from_utf8_lossy(&answer)
            );
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        }
    }
    assert_eq!(p.ecs(None).await.status, 200);
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 16 * 1024,
        "bodies were buffered: RSS {rss_before} -> {rss_after} KiB"
    );
}

#[tokio::test]
async fn an_authorization_header_of_a_mebibyte_should_be_refused_and_not_logged() {
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = auth_dir.path().join("auth-token");
    let (_sts, _dir, p) =
        start_with_token(&["--auth-token-file", auth_file.to_str().unwrap()]).await;
    let marker = "HUGE-AUTH-MARKER";
    let value = format!("{marker}{}", "A".repeat(1024 * 1024));
    for path in ["/v1/credentials", "/latest/api/token", "/healthz"] {
        let head =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {value}\r\n\r\n");
        let answer = exchange(p.addr, head.into_bytes(), 0, Duration::from_secs(10)).await;
        // 431, or the connection closed without an answer; never served.
        let status = status_of(&answer);
        assert!(
            matches!(status, None | Some(431)),
            "{path}: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        );
    }
    let token = std::fs::read_to_string(&auth_file).unwrap();
    assert_eq!(p.ecs(Some(&token)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!p.logs().contains(marker));
}

#[tokio::test]
async fn pipelined_requests_should_be_answered_in_order() {
    let (_sts, _dir, p) = start_with_token(&[]).await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let mut batch = Vec::new();
    for _ in 0..50 {
        batch.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        batch.extend_from_slice(b"GET /v1/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        batch.extend_from_slice(b"GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        batch.extend_from_slice(b"DELETE /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n");
    }
    batch.extend_from_slice(
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    s.write_all(&batch).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("pipelined answers timed out")
        .unwrap();
    let got = statuses(&out);
    let mut want = Vec::new();
    for _ in 0..50 {
        want.extend([200, 200, 404, 403]);
    }
    want.push(200);
    assert_eq!(got, want);
}

// ------------------------------------------------------------- path tricks

#[tokio::test]
async fn path_tricks_should_never_reach_the_credentials() {
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = auth_dir.path().join("auth-token");
    // A short header timeout: some of the raw inputs below are incomplete heads.
    let (sts, _dir, p) = start_with_token(&[
        "--auth-token-file",
        auth_file.to_str().unwrap(),
        "--header-timeout",
        "2s",
        "--imds-v1",
        "always",
    ])
    .await;
    sts.script().secret = "SECRET-MARKER".into();
    let cases: &[(&str, u16)] = &[
        ("/latest/meta-data/iam/security-credentials/%2e%2e/", 404),
        (
            "/latest/meta-data/iam/security-credentials/%2E%2E/test-role",
            404,
        ),
        (
            "/latest/meta-data/iam/security-credentials/../security-credentials/test-role",
            404,
        ),
        (
            "/latest/meta-data/iam/security-credentials/./test-role",
            404,
        ),
        ("/latest/meta-data/iam/security-credentials/test-role/", 404),
        (
            "/latest/meta-data/iam/security-credentials/test-role%00",
            404,
        ),
        (
            "/latest/meta-data/iam/security-credentials/test%2drole",
            404,
        ),
        ("/latest/meta-data/iam/security-credentials//test-role", 404),
        ("//latest/meta-data/iam/security-credentials/test-role", 404),
        ("/latest//meta-data/iam/security-credentials/test-role", 404),
        ("/latest/meta-data/iam/security-credentials/TEST-ROLE", 404),
        (
            "/%6catest/meta-data/iam/security-credentials/test-role",
            404,
        ),
        // The ECS path never passes the Authorization check by a detour.
        ("/v1/credentials", 401),
        ("/v1/credentials?x=1", 401),
        ("/v1/credentials#frag", 401),
        ("/v1/credentials/", 404),
        ("/v1/credentials/..", 404),
        ("/v1//credentials", 404),
        ("//v1/credentials", 404),
        ("/v1/%63redentials", 404),
        ("/v1/credentials%2f", 404),
        ("/v1/credentials%00", 404),
        ("/V1/CREDENTIALS", 404),
        // Nor does the path-token route with a wrong, partial or dressed-up token.
        ("/v2/credentials/", 401),
        ("/v2/credentials/wrong", 401),
        ("/v2/credentials/../../v1/credentials", 401),
        ("/v2/credentials/%2e%2e", 401),
        ("/v2//credentials/x", 404),
    ];
    for (path, want) in cases {
        let head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let answer = exchange(p.addr, head.into_bytes(), 0, Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&answer);
        assert!(!text.contains("SECRET-MARKER"), "{path} leaked: {text}");
        let status = status_of(&answer);
        assert!(
            status == Some(*want) || status == Some(400),
            "{path}: {status:?}, expected {want}: {text}"
        );
    }
    // Bytes that are not a valid request target at all: 400 or a closed
    // connection, never a crash.
    let raw: &[&[u8]] = &[
        b"GET /latest/meta-data/iam/security-credentials/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /v1/credentials\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /v1/cred entials HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET \xc3\xa9 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: \xff\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nX-Bad\x01Name: 1\r\nHost: 127.0.0.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"\r\n\r\n\r\n",
    ];
    for bytes in raw {
        let answer = exchange(p.addr, bytes.to_vec(), 0, Duration::from_secs(5)).await;
        let status = status_of(&answer);
        assert!(
            matches!(status, None | Some(400) | Some(403) | Some(404) | Some(505)),
            "{:?}: {:?}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&answer)
        );
        assert!(!String::from_utf8_lossy(&answer).contains("SECRET-MARKER"));
    }
    let token = std::fs::read_to_string(&auth_file).unwrap();
    assert_eq!(p.ecs(Some(&token)).await.status, 200);
}

#[tokio::test]
async fn a_dns_name_should_be_refused_wherever_the_request_carries_it() {
    let (_sts, _dir, p) = start_with_token(&[]).await;
    let cases: &[&[u8]] = &[
        // Absolute form: the authority in the request line is the host asked for.
        b"GET http://evil.example/v1/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET http://evil.example:9911/latest/meta-data/iam/security-credentials/test-role HTTP/1.1\r\nHost: localhost\r\n\r\n",
        // Two Host headers: a browser never sends that; refuse it.
        b"GET /v1/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
        b"GET /v1/credentials HTTP/1.1\r\nHost: evil.example\r\nHost: 127.0.0.1\r\n\r\n",
    ];
    for bytes in cases {
        let answer = exchange(p.addr, bytes.to_vec(), 0, Duration::from_secs(5)).await;
        let status = status_of(&answer);
        assert!(
            matches!(status, Some(400) | Some(403)),
            "{:?}: {:?}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&answer)
        );
        assert!(!String::from_utf8_lossy(&answer).contains("AccessKeyId"));
    }
    // The absolute form with a loopback authority is still served.
    let answer = exchange(
        p.addr,
        b"GET http://127.0.0.1/v1/credentials HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
        0,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&answer), Some(200));
}

// ------------------------------------------------------------- IMDS flood

#[tokio::test]
async fn an_imds_token_flood_should_keep_memory_bounded() {
    let (_sts, _dir, p) = start_with_token(&[]).await;
    let pid = p.child.id();
    let first = request(
        p.addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")],
    )
    .await
    .body;
    let rss_before = rss_kib(pid);
    // 8 connections x 40 pipelined batches x 100 = 32,000 token requests.
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let addr = p.addr;
        flood.spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let one = b"PUT /latest/api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n";
            let mut answered = 0;
            let mut buf = vec![0u8; 256 * 1024];
            for _ in 0..40 {
                let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 100).collect();
                s.write_all(&batch).await.unwrap();
                let mut got = 0;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while got < 100 {
                    let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
                        .await
                        .expect("flood answers timed out")
                        .unwrap();
                    assert!(n > 0);
                    got += statuses(&buf[..n]).len();
                }
                answered += got;
            }
            answered
        });
    }
    let mut total = 0;
    while let Some(n) = flood.join_next().await {
        total += n.unwrap();
    }
    assert!(total >= 32_000, "{total}");
    let rss_after = rss_kib(pid);
    assert!(
        rss_after < rss_before + 8 * 1024,
        "32,000 session tokens grew RSS from {rss_before} to {rss_after} KiB"
    );
    // The oldest token was evicted; a fresh one works.
    let old = request(
        p.addr,
        "GET",
        "/latest/meta-data/iam/security-credentials/test-role",
        &[("X-aws-ec2-metadata-token", &first)],
    )
    .await;
    assert_eq!(old.status, 401);
    let fresh = request(
        p.addr,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "60")],
    )
    .await
    .body;
    let ok = request(
        p.addr,
        "GET",
        "/latest/meta-data/iam/security-credentials/test-role",
        &[("X-aws-ec2-metadata-token", &fresh)],
    )
    .await;
    assert_eq!(ok.status, 200);
    eprintln!("IMDS flood: {total} tokens issued, RSS {rss_before} -> {rss_after} KiB");
}

// -------------------------------------------------------- bad token files

/// How a test breaks the token file.
#[derive(Debug, Clone, Copy)]
enum Breakage {
    Empty,
    Binary,
    TenMebibytes,
    Directory,
    DanglingSymlink,
    SymlinkLoop,
    Fifo,
    /// Mode 000: only meaningful when not running as root, which reads anyway;
    /// as root the file is replaced by a path through a regular file
    /// (`token/x`, ENOTDIR), which fails the same way an `EACCES` does.
    Unreadable,
}

fn break_token(path: &Path, how: Breakage) {
    let _ = std::fs::remove_file(path);
    match how {
        Breakage::Empty => std::fs::write(path, "").unwrap(),
        Breakage::Binary => std::fs::write(path, [0x00, 0xff, 0xfe, 0x13, 0x37, 0x00]).unwrap(),
        Breakage::TenMebibytes => {
            // A JWT-looking start, then 10 MiB: bounded reading must refuse it.
            let mut big = jwt(SUB, 3600, "big").into_bytes();
            big.resize(10 * 1024 * 1024, b'a');
            std::fs::write(path, big).unwrap();
        }
        Breakage::Directory => std::fs::create_dir(path).unwrap(),
        Breakage::DanglingSymlink => std::os::unix::fs::symlink("nowhere/token", path).unwrap(),
        Breakage::SymlinkLoop => std::os::unix::fs::symlink("token", path).unwrap(),
        Breakage::Fifo => {
            let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        Breakage::Unreadable => {
            use std::os::unix::fs::PermissionsExt;
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                std::fs::write(path, jwt(SUB, 3600, "unreadable")).unwrap();
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
            } else {
                std::os::unix::fs::symlink("not-a-dir/token", path).unwrap();
                std::fs::write(path.with_file_name("not-a-dir"), "a file").unwrap();
            }
        }
    }
}

fn fix_token(path: &Path, token: &str) {
    if path.is_dir() && !path.is_symlink() {
        std::fs::remove_dir_all(path).unwrap();
    } else {
        let _ = std::fs::remove_file(path);
    }
    let tmp = path.with_file_name("token.tmp");
    std::fs::write(&tmp, token).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Short credentials (8 s, so a refresh ~4 s after each success and a 2 s safety
/// margin), a plain token file, then: break it, check that the last good
/// credentials are served until their margin, that the 503 names the file and
/// the problem, and that fixing the file brings credentials back at once.
async fn bad_token_file(how: Breakage, code: &str, says: &str) {
    let sts = FakeSts::start().await;
    sts.script().credential_ttl = Duration::from_secs(8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, jwt(SUB, 3600, "first")).unwrap();
    let p = ProxyBuilder::serve(&path, &sts.url()).start();
    let first = p.ecs(None).await;
    assert_eq!(first.status, 200, "{}", p.logs());
    let key = first.json()["AccessKeyId"].as_str().unwrap().to_string();
    let expiration =
        humantime::parse_rfc3339(first.json()["Expiration"].as_str().unwrap()).unwrap();
    // Never served inside the margin (2 s); allow 300 ms for this test's own steps.
    let serve_until = expiration - Duration::from_secs(2);

    break_token(&path, how);
    let deadline = Instant::now() + Duration::from_secs(15);
    let unavailable = loop {
        assert!(
            Instant::now() < deadline,
            "no 503 for {how:?}; logs:\n{}",
            p.logs()
        );
        let r = p.ecs(None).await;
        let now = SystemTime::now();
        match r.status {
            200 => {
                // The last good credentials, and only while they are valid.
                assert_eq!(r.json()["AccessKeyId"], key.as_str(), "{how:?}");
                assert!(
                    now < serve_until + Duration::from_millis(300),
                    "{how:?}: served inside the margin"
                );
            }
            503 => {
                assert!(
                    now >= serve_until - Duration::from_millis(300),
                    "{how:?}: 503 while the last credentials were valid: {}",
                    r.body
                );
                break r;
            }
            s => panic!("{how:?}: unexpected {s}: {}", r.body),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let body = unavailable.json();
    assert_eq!(body["code"], code, "{how:?}: {body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(path.to_str().unwrap()),
        "{how:?}: {message}"
    );
    assert!(message.contains(says), "{how:?}: {message}");
    let logs = p.logs();
    assert!(
        logs.contains("cannot read the web-identity token"),
        "{logs}"
    );
    assert!(logs.contains(says), "{how:?}: {logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    // No STS call was made with a bad token.
    assert!(sts.calls().iter().all(|c| c.token.starts_with("eyJ")));

    // Fixed: credentials again within a few seconds, from a new STS call.
    let good = jwt(SUB, 3600, "fixed");
    fix_token(&path, &good);
    let fixed_at = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async {
            p.ecs(None).await.status == 200
        })
        .await,
        "{how:?}: not recovered; logs:\n{}",
        p.logs()
    );
    assert!(
        fixed_at.elapsed() < Duration::from_secs(4),
        "{how:?}: {:?}",
        fixed_at.elapsed()
    );
    let again = p.ecs(None).await;
    assert_ne!(again.json()["AccessKeyId"], key.as_str());
    assert_eq!(sts.calls().last().unwrap().token, good);
    // Still alive and well.
    assert_eq!(request(p.addr, "GET", "/healthz", &[]).await.status, 200);
}

#[tokio::test]
async fn an_empty_token_file_should_be_reported_and_survived() {
    bad_token_file(Breakage::Empty, "TokenFileInvalid", "is empty").await;
}

#[tokio::test]
async fn a_binary_token_file_should_be_reported_and_survived() {
    bad_token_file(Breakage::Binary, "TokenFileInvalid", "is not UTF-8 text").await;
}

#[tokio::test]
async fn a_ten_mebibyte_token_file_should_be_reported_and_survived() {
    bad_token_file(Breakage::TenMebibytes, "TokenFileInvalid", "is larger than").await;
}

#[tokio::test]
async fn a_directory_in_place_of_the_token_should_be_reported_and_survived() {
    bad_token_file(Breakage::Directory, "TokenFileUnreadable", "is a directory").await;
}

#[tokio::test]
async fn a_dangling_token_symlink_should_be_reported_and_survived() {
    bad_token_file(
        Breakage::DanglingSymlink,
        "TokenFileUnreadable",
        "cannot read it",
    )
    .await;
}

#[tokio::test]
async fn a_token_symlink_loop_should_be_reported_and_survived() {
    bad_token_file(
        Breakage::SymlinkLoop,
        "TokenFileUnreadable",
        "cannot read it",
    )
    .await;
}

#[tokio::test]
async fn a_fifo_in_place_of_the_token_should_be_reported_and_survived() {
    bad_token_file(Breakage::Fifo, "TokenFileUnreadable", "not a regular file").await;
}

#[tokio::test]
async fn an_unreadable_token_file_should_be_reported_and_survived() {
    bad_token_file(
        Breakage::Unreadable,
        "TokenFileUnreadable",
        "cannot read it",
    )
    .await;
}

// ------------------------------------------------------------ STS answers

#[tokio::test]
async fn hostile_sts_error_text_should_not_reach_logs_unbounded() {
    // A malicious or broken STS: a huge message with control characters and a
    // fake log line. The proxy logs one bounded line and keeps serving.
    let sts = FakeSts::start().await;
    let dir = TokenDir::new(&jwt(SUB, 3600, "a"));
    let evil = format!(
        "first line\nFAKE-LOG-LINE level=INFO\r\u{1b}[31m{}",
        "z".repeat(200_000)
    );
    sts.script()
        .failures
        .push_back(Failure::new(500, "InternalFailure", &evil));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    assert!(
        eventually(Duration::from_secs(10), || async {
            p.ecs(None).await.status == 200
        })
        .await,
        "{}",
        p.logs()
    );
    let logs = p.logs();
    assert!(
        !logs.lines().any(|l| l.starts_with("FAKE-LOG-LINE")),
        "{logs}"
    );
    assert!(
        logs.lines().all(|l| l.len() < 8 * 1024),
        "an unbounded log line"
    );
    assert!(
        !logs.contains('\u{1b}'),
        "control characters reached the logs"
    );
}

#[tokio::test]
async fn a_token_with_absurd_claims_should_not_crash_the_proxy() {
    // Regression: a token whose `exp` is past the year 9999 made the claim
    // summary logged on every rotation panic (and abort the release build).
    let sts = FakeSts::start().await;
    let dir = TokenDir::new(&jwt(SUB, 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    assert_eq!(p.ecs(None).await.status, 200);
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    for (i, claims) in [
        serde_json::json!({"sub": SUB, "exp": i64::MAX, "iat": i64::MIN, "aud": "x"}),
        serde_json::json!({"sub": SUB, "exp": 1e300, "aud": [1, 2]}),
        serde_json::json!({"sub": SUB, "exp": 253_402_300_800_i64}),
    ]
    .into_iter()
    .enumerate()
    {
        let token = format!("e30.{}.c2ln", b.encode(claims.to_string()));
        dir.rotate(&token);
        let want = format!("irsa_proxy_token_rotations_total {}", i + 1);
        assert!(
            eventually(Duration::from_secs(5), || async {
                p.metrics().await.contains(&want)
            })
            .await,
            "rotation {i} not seen; logs:\n{}",
            p.logs()
        );
    }
    let logs = p.logs();
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(logs.contains("exp=9999-12-31T23:59:59Z"), "{logs}");
    assert_eq!(request(p.addr, "GET", "/healthz", &[]).await.status, 200);
}

// ------------------------------------------------------------ SSRF, plain GETs

/// What an SSRF in the app can do: make it send a plain GET (no header of the
/// attacker's choosing) to any URL. In the configuration `inject` writes (a
/// token, loopback listener, IMDSv1 only on link-local addresses) no route
/// answers such a GET with credentials.
#[tokio::test]
async fn a_plain_get_should_reach_no_credentials_in_the_default_configuration() {
    let auth_dir = tempfile::tempdir().unwrap();
    let token = "0123456789abcdef".repeat(4);
    let sts = FakeSts::start().await;
    sts.script().secret = "SECRET-MARKER".into();
    let dir = TokenDir::new(&jwt(SUB, 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .set(
            "--auth-token-file",
            auth_dir.path().join("auth-token").to_str().unwrap(),
        )
        .env("IRSA_PROXY_AUTH_TOKEN", &token)
        .start();
    // The credentials are there for whoever presents the token.
    assert_eq!(p.ecs(Some(&token)).await.status, 200);
    let role = "/latest/meta-data/iam/security-credentials/test-role";
    for path in [
        "/v1/credentials",
        "/v2/credentials/",
        "/v2/credentials/guess",
        role,
        "/latest/meta-data/iam/security-credentials/",
        "/latest/meta-data/iam/info",
        "/latest/dynamic/instance-identity/document",
    ] {
        for method in ["GET", "HEAD"] {
            let r = request(p.addr, method, path, &[]).await;
            assert!(
                r.status == 401 || r.status == 404,
                "{method} {path}: {} {}",
                r.status,
                r.body
            );
            assert!(!r.body.contains("SECRET-MARKER"), "{method} {path}");
        }
    }
}
