//! The local STS: `AssumeRoleWithWebIdentity`, `AssumeRole` and `GetCallerIdentity` over the STS
//! Query protocol, so `aws-sdk-sts`, boto3 and the AWS CLI accept it as an STS
//! endpoint (docs/contract.md §1).
//!
//! # Wire contract
//!
//! - Requests: `POST /` with an `application/x-www-form-urlencoded` body, or the
//!   same parameters in the query string (`GET /?Action=...`); `Action`, and
//!   `Version=2011-06-15` when given. Bodies over 64 KiB are refused (413).
//! - Answers: `text/xml` documents `<{Action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/">`
//!   with `<{Action}Result>` and `<ResponseMetadata><RequestId>`, and errors as
//!   `<ErrorResponse><Error><Type>Sender</Type><Code/><Message/></Error><RequestId/></ErrorResponse>`,
//!   with the `x-amzn-RequestId` header.
//! - `AssumeRoleWithWebIdentity` errors: `ValidationError` (400) for parameters,
//!   `InvalidIdentityToken` (400) for a bad signature, audience, `nbf` or a malformed
//!   token, `ExpiredTokenException` (400) for an expired one, `AccessDenied` (403)
//!   when the trust policy does not allow it. Credentials: `ASIA` + 16 upper-case
//!   letters and digits, a 40-character secret, an opaque session token, valid for
//!   `min(DurationSeconds, credential_ttl)`.
//! - `AssumeRole` (a chained hop, `assume_role.rs`): signed with credentials
//!   the emulator issued; the target role's trust policy (`--role-trust-policy
//!   ARN=FILE`), `sts:TagSession`, `sts:SetSourceIdentity`, the one-hour cap,
//!   transitive tags and a SourceIdentity that cannot change down the chain.
//! - `GetCallerIdentity` errors (all 403): `MissingAuthenticationToken`,
//!   `InvalidClientTokenId` (unknown key or session token), `ExpiredToken`,
//!   `SignatureDoesNotMatch`.
//! - Session policies (`session_policy.rs`): `Policy` and `PolicyArns` on
//!   both `AssumeRole*` calls, with STS's limits and errors
//!   (`ValidationError`, `MalformedPolicyDocument`, `PackedPolicyTooLarge`);
//!   managed policies come from `--managed-policy ARN=FILE`. The session
//!   policy is kept on the session issued, and every verified S3 call and
//!   chained `AssumeRole` made with it must be inside it (`AccessDenied`).
//!   `GetCallerIdentity` is never denied, as AWS never denies it. Roles have
//!   no identity policies here: a role may do everything, a session what its
//!   session policy allows.
//! - Never logged: the web-identity token, the secret access key, the session token.
//! - Every path but `/` is a small in-memory S3, path-style (`s3.rs`), verified
//!   with the same SigV4 and expiry checks; every verified call and every issue
//!   is recorded in the [`Ledger`] (`dev`'s verdict), and [`Faults`] can make
//!   credential issue fail.
//! - With [`EmulatorSettings::oidc`], the issuer's discovery document and JWKS
//!   at their exact paths ([`OidcDocuments`]), as an OIDC issuer serves them.
//!
//! # In-process API (for `dev` and tests)
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, SystemTime};
//! use irsa_proxy::tools::emulator::{self, EmulatorSettings, Issuer, ServiceAccountToken};
//!
//! let issuer = Issuer::generate_rsa("https://oidc.irsa-proxy.local/id/dev")?;
//! let mut settings = EmulatorSettings::new(issuer.verifying_keys()?);
//! settings.credential_ttl = Duration::from_secs(300);
//! let sts = emulator::spawn("127.0.0.1:0".parse()?, settings).await?;
//! let endpoint = sts.endpoint_url(); // http://127.0.0.1:PORT, for AWS_ENDPOINT_URL_STS
//! let token = issuer.mint_service_account(&ServiceAccountToken {
//!     namespace: "default",
//!     service_account: "app",
//!     audience: "sts.amazonaws.com",
//!     issued_at: SystemTime::now(),
//!     ttl: Duration::from_secs(600),
//! })?;
//! // ... write `token` where `serve` reads it, point `serve` at `endpoint` ...
//! sts.stop().await; // or drop the handle
//! # Ok(()) }
//! ```
//!
//! [`serve`] is the lower-level form: it takes a bound listener and a shutdown
//! future, mini-redis style.

mod assume_role;
pub mod faults;
mod issuer;
mod keys;
pub mod ledger;
pub mod pod_identity;
pub(crate) mod s3;
mod service;
pub mod session_policy;
mod sigv4;
mod store;
pub mod xml;

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;

pub use faults::{Faults, Window};
pub use issuer::{Issuer, IssuerError, OidcDocuments, ServiceAccountToken};
pub use keys::{KeyError, VerifyingKeys};
pub use ledger::{Ledger, LedgerSnapshot};
pub use store::IssuedCredentials;

use crate::cli::EmulatorArgs;
use crate::clock::{Clock, SystemClock};
use crate::duration::format_duration;
use crate::flags::{self, emulator as f, Flag, FlagError, Flags, NoEnvironment, Refusal};
use crate::logging::{self, LogFormat};
use crate::policy::Policy;
use crate::sidecar::http_server::{shutdown_signal, Conn, Limits};
use crate::tools::tls::Tls;
use crate::Fatal;
use store::IssuedStore;
use xml::StsFault;

/// Largest request body read; STS requests are a few KiB (the token is at most 20,000).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// How the emulator decides.
#[derive(Clone)]
pub struct EmulatorSettings {
    /// Keys that verify token signatures.
    pub keys: VerifyingKeys,
    /// The `aud` a token must carry (`sts.amazonaws.com`).
    pub audience: String,
    /// Evaluated for every `AssumeRoleWithWebIdentity` when set; without it any
    /// verified token may assume any role.
    pub trust_policy: Option<Policy>,
    /// The trust policy of each role a chained `AssumeRole` may target, by role
    /// ARN; a role without one may be assumed by any caller the emulator
    /// issued credentials to (`assume_role.rs`).
    pub role_trust_policies: std::collections::HashMap<String, Policy>,
    /// The managed policies a `PolicyArns` session policy may name, by ARN
    /// (`--managed-policy ARN=FILE`); any other ARN is refused as STS refuses
    /// one that does not exist.
    pub managed_policies: std::collections::HashMap<String, Policy>,
    /// Longest lifetime of issued credentials; `DurationSeconds` can only shorten it.
    pub credential_ttl: Duration,
    /// Decides token and credential expiry, so tests can move time.
    pub clock: Arc<dyn Clock>,
    /// Faults injected on demand (`dev` as a test bench); none by default.
    pub faults: Faults,
    /// What was issued and how it was used; `dev` reads it for its verdict.
    pub ledger: Arc<Ledger>,
    /// S3 buckets that exist from the start (more with `CreateBucket`).
    pub s3_buckets: Vec<String>,
    /// The EKS Pod Identity agent on `GET /v1/credentials` (`pod_identity.rs`).
    pub pod_identity: pod_identity::AgentSettings,
    /// `AssumeRoleWithWebIdentity` calls above this many a second are answered
    /// `Throttling` (`None`: no limit).
    pub max_assume_per_second: Option<u32>,
    /// The issuer's discovery document and JWKS, served at their paths
    /// (`doctor --issuer`'s tests); none by default.
    pub oidc: Option<OidcDocuments>,
}

impl std::fmt::Debug for EmulatorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorSettings")
            .field("keys", &self.keys)
            .field("audience", &self.audience)
            .field("trust_policy", &self.trust_policy.is_some())
            .field("role_trust_policies", &self.role_trust_policies.len())
            .field("managed_policies", &self.managed_policies.len())
            .field("credential_ttl", &self.credential_ttl)
            .field("faults", &self.faults)
            .field("s3_buckets", &self.s3_buckets)
            .field("pod_identity", &self.pod_identity)
            .field("oidc", &self.oidc.is_some())
            .finish()
    }
}

impl EmulatorSettings {
    /// Defaults: audience `sts.amazonaws.com`, no trust policy, one-hour
    /// credentials, the system clock.
    pub fn new(keys: VerifyingKeys) -> EmulatorSettings {
        EmulatorSettings {
            keys,
            audience: crate::flags::DEFAULT_AUDIENCE.to_string(),
            trust_policy: None,
            role_trust_policies: Default::default(),
            managed_policies: Default::default(),
            credential_ttl: Duration::from_secs(3600),
            clock: Arc::new(SystemClock),
            faults: Faults::default(),
            ledger: Arc::new(Ledger::default()),
            s3_buckets: Vec::new(),
            pod_identity: pod_identity::AgentSettings::default(),
            max_assume_per_second: None,
            oidc: None,
        }
    }
}

/// Shared by every connection.
pub(crate) struct State {
    settings: EmulatorSettings,
    store: IssuedStore,
    /// The in-memory S3 (`s3.rs`).
    s3: s3::Objects,
    /// The Pod Identity agent's throttle, when it has a rate.
    agent_limiter: Option<pod_identity::RateLimiter>,
    /// `AssumeRoleWithWebIdentity`'s throttle, when it has a rate.
    sts_limiter: Option<pod_identity::RateLimiter>,
}

/// The emulator's connection bounds: STS requests are small and quick, and a
/// local test tool needs no tuning.
const LIMITS: Limits = Limits {
    header_read_timeout: Duration::from_secs(10),
    max_head_bytes: 64 * 1024,
    max_connections: 1024,
    drain_timeout: Duration::from_secs(5),
};

/// Serves STS on `listener` until `shutdown` completes, then lets in-flight
/// requests finish (at most 5 s): the shared skeleton of [`crate::sidecar::http_server`].
pub async fn serve(
    listener: TcpListener,
    settings: EmulatorSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    serve_on(
        listener,
        settings,
        crate::sidecar::http_server::Plain,
        shutdown,
    )
    .await;
}

/// [`serve`] over HTTPS with this TLS configuration.
pub async fn serve_tls(
    listener: TcpListener,
    settings: EmulatorSettings,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    serve_on(listener, settings, Tls::new(tls), shutdown).await;
}

async fn serve_on(
    listener: TcpListener,
    settings: EmulatorSettings,
    handshake: impl crate::sidecar::http_server::Handshake,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let state = Arc::new(State {
        s3: s3::Objects::with_buckets(&settings.s3_buckets),
        agent_limiter: settings
            .pod_identity
            .max_calls_per_second
            .map(pod_identity::RateLimiter::new),
        sts_limiter: settings
            .max_assume_per_second
            .map(pod_identity::RateLimiter::new),
        settings,
        store: IssuedStore::default(),
    });
    let handler = move |req: Request<Incoming>, conn: Conn| {
        let state = state.clone();
        async move { handle(req, &state, conn.peer).await }
    };
    crate::sidecar::http_server::serve_with(
        "sts-emulator",
        vec![listener],
        handshake,
        LIMITS,
        handler,
        shutdown,
    )
    .await;
}

/// A running in-process emulator. Dropping it stops the emulator too.
#[derive(Debug)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    /// `https` when serving TLS.
    scheme: &'static str,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl EmulatorHandle {
    /// The bound address (the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (`https://` with TLS), for `AWS_ENDPOINT_URL_STS` or an
    /// SDK's `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops accepting, lets in-flight requests finish, and waits for that.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds `addr` and serves STS on it in a background task.
pub async fn spawn(
    addr: SocketAddr,
    settings: EmulatorSettings,
) -> std::io::Result<EmulatorHandle> {
    spawn_with(addr, settings, None).await
}

/// [`spawn`], over HTTPS when `tls` is given.
pub async fn spawn_with(
    addr: SocketAddr,
    settings: EmulatorSettings,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<EmulatorHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = async move {
        let _ = rx.await;
    };
    let (scheme, task) = match tls {
        Some(tls) => (
            "https",
            tokio::spawn(serve_tls(listener, settings, tls, stopped)),
        ),
        None => ("http", tokio::spawn(serve(listener, settings, stopped))),
    };
    Ok(EmulatorHandle {
        addr,
        scheme,
        stop: Some(tx),
        task,
    })
}

fn random_request_id() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn decode_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn handle(req: Request<Incoming>, state: &State, peer: SocketAddr) -> Response<Full<Bytes>> {
    // STS is served on `/`, the Pod Identity agent on `/v1/credentials` (no
    // bucket has a two-letter name); every other path is S3, path-style
    // (`/bucket/key`).
    if req.uri().path() == pod_identity::PATH {
        return pod_identity::handle(req, state, peer).await;
    }
    // The issuer's documents, at the exact paths of the configured issuer only
    // (a `.well-known` bucket cannot exist: names start with a letter or digit).
    if let Some(doc) = state
        .settings
        .oidc
        .as_ref()
        .filter(|_| req.method() == Method::GET)
        .and_then(|o| o.serve(req.uri().path()))
    {
        tracing::info!(%peer, path = req.uri().path(), "oidc: served");
        let mut resp = Response::new(Full::new(Bytes::from(doc)));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return resp;
    }
    if req.uri().path() != "/" {
        return s3::handle(req, state, peer).await;
    }
    let request_id = random_request_id();
    let (parts, body) = req.into_parts();
    let result = async {
        if parts.method != Method::POST && parts.method != Method::GET {
            return Err(StsFault::method_not_allowed(parts.method.as_str()));
        }
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|_| StsFault::too_large(MAX_BODY_BYTES))?
            .to_bytes();
        let query = decode_pairs(parts.uri.query().unwrap_or("").as_bytes());
        let is_form = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        let form = if parts.method == Method::POST && (is_form || !body.is_empty()) {
            decode_pairs(&body)
        } else {
            Vec::new()
        };
        let params = service::parameters(&query, &form);
        let action = params.get("Action").cloned().unwrap_or_default();
        service::dispatch(state, &params, &parts, &query, &body, &request_id)
            .map(|answer| (action, answer))
    }
    .await;
    match result {
        Ok((action, answer)) => {
            tracing::info!(%peer, request_id, action, "sts-emulator: {}", answer.log);
            xml_response(StatusCode::OK, answer.xml, &request_id)
        }
        Err(fault) => {
            tracing::info!(
                %peer,
                request_id,
                code = fault.code,
                status = fault.status.as_u16(),
                "sts-emulator: refused: {}",
                fault.message
            );
            let mut resp = xml_response(fault.status, fault.to_xml(&request_id), &request_id);
            if fault.status == StatusCode::METHOD_NOT_ALLOWED {
                resp.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            }
            resp
        }
    }
}

// ---------------------------------------------------------------------------
// The `sts-emulator` subcommand

/// A key or policy file: small, and readable.
fn read_file(path: &str) -> Result<Vec<u8>, Refusal> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > 1024 * 1024 => {
            return Err(Refusal::new(
                "is larger than 1 MiB",
                "a small PEM or JSON file",
            ))
        }
        _ => {}
    }
    std::fs::read(path)
        .map_err(|e| Refusal::new(format!("cannot be read ({e})"), "a readable file"))
}

/// `--tls-cert-file` and `--tls-key-file`: both or neither.
type TlsFiles = Option<(std::path::PathBuf, std::path::PathBuf)>;

/// Validates every flag, reporting all problems at once.
fn settings_from_args(
    args: &EmulatorArgs,
) -> Result<(SocketAddr, EmulatorSettings, LogFormat, TlsFiles), Vec<FlagError>> {
    let mut flags = Flags::new(&NoEnvironment);
    let tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        (Some(_), None) => {
            flags.refuse(FlagError::missing(
                &f::TLS_KEY_FILE,
                "the PEM private key of --tls-cert-file (both or neither)",
            ));
            None
        }
        (None, Some(_)) => {
            flags.refuse(FlagError::missing(
                &f::TLS_CERT_FILE,
                "the PEM certificate chain that goes with --tls-key-file (both or neither)",
            ));
            None
        }
    };
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let log_format = flags.parse(&f::LOG_FORMAT, Some(&args.log_format), flags::text_or_json);
    let listen = flags.parse(&f::LISTEN, Some(&args.listen), |v| {
        v.parse::<SocketAddr>().map_err(|_| {
            Refusal::new(
                "is not an address",
                "an IP address and port such as 127.0.0.1:9912",
            )
        })
    });
    let issuer_key = path(&args.issuer_key);
    let jwks = path(&args.jwks);
    let keys = match (&issuer_key, &jwks) {
        (Some(p), _) => flags.parse(&f::ISSUER_KEY, Some(p), |p| {
            VerifyingKeys::from_pem(&read_file(p)?).map_err(|e| {
                Refusal::new(
                    format!("is not usable: {e}"),
                    "a PEM public key or certificate",
                )
            })
        }),
        (None, Some(p)) => flags.parse(&f::JWKS, Some(p), |p| {
            VerifyingKeys::from_jwks(&String::from_utf8_lossy(&read_file(p)?))
                .map_err(|e| Refusal::new(format!("is not usable: {e}"), "a JWKS file"))
        }),
        (None, None) => {
            flags.refuse(FlagError::missing(
                &Flag::bare("--issuer-key or --jwks"),
                "a key that verifies token signatures (the emulator never accepts unsigned tokens)",
            ));
            None
        }
    };
    let trust_policy = flags.parse(&f::TRUST_POLICY, path(&args.trust_policy).as_deref(), |p| {
        Policy::parse(&String::from_utf8_lossy(&read_file(p)?))
            .map_err(|e| Refusal::new(format!("is not usable: {e}"), "an IAM trust policy (JSON)"))
    });
    let mut role_trust_policies = std::collections::HashMap::new();
    for v in &args.role_trust_policy {
        let parsed = flags.parse(&f::ROLE_TRUST_POLICY, Some(v), |v| {
            let (arn, file) = v.split_once('=').ok_or_else(|| {
                Refusal::new(
                    "is not ARN=FILE",
                    "a role ARN, =, and its trust policy's file",
                )
            })?;
            let role = flags::role_arn(arn)?;
            let policy =
                Policy::parse(&String::from_utf8_lossy(&read_file(file)?)).map_err(|e| {
                    Refusal::new(format!("is not usable: {e}"), "an IAM trust policy (JSON)")
                })?;
            Ok((role.arn, policy))
        });
        if let Some((arn, policy)) = parsed {
            role_trust_policies.insert(arn, policy);
        }
    }
    let mut managed_policies = std::collections::HashMap::new();
    for v in &args.managed_policy {
        let parsed = flags.parse(&f::MANAGED_POLICY, Some(v), session_policy::managed_policy);
        if let Some((arn, policy)) = parsed {
            managed_policies.insert(arn, policy);
        }
    }
    let credential_ttl = flags.parse(
        &f::CREDENTIAL_TTL,
        Some(&args.credential_ttl),
        flags::duration_in(f::CREDENTIAL_TTL_RANGE),
    );
    let audience = flags.parse(&f::AUDIENCE, Some(&args.audience), |v| {
        if v.trim().is_empty() {
            Err(Refusal::new(
                "is empty",
                "an audience (STS's is sts.amazonaws.com)",
            ))
        } else {
            Ok(v.to_string())
        }
    });
    let associations: Vec<pod_identity::Association> = args
        .pod_identity_association
        .iter()
        .filter_map(|v| {
            flags.parse(
                &f::POD_IDENTITY_ASSOCIATION,
                Some(v),
                pod_identity::association,
            )
        })
        .collect();
    let rate = flags.parse(
        &f::POD_IDENTITY_RATE,
        args.pod_identity_rate.as_deref(),
        flags::number_in(f::POD_IDENTITY_RATE_RANGE),
    );
    let sts_rate = flags.parse(
        &f::STS_RATE,
        args.sts_rate.as_deref(),
        flags::number_in(f::POD_IDENTITY_RATE_RANGE),
    );
    flags.finish(|| {
        let mut settings = EmulatorSettings::new(keys?);
        settings.pod_identity.associations = associations;
        settings.pod_identity.max_calls_per_second = rate;
        settings.max_assume_per_second = sts_rate;
        settings.audience = audience?;
        settings.trust_policy = trust_policy;
        settings.role_trust_policies = role_trust_policies;
        settings.managed_policies = managed_policies;
        settings.credential_ttl = credential_ttl?;
        Some((listen?, settings, log_format?, tls))
    })
}

/// `irsa-proxy sts-emulator`.
pub async fn run(args: EmulatorArgs) -> Result<ExitCode, Fatal> {
    let (listen, settings, log_format, tls_files) =
        settings_from_args(&args).map_err(Fatal::Flags)?;
    let tls = match tls_files {
        Some((cert, key)) => Some(
            crate::tools::tls::reloading_config(cert, key, |outcome| match outcome {
                Ok(()) => tracing::info!("sts-emulator: serving certificate reloaded"),
                Err(e) => tracing::warn!(error = %e, "sts-emulator: changed certificate files did not load; keeping the previous pair"),
            })
            .map_err(|e| Fatal::usage(e.to_string()))?,
        ),
        None => None,
    };
    logging::init(log_format);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| Fatal::Runtime(format!("--listen {listen}: cannot bind: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Fatal::Runtime(format!("--listen {listen}: {e}")))?;
    let signal = shutdown_signal();
    if !addr.ip().is_loopback() {
        tracing::warn!("sts-emulator: {addr} is not a loopback address; anyone who can reach it can mint credentials for the emulator");
    }
    tracing::info!(
        audience = %settings.audience,
        keys = settings.keys.len(),
        trust_policy = settings.trust_policy.is_some(),
        credential_ttl = %format_duration(settings.credential_ttl),
        scheme = if tls.is_some() { "https" } else { "http" },
        "sts-emulator listening on {addr}"
    );
    match tls {
        Some(tls) => serve_tls(listener, settings, tls, signal).await,
        None => serve(listener, settings, signal).await,
    }
    tracing::info!("sts-emulator stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_should_look_like_uuids() {
        let id = random_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }
}
