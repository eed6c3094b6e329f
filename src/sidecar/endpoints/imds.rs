//! The EC2 instance metadata service, as far as SDKs use it for credentials and
//! region discovery.
//!
//! IMDSv2: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` in
//! 1..=21600 answers a random session token and echoes the TTL header (the Go and
//! Rust SDKs fail without it); a request carrying `X-Forwarded-For` is refused with
//! 403, as EC2 does, so an HTTP proxy in the app cannot be used to fetch a token. A
//! GET with an unknown or expired token gets 401; without a token it is served
//! (IMDSv1) only where [`ImdsV1`] allows it: by default on the link-local
//! listeners, never on loopback. Session tokens live in a bounded store
//! (oldest evicted first), so no client can grow memory by asking for tokens.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::response::{error, json, text, Body};
use super::AppState;
use crate::clock::format_timestamp;

pub(crate) const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
pub(crate) const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const MAX_TTL: u64 = 21_600;

/// Live IMDSv2 session tokens, bounded.
#[derive(Debug)]
pub struct SessionTokens {
    /// A std `Mutex`: held for a hash-map operation, never across an `.await`.
    inner: Mutex<Tokens>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Tokens {
    expiry: HashMap<String, Instant>,
    /// Issue order, for evicting the oldest when full.
    order: VecDeque<String>,
}

impl SessionTokens {
    pub fn new(capacity: usize) -> Self {
        SessionTokens {
            inner: Mutex::new(Tokens::default()),
            capacity: capacity.max(1),
        }
    }

    /// Issues a token valid for `ttl`.
    pub fn issue(&self, ttl: Duration) -> String {
        let bytes: [u8; 32] = rand::random();
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Drop expired tokens from the front first, then the oldest if still full.
        while let Some(front) = t.order.front() {
            let expired = t.expiry.get(front).is_none_or(|e| *e <= now);
            if expired || t.order.len() >= self.capacity {
                if let Some(old) = t.order.pop_front() {
                    t.expiry.remove(&old);
                }
            } else {
                break;
            }
        }
        t.expiry.insert(token.clone(), now + ttl);
        t.order.push_back(token.clone());
        token
    }

    /// True if the token was issued here and has not expired.
    pub(crate) fn is_valid(&self, token: &str) -> bool {
        let t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        t.expiry.get(token).is_some_and(|e| *e > Instant::now())
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expiry
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `PUT /latest/api/token`.
pub(crate) fn put_token(state: &AppState, headers: &HeaderMap) -> Response<Body> {
    if headers.contains_key("x-forwarded-for") {
        return text(
            StatusCode::FORBIDDEN,
            "a session token request must not carry X-Forwarded-For",
        );
    }
    let ttl = headers
        .get(TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|t| (1..=MAX_TTL).contains(t));
    let Some(ttl) = ttl else {
        return text(
            StatusCode::BAD_REQUEST,
            "X-aws-ec2-metadata-token-ttl-seconds must be a whole number of seconds from 1 to 21600",
        );
    };
    let token = state.imds_tokens.issue(Duration::from_secs(ttl));
    let mut r = text(StatusCode::OK, token);
    r.headers_mut().insert(TTL_HEADER, HeaderValue::from(ttl));
    r
}

/// Where IMDSv1 (a GET without a session token) is answered (`--imds-v1`).
///
/// IMDSv1 is what SSRF exploits: a plain GET that an attacker can make the app
/// send. Every SDK that can be pointed at a loopback port (2020 on) also speaks
/// IMDSv2, so loopback listeners need no IMDSv1; SDKs from before November 2019
/// speak only IMDSv1, and they find IMDS only at `169.254.169.254:80`, which is
/// served only with `--link-local`. Hence the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImdsV1 {
    /// Every GET needs a session token (`--imds-require-token`).
    Never,
    /// Only on the link-local credential addresses (169.254.169.254, fd00:ec2::254).
    LinkLocal,
    /// On every listener, loopback included.
    Always,
}

impl ImdsV1 {
    pub(crate) const ALLOWED: &'static str = "never, link-local or always";

    pub fn parse(s: &str) -> Result<ImdsV1, &'static str> {
        match s.trim().to_ascii_lowercase().as_str() {
            "never" => Ok(ImdsV1::Never),
            "link-local" => Ok(ImdsV1::LinkLocal),
            "always" => Ok(ImdsV1::Always),
            _ => Err(Self::ALLOWED),
        }
    }

    /// Whether a listener bound to `local` answers IMDSv1.
    pub(crate) fn allowed_on(self, local: std::net::IpAddr) -> bool {
        match self {
            ImdsV1::Never => false,
            ImdsV1::LinkLocal => crate::sidecar::addresses::is_credential_address(local),
            ImdsV1::Always => true,
        }
    }
}

/// Checks the session token of a GET. `None` means go on. `v1` says whether
/// the listener the request came in on answers IMDSv1.
pub(crate) fn check_token(
    state: &AppState,
    headers: &HeaderMap,
    v1: bool,
) -> Option<Response<Body>> {
    match headers.get(TOKEN_HEADER) {
        Some(v) => {
            let ok = v.to_str().is_ok_and(|t| state.imds_tokens.is_valid(t));
            (!ok).then(|| {
                text(
                    StatusCode::UNAUTHORIZED,
                    "unknown or expired metadata session token",
                )
            })
        }
        None if !v1 => {
            tracing::warn!(
                "refused an IMDSv1 GET (no session token): this listener answers IMDSv2 only. SDKs from before November 2019 speak only IMDSv1 and look only at 169.254.169.254: serve them with `inject --link-local` (or --imds-v1 always, which an SSRF can then use)"
            );
            Some(text(
                StatusCode::UNAUTHORIZED,
                "a metadata session token is required (IMDSv2): PUT /latest/api/token first; IMDSv1 is served only on 169.254.169.254 (inject --link-local)",
            ))
        }
        None => None,
    }
}

/// The 404 of the credential paths when IMDS serves no role: several roles
/// and no `imds_role`. IMDS has no per-client identity (no token, the same
/// address for every container), so a role served there would reach every
/// container of the pod, whatever token it holds.
fn no_imds_role(state: &AppState) -> Response<Body> {
    let names: Vec<&str> = state.roles.iter().map(|r| r.name).collect();
    text(
        StatusCode::NOT_FOUND,
        format!(
            "IMDS serves no role: this proxy serves several roles ({}) and none is the roles JSON's imds_role. IMDS cannot tell containers apart, so a role served here would reach every container in the pod; use AWS_CONTAINER_CREDENTIALS_FULL_URI with the container's own token",
            names.join(", ")
        ),
    )
}

/// A GET under `/latest/`. `None` means the path is not served (404).
pub async fn get(state: &AppState, path: &str) -> Option<Response<Body>> {
    let served = state.imds_role.map(|i| &state.roles[i]);
    let role = served.map_or("", |r| r.imds_name.as_str());
    let path = path.strip_prefix("/latest/")?;
    let region = state.settings.region.as_deref();
    let r = match path {
        "meta-data" | "meta-data/" => {
            let mut listing = String::from("iam/");
            if region.is_some() {
                listing.push_str("\nplacement/");
            }
            text(StatusCode::OK, listing)
        }
        "meta-data/iam" | "meta-data/iam/" => text(StatusCode::OK, "info\nsecurity-credentials/"),
        "meta-data/iam/security-credentials" | "meta-data/iam/security-credentials/" => {
            match served {
                Some(_) => text(StatusCode::OK, role.to_string()),
                None => no_imds_role(state),
            }
        }
        "meta-data/iam/info" => match served {
            None => no_imds_role(state),
            Some(r) => match r.store.get(state.settings.cold_start_wait).await {
                Ok(g) => json(StatusCode::OK, g.iam_info_body.clone()),
                Err(u) => error(StatusCode::SERVICE_UNAVAILABLE, &u.code, &u.message),
            },
        },
        "meta-data/placement" | "meta-data/placement/" => {
            region?;
            text(StatusCode::OK, "availability-zone\nregion")
        }
        "meta-data/placement/region" => text(StatusCode::OK, region?.to_string()),
        "meta-data/placement/availability-zone" => text(StatusCode::OK, format!("{}a", region?)),
        "dynamic/instance-identity/document" => {
            json(StatusCode::OK, identity_document(state, region?))
        }
        other => {
            let name = other.strip_prefix("meta-data/iam/security-credentials/")?;
            let Some(r) = served else {
                return Some(no_imds_role(state));
            };
            if name != role {
                return None;
            }
            match r.store.get(state.settings.cold_start_wait).await {
                Ok(g) => json(StatusCode::OK, g.imds_body.clone()),
                Err(u) => error(StatusCode::SERVICE_UNAVAILABLE, &u.code, &u.message),
            }
        }
    };
    Some(r)
}

/// The instance-identity document, for SDKs that read the region from it.
fn identity_document(state: &AppState, region: &str) -> String {
    let started = state.started;
    // The IMDS role's account, else the first role's: an instance has one.
    let role = &state.roles[state.imds_role.unwrap_or(0)];
    serde_json::json!({
        "accountId": role.store.role.account,
        "architecture": std::env::consts::ARCH.replace("aarch64", "arm64"),
        "availabilityZone": format!("{region}a"),
        "billingProducts": null,
        "devpayProductCodes": null,
        "marketplaceProductCodes": null,
        "imageId": "ami-00000000000000000",
        "instanceId": "i-00000000000000000",
        "instanceType": "irsa-proxy",
        "kernelId": null,
        "pendingTime": format_timestamp(started),
        "privateIp": "127.0.0.1",
        "ramdiskId": null,
        "region": region,
        "version": "2017-09-30",
    })
    .to_string()
}

/// True for the methods IMDS answers on GET paths.
pub(crate) fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_store_should_stay_bounded_and_evict_the_oldest() {
        let s = SessionTokens::new(3);
        let first = s.issue(Duration::from_secs(60));
        for _ in 0..10 {
            s.issue(Duration::from_secs(60));
        }
        assert_eq!(s.len(), 3);
        assert!(!s.is_valid(&first));
    }

    #[test]
    fn expired_tokens_should_be_invalid() {
        let s = SessionTokens::new(3);
        let t = s.issue(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!s.is_valid(&t));
        assert!(!s.is_valid("made-up"));
    }
}
