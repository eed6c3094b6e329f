//! `GET /v1/credentials`: the ECS format field by field, the Authorization check,
//! and the request hygiene every endpoint shares (Host check, 404/405, header
//! limits).

mod common;

use std::time::Duration;

use common::{jwt, request, FakeSts, ProxyBuilder, TokenDir};

async fn setup() -> (FakeSts, TokenDir) {
    let sts = FakeSts::start().await;
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    (sts, dir)
}

#[tokio::test]
async fn ecs_body_should_have_every_field_in_the_sdk_formats() {
    let (sts, dir) = setup().await;
    sts.script().secret = "s3cr3t".into();
    sts.script().session_token = "sess-tok".into();
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    let r = p.ecs(None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert!(v["AccessKeyId"].as_str().unwrap().starts_with("ASIAFAKE"));
    assert_eq!(v["SecretAccessKey"], "s3cr3t");
    assert_eq!(v["Token"], "sess-tok");
    assert_eq!(v["AccountId"], "123456789012");
    assert_eq!(v["RoleArn"], "arn:aws:iam::123456789012:role/test-role");
    let exp = v["Expiration"].as_str().unwrap();
    // Exactly YYYY-MM-DDTHH:MM:SSZ: no fraction, no offset.
    assert_eq!(exp.len(), 20, "{exp}");
    assert!(exp.ends_with('Z') && exp.as_bytes()[10] == b'T', "{exp}");
    // What the proxy asked STS for.
    let calls = sts.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].duration, Some(3600));
    assert_eq!(
        calls[0].role_arn,
        "arn:aws:iam::123456789012:role/test-role"
    );
    assert!(calls[0].session_name.starts_with("irsa-proxy-"));
    assert_eq!(calls[0].token, std::fs::read_to_string(dir.path()).unwrap());
}

/// Regression (issue 10): the 30m default of `--refresh-before` refused
/// `--duration 15m`, the STS minimum, from the flag and from its variable.
#[tokio::test]
async fn the_shortest_duration_should_start_with_the_default_refresh_before() {
    for (flag, var) in [(Some("15m"), None), (None, Some("15m"))] {
        let (sts, dir) = setup().await;
        let mut b = ProxyBuilder::serve(&dir.path(), &sts.url());
        if let Some(v) = flag {
            b = b.set("--duration", v);
        }
        if let Some(v) = var {
            b = b.env("IRSA_PROXY_DURATION", v);
        }
        let p = b.start();
        let r = p.ecs(None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(sts.calls()[0].duration, Some(900));
    }
}

/// The token as a value (`IRSA_PROXY_AUTH_TOKEN`, from the Secret that the app
/// containers read too): required on `/v1/credentials`, written over the file
/// for apps that read the file, and the path secret of `/v2/credentials/`.
#[tokio::test]
async fn the_token_value_should_be_required_written_and_serve_the_path_route() {
    let (sts, dir) = setup().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = auth_dir.path().join("auth-token");
    std::fs::write(&auth_file, "left-by-an-earlier-container").unwrap();
    let value = "0123456789abcdef".repeat(4);
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .set("--auth-token-file", auth_file.to_str().unwrap())
        .env("IRSA_PROXY_AUTH_TOKEN", &value)
        .start();
    let missing = p.ecs(None).await;
    assert_eq!(missing.status, 401);
    // What an old SDK that reads only the file sends: the answer says what to set.
    assert!(
        missing
            .body
            .contains("SDKs before 2023 read only the value"),
        "{}",
        missing.body
    );
    assert_eq!(
        p.ecs(Some("left-by-an-earlier-container")).await.status,
        401
    );
    let by_header = p.ecs(Some(&value)).await;
    assert_eq!(by_header.status, 200, "{}", by_header.body);
    assert_eq!(std::fs::read_to_string(&auth_file).unwrap(), value);

    let by_path = request(p.addr, "GET", &format!("/v2/credentials/{value}"), &[]).await;
    assert_eq!(by_path.status, 200);
    assert_eq!(by_path.body, by_header.body);
    assert_eq!(by_path.header("content-type"), Some("application/json"));
    for wrong in [
        "",
        "x",
        &value[1..],
        &format!("{value}x"),
        &format!("{value}/"),
    ] {
        let r = request(p.addr, "GET", &format!("/v2/credentials/{wrong}"), &[]).await;
        assert_eq!(r.status, 401, "{wrong:?}");
        assert_eq!(r.json()["code"], "Unauthorized");
    }
    assert_eq!(
        request(p.addr, "POST", &format!("/v2/credentials/{value}"), &[])
            .await
            .status,
        405
    );
    assert!(p.metrics().await.contains(r#"endpoint="ecs",status="200""#));
}

/// Without a token there is no secret for the path: the route is not served.
#[tokio::test]
async fn the_path_route_should_be_404_without_a_token() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    let r = request(p.addr, "GET", "/v2/credentials/anything", &[]).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("IRSA_PROXY_AUTH_TOKEN"), "{}", r.body);
}

#[tokio::test]
async fn auth_token_file_should_be_created_and_required() {
    let (sts, dir) = setup().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = auth_dir.path().join("auth-token");
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .set("--auth-token-file", auth_file.to_str().unwrap())
        .start();
    let token = std::fs::read_to_string(&auth_file).unwrap();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));

    let missing = p.ecs(None).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["code"], "Unauthorized");
    let wrong = p.ecs(Some("WRONG-MARKER-VALUE")).await;
    assert_eq!(wrong.status, 401);
    let ok = p.ecs(Some(&token)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let logs = p.logs();
    assert!(logs.contains("refused /v1/credentials"), "{logs}");
    assert!(!logs.contains("WRONG-MARKER-VALUE"));
    assert!(!logs.contains(&token));
}

#[tokio::test]
async fn existing_auth_token_file_should_be_used_trimmed() {
    let (sts, dir) = setup().await;
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = auth_dir.path().join("auth-token");
    std::fs::write(&auth_file, "my-token\n").unwrap();
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .env("IRSA_PROXY_AUTH_TOKEN_FILE", auth_file.to_str().unwrap())
        .start();
    assert_eq!(p.ecs(Some("my-token")).await.status, 200);
    assert_eq!(p.ecs(Some("my-token\n".trim_end())).await.status, 200);
    assert_eq!(p.ecs(Some("my-tokenx")).await.status, 401);
}

#[tokio::test]
async fn dns_names_in_host_should_be_refused() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    for host in [
        "evil.example",
        "evil.example:9911",
        "localhost.evil.example",
    ] {
        let r = request(p.addr, "GET", "/v1/credentials", &[("Host", host)]).await;
        assert_eq!(r.status, 403, "{host}");
        assert_eq!(r.json()["code"], "Forbidden");
    }
    for host in ["localhost", "localhost:9911", "127.0.0.1", "[::1]:9911"] {
        let r = request(p.addr, "GET", "/v1/credentials", &[("Host", host)]).await;
        assert_eq!(r.status, 200, "{host}");
    }
    // HTTP/1.0 clients send no Host at all: served.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /v1/credentials HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    assert_eq!(common::http::parse(&buf, false).unwrap().status, 200);
    // Two Host headers, or a DNS name in an absolute-form request line: refused.
    let two = request(
        p.addr,
        "GET",
        "/v1/credentials",
        &[("Host", "127.0.0.1"), ("Host", "evil.example")],
    )
    .await;
    assert_eq!(two.status, 403);
    let absolute = request(
        p.addr,
        "GET",
        "http://evil.example/v1/credentials",
        &[("Host", "127.0.0.1")],
    )
    .await;
    assert_eq!(absolute.status, 403);
}

#[tokio::test]
async fn unknown_paths_and_methods_should_be_404_and_405() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    assert_eq!(request(p.addr, "GET", "/nope", &[]).await.status, 404);
    assert_eq!(
        request(p.addr, "GET", "/v1/credentials/", &[]).await.status,
        404
    );
    let r = request(
        p.addr,
        "POST",
        "/v1/credentials",
        &[("Content-Length", "0")],
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = request(p.addr, "GET", "/latest/api/token", &[]).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("PUT"));
    let head = request(p.addr, "HEAD", "/v1/credentials", &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn oversized_header_block_should_be_refused_and_the_server_keep_serving() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    let big = "x".repeat(16 * 1024);
    let r = common::http::try_request(p.addr, "GET", "/v1/credentials", &[("X-Big", &big)]).await;
    // hyper answers 431, or closes when the head can never fit.
    if let Ok(r) = r {
        assert_eq!(r.status, 431);
    }
    assert_eq!(p.ecs(None).await.status, 200);
    assert_eq!(request(p.addr, "GET", "/healthz", &[]).await.status, 200);
}

#[tokio::test]
async fn health_ready_and_metrics_should_answer() {
    let (sts, dir) = setup().await;
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    assert_eq!(request(p.addr, "GET", "/healthz", &[]).await.status, 200);
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            request(p.addr, "GET", "/readyz", &[]).await.status == 200
        })
        .await
    );
    p.ecs(None).await;
    let m = p.metrics().await;
    for needle in [
        "irsa_proxy_sts_requests_total{result=\"success\",error=\"\",role=\"default\"} 1",
        "irsa_proxy_credentials_expiry_timestamp_seconds{role=\"default\"} ",
        "irsa_proxy_token_rotations_total 0",
        "irsa_proxy_http_requests_total{endpoint=\"ecs\",status=\"200\",role=\"default\"} 1",
        "irsa_proxy_http_requests_total{endpoint=\"health\",status=\"200\",role=\"\"}",
        "irsa_proxy_ready 1",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
}
