//! The refresh policy through the real binary: the wiring only. The policy's
//! timings (the jittered window, the safety margin, back-off from 1 s to 60 s,
//! single flight, rotation cutting the back-off short, cold start) are asserted
//! exactly, hours of them, in process on paused time in
//! `src/sidecar/cache/refresher/tests.rs`. These tests prove that the binary runs
//! that policy against a real STS wire: credentials 4 s long so that events come
//! quickly, waits for events rather than for fixed times, and bounds far beyond
//! what a loaded two-core machine needs.

mod common;

use std::time::{Duration, Instant};

use common::fake_sts::Failure;
use common::{eventually, jwt, request, FakeSts, ProxyBuilder, TokenDir};

/// Long enough for anything these tests wait for on a loaded machine; the
/// events themselves come within a few seconds.
const PATIENCE: Duration = Duration::from_secs(30);

/// The access key id served now, if any.
async fn served_key(p: &common::ProxyProcess) -> Option<String> {
    let r = p.ecs(None).await;
    (r.status == 200).then(|| r.json()["AccessKeyId"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn short_credentials_should_be_refreshed_by_the_running_proxy() {
    let sts = FakeSts::start().await;
    // 4 s credentials: a margin of 1 s, refreshed 2-2.2 s before expiry.
    sts.script().credential_ttl = Duration::from_secs(4);
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    let first = served_key(&p).await.expect("credentials at cold start");
    assert!(
        eventually(PATIENCE, || async {
            served_key(&p).await.is_some_and(|k| k != first)
        })
        .await,
        "never refreshed; logs:\n{}",
        p.logs()
    );
    // Every call issued the credentials of one generation.
    let calls = sts.calls();
    assert!(calls.len() >= 2);
    assert!(calls.iter().all(|c| c.issued.is_some()), "{calls:?}");
}

#[tokio::test]
async fn cold_start_herd_should_make_exactly_one_sts_call() {
    let sts = FakeSts::start().await;
    sts.script().delay = Duration::from_millis(1500);
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    let addr = p.addr;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        tasks.push(tokio::spawn(async move {
            common::request(addr, "GET", "/v1/credentials", &[])
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(sts.call_count(), 1, "single flight");
}

#[tokio::test]
async fn cold_start_should_give_503_after_five_seconds_without_sts() {
    let sts = FakeSts::start().await;
    sts.script().delay = Duration::from_secs(60);
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    let t = Instant::now();
    let r = p.ecs(None).await;
    let waited = t.elapsed();
    assert_eq!(r.status, 503);
    assert!(r.json()["code"].is_string());
    // The cold-start wait is 5 s (exactly so in process); far less than STS's
    // 60 s is enough to show that the request gave up instead of waiting.
    assert!(
        waited >= Duration::from_millis(4500) && waited < Duration::from_secs(30),
        "{waited:?}"
    );
    assert_eq!(request(p.addr, "GET", "/readyz", &[]).await.status, 503);
}

#[tokio::test]
async fn outage_should_answer_the_sts_error_once_the_cache_is_inside_its_margin() {
    let sts = FakeSts::start().await;
    sts.script().credential_ttl = Duration::from_secs(4);
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    assert_eq!(p.ecs(None).await.status, 200);
    sts.script().fail_all = Some(Failure::new(500, "InternalFailure", "STS is down"));

    // Served until the margin of the last generation, then the STS error (a
    // loaded machine may first show `CredentialsExpiring`, while the failing
    // refresh is still under way).
    assert!(
        eventually(PATIENCE, || async {
            let r = p.ecs(None).await;
            r.status == 503 && r.json()["code"] == "InternalFailure"
        })
        .await,
        "logs:\n{}",
        p.logs()
    );
    let r = p.ecs(None).await;
    assert_eq!(r.status, 503);
    let v = r.json();
    assert_eq!(v["code"], "InternalFailure", "{v}");
    assert!(v["message"].is_string());
    assert_eq!(request(p.addr, "GET", "/readyz", &[]).await.status, 503);
    let m = p.metrics().await;
    assert!(m.contains("irsa_proxy_ready 0"), "{m}");
    assert!(
        m.contains("irsa_proxy_sts_requests_total{result=\"error\",error=\"InternalFailure\",role=\"default\"}"),
        "{m}"
    );

    // STS comes back and the token rotates: service resumes (with credentials
    // long enough that readiness cannot lapse again before it is read).
    sts.script().credential_ttl = Duration::from_secs(3600);
    sts.script().fail_all = None;
    dir.rotate(&jwt("system:serviceaccount:default:app", 3600, "b"));
    assert!(
        eventually(PATIENCE, || async { p.ecs(None).await.status == 200 }).await,
        "no recovery after STS came back and the token rotated; logs:\n{}",
        p.logs()
    );
    assert_eq!(request(p.addr, "GET", "/readyz", &[]).await.status, 200);
}

#[tokio::test]
async fn throttling_three_times_then_success_should_recover() {
    let sts = FakeSts::start().await;
    for _ in 0..3 {
        sts.script()
            .failures
            .push_back(Failure::new(400, "Throttling", "Rate exceeded"));
    }
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    assert!(
        eventually(PATIENCE, || async { p.ecs(None).await.status == 200 }).await,
        "logs:\n{}",
        p.logs()
    );
    assert_eq!(sts.call_count(), 4);
    let m = p.metrics().await;
    assert!(
        m.contains(
            "irsa_proxy_sts_requests_total{result=\"error\",error=\"Throttling\",role=\"default\"}"
        ),
        "{m}"
    );
    assert!(m.contains(
        "irsa_proxy_sts_requests_total{result=\"success\",error=\"\",role=\"default\"} 1"
    ));
}

#[tokio::test]
async fn duration_above_the_role_maximum_should_be_explained() {
    let sts = FakeSts::start().await;
    sts.script().fail_all = Some(Failure::new(
        400,
        "ValidationError",
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
    ));
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .set("--duration", "12h")
        .start();
    let r = p.ecs(None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["code"], "ValidationError");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("lower --duration"));
    assert_eq!(sts.calls()[0].duration, Some(43200));
    // The log line may reach the test's reader after the answer does.
    assert!(
        eventually(PATIENCE, || async { p.logs().contains("lower --duration") }).await,
        "logs:\n{}",
        p.logs()
    );
}
