//! `AssumeRoleWithWebIdentity`, behind a small trait so the refresher can be tested
//! without HTTP, and the classification of what STS answers when it says no.
//!
//! The real implementation uses `aws-sdk-sts`: region and endpoint resolution,
//! retries with back-off inside one attempt, and `AWS_ENDPOINT_URL_STS` come from
//! the SDK. The call is unsigned (the token is the proof), so the client is built
//! with no credentials provider at all.

use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use std::path::Path;
use std::sync::Arc;

use aws_sdk_sts::config::endpoint::{self, ResolveEndpoint as _};
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::config::Region;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use crate::egress::{CaBundle, EgressSettings, Route, StsEndpoints};
use crate::role_credentials::Credentials;
use crate::token::Token;

/// What one `AssumeRoleWithWebIdentity` call needs.
#[derive(Debug, Clone)]
pub struct AssumeRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration: Duration,
    pub token: Token,
}

/// Something that exchanges a web-identity token for role credentials.
pub trait AssumeRole: Send + Sync + 'static {
    fn assume(
        &self,
        request: AssumeRequest,
    ) -> impl Future<Output = Result<Credentials, StsError>> + Send;
}

/// How an STS failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling, IdP trouble, 5xx, network, timeouts: back off and retry.
    Retryable,
    /// The token is invalid, expired or not trusted: log its claims; a rotation
    /// may fix it.
    Token,
    /// The role, the trust policy or a parameter is wrong: an operator must act.
    Configuration,
}

/// An STS failure: its code (`InvalidIdentityToken`, `Throttling`, ...), a message
/// safe to log and to return in a 503 body, and its class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StsError {
    pub code: String,
    pub message: String,
    pub class: ErrorClass,
}

impl StsError {
    /// Classifies an STS error code, adding hints for the common mistakes.
    pub(crate) fn from_code(code: &str, message: &str, http_status: Option<u16>) -> StsError {
        let class = match code {
            "InvalidIdentityToken"
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "IDPRejectedClaim" => ErrorClass::Token,
            "AccessDenied"
            | "ValidationError"
            | "MalformedPolicyDocument"
            | "PackedPolicyTooLarge"
            | "RegionDisabledException"
            | "InvalidParameterValue"
            | "InvalidAction"
            | "MissingParameter" => ErrorClass::Configuration,
            _ => match http_status {
                Some(s) if (400..500).contains(&s) && s != 429 && !is_throttling(code) => {
                    if code.is_empty() || code == "IDPCommunicationError" {
                        ErrorClass::Retryable
                    } else {
                        ErrorClass::Configuration
                    }
                }
                _ => ErrorClass::Retryable,
            },
        };
        let mut message = log_safe(message);
        if code == "ValidationError" && message.contains("DurationSeconds") {
            message.push_str(
                " (hint: lower --duration to at most the role's maximum session duration)",
            );
        }
        if code == "AccessDenied" {
            message.push_str(" (hint: check the role's trust policy: Federated principal = the cluster's OIDC provider, condition on <issuer>:sub = system:serviceaccount:<namespace>:<name> and <issuer>:aud = sts.amazonaws.com; `irsa-proxy doctor` explains)");
        }
        StsError {
            code: if code.is_empty() {
                "UnknownError".into()
            } else {
                code.to_string()
            },
            message,
            class,
        }
    }
}

fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException"
    )
}

/// Error text on one line, bounded, so a hostile endpoint cannot flood the logs.
fn log_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect();
    if s.chars().count() > 512 {
        out.push_str("...");
    }
    out
}

/// Settings of the real STS client.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// Proxy, trust roots and endpoint variants (crate::egress).
    pub egress: EgressSettings,
}

/// `aws-sdk-sts`, unsigned, over the SDK's HTTP client configured for the
/// route (proxy and trust roots).
#[derive(Debug, Clone)]
pub struct SdkSts {
    client: aws_sdk_sts::Client,
    /// Which way the calls go, to say so when one fails.
    route: Arc<Route>,
    /// Scrubs proxy passwords from error text.
    egress: Arc<EgressSettings>,
}

impl SdkSts {
    /// Builds the client and resolves the endpoint once. Without a region, the
    /// profile's region is used, then `us-east-1` (the global STS endpoint's
    /// region); IMDS is not asked, since on a laptop or in a pod without a node
    /// role it only delays start-up.
    ///
    /// `Err` is one line for a configuration that cannot work: the profile's
    /// `ca_bundle` unusable, or endpoint settings the SDK's rules refuse (FIPS
    /// with a custom endpoint, a region that has no FIPS endpoint, ...).
    pub async fn new(settings: &ClientSettings) -> Result<SdkSts, String> {
        let profile = aws_config::profile::load(
            &aws_types::os_shim_internal::Fs::real(),
            &aws_types::os_shim_internal::Env::real(),
            &Default::default(),
            None,
        )
        .await
        .ok();
        let from_profile = |key: &str| {
            profile.as_ref().and_then(|p| {
                p.get(key)
                    .map(|v| (v.to_string(), p.selected_profile().to_string()))
            })
        };
        let trust = match (&settings.egress.ca_bundle, from_profile("ca_bundle")) {
            (Some(b), _) => Some(b.clone()),
            (None, Some((path, name))) => {
                let from = format!("ca_bundle of profile {name:?}");
                Some(
                    CaBundle::load(Path::new(&path), from.clone())
                        .map_err(|why| format!("{from}: {path:?} {why}"))?,
                )
            }
            (None, None) => None,
        };
        let sts_endpoints = match (
            settings.egress.sts_endpoints,
            from_profile("sts_regional_endpoints"),
        ) {
            (Some(e), _) => e,
            (None, Some((v, name))) => StsEndpoints::parse(&v).map_err(|why| {
                format!("sts_regional_endpoints of profile {name:?}: {v:?} {why}")
            })?,
            (None, None) => StsEndpoints::Regional,
        };

        let region = RegionProviderChain::first_try(settings.region.clone().map(Region::new))
            .or_else(aws_config::profile::ProfileFileRegionProvider::new())
            .or_else(Region::from_static("us-east-1"));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .no_credentials()
            .region(region)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            );
        if let Some(url) = &settings.endpoint {
            loader = loader.endpoint_url(url);
        }
        if let Some(fips) = settings.egress.use_fips {
            loader = loader.use_fips(fips);
        }
        if let Some(dual) = settings.egress.use_dual_stack {
            loader = loader.use_dual_stack(dual);
        }
        let config = loader.load().await;

        let region = config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        let use_fips = config.use_fips().unwrap_or(false);
        let use_dual_stack = config.use_dual_stack().unwrap_or(false);
        let legacy = sts_endpoints == StsEndpoints::Legacy;
        let params = endpoint::Params::builder()
            .region(region.clone())
            .use_fips(use_fips)
            .use_dual_stack(use_dual_stack)
            .set_endpoint(config.endpoint_url().map(str::to_string))
            .use_global_endpoint(legacy)
            .build()
            .map_err(|e| format!("STS endpoint: {e}"))?;
        let resolved = endpoint::DefaultResolver::new()
            .resolve_endpoint(&params)
            .await
            .map_err(|e| format!("STS endpoint: {}", error_chain(e.as_ref())))?;
        let resolved_from = match config.endpoint_url() {
            Some(url) => format!("--sts-endpoint/AWS_ENDPOINT_URL_STS {url}"),
            None => format!(
                "region {region}, FIPS {}, dual-stack {}, {} STS endpoints",
                on_off(use_fips),
                on_off(use_dual_stack),
                if legacy { "legacy" } else { "regional" }
            ),
        };
        let route = Route::new(
            resolved.url().to_string(),
            region,
            resolved_from,
            &settings.egress,
            trust.as_ref(),
        );
        let http = crate::egress::http_client(&route, &settings.egress)?;
        let sts_config = aws_sdk_sts::config::Builder::from(&config)
            .http_client(http)
            .endpoint_resolver(GlobalAware {
                legacy,
                inner: endpoint::DefaultResolver::new(),
            })
            .build();
        Ok(SdkSts {
            client: aws_sdk_sts::Client::from_conf(sts_config),
            route: Arc::new(route),
            egress: Arc::new(settings.egress.clone()),
        })
    }

    /// Which way the calls go.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// When a proxy refused the tunnel, asks it once what it answers, so the
    /// error names the status (`403 Forbidden`, `401`/`407`: credentials).
    async fn ask_the_proxy(&self, e: StsError) -> StsError {
        let Some(proxy) = self
            .route
            .proxy
            .as_ref()
            .filter(|_| e.code == "ProxyRefused")
        else {
            return e;
        };
        let host = self.route.endpoint_host();
        let Some(status) = crate::egress::connect_status(proxy, &host).await else {
            return e;
        };
        let status = self.egress.scrub(&status);
        if status.starts_with("407") || status.starts_with("401") {
            StsError {
                code: "ProxyAuthenticationRequired".into(),
                message: proxy_auth_message(proxy, &host, &status),
                class: ErrorClass::Configuration,
            }
        } else {
            StsError {
                code: "ProxyRefused".into(),
                message: format!(
                    "the proxy {proxy} (from {}) answered CONNECT {host} with {status}: its rules deny this host or port; allow it in the proxy, or add the host to NO_PROXY if it is reachable directly",
                    proxy.from
                ),
                class: ErrorClass::Configuration,
            }
        }
    }
}

fn proxy_auth_message(proxy: &crate::egress::ProxyUrl, host: &str, status: &str) -> String {
    format!(
        "the proxy {proxy} (from {}) answered CONNECT {host} with {status}: {}",
        proxy.from,
        if proxy.has_credentials() {
            "it refused the user and password in the URL"
        } else {
            "it wants credentials; put them in the URL, http://user:password@host:port"
        }
    )
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// The SDK's STS endpoint rules, with `UseGlobalEndpoint` set from
/// `AWS_STS_REGIONAL_ENDPOINTS`, which the Rust SDK does not read itself.
#[derive(Debug)]
struct GlobalAware {
    legacy: bool,
    inner: endpoint::DefaultResolver,
}

impl endpoint::ResolveEndpoint for GlobalAware {
    fn resolve_endpoint<'a>(
        &'a self,
        params: &'a endpoint::Params,
    ) -> endpoint::EndpointFuture<'a> {
        use endpoint::EndpointFuture;
        use futures_util::FutureExt as _;
        let with_global = endpoint::Params::builder()
            .set_region(params.region().map(str::to_string))
            .set_use_fips(params.use_fips())
            .set_use_dual_stack(params.use_dual_stack())
            .set_endpoint(params.endpoint().map(str::to_string))
            .use_global_endpoint(self.legacy)
            .build();
        let result = match with_global {
            // The generated resolver answers at once; it never waits.
            Ok(p) => self
                .inner
                .resolve_endpoint(&p)
                .now_or_never()
                .unwrap_or_else(|| Err("the STS endpoint resolver did not answer at once".into())),
            Err(e) => Err(e.into()),
        };
        EndpointFuture::ready(result)
    }
}

impl AssumeRole for SdkSts {
    async fn assume(&self, request: AssumeRequest) -> Result<Credentials, StsError> {
        let out = self
            .client
            .assume_role_with_web_identity()
            .role_arn(&request.role_arn)
            .role_session_name(&request.session_name)
            .duration_seconds(request.duration.as_secs().min(i32::MAX as u64) as i32)
            .web_identity_token(request.token.expose())
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let e = classify_sdk_error(e, &self.route, &self.egress);
                return Err(self.ask_the_proxy(e).await);
            }
        };
        let c = out.credentials().ok_or_else(|| StsError {
            code: "InvalidResponse".into(),
            message: "STS answered without Credentials".into(),
            class: ErrorClass::Retryable,
        })?;
        let expiration = SystemTime::try_from(*c.expiration()).map_err(|_| StsError {
            code: "InvalidResponse".into(),
            message: "STS answered an Expiration that is not a valid time".into(),
            class: ErrorClass::Retryable,
        })?;
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            c.session_token(),
            expiration,
            out.assumed_role_user().map(|u| u.arn().to_string()),
        ))
    }
}

fn classify_sdk_error<E>(
    err: SdkError<E, HttpResponse>,
    route: &Route,
    egress: &EgressSettings,
) -> StsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let retryable = |code: &str, message: String| StsError {
        code: code.into(),
        message: log_safe(&egress.scrub(&message)),
        class: ErrorClass::Retryable,
    };
    match &err {
        SdkError::ServiceError(se) => StsError::from_code(
            se.err().code().unwrap_or_default(),
            se.err().message().unwrap_or("STS refused the request"),
            Some(se.raw().status().as_u16()),
        ),
        SdkError::TimeoutError(_) => retryable(
            "Timeout",
            format!(
                "STS at {} did not answer in time{}",
                route.endpoint,
                via(route)
            ),
        ),
        SdkError::DispatchFailure(_) => {
            let mut e = network_error(&err, route);
            e.message = log_safe(&egress.scrub(&e.message));
            e
        }
        SdkError::ResponseError(_) => retryable(
            "InvalidResponse",
            format!(
                "STS sent a response that cannot be read: {}",
                error_chain(&err)
            ),
        ),
        _ => retryable("UnknownError", error_chain(&err)),
    }
}

fn via(route: &Route) -> String {
    match &route.proxy {
        Some(p) => format!(" (through the proxy {p} from {})", p.from),
        None => String::new(),
    }
}

/// Names what went wrong on the way to STS, one line each, so that `/readyz`,
/// the log and the metric's `error` label say it: the proxy's answer to
/// CONNECT, a certificate that does not verify, a name that does not resolve.
fn network_error(err: &(dyn std::error::Error + 'static), route: &Route) -> StsError {
    let chain = error_chain(err);
    let host = route.endpoint_host();
    let error = |code: &str, class: ErrorClass, message: String| StsError {
        code: code.into(),
        message,
        class,
    };
    if let Some(tls) = find_rustls_error(err) {
        return match tls {
            rustls::Error::InvalidCertificate(why) => error(
                "CertificateNotTrusted",
                ErrorClass::Configuration,
                format!(
                    "the TLS certificate of {host} does not verify against {} ({why:?}){}",
                    route.trust_roots(),
                    if route.trust.is_none() {
                        "; if a private CA re-signs TLS on the way out, set AWS_CA_BUNDLE to its PEM bundle"
                    } else {
                        ""
                    }
                ),
            ),
            other => error(
                "TlsError",
                ErrorClass::Retryable,
                format!("TLS with {host} failed: {other}{}", via(route)),
            ),
        };
    }
    if let Some(p) = &route.proxy {
        if chain.contains("proxy authorization required") {
            return error(
                "ProxyAuthenticationRequired",
                ErrorClass::Configuration,
                proxy_auth_message(p, &host, "407 Proxy Authentication Required"),
            );
        }
        if chain.contains("tunnel error: unsuccessful") {
            return error(
                "ProxyRefused",
                ErrorClass::Configuration,
                format!(
                    "the proxy {p} (from {}) refused to CONNECT {host} (an answer other than 200): its rules deny this host or port; allow it in the proxy, or add the host to NO_PROXY if it is reachable directly",
                    p.from
                ),
            );
        }
        if chain.contains("tunnel error") {
            return error(
                "ProxyError",
                ErrorClass::Retryable,
                format!(
                    "the proxy {p} (from {}) failed to open a tunnel to {host}: {chain}",
                    p.from
                ),
            );
        }
        if chain.contains("dns error")
            || chain.contains("connection refused")
            || chain.contains("Connection refused")
            || chain.contains("tcp connect error")
        {
            return error(
                "ProxyUnreachable",
                ErrorClass::Retryable,
                format!("cannot reach the proxy {p} (from {}): {chain}", p.from),
            );
        }
    } else if chain.contains("dns error") {
        return error(
            "EndpointNotResolved",
            ErrorClass::Retryable,
            format!(
                "the STS endpoint host {} does not resolve (DNS): check the region and AWS_ENDPOINT_URL_STS; if only a proxy reaches the internet, set HTTPS_PROXY{}",
                host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h),
                route
                    .bypass
                    .as_ref()
                    .map(|b| format!(" (now {b})"))
                    .unwrap_or_default()
            ),
        );
    }
    error(
        "NetworkError",
        ErrorClass::Retryable,
        format!(
            "cannot reach STS at {}{}: {chain}",
            route.endpoint,
            via(route)
        ),
    )
}

/// The rustls error somewhere in the chain: as a source, or inside an
/// `io::Error` (tokio-rustls wraps it so).
fn find_rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(t) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(t);
        }
        next = e.source();
    }
    None
}

/// The `Display` of an error and its sources, joined with `: `, without the
/// `Debug` dump the SDK's own context formatter appends.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_problems_should_be_classified_as_token() {
        for code in [
            "InvalidIdentityToken",
            "ExpiredTokenException",
            "IDPRejectedClaim",
        ] {
            assert_eq!(
                StsError::from_code(code, "x", Some(400)).class,
                ErrorClass::Token
            );
        }
    }

    #[test]
    fn throttling_and_5xx_should_be_retryable() {
        assert_eq!(
            StsError::from_code("Throttling", "Rate exceeded", Some(400)).class,
            ErrorClass::Retryable
        );
        assert_eq!(
            StsError::from_code("IDPCommunicationError", "x", Some(400)).class,
            ErrorClass::Retryable
        );
        assert_eq!(
            StsError::from_code("InternalFailure", "x", Some(500)).class,
            ErrorClass::Retryable
        );
    }

    #[test]
    fn duration_too_long_should_get_a_hint() {
        let e = StsError::from_code(
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            Some(400),
        );
        assert_eq!(e.class, ErrorClass::Configuration);
        assert!(e.message.contains("lower --duration"));
    }

    #[test]
    fn messages_should_be_one_bounded_line() {
        let e = StsError::from_code("X", &format!("a\nb{}", "c".repeat(2000)), Some(500));
        assert!(!e.message.contains('\n'));
        assert!(e.message.len() < 600);
    }
}
