//! Raw bytes into the real request handler behind hyper's HTTP/1.1 server, over
//! an in-memory stream: never panics, and whatever comes back starts with a
//! status line.
#![no_main]
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use irsa_proxy::clock::SystemClock;
use irsa_proxy::sidecar::cache::{CredentialStore, Credentials, RoleInfo};
use irsa_proxy::sidecar::endpoints::{handle, AppState, Peer, ServedRole, ServerSettings};
use irsa_proxy::sidecar::metrics::Metrics;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn state() -> Arc<AppState> {
    static STATE: OnceLock<Arc<AppState>> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let role = RoleInfo {
                role_arn: "arn:aws:iam::111122223333:role/app".into(),
                account: "111122223333".into(),
            };
            let store = Arc::new(CredentialStore::new(role, Arc::new(SystemClock)));
            let now = SystemTime::now();
            store.install(
                Credentials::new(
                    "ASIAFUZZ",
                    "secret",
                    "token",
                    now + Duration::from_secs(3600),
                    None,
                ),
                now,
            );
            Arc::new(AppState::single(
                ServedRole::new("default", store, "app".into()),
                None,
                Arc::new(Metrics::new()),
                ServerSettings {
                    region: Some("us-east-1".into()),
                    ..ServerSettings::default()
                },
            ))
        })
        .clone()
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let state = state();
    runtime().block_on(async move {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let service = service_fn(move |req| {
            let state = state.clone();
            async move {
                Ok::<_, std::convert::Infallible>(
                    handle(
                        &state,
                        req,
                        Peer {
                            addr: "127.0.0.1:1".parse().unwrap(),
                            imds_v1: true,
                        },
                    )
                    .await,
                )
            }
        });
        let conn = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .max_buf_size(8 * 1024)
                .serve_connection(TokioIo::new(server), service),
        );
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut out)).await;
        if !out.is_empty() {
            assert!(
                out.starts_with(b"HTTP/1."),
                "{:?}",
                String::from_utf8_lossy(&out)
            );
        }
        conn.abort();
    });
});
