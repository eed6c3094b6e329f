//! Prometheus metrics. Their names and labels are part of the contract
//! (docs/contract.md §6): dashboards and alerts across a fleet depend on them.
//!
//! - `irsa_proxy_sts_requests_total{result="success|error", error="<code>", role="<name>"}`
//! - `irsa_proxy_credentials_expiry_timestamp_seconds{role="<name>"}`
//! - `irsa_proxy_token_rotations_total`
//! - `irsa_proxy_http_requests_total{endpoint="ecs|imds|health|metrics|other", status="<code>", role="<name>"}`
//! - `irsa_proxy_ready` (0/1)
//!
//! `role` is the role's name with several roles (docs/contract.md §13) and
//! `default` with one; on a request, the role it was answered for (empty when
//! none: health, metrics, a refused token).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The OpenMetrics content type, which Prometheus scrapes natively.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StsLabels {
    result: &'static str,
    error: String,
    role: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: String,
}

/// Which group of endpoints a request went to.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Endpoint {
    Ecs,
    Imds,
    Health,
    Metrics,
    Other,
}

impl Endpoint {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Ecs => "ecs",
            Endpoint::Imds => "imds",
            Endpoint::Health => "health",
            Endpoint::Metrics => "metrics",
            Endpoint::Other => "other",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    endpoint: &'static str,
    status: u16,
    /// Names fixed at start-up: no allocation per request.
    role: &'static str,
}

/// Every metric of the proxy, registered once.
pub struct Metrics {
    registry: Registry,
    sts_requests: Family<StsLabels, Counter>,
    expiry: Family<RoleLabels, Gauge>,
    rotations: Counter,
    http_requests: Family<HttpLabels, Counter>,
    ready: Gauge,
    /// The 503s of the credential routes, every role (not exported: the sum
    /// of `http_requests` over roles, which a `Family` cannot give).
    credential_503s: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let sts_requests = Family::<StsLabels, Counter>::default();
        let expiry = Family::<RoleLabels, Gauge>::default();
        let rotations = Counter::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let ready = Gauge::default();
        registry.register(
            "irsa_proxy_sts_requests",
            "AssumeRoleWithWebIdentity calls, by result and STS error code",
            sts_requests.clone(),
        );
        registry.register(
            "irsa_proxy_credentials_expiry_timestamp_seconds",
            "Expiration of the cached credentials, in Unix seconds",
            expiry.clone(),
        );
        registry.register(
            "irsa_proxy_token_rotations",
            "Changes of the web-identity token seen on disk",
            rotations.clone(),
        );
        registry.register(
            "irsa_proxy_http_requests",
            "HTTP requests answered, by endpoint and status code",
            http_requests.clone(),
        );
        registry.register(
            "irsa_proxy_ready",
            "1 while valid credentials are cached and the proxy is not shutting down",
            ready.clone(),
        );
        Metrics {
            registry,
            sts_requests,
            expiry,
            rotations,
            http_requests,
            ready,
            credential_503s: Counter::default(),
        }
    }

    pub(crate) fn sts_success(&self, role: &str, expiry_unix: i64) {
        self.sts_requests
            .get_or_create(&StsLabels {
                result: "success",
                error: String::new(),
                role: role.to_string(),
            })
            .inc();
        self.expiry
            .get_or_create(&RoleLabels {
                role: role.to_string(),
            })
            .set(expiry_unix);
    }

    pub(crate) fn sts_error(&self, role: &str, code: &str) {
        self.sts_requests
            .get_or_create(&StsLabels {
                result: "error",
                error: code.to_string(),
                role: role.to_string(),
            })
            .inc();
    }

    pub(crate) fn token_rotated(&self) {
        self.rotations.inc();
    }

    /// One answered request; `role` is the role it was answered for, `""`
    /// for none.
    pub fn http_request(&self, endpoint: Endpoint, status: u16, role: &'static str) {
        self.http_requests
            .get_or_create(&HttpLabels {
                endpoint: endpoint.as_str(),
                status,
                role,
            })
            .inc();
        if status == 503 && matches!(endpoint, Endpoint::Ecs | Endpoint::Imds) {
            self.credential_503s.inc();
        }
    }

    /// Credential requests (ECS and IMDS routes, every role) answered 503 so
    /// far: `dev`'s report counts them.
    pub fn credential_503s(&self) -> u64 {
        self.credential_503s.get()
    }

    /// Encodes every metric, with readiness as of now.
    pub fn encode(&self, ready: bool) -> String {
        self.ready.set(i64::from(ready));
        let mut out = String::with_capacity(2048);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_should_match_the_spec() {
        let m = Metrics::new();
        m.sts_success("default", 1_700_000_000);
        m.sts_error("default", "Throttling");
        m.sts_error("copier", "AccessDenied");
        m.token_rotated();
        m.http_request(Endpoint::Ecs, 200, "default");
        m.http_request(Endpoint::Health, 200, "");
        m.http_request(Endpoint::Ecs, 503, "default");
        m.http_request(Endpoint::Imds, 503, "copier");
        m.http_request(Endpoint::Health, 503, "");
        assert_eq!(m.credential_503s(), 2);
        let text = m.encode(true);
        for needle in [
            "irsa_proxy_sts_requests_total{result=\"success\",error=\"\",role=\"default\"} 1",
            "irsa_proxy_sts_requests_total{result=\"error\",error=\"Throttling\",role=\"default\"} 1",
            "irsa_proxy_sts_requests_total{result=\"error\",error=\"AccessDenied\",role=\"copier\"} 1",
            "irsa_proxy_credentials_expiry_timestamp_seconds{role=\"default\"} 1700000000",
            "irsa_proxy_token_rotations_total 1",
            "irsa_proxy_http_requests_total{endpoint=\"ecs\",status=\"200\",role=\"default\"} 1",
            "irsa_proxy_http_requests_total{endpoint=\"health\",status=\"200\",role=\"\"} 1",
            "irsa_proxy_ready 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
