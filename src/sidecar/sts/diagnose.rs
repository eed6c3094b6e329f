//! What went wrong on the way to STS, said in one line each, so that
//! `/readyz`, the log and the metric's `error` label name it: the proxy's
//! answer to CONNECT, a certificate that does not verify, a name that does not
//! resolve. Everything here is scrubbed of proxy passwords and bounded.

use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use super::{log_safe, ErrorClass, StsError};
use crate::sidecar::egress::{EgressSettings, ProxyUrl, Route};

/// When a proxy refused the tunnel, asks it once what it answers, so the
/// error names the status (`403 Forbidden`, `401`/`407`: credentials).
pub(super) async fn ask_the_proxy(e: StsError, route: &Route, egress: &EgressSettings) -> StsError {
    let Some(proxy) = route.proxy.as_ref().filter(|_| e.code == "ProxyRefused") else {
        return e;
    };
    let host = route.endpoint_host();
    let Some(status) = crate::sidecar::egress::connect_status(proxy, &host).await else {
        return e;
    };
    let status = egress.scrub(&status);
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

fn proxy_auth_message(proxy: &ProxyUrl, host: &str, status: &str) -> String {
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

pub(super) fn classify_sdk_error<E>(
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
/// `Debug` dump the SDK's own context formatter appends: the innermost causes
/// say what happened ("invalid peer certificate: UnknownIssuer", "Connection
/// refused"). Also doctor's words for an issuer it cannot fetch.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
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
