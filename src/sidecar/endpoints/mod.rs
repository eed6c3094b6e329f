//! The HTTP side: one hyper 1.x HTTP/1.1 server on every `--listen` address.
//!
//! [`serve`] takes bound listeners and a shutdown future from the caller, so tests
//! bind `127.0.0.1:0` and drive it in-process. Per connection: a header-read
//! timeout (which also closes idle keep-alive connections), an 8 KiB limit on the
//! request head (431 beyond it), request bodies never read, a bound on open
//! connections, and graceful draining on shutdown: the shared skeleton of
//! [`crate::sidecar::http_server`], with this server's limits.
//!
//! Routing is a `match` on method and path in [`route`]; before it, the `Host`
//! header is checked against DNS rebinding: only IP literals and `localhost` pass.

mod auth;
mod ecs;
mod imds;
mod response;

#[cfg(feature = "tools")]
pub(crate) use auth::random_token;
pub use auth::{AuthToken, TokenTable};
pub use imds::{ImdsV1, SessionTokens};

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{HeaderValue, ALLOW, HOST};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::sidecar::cache::CredentialStore;
use crate::sidecar::http_server::{Conn, Limits};
use crate::sidecar::metrics::{Endpoint, Metrics};
use response::{error, text, with_type, Body};

/// Tunables of the HTTP server; tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Serve the IMDS paths.
    pub imds: bool,
    /// Where IMDSv1 is answered.
    pub imds_v1: ImdsV1,
    /// The configured region, for the IMDS region documents.
    pub region: Option<String>,
    /// How long a request at cold start waits for the first credentials.
    pub cold_start_wait: Duration,
    /// A connection must deliver a complete request head within this long after
    /// it opens or after the previous response: the slow-client and idle
    /// keep-alive limit in one.
    pub header_read_timeout: Duration,
    /// Open connections at most; at the limit the longest-idle one is closed
    /// to admit a new one (see `serving/connections.rs`).
    pub max_connections: usize,
    /// Live IMDSv2 session tokens at most.
    pub max_imds_tokens: usize,
    /// How long in-flight requests may take to finish once draining starts.
    pub drain_timeout: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            imds: true,
            imds_v1: ImdsV1::LinkLocal,
            region: None,
            cold_start_wait: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_imds_tokens: 1024,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// One role as served: its name, its cache, its IMDS name.
#[derive(Debug)]
pub struct ServedRole {
    /// The role's name (`default` with one role): the metrics' `role` label and
    /// what the logs and `/readyz` say. Fixed for the process's life.
    pub name: &'static str,
    pub store: Arc<CredentialStore>,
    /// The last segment of the served role ARN: the IMDS credentials path.
    pub imds_name: String,
}

impl ServedRole {
    /// `name` is kept for the process's life (one per role, at start-up), so
    /// that counting a request never allocates.
    pub fn new(name: &str, store: Arc<CredentialStore>, imds_name: String) -> ServedRole {
        ServedRole {
            name: Box::leak(name.to_string().into_boxed_str()),
            store,
            imds_name,
        }
    }
}

/// What every request handler shares.
#[derive(Debug)]
pub struct AppState {
    /// Every role served; one (`default`) without several roles.
    pub roles: Vec<ServedRole>,
    /// The roles' tokens, by role index: the `Authorization` value of
    /// `/v1/credentials` and the secret path segment of `/v2/credentials/`.
    /// Empty when one role is served without a token.
    pub tokens: TokenTable,
    /// The role IMDS serves: the only one with one role; with several, the
    /// roles JSON's `imds_role`, or none.
    pub imds_role: Option<usize>,
    /// Several roles are configured (`--roles-file`, `IRSA_PROXY_ROLES`).
    pub several: bool,
    pub metrics: Arc<Metrics>,
    pub imds_tokens: SessionTokens,
    pub settings: ServerSettings,
    /// Set at SIGTERM: readiness answers 503 from then on.
    pub shutting_down: AtomicBool,
    /// Process start, for the identity document's `pendingTime`.
    pub started: SystemTime,
}

impl AppState {
    /// One role, with its token if it has one.
    pub fn single(
        role: ServedRole,
        token: Option<AuthToken>,
        metrics: Arc<Metrics>,
        settings: ServerSettings,
    ) -> AppState {
        let tokens = TokenTable::new(token.into_iter().collect());
        AppState::new(vec![role], tokens, Some(0), false, metrics, settings)
    }

    /// `tokens` by role index; `imds_role` an index into `roles`.
    pub fn new(
        roles: Vec<ServedRole>,
        tokens: TokenTable,
        imds_role: Option<usize>,
        several: bool,
        metrics: Arc<Metrics>,
        settings: ServerSettings,
    ) -> AppState {
        AppState {
            imds_tokens: SessionTokens::new(settings.max_imds_tokens),
            roles,
            tokens,
            imds_role,
            several,
            metrics,
            settings,
            shutting_down: AtomicBool::new(false),
            started: SystemTime::now(),
        }
    }

    /// Ready: valid credentials cached for every role, and not shutting down.
    pub(crate) fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed) && self.roles.iter().all(|r| r.store.is_ready())
    }

    /// The `/readyz` body when not ready for want of credentials: with one
    /// role why it has none; with several, which ones have none and why.
    fn not_ready(&self) -> String {
        if !self.several {
            let u = self.roles[0].store.unavailable();
            return format!("not ready: {}: {}", u.code, u.message);
        }
        let missing: Vec<String> = self
            .roles
            .iter()
            .filter(|r| !r.store.is_ready())
            .map(|r| {
                let u = r.store.unavailable();
                format!("{}: {}: {}", r.name, u.code, u.message)
            })
            .collect();
        format!(
            "not ready: {} of {} roles have no credentials; {}",
            missing.len(),
            self.roles.len(),
            missing.join("; ")
        )
    }
}

/// Largest request head accepted; hyper answers 431 beyond it.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Serves every listener until `shutdown` completes, then stops accepting and
/// waits up to `drain_timeout` for open requests to finish: the shared
/// skeleton ([`crate::sidecar::http_server`]) with this server's limits and [`handle`].
pub async fn serve(
    listeners: Vec<TcpListener>,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let limits = Limits {
        header_read_timeout: state.settings.header_read_timeout,
        max_head_bytes: MAX_HEAD_BYTES,
        max_connections: state.settings.max_connections,
        drain_timeout: state.settings.drain_timeout,
    };
    let handler = move |req: Request<Incoming>, conn: Conn| {
        let state = state.clone();
        async move {
            let peer = Peer {
                addr: conn.peer,
                imds_v1: conn
                    .local
                    .is_some_and(|a| state.settings.imds_v1.allowed_on(a.ip())),
            };
            handle(&state, req, peer).await
        }
    };
    crate::sidecar::http_server::serve("credentials", listeners, limits, handler, shutdown).await;
}

/// Who sent a request, and what the listener it came in on allows. hyper does
/// not put the peer on the request, so it is captured per connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The listener answers IMDSv1 ([`ImdsV1::allowed_on`] its address).
    pub imds_v1: bool,
}

/// Answers one request and counts it.
pub async fn handle(state: &AppState, req: Request<Incoming>, peer: Peer) -> Response<Body> {
    let (endpoint, role, response) = route(state, &req, peer).await;
    let role = role.map_or("", |i| state.roles[i].name);
    state
        .metrics
        .http_request(endpoint, response.status().as_u16(), role);
    tracing::debug!(
        peer = %peer.addr,
        method = %req.method(),
        // The secret path segment of /v2/credentials/ is never logged.
        path = %ecs::loggable_path(req.uri().path()),
        status = response.status().as_u16(),
        role,
        "request"
    );
    response
}

/// The `Host` check against DNS rebinding: a browser reaching us through an
/// attacker's name that resolves to 127.0.0.1 sends that name as `Host`.
fn host_allowed(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.starts_with(':') => v6,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || name.eq_ignore_ascii_case("localhost.")
}

/// The `Host` check over everything that names a host in a request: exactly
/// one `Host` header at most (a browser never sends two, and the two could be
/// read differently), and the authority of an absolute-form request line
/// (`GET http://name/...`), which RFC 9112 makes the host asked for.
fn request_host_allowed(req: &Request<Incoming>) -> bool {
    let mut hosts = req.headers().get_all(HOST).iter();
    let header_ok = match (hosts.next(), hosts.next()) {
        // HTTP/1.0 clients send none; a browser always does.
        (None, _) => true,
        (Some(h), None) => h.to_str().is_ok_and(host_allowed),
        (Some(_), Some(_)) => false,
    };
    header_ok
        && req
            .uri()
            .authority()
            .is_none_or(|a| !a.as_str().contains('@') && host_allowed(a.as_str()))
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; allowed: {allow}"),
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// The answer, with the endpoint group and the role it was answered for
/// (`None`: no role, as for health, metrics or a refused token).
async fn route(
    state: &AppState,
    req: &Request<Incoming>,
    peer: Peer,
) -> (Endpoint, Option<usize>, Response<Body>) {
    let path = req.uri().path();
    let endpoint = match path {
        "/v1/credentials" => Endpoint::Ecs,
        p if p.starts_with(ecs::PATH_TOKEN_PREFIX) => Endpoint::Ecs,
        "/healthz" | "/readyz" => Endpoint::Health,
        "/metrics" => Endpoint::Metrics,
        p if state.settings.imds && p.starts_with("/latest/") => Endpoint::Imds,
        _ => Endpoint::Other,
    };
    if !request_host_allowed(req) {
        tracing::warn!(peer = %peer.addr, "refused a request whose Host header is a DNS name other than localhost (DNS rebinding protection)");
        return (
            endpoint,
            None,
            error(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "the Host header must be an IP address or localhost",
            ),
        );
    }
    let method = req.method();
    let read = imds::is_read(method);
    let mut role = None;
    let response = match (endpoint, path) {
        (Endpoint::Ecs, "/v1/credentials") if read => {
            let (r, response) = ecs::get(state, req.headers(), peer.addr).await;
            role = r;
            response
        }
        (Endpoint::Ecs, _) if read => {
            let (r, response) = ecs::get_by_path(state, path, peer.addr).await;
            role = r;
            response
        }
        (Endpoint::Health, "/healthz") if read => text(StatusCode::OK, "ok"),
        (Endpoint::Health, _) if read => {
            if state.is_ready() {
                text(StatusCode::OK, "ready")
            } else if state.shutting_down.load(Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, state.not_ready())
            }
        }
        (Endpoint::Metrics, _) if read => with_type(
            StatusCode::OK,
            HeaderValue::from_static(crate::sidecar::metrics::CONTENT_TYPE),
            state.metrics.encode(state.is_ready()),
        ),
        (Endpoint::Imds, "/latest/api/token") => {
            if method == Method::PUT {
                imds::put_token(state, req.headers())
            } else {
                method_not_allowed("PUT")
            }
        }
        (Endpoint::Imds, _) if read => {
            role = state.imds_role;
            match imds::check_token(state, req.headers(), peer.imds_v1) {
                Some(refusal) => refusal,
                None => match imds::get(state, path).await {
                    Some(r) => r,
                    None => not_found(),
                },
            }
        }
        (Endpoint::Other, _) => not_found(),
        _ => method_not_allowed("GET, HEAD"),
    };
    (endpoint, role, response)
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(h: &'static str) -> bool {
        host_allowed(h)
    }

    #[test]
    fn host_check_should_pass_ip_literals_and_localhost_only() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:9911",
            "[::1]:9911",
            "[::1]",
            "localhost",
            "LOCALHOST:80",
            "169.254.170.2",
        ] {
            assert!(allowed(ok), "{ok} refused");
        }
        for bad in [
            "evil.example",
            "evil.example:9911",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[::1",
            "",
        ] {
            assert!(!allowed(bad), "{bad} allowed");
        }
    }
}
