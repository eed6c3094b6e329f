//! Properties of the HTTP server fed raw bytes: HTTP answers or a closed connection, never a crash.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;

use crate::common::{self, jwt, FakeSts, ProxyBuilder, TokenDir};
use crate::{config, raw_exchange};

fn path_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/v1/credentials".to_string()),
        Just("/latest/api/token".to_string()),
        Just("/latest/meta-data/iam/security-credentials/test-role".to_string()),
        Just("/latest/meta-data/iam/security-credentials/".to_string()),
        Just("/latest/meta-data/iam/info".to_string()),
        Just("/latest/dynamic/instance-identity/document".to_string()),
        Just("/healthz".to_string()),
        Just("/readyz".to_string()),
        Just("/metrics".to_string()),
        Just("*".to_string()),
        Just("http://evil.example/v1/credentials".to_string()),
        "/[ -~]{0,40}",
        "/(%[0-9a-fA-F]{2}|[a-z./]){0,20}",
    ]
}

/// Raw bytes for one connection, and whether the server must answer them: a
/// well-formed request head that ends in an empty line always gets a status
/// line (even if it is 400 or 403); arbitrary bytes may also be refused by
/// closing the connection.
fn raw_request() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let method = prop_oneof![
        Just("GET".to_string()),
        Just("HEAD".to_string()),
        Just("PUT".to_string()),
        Just("POST".to_string()),
        Just("DELETE".to_string()),
        Just("OPTIONS".to_string()),
        Just("CONNECT".to_string()),
        Just("get".to_string()),
        "[A-Z]{1,8}",
    ];
    let path = path_strategy();
    let header_name = prop_oneof![
        Just("Host".to_string()),
        Just("Authorization".to_string()),
        Just("X-aws-ec2-metadata-token".to_string()),
        Just("X-aws-ec2-metadata-token-ttl-seconds".to_string()),
        Just("X-Forwarded-For".to_string()),
        Just("Content-Length".to_string()),
        Just("Transfer-Encoding".to_string()),
        Just("Connection".to_string()),
        Just("Expect".to_string()),
        "[!-9;-~]{1,12}",
    ];
    let header_value = prop_oneof![
        Just("127.0.0.1".to_string()),
        Just("evil.example".to_string()),
        Just("21600".to_string()),
        Just("-1".to_string()),
        Just("chunked".to_string()),
        Just("100-continue".to_string()),
        Just("close".to_string()),
        "[ -~]{0,30}",
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let version = prop_oneof![
        Just("HTTP/1.1".to_string()),
        Just("HTTP/1.0".to_string()),
        Just("HTTP/2.0".to_string()),
        "[ -~]{0,9}",
    ];
    let structured = (
        method,
        path,
        version,
        proptest::collection::vec((header_name, header_value), 0..6),
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(m, p, v, headers, body, close)| {
            let mut out = format!("{m} {p} {v}\r\n").into_bytes();
            for (k, val) in headers {
                out.extend_from_slice(format!("{k}: {val}\r\n").as_bytes());
            }
            if close {
                out.extend_from_slice(b"Connection: close\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            (out, false)
        });
    // Well-formed requests with one odd header, so that routing (not only the
    // parser) sees most cases.
    let tidy = (
        prop_oneof![Just("GET"), Just("HEAD"), Just("PUT"), Just("POST")],
        path_strategy(),
        proptest::option::of(("[A-Za-z-]{1,12}", "[ -~]{0,30}")),
    )
        .prop_map(|(m, p, h)| {
            let mut out = format!("{m} {p} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            if let Some((k, v)) = h {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("Connection: close\r\n\r\n");
            (out.into_bytes(), true)
        });
    prop_oneof![
        3 => structured,
        3 => tidy,
        1 => proptest::collection::vec(any::<u8>(), 0..512).prop_map(|b| (b, false)),
    ]
}

#[test]
fn any_bytes_should_get_http_answers_or_a_closed_connection() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sts = rt.block_on(FakeSts::start());
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "p"));
    let mut p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .args(["--header-timeout", "1s"])
        .start();
    let addr = p.addr;
    assert!(
        rt.block_on(common::eventually(Duration::from_secs(10), || async {
            common::request(addr, "GET", "/readyz", &[]).await.status == 200
        }))
    );
    let mut runner = TestRunner::new(config(256));
    let statuses = Mutex::new(BTreeMap::<u16, usize>::new());
    let closed = Mutex::new(0usize);
    let result = runner.run(&raw_request(), |(bytes, must_answer)| {
        let answer = rt.block_on(raw_exchange(addr, &bytes, Duration::from_secs(3)));
        // Closing without a word is a legal refusal of garbage, but not of a
        // well-formed request: otherwise a server that closed every connection
        // would pass this test.
        prop_assert!(
            !must_answer || !answer.is_empty(),
            "no answer to {:?}",
            String::from_utf8_lossy(&bytes)
        );
        // An answer starts with a well-formed status line (HTTP/1.0 for 1.0 clients).
        let text = String::from_utf8_lossy(&answer);
        if answer.is_empty() {
            *closed.lock().unwrap() += 1;
        } else {
            prop_assert!(
                text.starts_with("HTTP/1.1 ") || text.starts_with("HTTP/1.0 "),
                "{:?} -> {:?}",
                String::from_utf8_lossy(&bytes),
                text
            );
            let status: u16 = text[9..12].parse().unwrap_or(0);
            prop_assert!((200..600).contains(&status), "{}", text);
            *statuses.lock().unwrap().entry(status).or_default() += 1;
            let asked_for_evil = String::from_utf8_lossy(&bytes)
                .split("\r\n")
                .enumerate()
                .any(|(i, line)| {
                    let l = line.to_ascii_lowercase();
                    (i == 0 && l.contains("://evil.example"))
                        || (l.starts_with("host:") && l.contains("evil.example"))
                });
            if asked_for_evil {
                prop_assert!(
                    !text.contains("AccessKeyId"),
                    "served through a DNS name: {:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
        }
        Ok(())
    });
    let alive = p.child.try_wait().unwrap().is_none();
    let logs = p.logs();
    result.unwrap();
    assert!(alive, "the proxy exited; logs:\n{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    assert_eq!(
        rt.block_on(common::request(addr, "GET", "/healthz", &[]))
            .status,
        200
    );
    let statuses = statuses.into_inner().unwrap();
    let closed = closed.into_inner().unwrap();
    eprintln!("raw-bytes statuses: {statuses:?}, closed without an answer: {closed}");
    // Routing, not only the parser, must have seen most cases: at least one
    // request reached a handler that answered 200.
    assert!(
        statuses.contains_key(&200),
        "{statuses:?}, closed: {closed}"
    );
}
