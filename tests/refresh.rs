//! The refresh policy against a scripted STS: refresh before expiry, single
//! flight at cold start, static stability through an outage, back-off on
//! throttling.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use common::fake_sts::Failure;
use common::{eventually, jwt, request, FakeSts, ProxyBuilder, TokenDir};

fn parse_exp(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s).unwrap_or_else(|e| panic!("bad Expiration {s:?}: {e}"))
}

/// Seconds left on a served Expiration, as seen by the test.
fn left(exp: SystemTime) -> f64 {
    match exp.duration_since(SystemTime::now()) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[tokio::test]
async fn short_credentials_should_be_refreshed_before_they_expire() {
    let sts = FakeSts::start().await;
    sts.script().credential_ttl = Duration::from_secs(20);
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();

    // Sample continuously for 26 s: every answer is 200 and carries credentials
    // outside the 5 s safety margin (a quarter of 20 s).
    let mut keys = Vec::<(String, SystemTime)>::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(26) {
        let r = p.ecs(None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        let exp = parse_exp(v["Expiration"].as_str().unwrap());
        assert!(
            left(exp) > 4.5,
            "served credentials with {:.1}s left (inside the margin)",
            left(exp)
        );
        let key = v["AccessKeyId"].as_str().unwrap().to_string();
        if keys.last().map(|(k, _)| k != &key).unwrap_or(true) {
            if let Some((_, old_exp)) = keys.last() {
                // The new key arrived well before the old one expired.
                assert!(
                    left(*old_exp) >= 5.0,
                    "switched only {:.1}s before expiry",
                    left(*old_exp)
                );
            }
            keys.push((key, exp));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let distinct: HashSet<_> = keys.iter().map(|(k, _)| k).collect();
    assert!(
        distinct.len() >= 3,
        "expected at least 3 generations in 26 s, got {keys:?}"
    );
    // One STS call per generation: no herd, no refresh storm.
    assert!(
        sts.call_count() <= distinct.len() + 1,
        "{} calls",
        sts.call_count()
    );
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
    sts.script().delay = Duration::from_secs(30);
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    let t = Instant::now();
    let r = p.ecs(None).await;
    let waited = t.elapsed();
    assert_eq!(r.status, 503);
    assert!(r.json()["code"].is_string());
    assert!(
        waited >= Duration::from_millis(4500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    assert_eq!(request(p.addr, "GET", "/readyz", &[]).await.status, 503);
}

#[tokio::test]
async fn outage_should_keep_serving_cached_credentials_until_the_margin_then_503() {
    let sts = FakeSts::start().await;
    sts.script().credential_ttl = Duration::from_secs(20);
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    let first = p.ecs(None).await;
    assert_eq!(first.status, 200);
    let exp = parse_exp(first.json()["Expiration"].as_str().unwrap());
    sts.script().fail_all = Some(Failure::new(500, "InternalFailure", "STS is down"));

    let mut saw_503 = false;
    while left(exp) > -2.0 {
        let r = p.ecs(None).await;
        let ready = request(p.addr, "GET", "/readyz", &[]).await.status;
        if left(exp) > 5.5 {
            assert_eq!(
                r.status,
                200,
                "cached credentials must be served ({:.1}s left)",
                left(exp)
            );
            assert_eq!(r.json()["Expiration"], first.json()["Expiration"]);
        }
        if r.status == 200 {
            assert!(left(parse_exp(r.json()["Expiration"].as_str().unwrap())) > 4.5);
        } else {
            assert_eq!(r.status, 503);
            assert!(left(exp) <= 5.5, "503 too early: {:.1}s left", left(exp));
            let v = r.json();
            assert_eq!(v["code"], "InternalFailure", "{v}");
            assert!(v["message"].is_string());
            assert_eq!(ready, 503);
            saw_503 = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(saw_503);
    let m = p.metrics().await;
    assert!(m.contains("irsa_proxy_ready 0"), "{m}");
    assert!(
        m.contains("irsa_proxy_sts_requests_total{result=\"error\",error=\"InternalFailure\"}"),
        "{m}"
    );

    // STS comes back: a rotation cuts the back-off short and service resumes.
    sts.script().fail_all = None;
    dir.rotate(&jwt("system:serviceaccount:default:app", 3600, "b"));
    assert!(
        eventually(Duration::from_secs(5), || async {
            p.ecs(None).await.status == 200
        })
        .await,
        "no recovery after STS came back and the token rotated"
    );
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
        eventually(Duration::from_secs(30), || async {
            p.ecs(None).await.status == 200
        })
        .await,
        "logs:\n{}",
        p.logs()
    );
    assert_eq!(sts.call_count(), 4);
    let m = p.metrics().await;
    assert!(
        m.contains("irsa_proxy_sts_requests_total{result=\"error\",error=\"Throttling\"}"),
        "{m}"
    );
    assert!(m.contains("irsa_proxy_sts_requests_total{result=\"success\",error=\"\"} 1"));
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
    assert!(p.logs().contains("lower --duration"));
}
