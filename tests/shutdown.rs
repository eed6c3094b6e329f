//! SIGTERM: readiness 503 at once, keep serving for --shutdown-delay, exit 0.

mod common;

use std::time::{Duration, Instant};

use common::{jwt, request, FakeSts, ProxyBuilder, TokenDir};

#[tokio::test]
async fn sigterm_should_fail_readiness_then_serve_through_the_delay_and_exit_0() {
    let sts = FakeSts::start().await;
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    let mut p = ProxyBuilder::serve(&dir.path(), &sts.url())
        .set("--shutdown-delay", "2s")
        .start();
    assert_eq!(p.ecs(None).await.status, 200);
    assert_eq!(request(p.addr, "GET", "/readyz", &[]).await.status, 200);

    let t = Instant::now();
    p.sigterm();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(request(p.addr, "GET", "/readyz", &[]).await.status, 503);
    assert_eq!(
        p.ecs(None).await.status,
        200,
        "still serving during the delay"
    );
    assert_eq!(request(p.addr, "GET", "/healthz", &[]).await.status, 200);
    let m = p.metrics().await;
    assert!(m.contains("irsa_proxy_ready 0"), "{m}");

    let status = p.wait_exit(Duration::from_secs(10)).expect("did not exit");
    assert!(status.success(), "{status:?}");
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert!(common::http::try_request(p.addr, "GET", "/healthz", &[])
        .await
        .is_err());
}

#[tokio::test]
async fn sigint_should_also_shut_down_cleanly() {
    let sts = FakeSts::start().await;
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "a"));
    let mut p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    let ok = std::process::Command::new("kill")
        .args(["-INT", &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = p.wait_exit(Duration::from_secs(5)).expect("did not exit");
    assert!(status.success());
}
