//! The secret access key, the session token, the web-identity token and the
//! Authorization values (as a header or as the path of `/v2/credentials/`) never reach a log line, even at trace level, in text or
//! JSON, on success or on failure.

mod common;

use std::time::Duration;

use common::fake_sts::Failure;
use common::{request, FakeSts, ProxyBuilder, TokenDir};

const SECRET: &str = "SECRET-MARKER-DO-NOT-LOG";
const SESSION: &str = "SESSIONTOKEN-MARKER-DO-NOT-LOG";
const WEB_IDENTITY: &str = "WEBIDENTITY-MARKER-DO-NOT-LOG";
const AUTH: &str = "AUTH-MARKER-DO-NOT-LOG";
const PRESENTED: &str = "PRESENTED-MARKER-DO-NOT-LOG";

async fn exercise(format: &str) -> String {
    let sts = FakeSts::start().await;
    sts.script().secret = SECRET.into();
    sts.script().session_token = SESSION.into();
    let token = common::jwt("system:serviceaccount:default:app", 3600, WEB_IDENTITY);
    let dir = TokenDir::new(&token);
    let auth_dir = tempfile::tempdir().unwrap();
    let auth_file = auth_dir.path().join("auth");
    std::fs::write(&auth_file, AUTH).unwrap();
    // The first call is refused: the error path logs claims, never the token.
    sts.script().failures.push_back(Failure::new(
        400,
        "InvalidIdentityToken",
        "Couldn't retrieve verification key from your identity provider",
    ));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .set("--auth-token-file", auth_file.to_str().unwrap())
        .set("--log-format", format)
        .env("RUST_LOG", "trace")
        .start();

    assert!(
        common::eventually(Duration::from_secs(10), || async {
            p.ecs(Some(AUTH)).await.status == 200
        })
        .await
    );
    assert!(p.logs().contains("InvalidIdentityToken"));
    assert_eq!(p.ecs(Some(PRESENTED)).await.status, 401);
    // The path-token route: the token in the path is never logged either.
    let by_path = |t: &str| format!("/v2/credentials/{t}");
    assert_eq!(
        request(p.addr, "GET", &by_path(AUTH), &[]).await.status,
        200
    );
    assert_eq!(
        request(p.addr, "GET", &by_path(PRESENTED), &[])
            .await
            .status,
        401
    );
    let imds = common::http::imds_v2(
        p.addr,
        "/latest/meta-data/iam/security-credentials/test-role",
    )
    .await;
    assert_eq!(imds.status, 200);
    assert!(imds.body.contains(SECRET), "the marker really is served");

    // A rotation: its log line carries the new token's claims only.
    let token2 = common::jwt(
        "system:serviceaccount:default:app",
        3600,
        &format!("{WEB_IDENTITY}-2"),
    );
    dir.rotate(&token2);
    assert!(
        common::eventually(Duration::from_secs(5), || async {
            p.logs().contains("web-identity token rotated")
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = p.logs();
    assert!(!logs.is_empty());
    for needle in [SECRET, SESSION, AUTH, PRESENTED, &token, &token2] {
        assert!(!logs.contains(needle), "{needle:?} leaked into the logs");
    }
    // The token's signature part carries the marker base64-encoded: check the raw
    // parts too.
    for part in token.split('.').chain(token2.split('.')) {
        if part.len() > 20 {
            assert!(!logs.contains(part), "a token part leaked into the logs");
        }
    }
    logs
}

#[tokio::test]
async fn secrets_should_never_reach_text_logs_at_trace_level() {
    let logs = exercise("text").await;
    assert!(logs.contains("ASIAFAKE"), "the access key id may be logged");
}

#[tokio::test]
async fn secrets_should_never_reach_json_logs_at_trace_level() {
    let logs = exercise("json").await;
    for line in logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
    }
}
