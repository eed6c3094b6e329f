//! Token rotation as kubelet does it, and the other ways a token file changes.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, jwt, request, FakeSts, ProxyBuilder, TokenDir};

#[tokio::test]
async fn rotation_should_replace_an_expired_token_at_once() {
    let sts = FakeSts::start().await;
    let old = jwt("system:serviceaccount:default:app", -10, "old");
    sts.script().expired_tokens.insert(old.clone());
    let dir = TokenDir::new(&old);
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();

    assert!(eventually(Duration::from_secs(5), || async { sts.call_count() >= 1 }).await);
    assert_eq!(p.ecs(None).await.status, 503);
    // Let the back-off grow past the point where it alone would retry quickly.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let calls_before = sts.call_count();

    let new = jwt("system:serviceaccount:default:app", 3600, "new");
    dir.rotate(&new);
    let rotated_at = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || async {
            p.ecs(None).await.status == 200
        })
        .await,
        "no credentials within 5 s of the rotation; logs:\n{}",
        p.logs()
    );
    assert!(
        rotated_at.elapsed() < Duration::from_secs(3),
        "{:?}",
        rotated_at.elapsed()
    );
    let calls = sts.calls();
    assert!(calls.len() > calls_before);
    assert_eq!(calls.last().unwrap().token, new);

    let logs = p.logs();
    assert!(logs.contains("ExpiredTokenException"), "{logs}");
    assert!(
        logs.contains("sub=system:serviceaccount:default:app"),
        "claims are logged: {logs}"
    );
    assert!(
        !logs.contains(&old) && !logs.contains(&new),
        "the token itself is never logged"
    );
    assert!(logs.contains("web-identity token rotated"));
    let m = p.metrics().await;
    assert!(m.contains("irsa_proxy_token_rotations_total 1"), "{m}");
}

#[tokio::test]
async fn every_kind_of_file_change_should_count_as_a_rotation() {
    let sts = FakeSts::start().await;
    let dir = TokenDir::new(&jwt("system:serviceaccount:default:app", 3600, "0"));
    let p = ProxyBuilder::serve(&dir.path(), &sts.url()).start();
    assert_eq!(p.ecs(None).await.status, 200);

    let rotations = |n: u64| rotations_reach(p.addr, n);
    // kubelet's ..data swap.
    dir.rotate(&jwt("system:serviceaccount:default:app", 3600, "1"));
    assert!(rotations(1).await, "..data swap");

    // A plain file: in-place rewrite, rename over it, delete then create.
    let plain = tempfile::tempdir().unwrap();
    let file = plain.path().join("token");
    std::fs::write(&file, jwt("system:serviceaccount:default:app", 3600, "p0")).unwrap();
    let p2 = ProxyBuilder::serve(&file, &sts.url()).start();
    assert_eq!(p2.ecs(None).await.status, 200);
    let count = |n: u64| rotations_reach(p2.addr, n);
    std::fs::write(&file, jwt("system:serviceaccount:default:app", 3600, "p1")).unwrap();
    assert!(count(1).await, "in-place rewrite");
    let tmp = plain.path().join("token.tmp");
    std::fs::write(&tmp, jwt("system:serviceaccount:default:app", 3600, "p2")).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    assert!(count(2).await, "rename over the file");
    std::fs::remove_file(&file).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(&file, jwt("system:serviceaccount:default:app", 3600, "p3")).unwrap();
    assert!(count(3).await, "delete then create");
    // Cached credentials were served throughout.
    assert_eq!(p2.ecs(None).await.status, 200);
}

/// True once the proxy's metrics count `n` token rotations (waits up to 5 s).
async fn rotations_reach(addr: std::net::SocketAddr, n: u64) -> bool {
    let needle = format!("irsa_proxy_token_rotations_total {n}");
    eventually(Duration::from_secs(5), || async {
        request(addr, "GET", "/metrics", &[])
            .await
            .body
            .contains(&needle)
    })
    .await
}

#[tokio::test]
async fn replacing_the_whole_token_directory_should_keep_rotations_noticed() {
    // The directory itself renamed away and a new one renamed into its place
    // (a remount, an operator's fix): the watch must follow the new directory at
    // once, not only at the next 60 s poll.
    let sts = FakeSts::start().await;
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("serviceaccount");
    std::fs::create_dir(&root).unwrap();
    let _first_writer = irsa_proxy::sidecar::token::projected::ProjectedTokenDir::create(
        &root,
        &jwt("system:serviceaccount:default:app", 3600, "0"),
    )
    .unwrap();
    let p = ProxyBuilder::serve(&root.join("token"), &sts.url()).start();
    assert_eq!(p.ecs(None).await.status, 200);
    let count = |n: u64| rotations_reach(p.addr, n);

    let fresh = parent.path().join("serviceaccount.new");
    std::fs::create_dir(&fresh).unwrap();
    let _fresh_writer = irsa_proxy::sidecar::token::projected::ProjectedTokenDir::create(
        &fresh,
        &jwt("system:serviceaccount:default:app", 3600, "1"),
    )
    .unwrap();
    let old = parent.path().join("serviceaccount.old");
    std::fs::rename(&root, &old).unwrap();
    std::fs::rename(&fresh, &root).unwrap();
    std::fs::remove_dir_all(&old).unwrap();
    assert!(count(1).await, "directory replacement; logs:\n{}", p.logs());
    // A writer for the new directory, as kubelet would have after a remount.
    let mut writer = irsa_proxy::sidecar::token::projected::ProjectedTokenDir::create(
        &root,
        &jwt("system:serviceaccount:default:app", 3600, "2"),
    )
    .unwrap();
    assert!(count(2).await, "first swap in the new directory");
    for i in 3..6 {
        writer
            .write(&jwt(
                "system:serviceaccount:default:app",
                3600,
                &i.to_string(),
            ))
            .unwrap();
        assert!(count(i).await, "swap {i} in the new directory");
    }
    assert_eq!(p.ecs(None).await.status, 200);
}
