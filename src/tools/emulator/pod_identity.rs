//! The emulator as the EKS Pod Identity agent: `GET /v1/credentials` with the
//! pod's token in `Authorization`, as the node agent serves it at
//! `169.254.170.23` (here on the emulator's loopback port).
//!
//! What the real agent (github.com/aws/eks-pod-identity-agent) and EKS Auth do,
//! and so what this does, in order:
//!
//! 1. An empty `Authorization` is `400 Service account token cannot be empty`;
//!    a token that is not a JWT is `400 Service account token cannot be parsed: ...`;
//!    an expired one is `400 Service account token failed basic claim
//!    validations: token has invalid claims: token is expired`. The agent checks
//!    these itself (`internal/validation/request.go`, `ValidateEksCredentialRequest`).
//! 2. Then EKS Auth `AssumeRoleForPodIdentity` decides: a bad signature or an
//!    audience other than `pods.eks.amazonaws.com` is `400
//!    InvalidTokenException`; no association for the token's namespace and
//!    service account is `404 ResourceNotFoundException`. The agent passes EKS
//!    Auth's status on with the body `[<request id>]: (<code>): <message>, fault:
//!    client` (`pkg/errors/errors.go`, `HandleCredentialFetchingError`).
//! 3. Throttling is `429 Too Many Requests` (the agent's own rate limiter,
//!    `internal/middleware/rate_limiter`); injected outages and failures are
//!    EKS Auth's `500 InternalServerException`.
//!
//! Every error body is plain text ending in a newline, as Go's `http.Error`
//! writes it. The answer is `{"AccessKeyId","SecretAccessKey","Token",
//! "AccountId","Expiration"}` (`pkg/credentials/model.go`), and the issued
//! session carries the six Pod Identity session tags, kept with the set so
//! that later signed calls (and `dev`'s report) see them. All six are
//! transitive, as AWS makes them: an `AssumeRole` chained on the session
//! inherits them, sees them as `aws:PrincipalTag/<key>` in the next role's
//! trust policy, and may not set one of those keys again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Serialize;
use serde_json::Value;

use super::store::SessionAttributes;
use super::{random_request_id, service, State};
use crate::arn::RoleArn;
use crate::clock::{format_timestamp, unix_seconds};
use crate::sidecar::token::Claims;

/// The audience Pod Identity tokens carry.
pub const AUDIENCE: &str = "pods.eks.amazonaws.com";

/// The path the agent serves.
pub const PATH: &str = "/v1/credentials";

/// One Pod Identity association: a service account of a namespace may have
/// this role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub namespace: String,
    pub service_account: String,
    pub role: RoleArn,
}

/// `--pod-identity-association NS/SA=ROLE_ARN`.
pub(crate) fn association(v: &str) -> Result<Association, crate::flags::Refusal> {
    const FORM: &str = "NAMESPACE/SERVICE_ACCOUNT=arn:aws:iam::<account>:role/<name>";
    let refuse = |why: &str| crate::flags::Refusal::new(why.to_string(), FORM);
    let (who, role) = v
        .trim()
        .split_once('=')
        .ok_or_else(|| refuse("has no '='"))?;
    let (namespace, service_account) = who
        .split_once('/')
        .filter(|(n, s)| !n.is_empty() && !s.is_empty())
        .ok_or_else(|| refuse("does not name a namespace and a service account"))?;
    let role = RoleArn::parse(role).map_err(|_| refuse("does not end in a role ARN"))?;
    Ok(Association {
        namespace: namespace.into(),
        service_account: service_account.into(),
        role,
    })
}

/// The agent's part of the emulator's settings.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// Named in the `eks-cluster-name` and `eks-cluster-arn` session tags.
    pub cluster_name: String,
    pub associations: Vec<Association>,
    /// Answers above this many calls per second are 429 (`None`: no limit).
    pub max_calls_per_second: Option<u32>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            cluster_name: "irsa-proxy-dev".into(),
            associations: Vec::new(),
            max_calls_per_second: None,
        }
    }
}

/// A token bucket refilled at `rate` per second, holding at most `rate / 2`
/// (as the agent's `NewRateLimiter` does, at least 1). A std `Mutex`: held only
/// to do arithmetic, never across an `.await`.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub(crate) fn new(rate: u32) -> RateLimiter {
        let rate = f64::from(rate.max(1));
        let burst = (rate / 2.0).max(1.0);
        RateLimiter {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// True if a call may go through now.
    pub(crate) fn allow(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
        s.0 = (s.0 + refill).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A refusal as the agent sends it.
struct Refusal {
    status: StatusCode,
    /// The code for logs and the ledger.
    code: &'static str,
    body: String,
}

impl Refusal {
    /// The agent's own check.
    fn agent(status: StatusCode, code: &'static str, body: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            body: body.into(),
        }
    }

    /// EKS Auth's refusal, as the agent passes it on.
    fn eks_auth(
        status: StatusCode,
        code: &'static str,
        message: &str,
        request_id: &str,
    ) -> Refusal {
        let fault = if status.is_server_error() {
            "server"
        } else {
            "client"
        };
        Refusal {
            status,
            code,
            body: format!("[{request_id}]: ({code}): {message}, fault: {fault}"),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Answer<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    account_id: &'a str,
    expiration: String,
}

pub(crate) async fn handle(
    req: Request<Incoming>,
    state: &State,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let request_id = random_request_id();
    match credentials(&req, state, &request_id) {
        Ok((body, log)) => {
            tracing::info!(%peer, request_id, "pod-identity-agent: {log}");
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(r) => {
            tracing::info!(
                %peer,
                request_id,
                code = r.code,
                status = r.status.as_u16(),
                "pod-identity-agent: refused: {}",
                r.body
            );
            state.settings.ledger.assume_refused(r.code);
            let mut resp = Response::new(Full::new(Bytes::from(format!("{}\n", r.body))));
            *resp.status_mut() = r.status;
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            h.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            resp
        }
    }
}

fn credentials(
    req: &Request<Incoming>,
    state: &State,
    request_id: &str,
) -> Result<(String, String), Refusal> {
    let agent = &state.settings.pod_identity;
    if req.method() != http::Method::GET {
        return Err(Refusal::agent(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "Method Not Allowed",
        ));
    }
    if let Some(limiter) = &state.agent_limiter {
        if !limiter.allow() {
            return Err(Refusal::agent(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttling",
                "Too Many Requests",
            ));
        }
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    if token.is_empty() {
        return Err(Refusal::agent(
            StatusCode::BAD_REQUEST,
            "EmptyToken",
            "Service account token cannot be empty",
        ));
    }
    let unverified = Claims::decode(token).map_err(|e| {
        Refusal::agent(
            StatusCode::BAD_REQUEST,
            "UnparsableToken",
            format!("Service account token cannot be parsed: {e}"),
        )
    })?;
    let now = state.settings.clock.now();
    if unverified.exp.is_some_and(|exp| unix_seconds(now) >= exp) {
        return Err(Refusal::agent(
            StatusCode::BAD_REQUEST,
            "ExpiredToken",
            "Service account token failed basic claim validations: token has invalid claims: token is expired",
        ));
    }
    // From here on EKS Auth decides.
    if let Some(fault) = state
        .settings
        .faults
        .assume_fault(tokio::time::Instant::now(), rand::random())
    {
        return Err(Refusal::eks_auth(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            &fault.message,
            request_id,
        ));
    }
    let claims = state.settings.keys.verify(token).map_err(|why| {
        Refusal::eks_auth(
            StatusCode::BAD_REQUEST,
            "InvalidTokenException",
            &format!("The service account token is not valid: {why}"),
            request_id,
        )
    })?;
    if !unverified.aud.values().contains(&AUDIENCE) {
        return Err(Refusal::eks_auth(
            StatusCode::BAD_REQUEST,
            "InvalidTokenException",
            &format!(
                "The service account token's audience is {:?}; Pod Identity needs {AUDIENCE}",
                unverified.aud.to_string()
            ),
            request_id,
        ));
    }
    let k8s = claims.get("kubernetes.io");
    let field = |path: &[&str]| -> String {
        let mut v: Option<&Value> = k8s;
        for p in path {
            v = v.and_then(|v| v.get(p));
        }
        v.and_then(Value::as_str).unwrap_or_default().to_string()
    };
    // Without the kubernetes.io claim (a token from `irsa-proxy mint`), the
    // subject names them: system:serviceaccount:<namespace>:<name>.
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let from_sub: Vec<&str> = subject
        .strip_prefix("system:serviceaccount:")
        .map(|r| r.splitn(2, ':').collect())
        .unwrap_or_default();
    let or_sub = |v: String, i: usize| {
        if v.is_empty() {
            from_sub.get(i).map(|s| s.to_string()).unwrap_or_default()
        } else {
            v
        }
    };
    let namespace = or_sub(field(&["namespace"]), 0);
    let service_account = or_sub(field(&["serviceaccount", "name"]), 1);
    let pod_name = field(&["pod", "name"]);
    let pod_uid = field(&["pod", "uid"]);
    let Some(association) = agent
        .associations
        .iter()
        .find(|a| a.namespace == namespace && a.service_account == service_account)
    else {
        return Err(Refusal::eks_auth(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!(
                "No Pod Identity Association found for service account {service_account:?} in namespace {namespace:?} of cluster {}",
                agent.cluster_name
            ),
            request_id,
        ));
    };
    let role = &association.role;
    let cluster_arn = format!(
        "arn:{}:eks:us-east-1:{}:cluster/{}",
        role.partition, role.account, agent.cluster_name
    );
    let tags: BTreeMap<String, String> = [
        ("eks-cluster-arn", cluster_arn),
        ("eks-cluster-name", agent.cluster_name.clone()),
        ("kubernetes-namespace", namespace.clone()),
        ("kubernetes-service-account", service_account.clone()),
        ("kubernetes-pod-name", pod_name.clone()),
        ("kubernetes-pod-uid", pod_uid),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // EKS names the session after the cluster and the pod.
    let pod = if pod_name.is_empty() {
        "pod"
    } else {
        &pod_name
    };
    let session_name = crate::sidecar::config::sanitize_session_name(&format!(
        "eks-{}-{pod}-{}",
        agent.cluster_name,
        &request_id[..8]
    ));
    let lifetime = state.settings.faults.lifetime(
        state
            .settings
            .credential_ttl
            .min(Duration::from_secs(6 * 3600)),
        rand::random(),
        rand::random(),
    );
    // Every tag EKS puts on the session is transitive: a chained AssumeRole
    // with these credentials carries them on (and may not set them again),
    // and trust policies down the chain see them as aws:PrincipalTag/<key>
    // (docs.aws.amazon.com/eks/latest/userguide/pod-id-abac.html, "Cross-account
    // tags").
    let session = SessionAttributes {
        tags: tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        transitive_tag_keys: tags.keys().cloned().collect(),
        source_identity: None,
        // The agent takes no session policy.
        session_policy: None,
    };
    let creds = service::issue(state, role, &session_name, now, lifetime, session, tags);
    let expiration = creds.expiration;
    let body = serde_json::to_string(&Answer {
        access_key_id: &creds.access_key_id,
        secret_access_key: &creds.secret_access_key,
        token: &creds.session_token,
        account_id: &creds.account,
        expiration: format_timestamp(expiration),
    })
    .unwrap_or_default();
    Ok((
        body,
        format!(
            "issued {} for {} ({namespace}/{service_account}) until {}",
            creds.access_key_id,
            creds.assumed_role_arn,
            format_timestamp(expiration)
        ),
    ))
}
