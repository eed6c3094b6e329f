//! `doctor --issuer`: the token's issuer as STS sees it (docs/contract.md §1,
//! docs/doctor.md).
//!
//! STS verifies a web-identity token by fetching, over HTTPS on the public
//! internet, `<iss>/.well-known/openid-configuration` and the JWKS its
//! `jwks_uri` names, and by finding the token's `kid` there. On clusters outside
//! EKS (kops, kubeadm, k3s) that chain is the usual failure: an issuer only the
//! cluster can reach (`https://kubernetes.default.svc`), a discovery document
//! whose `issuer` is not the token's `iss`, a JWKS without the signing key.
//!
//! Doctor does the same fetches with the sidecar's own HTTP client (the AWS
//! SDK's hyper and rustls stack, [`crate::sidecar::egress`]): through
//! `HTTPS_PROXY` (or `ALL_PROXY`) unless `NO_PROXY` names the host, trusting
//! the system's roots plus `AWS_CA_BUNDLE` and `--ca-file`. `--resolve
//! HOST=ADDR` connects to ADDR for HOST instead of asking DNS (an issuer whose
//! DNS is not public yet, or a test).
//!
//! What it cannot see from here is said as a warning, not an error: a name
//! that resolves to private addresses from this machine may resolve to public
//! ones on the internet (split DNS).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use http_body_util::{BodyExt, Limited};
use serde::Serialize;

use super::{Finding, Report};
use crate::cli::DoctorArgs;
use crate::flags::{doctor as f, Environment, FlagError, Flags, Refusal};
use crate::policy::{issuer_host_path, Policy, Principal};
use crate::sidecar::egress::{self, CaBundle, EgressSettings, HttpClientError, Route};

/// Each fetch, connection to last byte. STS gives an issuer about as long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Discovery documents and key sets are a few KiB.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// What `--issuer` needs besides the report: the way out and the trust roots.
#[derive(Debug, Clone)]
pub(crate) struct IssuerPlan {
    egress: EgressSettings,
    ca_file: Option<CaBundle>,
    resolve: HashMap<String, IpAddr>,
}

/// Reads `--ca-file`, `--resolve` and the proxy and trust variables. `None`
/// without `--issuer`, where the two flags are refused.
pub(crate) fn plan(
    args: &DoctorArgs,
    env: &dyn Environment,
) -> Result<Option<IssuerPlan>, Vec<FlagError>> {
    let mut flags = Flags::new(env);
    if !args.issuer {
        let needs = |flags: &mut Flags<'_>, name: &'static str, v: String| {
            flags.refuse(FlagError::refused(
                name,
                None,
                &v,
                Refusal::new("needs --issuer", "--issuer too, or leave it out"),
            ))
        };
        if let Some(p) = &args.ca_file {
            needs(&mut flags, f::CA_FILE.name, p.display().to_string());
        }
        for r in &args.resolve {
            needs(&mut flags, f::RESOLVE.name, r.clone());
        }
        return flags.finish(|| Some(None));
    }
    let egress = EgressSettings::from_env(&mut flags);
    let ca_file = args.ca_file.as_ref().and_then(|p| {
        let shown = p.display().to_string();
        flags.parse(&f::CA_FILE, Some(&shown), |v| {
            CaBundle::load(Path::new(v), "--ca-file".into())
        })
    });
    let mut resolve = HashMap::new();
    for r in &args.resolve {
        if let Some((host, addr)) = flags.parse(&f::RESOLVE, Some(r), parse_resolve) {
            resolve.insert(host, addr);
        }
    }
    flags.finish(|| {
        Some(Some(IssuerPlan {
            egress,
            ca_file,
            resolve,
        }))
    })
}

fn parse_resolve(v: &str) -> Result<(String, IpAddr), Refusal> {
    let allowed = "HOST=ADDR, such as oidc.example.com=203.0.113.7";
    let (host, addr) = v
        .trim()
        .split_once('=')
        .ok_or_else(|| Refusal::new("has no '='", allowed))?;
    let host = host.trim().to_ascii_lowercase();
    if host.is_empty() || host.contains(['/', ':', ' ']) {
        return Err(Refusal::new("does not start with a host name", allowed));
    }
    let addr = addr
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map_err(|_| Refusal::new("does not end in an IP address", allowed))?;
    Ok((host, addr))
}

/// How one host was resolved while fetching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Resolved {
    pub host: String,
    pub addresses: Vec<IpAddr>,
    pub from: Lookup,
}

/// Who answered for a host: DNS, or a `--resolve` override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) enum Lookup {
    #[serde(rename = "dns")]
    Dns,
    #[serde(rename = "--resolve")]
    Resolve,
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lookup::Dns => "dns",
            Lookup::Resolve => "--resolve",
        })
    }
}

/// What `--issuer` found; in the JSON report as `issuer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct IssuerReport {
    /// The token's `iss`.
    pub url: String,
    pub discovery_url: Option<String>,
    /// The `issuer` the discovery document states.
    pub discovery_issuer: Option<String>,
    pub jwks_uri: Option<String>,
    /// The token header's `kid`.
    pub token_kid: Option<String>,
    /// The `kid` of every key in the JWKS.
    pub jwks_kids: Vec<String>,
    /// True when the token's key is in the JWKS.
    pub kid_found: Option<bool>,
    /// The proxy the fetches went through, or why none.
    pub proxy: String,
    /// What the server certificates were verified against.
    pub trust: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<Resolved>,
}

/// DNS for the connector: `--resolve` first, else the system resolver; every
/// answer is kept, so the addresses can be judged afterwards.
#[derive(Debug, Clone, Default)]
struct Resolver {
    overrides: Arc<HashMap<String, IpAddr>>,
    seen: Arc<Mutex<Vec<Resolved>>>,
}

impl ResolveDns for Resolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        DnsFuture::new(async move {
            let host = name.to_ascii_lowercase();
            let (addresses, from) = match self.overrides.get(&host) {
                Some(a) => (vec![*a], Lookup::Resolve),
                None => {
                    let found = tokio::net::lookup_host((host.as_str(), 0))
                        .await
                        .map_err(ResolveDnsError::new)?;
                    (found.map(|s| s.ip()).collect(), Lookup::Dns)
                }
            };
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if !seen.iter().any(|r| r.host == host) {
                seen.push(Resolved {
                    host,
                    addresses: addresses.clone(),
                    from,
                });
            }
            Ok(addresses)
        })
    }
}

/// Why a document could not be had; its text is the finding's.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("not a URL: {0}")]
    Url(String),
    /// The connection's error and its causes ([`crate::sidecar::sts::error_chain`]).
    #[error("{0}")]
    Connection(String),
    #[error("the answer could not be read ({0})")]
    Body(String),
    #[error("it answered HTTP {0}")]
    Status(u16),
    #[error("no answer within {}s", FETCH_TIMEOUT.as_secs())]
    Timeout,
}

/// GETs one document.
async fn fetch(connector: &Connector, url: &str) -> Result<Vec<u8>, FetchError> {
    let request = HttpRequest::get(url).map_err(|e| FetchError::Url(e.to_string()))?;
    let call = async {
        let response = connector
            .call(request)
            .await
            .map_err(|e| FetchError::Connection(crate::sidecar::sts::error_chain(&e)))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|e| FetchError::Body(e.to_string()))?
            .to_bytes();
        if status != 200 {
            return Err(FetchError::Status(status));
        }
        Ok(body.to_vec())
    };
    tokio::time::timeout(FETCH_TIMEOUT, call)
        .await
        .unwrap_or(Err(FetchError::Timeout))
}

/// The connector: the SDK's, with the proxy for `https://`, the system's trust
/// roots plus the bundles, and our resolver.
fn connector(plan: &IssuerPlan, resolver: Resolver) -> Result<Connector, HttpClientError> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let proxy = egress::proxy_config("https", &plan.egress)?;
    let mut trust = TrustStore::default();
    for bundle in [&plan.egress.ca_bundle, &plan.ca_file]
        .into_iter()
        .flatten()
    {
        trust.add_pem_certificate(bundle.pem().to_vec());
    }
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| HttpClientError::Tls(e.to_string()))?;
    Ok(aws_smithy_http_client::Connector::builder()
        .proxy_config(proxy)
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(tls_context)
        .build_with_resolver(resolver))
}

/// Names only a cluster (or this machine) resolves: never the internet's.
fn internal_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    let suffixes = [
        ".svc",
        ".cluster.local",
        ".local",
        ".localhost",
        ".localdomain",
        ".internal",
        ".home.arpa",
    ];
    h == "localhost"
        || (!h.contains('.') && h.parse::<IpAddr>().is_err() && !h.starts_with('['))
        || suffixes.iter().any(|s| h.ends_with(s))
        || h.ends_with(".svc.cluster.local")
}

/// Whether an address is on the public internet (what STS can reach).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local (fd00:ec2::23 among them)
        || (first & 0xffc0) == 0xfe80 // link-local
        || first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
}

/// The `kid` of a JWT's header.
fn token_kid(token: &str) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("kid")?.as_str().map(str::to_string)
}

/// The host checks of one URL (the issuer, or the JWKS the discovery names),
/// pushed as findings; the URI when it can be fetched at all (https://).
fn check_url(what: Which, url: &str, findings: &mut Vec<Finding>) -> Option<http::Uri> {
    let uri = match url.parse::<http::Uri>() {
        Ok(u) if u.host().is_some_and(|h| !h.is_empty()) => u,
        _ => {
            findings.push(Finding::error(
                what.code("not_https"),
                format!("{} {url:?} is not an https:// URL", what.name()),
                Some(what.hint_https()),
            ));
            return None;
        }
    };
    if !uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        findings.push(Finding::error(
            what.code("not_https"),
            format!(
                "{} {url} is not https://; STS fetches the issuer's documents over HTTPS only",
                what.name()
            ),
            Some(what.hint_https()),
        ));
        return None;
    }
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !is_public(ip) {
            findings.push(Finding::error(
                what.code("private_address"),
                format!(
                    "{} {url} is at {ip}, a private, loopback or link-local address: STS, on the internet, cannot reach it",
                    what.name()
                ),
                Some(what.hint_public()),
            ));
        }
    } else if internal_name(host) {
        findings.push(Finding::error(
            what.code("internal_name"),
            format!(
                "{} {url} names {host:?}, which only the cluster (or this machine) resolves: STS, on the internet, cannot reach it",
                what.name()
            ),
            Some(what.hint_public()),
        ));
    }
    Some(uri)
}

/// The issuer's URL or the JWKS's: the codes and words of the findings.
#[derive(Debug, Clone, Copy)]
enum Which {
    Issuer,
    Jwks,
}

impl Which {
    fn code(self, what: &str) -> &'static str {
        match (self, what) {
            (Which::Issuer, "not_https") => "issuer_not_https",
            (Which::Issuer, "private_address") => "issuer_private_address",
            (Which::Issuer, "internal_name") => "issuer_internal_name",
            (Which::Issuer, "resolves_private") => "issuer_resolves_private",
            (Which::Issuer, _) => "issuer_unreachable",
            (Which::Jwks, "not_https") => "jwks_uri_not_https",
            (Which::Jwks, "private_address") => "jwks_uri_private_address",
            (Which::Jwks, "internal_name") => "jwks_uri_internal_name",
            (Which::Jwks, "resolves_private") => "jwks_uri_resolves_private",
            (Which::Jwks, _) => "jwks_unreachable",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Which::Issuer => "the token's issuer",
            Which::Jwks => "the discovery document's jwks_uri",
        }
    }

    fn hint_https(self) -> String {
        match self {
            Which::Issuer => "set the API server's --service-account-issuer to an https:// URL that serves the discovery document publicly (an S3 bucket or CloudFront, for example)".into(),
            Which::Jwks => "set the API server's --service-account-jwks-uri to the public https:// URL of the key set".into(),
        }
    }

    fn hint_public(self) -> String {
        match self {
            Which::Issuer => "IRSA outside EKS needs an issuer on the public internet: publish /.well-known/openid-configuration and the JWKS (an S3 bucket, for example), set --service-account-issuer to that URL, and register it as the IAM OIDC provider".into(),
            Which::Jwks => "set the API server's --service-account-jwks-uri to where the published key set is (the API server otherwise names its own, cluster-internal address)".into(),
        }
    }
}

/// Fetches and checks the issuer's documents; every problem is a finding.
pub(crate) async fn check(
    plan: &IssuerPlan,
    report: &Report,
    findings: &mut Vec<Finding>,
) -> Option<IssuerReport> {
    let iss = report.token.as_ref()?.issuer.clone()?;
    let token = crate::sidecar::token::read_token(&report.token_file).ok()?;
    let kid = token_kid(token.expose());
    let discovery_url = format!(
        "{}/.well-known/openid-configuration",
        iss.trim_end_matches('/')
    );
    let route = Route::new(
        discovery_url.clone(),
        String::new(),
        String::new(),
        &plan.egress,
        None,
    );
    let mut trust = vec!["the system trust roots".to_string()];
    for b in [&plan.egress.ca_bundle, &plan.ca_file]
        .into_iter()
        .flatten()
    {
        trust.push(format!(
            "{} certificate(s) from {} ({})",
            b.certificates,
            b.path.display(),
            b.from
        ));
    }
    let mut out = IssuerReport {
        url: iss.clone(),
        discovery_url: None,
        discovery_issuer: None,
        jwks_uri: None,
        token_kid: kid.clone(),
        jwks_kids: Vec::new(),
        kid_found: None,
        proxy: route.proxy_description(),
        trust: trust.join(" + "),
        resolved: Vec::new(),
    };

    if let Some(policy) = &report.trust_policy {
        if let Ok(text) = std::fs::read_to_string(&policy.file) {
            if let Ok(p) = Policy::parse(&text) {
                policy_names_issuer(&p, &iss, findings);
            }
        }
    }

    if check_url(Which::Issuer, &iss, findings).is_none() {
        return Some(out);
    }
    out.discovery_url = Some(discovery_url.clone());
    let resolver = Resolver {
        overrides: Arc::new(plan.resolve.clone()),
        seen: Arc::default(),
    };
    let connector = match connector(plan, resolver.clone()) {
        Ok(c) => c,
        Err(why) => {
            findings.push(Finding::error(
                "issuer_unreachable",
                format!("cannot make the HTTPS client: {why}"),
                None,
            ));
            return Some(out);
        }
    };
    let unreachable_hint = |what: &str| {
        format!(
            "doctor fetched {what} from this machine, with the proxy and trust roots shown under Issuer: \
             if this machine has no way out, run doctor where it has one or set HTTPS_PROXY; \
             STS fetches it from the internet and needs a certificate from a public CA"
        )
    };

    let discovery = match fetch(&connector, &discovery_url).await {
        Ok(body) => body,
        Err(why) => {
            findings.push(Finding::error(
                "issuer_unreachable",
                format!(
                    "cannot fetch the discovery document {discovery_url}: {}",
                    egress_scrub(plan, &why.to_string())
                ),
                Some(unreachable_hint("the discovery document")),
            ));
            out.resolved = seen(&resolver);
            judge_addresses(&out.resolved, &iss, None, findings);
            return Some(out);
        }
    };
    let doc: serde_json::Value = match serde_json::from_slice(&discovery) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => {
            findings.push(Finding::error(
                "issuer_discovery_invalid",
                format!("the discovery document {discovery_url} is not a JSON object"),
                Some("serve the OpenID discovery document there (the API server's /.well-known/openid-configuration, copied as it is)".into()),
            ));
            out.resolved = seen(&resolver);
            return Some(out);
        }
    };
    let stated = doc
        .get("issuer")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    out.discovery_issuer = stated.clone();
    match &stated {
        Some(s) if *s == iss => {}
        Some(s) => findings.push(Finding::error(
            "issuer_discovery_mismatch",
            format!("the discovery document says issuer {s:?}, the token's iss is {iss:?}; they must be identical, or STS refuses the token"),
            Some("publish the discovery document the API server serves with this --service-account-issuer (a copy from another cluster or an old issuer URL has the wrong issuer)".into()),
        )),
        None => findings.push(Finding::error(
            "issuer_discovery_invalid",
            format!("the discovery document {discovery_url} has no issuer"),
            None,
        )),
    }
    let Some(jwks_uri) = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .map(str::to_string)
    else {
        findings.push(Finding::error(
            "issuer_discovery_invalid",
            format!("the discovery document {discovery_url} has no jwks_uri"),
            None,
        ));
        out.resolved = seen(&resolver);
        return Some(out);
    };
    out.jwks_uri = Some(jwks_uri.clone());
    if check_url(Which::Jwks, &jwks_uri, findings).is_some() {
        match fetch(&connector, &jwks_uri).await {
            Err(why) => findings.push(Finding::error(
                "jwks_unreachable",
                format!(
                    "cannot fetch the JWKS {jwks_uri}: {}",
                    egress_scrub(plan, &why.to_string())
                ),
                Some(unreachable_hint("the JWKS")),
            )),
            Ok(body) => match serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("keys").and_then(|k| k.as_array()).cloned())
            {
                None => findings.push(Finding::error(
                    "jwks_invalid",
                    format!("the JWKS {jwks_uri} is not a JSON Web Key Set (no \"keys\" array)"),
                    None,
                )),
                Some(keys) => {
                    out.jwks_kids = keys
                        .iter()
                        .filter_map(|k| k.get("kid").and_then(|v| v.as_str()))
                        .map(str::to_string)
                        .collect();
                    match &kid {
                        Some(kid) => {
                            let found = out.jwks_kids.iter().any(|k| k == kid);
                            out.kid_found = Some(found);
                            if !found {
                                findings.push(Finding::error(
                                    "jwks_kid_missing",
                                    format!(
                                        "the token was signed with key {kid:?}, which the JWKS {jwks_uri} does not have (it has {:?}); STS answers InvalidIdentityToken",
                                        out.jwks_kids
                                    ),
                                    Some("publish the API server's current key set (kubectl get --raw /openid/v1/jwks); after a signing-key rotation, publish the new key before the API server signs with it".into()),
                                ));
                            }
                        }
                        None if keys.len() > 1 => findings.push(Finding::warning(
                            "token_no_kid",
                            format!("the token has no kid and the JWKS has {} keys, so STS cannot tell which one signed it", keys.len()),
                            None,
                        )),
                        None => {}
                    }
                }
            },
        }
    }
    out.resolved = seen(&resolver);
    judge_addresses(&out.resolved, &iss, Some(&jwks_uri), findings);
    Some(out)
}

fn egress_scrub(plan: &IssuerPlan, text: &str) -> String {
    plan.egress.scrub(text)
}

fn seen(resolver: &Resolver) -> Vec<Resolved> {
    resolver
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// A name that DNS here resolves to private addresses only: STS resolves it
/// on the internet, which may answer otherwise (split DNS), so a warning.
fn judge_addresses(
    resolved: &[Resolved],
    iss: &str,
    jwks_uri: Option<&str>,
    findings: &mut Vec<Finding>,
) {
    for (which, url) in [(Which::Issuer, Some(iss)), (Which::Jwks, jwks_uri)] {
        let Some(host) = url
            .and_then(|u| u.parse::<http::Uri>().ok())
            .and_then(|u| u.host().map(str::to_ascii_lowercase))
        else {
            continue;
        };
        let Some(r) = resolved
            .iter()
            .find(|r| r.host == host && r.from == Lookup::Dns)
        else {
            continue;
        };
        if !r.addresses.is_empty() && !r.addresses.iter().any(|a| is_public(*a)) {
            findings.push(Finding::warning(
                which.code("resolves_private"),
                format!(
                    "{} host {host} resolves here to {:?}, none of them public: STS resolves it on the internet and must reach it there",
                    which.name(),
                    r.addresses
                ),
                Some(which.hint_public()),
            ));
        }
    }
}

/// The trust policy's `Federated` principals against the token's issuer, when
/// the evaluation did not already say so (`principal_mismatch`).
fn policy_names_issuer(policy: &Policy, iss: &str, findings: &mut Vec<Finding>) {
    let wanted = issuer_host_path(iss);
    let named: Vec<&str> = policy
        .statements
        .iter()
        .filter_map(|s| match &s.principal {
            Principal::Federated(arns) => Some(arns),
            _ => None,
        })
        .flatten()
        .filter_map(|arn| arn.split_once(":oidc-provider/").map(|(_, p)| p))
        .collect();
    if named.is_empty() || named.iter().any(|p| p.eq_ignore_ascii_case(wanted)) {
        return;
    }
    if findings
        .iter()
        .any(|f| matches!(f.code, "principal_mismatch" | "https_in_issuer"))
    {
        return;
    }
    findings.push(Finding::error(
        "issuer_not_in_trust_policy",
        format!("the token's issuer {wanted} is not an identity provider the trust policy names ({named:?})"),
        Some(format!("register {iss} as an IAM OIDC provider and name arn:aws:iam::<account>:oidc-provider/{wanted} as the Federated principal")),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_should_be_public_or_not_as_sts_sees_them() {
        for private in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.170.23",
            "100.64.0.1",
            "::1",
            "fd00:ec2::23",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["52.94.1.1", "8.8.8.8", "2600:1f18::1"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn cluster_names_should_be_internal() {
        for name in [
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "kubernetes",
            "localhost",
            "api.k8s.local",
            "ip-10-0-0-1.ec2.internal",
        ] {
            assert!(internal_name(name), "{name}");
        }
        for name in [
            "oidc.eks.us-east-1.amazonaws.com",
            "my-bucket.s3.amazonaws.com",
            "52.94.1.1",
        ] {
            assert!(!internal_name(name), "{name}");
        }
    }

    #[test]
    fn resolve_should_take_a_host_and_an_address() {
        assert_eq!(
            parse_resolve("OIDC.example.com=127.0.0.1").unwrap(),
            ("oidc.example.com".into(), "127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_resolve("h=[::1]").unwrap().1,
            "::1".parse::<IpAddr>().unwrap()
        );
        assert!(parse_resolve("h").is_err());
        assert!(parse_resolve("h=not-an-ip").is_err());
        assert!(parse_resolve("https://h=1.2.3.4").is_err());
    }

    #[test]
    fn a_trust_policy_for_another_provider_should_be_named_once() {
        let policy = |provider: &str| {
            Policy::parse(&format!(
                r#"{{"Statement":[{{"Effect":"Allow","Principal":{{"Federated":"arn:aws:iam::111122223333:oidc-provider/{provider}"}},"Action":"sts:AssumeRoleWithWebIdentity"}}]}}"#
            ))
            .unwrap()
        };
        let iss = "https://oidc.example.com/id/A";
        let mut findings = Vec::new();
        policy_names_issuer(&policy("oidc.example.com/id/A"), iss, &mut findings);
        assert!(findings.is_empty());
        policy_names_issuer(&policy("oidc.example.com/id/B"), iss, &mut findings);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].code, "issuer_not_in_trust_policy");
        assert!(findings[0].message.contains("oidc.example.com/id/B"));
        // Already said by the evaluation: not repeated.
        let mut findings = vec![Finding::error("principal_mismatch", String::new(), None)];
        policy_names_issuer(&policy("oidc.example.com/id/B"), iss, &mut findings);
        assert_eq!(findings.len(), 1);
    }

    #[test]
    fn the_kid_should_come_from_the_header() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"abc"}"#);
        assert_eq!(token_kid(&format!("{h}.e30.sig")), Some("abc".into()));
        assert_eq!(token_kid("garbage"), None);
    }
}
