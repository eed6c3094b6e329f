//! Test harness: a fake STS that speaks the real Query/XML protocol, a token
//! directory laid out and rotated exactly as kubelet does it, the real binary
//! started on 127.0.0.1:0 with its logs captured, and a raw HTTP/1.1 client.
#![allow(dead_code)]

pub mod clients;
pub mod fake_sts;
pub mod http;
pub mod kubelet;
#[cfg(feature = "tools")]
pub mod pki;
pub mod podrunner;
pub mod proxy;
pub mod sdk;

#[allow(unused_imports)]
pub use fake_sts::FakeSts;
#[allow(unused_imports)]
pub use http::{request, Reply};
#[allow(unused_imports)]
pub use kubelet::TokenDir;
#[allow(unused_imports)]
pub use proxy::{ProxyBuilder, ProxyProcess};

use base64::Engine;

/// An unsigned JWT with the given claims (the fake STS does not verify
/// signatures; it recognises tokens by value).
pub fn jwt(sub: &str, exp_in_secs: i64, marker: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b.encode(r#"{"alg":"RS256","kid":"test"}"#);
    let claims = serde_json::json!({
        "iss": "https://oidc.eks.us-east-1.amazonaws.com/id/TEST",
        "sub": sub,
        "aud": ["sts.amazonaws.com"],
        "iat": now,
        "exp": now + exp_in_secs,
    });
    let payload = b.encode(claims.to_string());
    let sig = b.encode(format!("signature-{marker}"));
    format!("{header}.{payload}.{sig}")
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: std::time::Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
