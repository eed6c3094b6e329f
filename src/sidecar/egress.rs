//! The way out to STS in a private cluster (docs/contract.md, "Private
//! clusters"): an egress proxy, a private CA, and the endpoint variants
//! enterprises use.
//!
//! What is ours: reading the standard variables, checking them at start-up (one
//! line per problem, exit 2, a proxy password never shown), and saying which way
//! a call goes ([`Route`], `serve --print-endpoint`). What is the SDK's: its HTTP
//! client proxies (CONNECT tunnel, basic auth from the URL, `NO_PROXY` matching)
//! and does the TLS with the trust roots we hand it, and its endpoint rules
//! resolve FIPS, dual-stack, regional and global endpoints.
//!
//! - `HTTPS_PROXY`/`https_proxy` for an `https://` endpoint, `HTTP_PROXY`/
//!   `http_proxy` for an `http://` one, `ALL_PROXY`/`all_proxy` for either when
//!   the specific one is unset. `http://` or `https://` proxies, with optional
//!   `user:password@`; no scheme means `http://`, as in curl.
//! - `NO_PROXY`/`no_proxy`: comma-separated host names (each also matches its
//!   subdomains; a leading `.` or `*.` means the same), IP addresses, CIDR
//!   ranges, or `*` for every host.
//! - `AWS_CA_BUNDLE`, else `ca_bundle` of the selected profile: a PEM file of CA
//!   certificates used **instead of** the system trust roots, as the AWS CLI
//!   does (botocore hands it to urllib3 as the only bundle).
//! - `AWS_USE_FIPS_ENDPOINT`, `AWS_USE_DUALSTACK_ENDPOINT` (also read from the
//!   profile by the SDK), `AWS_STS_REGIONAL_ENDPOINTS=regional|legacy` (or the
//!   profile's `sts_regional_endpoints`; `regional` by default, as in current
//!   SDKs and the AWS CLI v2).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::flags::{serve as f, Flag, FlagError, Flags, Given, Refusal};

/// Largest CA bundle read: the system bundle is about 200 KiB.
const MAX_CA_BUNDLE_BYTES: u64 = 16 * 1024 * 1024;

/// A proxy from the environment. Its password is never displayed.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// As given, with `http://` put in front when there was no scheme: what the
    /// SDK's HTTP client is handed (it takes the credentials out of it).
    raw: String,
    /// `scheme://host:port`, no credentials.
    shown: String,
    /// The variable it came from.
    pub from: &'static str,
    has_credentials: bool,
    /// Percent-decoded, for [`connect_status`].
    user: Option<String>,
    /// Percent-decoded, to scrub from any error text.
    password: Option<String>,
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProxyUrl({self})")
    }
}

impl fmt::Display for ProxyUrl {
    /// `http://proxy:3128`, or `http://user:***@proxy:3128`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl ProxyUrl {
    /// Parses a proxy variable's value; the refusal never repeats a password.
    pub fn parse(value: &str, from: &'static str) -> Result<ProxyUrl, Refusal> {
        let allowed = "http://[user:password@]host:port or https://...";
        let v = value.trim();
        let raw = if v.contains("://") {
            v.to_string()
        } else {
            format!("http://{v}")
        };
        let (scheme, rest) = raw.split_once("://").unwrap_or(("http", &raw));
        let scheme = scheme.to_ascii_lowercase();
        if scheme.starts_with("socks") {
            return Err(Refusal::new(
                "is a SOCKS proxy, which the STS client cannot use",
                format!("an HTTP proxy: {allowed}"),
            ));
        }
        if scheme != "http" && scheme != "https" {
            return Err(Refusal::new(
                format!("has the scheme {scheme:?}"),
                allowed.to_string(),
            ));
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if userinfo.is_some_and(|u| u.contains('@')) {
            // The SDK's client splits at the first `@`: the rest would be taken
            // for the host, and the credentials would silently be wrong.
            return Err(Refusal::new(
                "has an unencoded @ in its user or password",
                "the @ percent-encoded as %40: http://user:p%40ss@host:port",
            ));
        }
        let uri: http::Uri = format!("{scheme}://{host_port}/")
            .parse()
            .map_err(|_| Refusal::new("is not a URL", allowed.to_string()))?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(Refusal::new("has no host", allowed.to_string()));
        }
        let user = userinfo.map(|u| u.split_once(':').map_or(u, |(user, _)| user));
        let password = userinfo
            .and_then(|u| u.split_once(':'))
            .map(|(_, p)| percent_decode(p))
            .filter(|p| !p.is_empty());
        let shown = match (user, &password) {
            (Some(user), Some(_)) => format!("{scheme}://{user}:***@{host_port}"),
            (Some(user), None) => format!("{scheme}://{user}@{host_port}"),
            (None, _) => format!("{scheme}://{host_port}"),
        };
        Ok(ProxyUrl {
            raw: format!("{scheme}://{rest}"),
            shown,
            from,
            has_credentials: userinfo.is_some(),
            user: user.map(percent_decode),
            password,
        })
    }

    /// True when the URL carries a user (and perhaps a password).
    pub(crate) fn has_credentials(&self) -> bool {
        self.has_credentials
    }

    /// Replaces the password wherever it appears in `text`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.password {
            Some(p) if p.len() >= 2 => text.replace(p.as_str(), "***"),
            _ => text.to_string(),
        }
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `NO_PROXY`, checked and in the form the SDK's matcher reads (`*.corp` is
/// written `.corp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoProxy {
    pub rules: String,
    pub from: &'static str,
}

impl NoProxy {
    pub fn parse(value: &str, from: &'static str) -> Result<NoProxy, Refusal> {
        let mut rules = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Some((addr, bits)) = entry.split_once('/') {
                let max = match addr.parse::<IpAddr>() {
                    Ok(IpAddr::V4(_)) => 32,
                    Ok(IpAddr::V6(_)) => 128,
                    Err(_) => {
                        return Err(Refusal::new(
                            format!("has {entry:?}, which is not a CIDR range"),
                            "comma-separated host names, .domains, IP addresses, CIDR ranges (10.0.0.0/8) or *",
                        ))
                    }
                };
                if !bits.parse::<u8>().is_ok_and(|b| b <= max) {
                    return Err(Refusal::new(
                        format!("has {entry:?}, whose prefix length is not 0 to {max}"),
                        "comma-separated host names, .domains, IP addresses, CIDR ranges (10.0.0.0/8) or *",
                    ));
                }
                rules.push(entry.to_string());
            } else if let Some(domain) = entry.strip_prefix("*.") {
                rules.push(format!(".{domain}"));
            } else {
                rules.push(entry.to_string());
            }
        }
        Ok(NoProxy {
            rules: rules.join(","),
            from,
        })
    }
}

/// The trust roots that replace the system's.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    pub path: PathBuf,
    /// `AWS_CA_BUNDLE`, or `ca_bundle in profile "x"`.
    pub from: String,
    /// The usable certificates, as PEM: what the SDK's TLS is handed (shared:
    /// the system bundle is a few hundred KiB, and copies of it are resident).
    pem: std::sync::Arc<[u8]>,
    pub certificates: usize,
    /// Blocks that are not usable trust roots, left out.
    pub skipped: usize,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .field("from", &self.from)
            .field("certificates", &self.certificates)
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl CaBundle {
    /// The usable certificates, as PEM.
    pub(crate) fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// Reads and checks the bundle: readable, PEM, and at least one certificate
    /// usable as a trust root. (Certificates that are not are left out: the
    /// SDK's TLS would stop the process on one.)
    pub fn load(path: &Path, from: String) -> Result<CaBundle, Refusal> {
        let allowed = "a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)";
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => return Err(Refusal::new("is a directory", allowed)),
            Ok(m) if m.len() > MAX_CA_BUNDLE_BYTES => {
                return Err(Refusal::new("is larger than 16 MiB", allowed))
            }
            _ => {}
        }
        let bytes = std::fs::read(path)
            .map_err(|e| Refusal::new(format!("cannot be read ({e})"), allowed))?;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| Refusal::new(format!("is not PEM ({e})"), allowed))?;
        if certs.is_empty() {
            return Err(Refusal::new("holds no PEM certificate", allowed));
        }
        let mut pem = Vec::new();
        let mut usable = 0;
        for cert in &certs {
            let mut probe = rustls::RootCertStore::empty();
            if probe.add(cert.clone()).is_ok() {
                usable += 1;
                pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
                let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
                for line in b64.as_bytes().chunks(64) {
                    pem.extend_from_slice(line);
                    pem.push(b'\n');
                }
                pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
            }
        }
        if usable == 0 {
            return Err(Refusal::new(
                format!(
                    "holds {} certificate(s), none usable as a trust root",
                    certs.len()
                ),
                allowed,
            ));
        }
        Ok(CaBundle {
            path: path.to_path_buf(),
            from,
            pem: pem.into(),
            certificates: usable,
            skipped: certs.len() - usable,
        })
    }
}

/// `AWS_STS_REGIONAL_ENDPOINTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StsEndpoints {
    /// `sts.<region>.amazonaws.com` for every region.
    Regional,
    /// The global `sts.amazonaws.com` for the regions that had it before 2019.
    Legacy,
}

impl StsEndpoints {
    pub fn parse(v: &str) -> Result<StsEndpoints, Refusal> {
        match v.trim().to_ascii_lowercase().as_str() {
            "regional" => Ok(StsEndpoints::Regional),
            "legacy" => Ok(StsEndpoints::Legacy),
            _ => Err(Refusal::new(
                "is not an STS endpoint mode",
                "regional or legacy",
            )),
        }
    }
}

/// What the environment says about the way to STS, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressSettings {
    /// For an `https://` endpoint (`HTTPS_PROXY`, else `ALL_PROXY`).
    pub https_proxy: Option<ProxyUrl>,
    /// For an `http://` endpoint (`HTTP_PROXY`, else `ALL_PROXY`).
    pub http_proxy: Option<ProxyUrl>,
    pub no_proxy: Option<NoProxy>,
    /// `AWS_CA_BUNDLE`; the profile's `ca_bundle` is read when the client is built.
    pub ca_bundle: Option<CaBundle>,
    pub use_fips: Option<bool>,
    pub use_dual_stack: Option<bool>,
    pub sts_endpoints: Option<StsEndpoints>,
}

impl EgressSettings {
    /// Reads the variables through `flags`, recording every refusal.
    pub(crate) fn from_env(flags: &mut Flags<'_>) -> EgressSettings {
        let all = proxy(flags, &f::ALL_PROXY);
        let https_proxy = proxy(flags, &f::HTTPS_PROXY).or_else(|| all.clone());
        let http_proxy = proxy(flags, &f::HTTP_PROXY).or(all);
        let no_proxy = flags.raw(&f::NO_PROXY, None).and_then(|(v, source)| {
            let from = source.unwrap_or(f::NO_PROXY.name);
            match NoProxy::parse(&v, from) {
                Ok(n) => Some(n),
                Err(why) => {
                    flags.refuse(FlagError::refused(f::NO_PROXY.name, source, &v, why));
                    None
                }
            }
        });
        let ca_bundle = flags.parse(&f::CA_BUNDLE, None, |v| {
            CaBundle::load(Path::new(v.trim()), "AWS_CA_BUNDLE".into())
        });
        let use_fips = flags.parse(&f::USE_FIPS_ENDPOINT, None, crate::flags::boolean);
        let use_dual_stack = flags.parse(&f::USE_DUALSTACK_ENDPOINT, None, crate::flags::boolean);
        let sts_endpoints = flags.parse(&f::STS_REGIONAL_ENDPOINTS, None, StsEndpoints::parse);
        EgressSettings {
            https_proxy,
            http_proxy,
            no_proxy,
            ca_bundle,
            use_fips,
            use_dual_stack,
            sts_endpoints,
        }
    }

    /// The proxy for an endpoint with this scheme, before `NO_PROXY`.
    pub(crate) fn proxy_for_scheme(&self, scheme: &str) -> Option<&ProxyUrl> {
        if scheme.eq_ignore_ascii_case("http") {
            self.http_proxy.as_ref()
        } else {
            self.https_proxy.as_ref()
        }
    }

    /// Every proxy password, to scrub from error text.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let text = self
            .https_proxy
            .as_ref()
            .map_or_else(|| text.to_string(), |p| p.scrub(text));
        self.http_proxy
            .as_ref()
            .map_or(text.clone(), |p| p.scrub(&text))
    }
}

/// A proxy variable; a refusal shows the value without its password.
fn proxy(flags: &mut Flags<'_>, flag: &Flag) -> Option<ProxyUrl> {
    let (v, source) = flags.raw(flag, None)?;
    let from = source.unwrap_or(flag.name);
    match ProxyUrl::parse(&v, from) {
        Ok(p) => Some(p),
        Err(why) => {
            let shown = match ProxyUrl::parse(&format!("http://{}", after_scheme(&v)), from) {
                Ok(p) => p.scrub(&v),
                Err(_) => "(not shown: it may hold a password)".to_string(),
            };
            flags.refuse(FlagError {
                flag: flag.name,
                source,
                value: Given::Value(shown),
                problem: why.problem,
                allowed: why.allowed,
            });
            None
        }
    }
}

fn after_scheme(v: &str) -> &str {
    v.split_once("://").map_or(v, |(_, rest)| rest)
}

/// Which way the STS calls go: endpoint, proxy, trust roots. Its `Display` is
/// what `serve --print-endpoint` prints and what `serve` logs at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The URL the SDK's endpoint rules resolved.
    pub endpoint: String,
    pub region: String,
    /// What decided the endpoint: the explicit URL or the rules' inputs.
    pub resolved_from: String,
    /// The proxy the calls go through, if any.
    pub proxy: Option<ProxyUrl>,
    /// Why there is no proxy although one is set (`NO_PROXY`).
    pub bypass: Option<String>,
    /// The bundle that replaces the system trust roots, if any.
    pub trust: Option<CaBundle>,
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "endpoint: {} ({})", self.endpoint, self.resolved_from)?;
        writeln!(f, "proxy:    {}", self.proxy_description())?;
        match &self.trust {
            Some(b) => write!(
                f,
                "trust:    {}, instead of the system trust roots{}",
                self.trust_roots(),
                if b.skipped > 0 {
                    format!("; {} unusable certificate(s) left out", b.skipped)
                } else {
                    String::new()
                }
            ),
            None => write!(f, "trust:    {} (no AWS_CA_BUNDLE)", self.trust_roots()),
        }
    }
}

impl Route {
    /// The route for `endpoint`, as the SDK's HTTP client will take it.
    pub fn new(
        endpoint: String,
        region: String,
        resolved_from: String,
        egress: &EgressSettings,
        trust: Option<&CaBundle>,
    ) -> Route {
        let uri: Option<http::Uri> = endpoint.parse().ok();
        let scheme = uri.as_ref().and_then(|u| u.scheme_str()).unwrap_or("https");
        let host = uri.as_ref().and_then(|u| u.host()).unwrap_or_default();
        let mut proxy = egress.proxy_for_scheme(scheme).cloned();
        let mut bypass = None;
        if let (Some(p), Some(no)) = (&proxy, &egress.no_proxy) {
            if no_proxy_matches(&no.rules, host) {
                bypass = Some(format!(
                    "{} matches {host}, so {} is not used",
                    no.from, p.from
                ));
                proxy = None;
            }
        }
        Route {
            endpoint,
            region,
            resolved_from,
            proxy,
            bypass,
            trust: trust.cloned(),
        }
    }

    /// The proxy and where it came from, or why there is none.
    pub(crate) fn proxy_description(&self) -> String {
        match (&self.proxy, &self.bypass) {
            (Some(p), _) => format!("{p} (from {})", p.from),
            (None, Some(why)) => format!("none: {why}"),
            (None, None) => "none (no HTTPS_PROXY, HTTP_PROXY or ALL_PROXY)".into(),
        }
    }

    /// What certificates are verified against: `N certificate(s) from PATH
    /// (AWS_CA_BUNDLE)`, or `the system trust roots`.
    pub(crate) fn trust_roots(&self) -> String {
        match &self.trust {
            Some(b) => format!(
                "{} certificate(s) from {} ({})",
                b.certificates,
                b.path.display(),
                b.from
            ),
            None => "the system trust roots".into(),
        }
    }

    /// The endpoint's `host:port`, for messages.
    pub(crate) fn endpoint_host(&self) -> String {
        self.endpoint
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| {
                let host = u.host()?.to_string();
                let port = u.port_u16().unwrap_or(match u.scheme_str() {
                    Some("http") => 80,
                    _ => 443,
                });
                Some(format!("{host}:{port}"))
            })
            .unwrap_or_else(|| self.endpoint.clone())
    }
}

/// What an `http://` proxy answers to `CONNECT target`, as `403 Forbidden`:
/// asked once, with hyper, when a tunnel failed, because the SDK's client
/// reports only "unsuccessful". `None` when the proxy cannot be asked (an
/// `https://` proxy, no answer within 3 s).
pub(crate) async fn connect_status(proxy: &ProxyUrl, target: &str) -> Option<String> {
    use http_body_util::Empty;
    let uri: http::Uri = proxy.raw.parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(target)
        .header(http::header::HOST, target);
    if let Some(user) = &proxy.user {
        let pair = format!("{user}:{}", proxy.password.as_deref().unwrap_or(""));
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
        request = request.header(
            http::header::PROXY_AUTHORIZATION,
            format!("Basic {encoded}"),
        );
    }
    let request = request.body(Empty::<bytes::Bytes>::new()).ok()?;
    let ask = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .ok()?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        let connection = tokio::spawn(connection);
        let response = sender.send_request(request).await.ok();
        connection.abort();
        let response = response?;
        let status = response.status();
        // The proxy's own words when it chose some ("403 Access violation").
        let reason = match response.extensions().get::<hyper::ext::ReasonPhrase>() {
            Some(phrase) => String::from_utf8_lossy(phrase.as_bytes())
                .chars()
                .filter(|c| !c.is_control())
                .take(80)
                .collect(),
            None => status.canonical_reason().unwrap_or_default().to_string(),
        };
        Some(
            format!("{} {reason}", status.as_u16())
                .trim_end()
                .to_string(),
        )
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), ask)
        .await
        .ok()
        .flatten()
}

/// The SDK's own `NO_PROXY` matcher, asked about one host: the same answer its
/// HTTP client will act on.
fn no_proxy_matches(rules: &str, host: &str) -> bool {
    let matcher = hyper_util::client::proxy::matcher::Matcher::builder()
        .all("http://proxy.invalid:1")
        .no(rules)
        .build();
    match format!("https://{host}/").parse::<http::Uri>() {
        Ok(uri) => matcher.intercept(&uri).is_none(),
        Err(_) => false,
    }
}

/// Why the SDK's HTTP client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The SDK refused the proxy URL. `why` is scrubbed of the password.
    #[error("{from}: {proxy}: {why}")]
    Proxy {
        from: &'static str,
        /// The URL as `Display` shows it (password hidden).
        proxy: String,
        why: String,
    },
    /// The trust roots do not make a TLS context.
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// The proxy the SDK's client takes for an endpoint with this scheme
/// (`NO_PROXY` applied by the client itself).
pub(crate) fn proxy_config(
    scheme: &str,
    egress: &EgressSettings,
) -> Result<aws_smithy_http_client::proxy::ProxyConfig, HttpClientError> {
    use aws_smithy_http_client::proxy::ProxyConfig;
    Ok(match egress.proxy_for_scheme(scheme) {
        None => ProxyConfig::disabled(),
        Some(p) => {
            let mut c = ProxyConfig::all(p.raw.as_str()).map_err(|e| HttpClientError::Proxy {
                from: p.from,
                proxy: p.to_string(),
                why: p.scrub(&e.to_string()),
            })?;
            if let Some(no) = &egress.no_proxy {
                c = c.no_proxy(&no.rules);
            }
            c
        }
    })
}

/// The SDK's HTTP client for these settings: rustls with aws-lc-rs, the trust
/// roots, and the proxy for the endpoint's scheme.
pub(crate) fn http_client(
    route: &Route,
    egress: &EgressSettings,
) -> Result<aws_sdk_sts::config::SharedHttpClient, HttpClientError> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};

    let scheme = route
        .endpoint
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.scheme_str().map(str::to_string))
        .unwrap_or_else(|| "https".into());
    let proxy_config = proxy_config(&scheme, egress)?;
    let trust_store = match &route.trust {
        Some(b) => TrustStore::empty().with_pem_certificate(b.pem.to_vec()),
        None => TrustStore::default(),
    };
    let tls_context = TlsContext::builder()
        .with_trust_store(trust_store)
        .build()
        .map_err(|e| HttpClientError::Tls(e.to_string()))?;
    Ok(
        aws_smithy_http_client::Builder::new().build_with_connector_fn(
            move |settings, components| {
                let mut builder = aws_smithy_http_client::Connector::builder();
                builder.set_connector_settings(settings.cloned());
                if let Some(components) = components {
                    builder.set_sleep_impl(components.sleep_impl());
                }
                builder
                    .proxy_config(proxy_config.clone())
                    .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
                    .tls_context(tls_context.clone())
                    .build()
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<EgressSettings, Vec<FlagError>> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut flags = Flags::new(&env);
        let s = EgressSettings::from_env(&mut flags);
        flags.finish(|| Some(s))
    }

    #[test]
    fn a_proxy_password_should_never_be_shown() {
        let p = ProxyUrl::parse("http://alice:s3cr%40t@proxy.corp:3128", "HTTPS_PROXY").unwrap();
        assert_eq!(p.to_string(), "http://alice:***@proxy.corp:3128");
        assert_eq!(p.scrub("auth s3cr@t failed"), "auth *** failed");
        assert!(!format!("{p:?}").contains("s3cr"));
    }

    #[test]
    fn an_unencoded_at_in_the_password_should_be_refused_without_the_password() {
        let e = settings(&[("HTTPS_PROXY", "http://bob:hunter@22@proxy:3128")]).unwrap_err();
        let line = crate::flags::lines(&e);
        assert!(line.contains("%40"), "{line}");
        assert!(!line.contains("hunter"), "{line}");
        let ok = ProxyUrl::parse("http://bob:hunter%4022@proxy:3128", "HTTPS_PROXY").unwrap();
        assert_eq!(ok.scrub("x hunter@22 y"), "x *** y");
    }

    #[test]
    fn a_proxy_without_scheme_should_be_http() {
        let p = ProxyUrl::parse("proxy.corp:3128", "HTTPS_PROXY").unwrap();
        assert_eq!(p.to_string(), "http://proxy.corp:3128");
    }

    #[test]
    fn bad_proxies_should_be_refused_without_their_password() {
        let e = settings(&[("HTTPS_PROXY", "socks5://bob:hunter22@proxy:1080")]).unwrap_err();
        let line = crate::flags::lines(&e);
        assert!(line.contains("SOCKS"), "{line}");
        assert!(!line.contains("hunter22"), "{line}");
        let e = settings(&[("https_proxy", "ftp://proxy:21")]).unwrap_err();
        assert!(crate::flags::lines(&e).starts_with("HTTPS_PROXY (https_proxy)"));
    }

    #[test]
    fn all_proxy_should_fill_in_for_both_schemes() {
        let s = settings(&[("ALL_PROXY", "http://p:1"), ("HTTP_PROXY", "http://q:2")]).unwrap();
        assert_eq!(
            s.proxy_for_scheme("https").unwrap().to_string(),
            "http://p:1"
        );
        assert_eq!(
            s.proxy_for_scheme("http").unwrap().to_string(),
            "http://q:2"
        );
    }

    #[test]
    fn no_proxy_should_match_suffixes_and_cidrs_as_the_sdk_does() {
        let n =
            NoProxy::parse("*.corp, .internal,10.0.0.0/8, sts.example.com", "NO_PROXY").unwrap();
        assert!(no_proxy_matches(&n.rules, "sts.corp"));
        assert!(no_proxy_matches(&n.rules, "a.b.internal"));
        assert!(no_proxy_matches(&n.rules, "10.1.2.3"));
        assert!(no_proxy_matches(&n.rules, "sts.example.com"));
        assert!(!no_proxy_matches(&n.rules, "sts.us-east-1.amazonaws.com"));
        assert!(NoProxy::parse("10.0.0.0/40", "NO_PROXY").is_err());
    }

    #[test]
    fn a_bundle_should_be_pem_with_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = CaBundle::load(&missing, "AWS_CA_BUNDLE".into()).unwrap_err();
        assert!(e.problem.starts_with("cannot be read"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = CaBundle::load(&junk, "AWS_CA_BUNDLE".into()).unwrap_err();
        assert_eq!(e.problem, "holds no PEM certificate");
    }

    #[test]
    fn routes_should_name_the_bypass() {
        let s = settings(&[
            ("HTTPS_PROXY", "http://p:3128"),
            ("NO_PROXY", ".amazonaws.com"),
        ])
        .unwrap();
        let r = Route::new(
            "https://sts.eu-west-1.amazonaws.com".into(),
            "eu-west-1".into(),
            "region eu-west-1".into(),
            &s,
            None,
        );
        assert!(r.proxy.is_none());
        assert!(r.bypass.unwrap().contains("NO_PROXY matches"));
    }
}
