//! The webhook's routes, limits and metrics, served by the shared skeleton
//! [`crate::sidecar::http_server`] over its TLS handshake: one accept loop and one drain for
//! every server of irsa-proxy. Per connection (the skeleton's rules): the TLS
//! handshake and every request head must arrive within the header timeout, and
//! at the connection limit the longest-idle connection makes room. Here: the
//! body must arrive within the same time, and a body larger than
//! [`MAX_BODY_BYTES`] is refused with 413 before it is read (Content-Length) or
//! as soon as it passes the limit (chunked).
//!
//! Routes: `POST /mutate` and `POST /mutate/opt-in` (see [`OptIn`]),
//! `GET /healthz`, `GET /readyz`, `GET /metrics`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::admission::{self, OptIn};
use crate::cli::InjectArgs;
use crate::sidecar::http_server::{Conn, Limits};
use crate::tools::inject::Options;
use crate::tools::tls::Tls;

/// Largest AdmissionReview accepted. A pod object is at most etcd's 1.5 MiB
/// request limit, and a CREATE review carries it once, plus a little
/// envelope; 3 MiB leaves room and still bounds the memory of a request.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
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
    /// `Options::from_args(&defaults)`, made once: what a pod with no
    /// per-pod annotation gets.
    pub default_options: Option<Options>,
    pub metrics: WebhookMetrics,
    /// Set at SIGTERM: readiness answers 503 so the Service stops sending here.
    pub shutting_down: AtomicBool,
    /// A review's body must arrive within this long of its head.
    pub body_timeout: Duration,
}

type Body = Full<Bytes>;

/// Serves the webhook's routes on `listener` over `tls` until `shutdown`
/// completes, then drains the reviews in flight for at most
/// `limits.drain_timeout` ([`crate::sidecar::http_server::serve_with`]).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Tls,
    limits: Limits,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |req: Request<Incoming>, _: Conn| {
        let state = state.clone();
        async move { handle(&state, req).await }
    };
    crate::sidecar::http_server::serve_with(
        "webhook",
        vec![listener],
        tls,
        limits,
        handler,
        shutdown,
    )
    .await;
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
            crate::sidecar::metrics::CONTENT_TYPE,
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
    let body = match tokio::time::timeout(state.body_timeout, body.collect()).await {
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {:?}", state.body_timeout),
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
    let decided = admission::review_with(
        &body,
        &state.defaults,
        state.default_options.as_ref(),
        opt_in,
    );
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
