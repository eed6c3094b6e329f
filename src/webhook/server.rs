//! The webhook's HTTPS loop: TLS handshake, HTTP/1.1, routing.
//!
//! Written on its own so that it can move onto the shared server skeleton; it
//! already reuses the sidecar's connection limit (`serving::connections`). Per
//! connection: the TLS handshake and every request head must arrive within
//! `header_timeout`, the body within it too, and a body larger than
//! [`MAX_BODY_BYTES`] is refused with 413 before it is read (Content-Length) or
//! as soon as it passes the limit (chunked).
//!
//! Routes: `POST /mutate` and `POST /mutate/opt-in` (see [`OptIn`]),
//! `GET /healthz`, `GET /readyz`, `GET /metrics`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::admission::{self, OptIn};
use crate::cli::InjectArgs;
use crate::serving::connections::Connections;

/// Largest AdmissionReview accepted. A pod object is at most etcd's 1.5 MiB
/// request limit, and a CREATE review carries it once, plus a little
/// envelope; 3 MiB leaves room and still bounds the memory of a request.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Largest request head (hyper's minimum is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    path: &'static str,
    status: u16,
}

/// The webhook's metrics:
/// - `irsa_proxy_webhook_reviews_total{result="mutated|skipped|warned|bad_request"}`
/// - `irsa_proxy_webhook_review_duration_seconds` (histogram, decision time)
/// - `irsa_proxy_webhook_http_requests_total{path, status}`
/// - `irsa_proxy_webhook_certificate_reloads_total` and `..._failures_total`
#[derive(Debug)]
pub struct WebhookMetrics {
    registry: Registry,
    reviews: Family<ReviewLabels, Counter>,
    duration: Histogram,
    http: Family<HttpLabels, Counter>,
    pub cert_reloads: Counter,
    pub cert_reload_failures: Counter,
}

impl WebhookMetrics {
    pub fn new() -> WebhookMetrics {
        let mut registry = Registry::default();
        let reviews = Family::<ReviewLabels, Counter>::default();
        let http = Family::<HttpLabels, Counter>::default();
        let duration = Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05]);
        let cert_reloads = Counter::default();
        let cert_reload_failures = Counter::default();
        registry.register(
            "irsa_proxy_webhook_reviews",
            "Admission reviews answered, by result",
            reviews.clone(),
        );
        registry.register(
            "irsa_proxy_webhook_review_duration_seconds",
            "Time to decide one review and compute its patch",
            duration.clone(),
        );
        registry.register(
            "irsa_proxy_webhook_http_requests",
            "HTTP requests, by route and status",
            http.clone(),
        );
        registry.register(
            "irsa_proxy_webhook_certificate_reloads",
            "Serving certificates loaded after a change of the files",
            cert_reloads.clone(),
        );
        registry.register(
            "irsa_proxy_webhook_certificate_reload_failures",
            "Changed certificate files that did not load (the previous pair is kept)",
            cert_reload_failures.clone(),
        );
        WebhookMetrics {
            registry,
            reviews,
            duration,
            http,
            cert_reloads,
            cert_reload_failures,
        }
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What every request shares.
#[derive(Debug)]
pub struct State {
    /// The webhook's flags, as `inject` flags: the defaults annotations override.
    pub defaults: InjectArgs,
    pub metrics: WebhookMetrics,
    /// Set at SIGTERM: readiness answers 503 so the Service stops sending here.
    pub shutting_down: AtomicBool,
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
}

type Body = Full<Bytes>;

/// Serves until `shutdown` completes, then drains for at most `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let limit = Connections::new(state.max_connections);
    let accept = tokio::spawn(accept_loop(
        listener,
        acceptor,
        state.clone(),
        graceful.clone(),
        limit,
    ));
    shutdown.await;
    accept.abort();
    let _ = accept.await;
    let Ok(drain) = Arc::try_unwrap(graceful) else {
        return;
    };
    if tokio::time::timeout(state.drain_timeout, drain.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight reviews did not finish within the drain timeout");
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    state: Arc<State>,
    graceful: Arc<GracefulShutdown>,
    limit: Arc<Connections>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(state.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = limit.admit().await else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        let http = http.clone();
        let graceful = graceful.clone();
        tokio::spawn(async move {
            // The handshake is bounded like a request head: a peer that
            // opens and stalls holds a slot only this long.
            let tls =
                match tokio::time::timeout(state.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            let entry = slot.entry.clone();
            let epoch = slot.epoch;
            let service = service_fn(move |req| {
                let state = state.clone();
                let busy = entry.begin(epoch);
                async move {
                    let response = handle(&state, req).await;
                    drop(busy);
                    Ok::<_, Infallible>(response)
                }
            });
            let conn = graceful.watch(http.serve_connection(TokioIo::new(tls), service));
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                () = slot.entry.evicted() => {
                    tracing::debug!(%peer, "closed this idle connection to admit a new one (connection limit)");
                }
            }
            drop(slot);
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    reply(status, "text/plain; charset=utf-8", body + "\n")
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path: &'static str = match req.uri().path() {
        "/mutate" => "/mutate",
        "/mutate/opt-in" => "/mutate/opt-in",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "other",
    };
    let response = match (req.method(), path) {
        (&Method::POST, "/mutate") => mutate(state, req, OptIn::Namespace).await,
        (&Method::POST, "/mutate/opt-in") => mutate(state, req, OptIn::Annotation).await,
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok".into()),
        (&Method::GET, "/readyz") => {
            if state.shutting_down.load(Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into())
            } else {
                text(StatusCode::OK, "ready".into())
            }
        }
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            state.metrics.encode(),
        ),
        (_, "other") => text(
            StatusCode::NOT_FOUND,
            "not found; routes: POST /mutate, POST /mutate/opt-in, GET /healthz, /readyz, /metrics"
                .into(),
        ),
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed".into()),
    };
    state
        .metrics
        .http
        .get_or_create(&HttpLabels {
            path,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

async fn mutate(state: &State, req: Request<Incoming>, opt_in: OptIn) -> Response<Body> {
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("AdmissionReview larger than the limit of {MAX_BODY_BYTES} bytes (3 MiB)"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES);
    let body = match tokio::time::timeout(state.header_timeout, body.collect()).await {
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {:?}", state.header_timeout),
            )
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(e)) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        }
        Ok(Ok(b)) => b.to_bytes(),
    };
    let started = Instant::now();
    let decided = admission::review(&body, &state.defaults, opt_in);
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    match decided {
        Ok(answer) => {
            state
                .metrics
                .reviews
                .get_or_create(&ReviewLabels {
                    result: answer.outcome.as_str(),
                })
                .inc();
            if answer.outcome != admission::Outcome::Skipped {
                tracing::info!(pod = %answer.pod, result = answer.outcome.as_str(), "review");
            }
            reply(StatusCode::OK, "application/json", answer.body)
        }
        Err(bad) => {
            state
                .metrics
                .reviews
                .get_or_create(&ReviewLabels {
                    result: "bad_request",
                })
                .inc();
            tracing::warn!(error = %bad, "malformed review");
            text(
                StatusCode::BAD_REQUEST,
                format!("malformed AdmissionReview: {bad}"),
            )
        }
    }
}
