//! The validated configuration of `serve`, built from its flags and their
//! environment twins.
//!
//! Every value is resolved as flag, then environment, then default (the names,
//! variables, defaults and ranges are in [`crate::flags::serve`]), and every
//! problem is collected before any is reported, so one start-up shows all of them,
//! each a [`FlagError`] line naming the flag (and its variable), the value and
//! what is allowed. Nothing is bound, created or called until this succeeds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::ServeArgs;
use crate::flags::{self, serve as f, FlagError, Flags, Given, Refusal};
use crate::logging::LogFormat;
use crate::sidecar::egress::EgressSettings;
use crate::sidecar::endpoints::{AuthToken, ImdsV1};
pub use crate::sidecar::roles::{RoleConfig, Roles};
use crate::sidecar::source::pod_identity::{agent_uri, UNNAMED_ROLE};
use crate::sidecar::source::{SourceChoice, SourceKind};
use crate::sidecar::sts::ClientSettings;

pub use crate::arn::RoleArn;
pub use crate::flags::{Environment, ProcessEnv};

/// `serve`'s default address, as text (for manifests and docs).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9911";

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The role: assumed with web identity; with Pod Identity only its name
    /// (the IMDS path), a placeholder named [`UNNAMED_ROLE`] when not given.
    pub role_arn: RoleArn,
    /// Re-read before every call to the source (the web-identity token, or the
    /// Pod Identity token); its directory is watched for rotation.
    pub token_file: PathBuf,
    /// `Some(the agent's URI)` when the source is EKS Pod Identity.
    pub pod_identity: Option<http::Uri>,
    /// Already sanitised to STS's rules.
    pub session_name: String,
    /// The region given by flag or environment; `None` lets the SDK decide and
    /// makes the IMDS region documents answer 404.
    pub region: Option<String>,
    pub sts_endpoint: Option<String>,
    /// Proxy, trust roots and endpoint variants, from the standard variables.
    pub egress: EgressSettings,
    pub listen: Vec<SocketAddr>,
    pub duration: Duration,
    pub refresh_before: Duration,
    pub auth_token_file: Option<PathBuf>,
    /// `IRSA_PROXY_AUTH_TOKEN`: the token as a value (redacted in `Debug`).
    pub auth_token: Option<AuthToken>,
    pub imds: bool,
    pub imds_v1: ImdsV1,
    pub log_format: LogFormat,
    pub shutdown_delay: Duration,
    /// The header-read timeout: also the idle keep-alive limit.
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// Role chaining, session tags, SourceIdentity and a session-name template
    /// (empty without them). With several roles, what every role's chain
    /// shares (no hops: each role names its own).
    pub chain: crate::sidecar::chain::Plan,
    /// Several roles (`--roles-file` or `IRSA_PROXY_ROLES`); `None`: the one
    /// role of `--role-arn`, as always.
    pub roles: Option<Roles>,
    /// With several roles: the ExternalId for each role's last hop.
    pub roles_external_id: Option<crate::sidecar::chain::ExternalId>,
}

impl Config {
    /// A configuration with the defaults of [`crate::flags::serve`], for tests
    /// and `dev`.
    pub fn new(role_arn: RoleArn, token_file: PathBuf) -> Config {
        Config {
            role_arn,
            token_file,
            pod_identity: None,
            session_name: default_session_name(),
            region: None,
            sts_endpoint: None,
            egress: EgressSettings::default(),
            listen: vec![f::DEFAULT_LISTEN],
            duration: f::DEFAULT_DURATION,
            refresh_before: f::DEFAULT_REFRESH_BEFORE,
            auth_token_file: None,
            auth_token: None,
            imds: true,
            imds_v1: ImdsV1::LinkLocal,
            log_format: LogFormat::Text,
            shutdown_delay: f::DEFAULT_SHUTDOWN_DELAY,
            header_timeout: f::DEFAULT_HEADER_TIMEOUT,
            max_connections: f::DEFAULT_MAX_CONNECTIONS,
            chain: crate::sidecar::chain::Plan::default(),
            roles: None,
            roles_external_id: None,
        }
    }

    /// The configuration of one of several roles: its web-identity role (or
    /// `--role-arn`), its hops with the shared chain settings (the ExternalId
    /// on its last hop), and no roles or tokens of its own. On Pod Identity
    /// its `role_arn` is its first hop, assumed from the agent's role.
    pub fn for_role(&self, role: &RoleConfig) -> Config {
        let mut c = self.clone();
        let source = self.source();
        if let (SourceKind::WebIdentity, Some(arn)) = (source, &role.role_arn) {
            c.role_arn = arn.clone();
        }
        c.chain.hops = role
            .hops_on(source)
            .into_iter()
            .map(|arn| crate::sidecar::chain::Hop {
                role: arn,
                external_id: None,
            })
            .collect();
        if let Some(last) = c.chain.hops.last_mut() {
            last.external_id = self.roles_external_id.clone();
        }
        c.chain.session_policy = role.session_policy.clone();
        c.roles = None;
        c.roles_external_id = None;
        c.auth_token = None;
        c.auth_token_file = None;
        c
    }

    /// The role whose credentials are served: the last hop's, or `--role-arn`.
    pub fn served_role(&self) -> &RoleArn {
        self.chain.served_role(&self.role_arn)
    }

    /// Resolves flags, then environment, then defaults, and validates all of it.
    /// The error lists every problem, one line each.
    pub fn from_args(args: &ServeArgs, env: &dyn Environment) -> Result<Config, Vec<FlagError>> {
        let mut flags = Flags::new(env);
        // Several roles: read first, as they make --role-arn optional.
        let roles_given = flags
            .raw(&f::ROLES_FILE, args.roles_file.as_deref())
            .is_some()
            || flags.raw(&f::ROLES, None).is_some();
        let mut roles = crate::sidecar::roles::read(&mut flags, args);

        let kind = source(&mut flags, args);
        let (role_arn, token_file, pod_identity) = match kind {
            SourceKind::WebIdentity => (
                if roles_given {
                    // Each role may name its own; checked with the roles below.
                    flags.parse(&f::ROLE_ARN, args.role_arn.as_deref(), flags::role_arn)
                } else {
                    flags.required(
                        &f::ROLE_ARN,
                        args.role_arn.as_deref(),
                        "the ARN of the IAM role to assume",
                        flags::role_arn,
                    )
                },
                flags.required(
                    &f::TOKEN_FILE,
                    args.token_file.as_deref(),
                    "the path of the projected service-account token",
                    token_path,
                ),
                None,
            ),
            SourceKind::PodIdentity => {
                let uri = flags.required(
                    &f::POD_IDENTITY_URI,
                    args.pod_identity_uri.as_deref(),
                    "the EKS Pod Identity agent's URL",
                    agent_uri,
                );
                let token_file = flags.required(
                    &f::POD_IDENTITY_TOKEN_FILE,
                    args.pod_identity_token_file.as_deref(),
                    "the path of the Pod Identity token",
                    token_path,
                );
                // Optional here: it only names the role on the IMDS paths.
                let role = flags
                    .parse(&f::ROLE_ARN, args.role_arn.as_deref(), flags::role_arn)
                    .unwrap_or_else(unnamed_role);
                (Some(role), token_file, Some(uri))
            }
        };
        let session_name = flags
            .raw(&f::SESSION_NAME, args.session_name.as_deref())
            .map_or_else(default_session_name, |(v, _)| sanitize_session_name(&v));
        let (region, sts_endpoint, egress) = way_to_sts(&mut flags, args);

        let allow_non_loopback = args.allow_non_loopback
            || flags.parse_or(&f::ALLOW_NON_LOOPBACK, None, false, flags::boolean);
        let listen = listen(&mut flags, &args.listen, allow_non_loopback);
        // The agent's URI must not be this proxy: it would ask itself forever.
        if let Some(Some(uri)) = &pod_identity {
            let port = uri.port_u16().unwrap_or(80);
            let host = uri
                .host()
                .unwrap_or_default()
                .trim_matches(|c| c == '[' || c == ']');
            if listen.iter().any(|a| {
                a.port() == port
                    && (host.parse() == Ok(a.ip()) || host == "localhost" && a.ip().is_loopback())
            }) {
                flags.refuse(FlagError::refused(
                    f::POD_IDENTITY_URI.name,
                    flags.raw(&f::POD_IDENTITY_URI, args.pod_identity_uri.as_deref()).and_then(|(_, s)| s),
                    &uri.to_string(),
                    Refusal::new(
                        "is this proxy's own --listen address",
                        "the EKS Pod Identity agent's URL (give the apps this proxy's address, and the sidecar the agent's)",
                    ),
                ));
            }
        }

        let duration = flags.parse_or(
            &f::DURATION,
            args.duration.as_deref(),
            f::DEFAULT_DURATION,
            flags::duration_in(f::DURATION_RANGE),
        );
        let given_duration = flags
            .raw(&f::DURATION, args.duration.as_deref())
            .map(|(v, source)| (duration, source, v));
        let (chain, roles_external_id) = if roles_given {
            crate::sidecar::chain::Plan::for_roles(&mut flags, args)
        } else {
            (
                crate::sidecar::chain::Plan::from_args(&mut flags, args, given_duration.clone()),
                None,
            )
        };
        // The agent's session already carries the six Pod Identity tags, all
        // transitive: STS refuses a chained AssumeRole that sets one again.
        if pod_identity.is_some() {
            let keys = crate::sidecar::chain::tags::POD_IDENTITY_KEYS;
            if let Some(t) = chain
                .tags
                .iter()
                .find(|t| keys.iter().any(|k| k.eq_ignore_ascii_case(&t.key)))
            {
                let (shown, source) = match flags.raw(&f::SESSION_TAGS, None) {
                    Some((v, source)) if args.chain.session_tags.is_empty() => (v, source),
                    _ => (args.chain.session_tags.join(","), None),
                };
                flags.refuse(FlagError::refused(
                    f::SESSION_TAGS.name,
                    source,
                    &shown,
                    Refusal::new(
                        format!(
                            "sets {:?}, which the EKS Pod Identity session already carries as a transitive tag (STS refuses to set it again)",
                            t.key
                        ),
                        "other keys: the chain inherits the six Pod Identity tags from the agent's session",
                    ),
                ));
            }
        }
        // The agent takes no session policy: only an AssumeRole hop can carry
        // it. With several roles, each role names its own.
        if let Some((flag, v, source)) = session_policy_given(&flags, args) {
            let why = if roles_given {
                Some(Refusal::new(
                    "is given together with several roles (--roles-file or IRSA_PROXY_ROLES)",
                    "session_policy, session_policy_file or session_policy_arns in each role of the roles JSON",
                ))
            } else if pod_identity.is_some()
                && !chain.is_chained()
                && !chain.session_policy.is_empty()
            {
                Some(Refusal::new(
                    "needs a chain with --source pod-identity: the Pod Identity agent takes no session policy",
                    "--chain-role-arn (IRSA_PROXY_CHAIN_ROLE_ARN) too, whose last AssumeRole carries it",
                ))
            } else {
                None
            };
            if let Some(why) = why {
                flags.refuse(FlagError::refused(flag, source, &v, why));
            }
        }
        if let Some(r) = roles.as_mut() {
            let top_role = flags.raw(&f::ROLE_ARN, args.role_arn.as_deref()).is_some();
            crate::sidecar::roles::check_with(
                &mut flags,
                r,
                crate::sidecar::roles::Context {
                    source: kind,
                    top_role,
                    chain: &chain,
                    external_id: roles_external_id.is_some(),
                    duration: given_duration,
                },
            );
        }
        // With several roles and no --role-arn, every role named its own:
        // the first one stands for the whole (logs only).
        let role_arn = role_arn.or_else(|| {
            roles
                .as_ref()
                .and_then(|r| r.roles.iter().find_map(|r| r.role_arn.clone()))
        });
        // No check of --refresh-before against --duration: the refresh window is
        // min(--refresh-before, lifetime / 2) of what STS returned, so any pair of
        // legal values works, and the 30m default must not refuse `--duration 15m`
        // (issue 10).
        let refresh_before = flags.parse_or(
            &f::REFRESH_BEFORE,
            args.refresh_before.as_deref(),
            f::DEFAULT_REFRESH_BEFORE,
            flags::duration_in(f::REFRESH_BEFORE_RANGE),
        );
        let shutdown_delay = flags.parse_or(
            &f::SHUTDOWN_DELAY,
            args.shutdown_delay.as_deref(),
            f::DEFAULT_SHUTDOWN_DELAY,
            flags::duration_in(f::SHUTDOWN_DELAY_RANGE),
        );
        let header_timeout = flags.parse_or(
            &f::HEADER_TIMEOUT,
            args.header_timeout.as_deref(),
            f::DEFAULT_HEADER_TIMEOUT,
            flags::duration_in(f::HEADER_TIMEOUT_RANGE),
        );
        let max_connections = flags.parse_or(
            &f::MAX_CONNECTIONS,
            args.max_connections.as_deref(),
            f::DEFAULT_MAX_CONNECTIONS,
            flags::number_in(f::MAX_CONNECTIONS_RANGE),
        );

        // Several roles: a token per role, the single-role settings refused.
        let (auth_token_file, auth_token) = if roles_given {
            crate::sidecar::roles::read_tokens(&mut flags, args, roles.as_mut());
            (None, None)
        } else {
            single_role_token(&mut flags, args)
        };

        let imds = if args.no_imds {
            false
        } else if args.imds {
            true
        } else {
            flags.parse_or(&f::IMDS, None, true, flags::boolean)
        };
        let imds_require_token = args.imds_require_token
            || flags.parse_or(&f::IMDS_REQUIRE_TOKEN, None, false, flags::boolean);
        let imds_v1 = flags.parse(
            &f::IMDS_V1,
            args.imds_v1.as_deref(),
            |v| match ImdsV1::parse(v) {
                Ok(ImdsV1::Never) => Ok(ImdsV1::Never),
                Ok(_) if imds_require_token => Err(Refusal::new(
                    "contradicts --imds-require-token (IRSA_PROXY_IMDS_REQUIRE_TOKEN)",
                    "one of them, or --imds-v1=never",
                )),
                Ok(w) => Ok(w),
                Err(allowed) => Err(Refusal::new("is not allowed", allowed)),
            },
        );
        let imds_v1 = match imds_v1 {
            Some(w) => w,
            None if imds_require_token => ImdsV1::Never,
            None => ImdsV1::LinkLocal,
        };
        let log_format = flags.parse_or(
            &f::LOG_FORMAT,
            args.log_format.as_deref(),
            LogFormat::Text,
            flags::text_or_json,
        );

        flags.finish(|| {
            Some(Config {
                role_arn: role_arn?,
                token_file: token_file?,
                pod_identity: match pod_identity {
                    None => None,
                    Some(uri) => Some(uri?),
                },
                session_name,
                region,
                sts_endpoint,
                egress,
                listen,
                duration,
                refresh_before,
                auth_token_file,
                auth_token,
                imds,
                imds_v1,
                log_format,
                shutdown_delay,
                header_timeout,
                max_connections,
                chain,
                roles,
                roles_external_id,
            })
        })
    }

    /// Where the credentials come from.
    pub fn source(&self) -> SourceKind {
        if self.pod_identity.is_some() {
            SourceKind::PodIdentity
        } else {
            SourceKind::WebIdentity
        }
    }

    /// The settings of the STS client.
    pub(crate) fn client_settings(&self) -> ClientSettings {
        ClientSettings {
            region: self.region.clone(),
            endpoint: self.sts_endpoint.clone(),
            egress: self.egress.clone(),
        }
    }
}

/// Only what decides the way to STS, for `serve --print-endpoint`: no role or
/// token needed.
pub(crate) fn client_settings_from_args(
    args: &ServeArgs,
    env: &dyn Environment,
) -> Result<ClientSettings, Vec<FlagError>> {
    let mut flags = Flags::new(env);
    let (region, endpoint, egress) = way_to_sts(&mut flags, args);
    flags.finish(|| {
        Some(ClientSettings {
            region,
            endpoint,
            egress,
        })
    })
}

type WayToSts = (Option<String>, Option<String>, EgressSettings);

fn way_to_sts(flags: &mut Flags<'_>, args: &ServeArgs) -> WayToSts {
    let region = flags.parse(&f::REGION, args.region.as_deref(), region);
    let sts_endpoint = flags.parse(&f::STS_ENDPOINT, args.sts_endpoint.as_deref(), sts_endpoint);
    (region, sts_endpoint, EgressSettings::from_env(flags))
}

/// `--source`, resolved: `auto` is web identity when a role is given (as the
/// SDKs' chains put web identity before container credentials), else Pod
/// Identity when the agent's URI is. A web-identity token alone decides
/// nothing: `inject` always gives the sidecar `--token-file`, and on a Pod
/// Identity pod the EKS webhook adds the agent's variables.
fn source(flags: &mut Flags<'_>, args: &ServeArgs) -> SourceKind {
    let choice = flags.parse_or(
        &f::SOURCE,
        args.source.as_deref(),
        SourceChoice::Auto,
        |v| {
            v.parse()
                .map_err(|allowed| Refusal::new("is not a credential source", allowed))
        },
    );
    match choice {
        SourceChoice::Given(kind) => kind,
        SourceChoice::Auto => {
            let web = flags.raw(&f::ROLE_ARN, args.role_arn.as_deref()).is_some();
            let pod = flags
                .raw(&f::POD_IDENTITY_URI, args.pod_identity_uri.as_deref())
                .is_some();
            if pod && !web {
                SourceKind::PodIdentity
            } else {
                SourceKind::WebIdentity
            }
        }
    }
}

/// The session-policy flag given first, its value and where it came from.
fn session_policy_given(
    flags: &Flags<'_>,
    args: &ServeArgs,
) -> Option<(&'static str, String, Option<&'static str>)> {
    let file = args.session_policy_file.as_deref();
    match flags.raw(&f::SESSION_POLICY_FILE, file) {
        Some((v, source)) => Some((f::SESSION_POLICY_FILE.name, v, source)),
        None if !args.session_policy_arn.is_empty() => Some((
            f::SESSION_POLICY_ARN.name,
            args.session_policy_arn.join(","),
            None,
        )),
        None => flags
            .raw(&f::SESSION_POLICY_ARN, None)
            .map(|(v, source)| (f::SESSION_POLICY_ARN.name, v, source)),
    }
}

/// `--auth-token-file` and `IRSA_PROXY_AUTH_TOKEN` (one role);
/// `--auth-token-dir` is refused without several roles.
fn single_role_token(
    flags: &mut Flags<'_>,
    args: &ServeArgs,
) -> (Option<PathBuf>, Option<AuthToken>) {
    if let Some((v, source)) = flags.raw(&f::AUTH_TOKEN_DIR, args.auth_token_dir.as_deref()) {
        flags.refuse(FlagError::refused(
            f::AUTH_TOKEN_DIR.name,
            source,
            &v,
            Refusal::new(
                "is for several roles",
                "--roles-file or IRSA_PROXY_ROLES too, or --auth-token-file for one role",
            ),
        ));
    }
    let auth_token_file = flags.parse(&f::AUTH_TOKEN_FILE, args.auth_token_file.as_deref(), |v| {
        let path = PathBuf::from(v);
        if path.is_dir() {
            return Err(Refusal::new("is a directory", "a file path"));
        }
        check_directory(&path).map(|()| path)
    });
    // Read directly, not through `Flags::parse`: the refusal must not quote
    // the secret.
    let auth_token = match flags.raw(&f::AUTH_TOKEN, None) {
        None => None,
        Some((v, _)) => match AuthToken::from_value(&v) {
            Ok(t) => Some(t),
            Err(why) => {
                flags.refuse(FlagError {
                    flag: f::AUTH_TOKEN.name,
                    source: None,
                    value: Given::Secret {
                        chars: v.trim().len(),
                    },
                    problem: why.problem,
                    allowed: why.allowed,
                });
                None
            }
        },
    };
    (auth_token_file, auth_token)
}

/// The role Pod Identity serves when `--role-arn` does not name it.
fn unnamed_role() -> RoleArn {
    RoleArn {
        arn: String::new(),
        partition: "aws".into(),
        account: String::new(),
        name: UNNAMED_ROLE.into(),
    }
}

/// A token file: a file in an existing, readable directory.
fn token_path(v: &str) -> Result<PathBuf, Refusal> {
    let path = PathBuf::from(v);
    check_directory(&path).map(|()| path)
}

/// `--listen`, repeated, or `IRSA_PROXY_LISTEN`, comma-separated.
fn listen(flags: &mut Flags<'_>, given: &[String], allow_non_loopback: bool) -> Vec<SocketAddr> {
    let (values, source): (Vec<String>, Option<&'static str>) = if !given.is_empty() {
        (given.to_vec(), None)
    } else if let Some((v, source)) = flags.raw(&f::LISTEN, None) {
        (v.split(',').map(|s| s.trim().to_string()).collect(), source)
    } else {
        return vec![f::DEFAULT_LISTEN];
    };
    let mut listen = Vec::new();
    for v in &values {
        let checked = flags::listen_address(v).and_then(|addr| {
            // The link-local credential addresses pass here; `serve` checks at
            // start-up that they sit on a loopback interface.
            if addr.ip().is_loopback()
                || crate::sidecar::addresses::is_credential_address(addr.ip())
                || allow_non_loopback
            {
                Ok(addr)
            } else {
                Err(Refusal::new(
                    "is not a loopback address: credentials would be reachable from outside the pod",
                    "127.0.0.1 or [::1] (or a link-local credential address on lo), or add --allow-non-loopback",
                ))
            }
        });
        match checked {
            Ok(addr) if !listen.contains(&addr) => listen.push(addr),
            Ok(_) => {}
            Err(why) => flags.refuse(FlagError::refused(f::LISTEN.name, source, v, why)),
        }
    }
    listen
}

/// A region name such as `us-east-1`.
fn region(v: &str) -> Result<String, Refusal> {
    let r = v.trim();
    let ok = !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(r.to_string())
    } else {
        Err(Refusal::new("is not a region", "a name such as us-east-1"))
    }
}

/// An `http(s)://host[:port]` URL.
fn sts_endpoint(v: &str) -> Result<String, Refusal> {
    let ok = v
        .parse::<http::Uri>()
        .ok()
        .filter(|u| {
            matches!(u.scheme_str(), Some("http") | Some("https")) && u.authority().is_some()
        })
        .is_some();
    if ok {
        Ok(v.trim().to_string())
    } else {
        Err(Refusal::new("is not a URL", "http(s)://host[:port]"))
    }
}

/// The directory holding `path` must exist and be listable: the token watch needs
/// it, and a typo there would otherwise leave the proxy waiting forever.
fn check_directory(path: &Path) -> Result<(), Refusal> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match std::fs::read_dir(&dir) {
        Ok(_) => Ok(()),
        Err(e) => Err(Refusal::new(
            format!(
                "is in a directory that cannot be read ({}: {})",
                dir.display(),
                e.kind().to_string().to_lowercase()
            ),
            "a file in an existing, readable directory",
        )),
    }
}

/// `irsa-proxy-<hostname>`, sanitised.
pub(crate) fn default_session_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    sanitize_session_name(&format!("irsa-proxy-{host}"))
}

/// A fixed session name made to fit STS's `[\w+=,.@-]{2,64}`
/// ([`crate::sidecar::chain::session::fit`]: a long name keeps its end and a hash of the
/// whole, so two pods' names stay apart).
pub(crate) fn sanitize_session_name(raw: &str) -> String {
    crate::sidecar::chain::session::fit(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn token_path() -> String {
        std::env::temp_dir().join("token").display().to_string()
    }

    #[test]
    fn environment_should_fill_what_flags_leave_out() {
        let e = env(&[
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/app"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_path()),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("IRSA_PROXY_LISTEN", "127.0.0.1:1, [::1]:2"),
            ("IRSA_PROXY_IMDS", "false"),
            ("AWS_ROLE_SESSION_NAME", "my session/with:bad chars"),
            ("IRSA_PROXY_HEADER_TIMEOUT", "5s"),
            ("IRSA_PROXY_MAX_CONNECTIONS", "64"),
        ]);
        let c = Config::from_args(&ServeArgs::default(), &e).unwrap();
        assert_eq!(c.header_timeout, Duration::from_secs(5));
        assert_eq!(c.max_connections, 64);
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.listen.len(), 2);
        assert!(!c.imds);
        assert_eq!(c.session_name, "my-session-with-bad-chars");
        assert_eq!(c.duration, Duration::from_secs(3600));
        assert_eq!(c.refresh_before, Duration::from_secs(1800));
    }

    #[test]
    fn connection_limits_should_default_to_the_spec() {
        let args = ServeArgs {
            role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
            token_file: Some(token_path()),
            ..Default::default()
        };
        let c = Config::from_args(&args, &env(&[])).unwrap();
        assert_eq!(c.header_timeout, Duration::from_secs(60));
        assert_eq!(c.max_connections, 1024);
    }

    #[test]
    fn flags_should_win_over_environment() {
        let e = env(&[("AWS_ROLE_ARN", "garbage"), ("AWS_REGION", "eu-west-1")]);
        let args = ServeArgs {
            role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
            token_file: Some(token_path()),
            region: Some("us-west-2".into()),
            ..Default::default()
        };
        let c = Config::from_args(&args, &e).unwrap();
        assert_eq!(c.region.as_deref(), Some("us-west-2"));
    }

    #[test]
    fn every_bad_value_should_be_reported_at_once() {
        let e = env(&[("IRSA_PROXY_IMDS", "maybe")]);
        let args = ServeArgs {
            role_arn: Some("arn:aws:iam::123:role/x".into()),
            token_file: Some("/nonexistent-dir-for-test/token".into()),
            duration: Some("5m".into()),
            refresh_before: Some("soon".into()),
            listen: vec!["0.0.0.0:9911".into(), "nope".into()],
            log_format: Some("xml".into()),
            header_timeout: Some("0s".into()),
            max_connections: Some("lots".into()),
            ..Default::default()
        };
        let errs = Config::from_args(&args, &e).unwrap_err();
        let all = flags::lines(&errs);
        for needle in [
            "--role-arn",
            "--token-file",
            "--duration: \"5m\" is out of range; expected 15m to 12h",
            "--refresh-before",
            "--listen: \"0.0.0.0:9911\" is not a loopback address",
            "--listen: \"nope\"",
            "--log-format",
            "IRSA_PROXY_IMDS",
            "--header-timeout: \"0s\" is out of range; expected 1s to 1h",
            "--max-connections: \"lots\" is not a whole number; expected a whole number from 8 to 65536",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert!(errs.iter().all(|l| !l.to_string().contains('\n')));
    }

    #[test]
    fn the_default_refresh_before_should_accept_the_shortest_duration() {
        // Regression (issue 10): `--duration 15m` was refused by the 30m default.
        for (flag, var) in [
            (Some("15m"), None),
            (None, Some("15m")),
            (Some("30m"), None),
        ] {
            let args = ServeArgs {
                role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
                token_file: Some(token_path()),
                duration: flag.map(String::from),
                ..Default::default()
            };
            let e = env(&var
                .map(|v| ("IRSA_PROXY_DURATION", v))
                .into_iter()
                .collect::<Vec<_>>());
            let c = Config::from_args(&args, &e).unwrap();
            assert!(c.duration <= Duration::from_secs(1800));
        }
        // Both given, refresh-before longer: the window is lifetime/2, nothing to refuse.
        let args = ServeArgs {
            role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
            token_file: Some(token_path()),
            duration: Some("15m".into()),
            refresh_before: Some("2h".into()),
            ..Default::default()
        };
        assert!(Config::from_args(&args, &env(&[])).is_ok());
    }

    #[test]
    fn non_loopback_should_need_the_flag() {
        let mut args = ServeArgs {
            role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
            token_file: Some(token_path()),
            listen: vec!["0.0.0.0:9911".into()],
            ..Default::default()
        };
        assert!(Config::from_args(&args, &env(&[])).is_err());
        args.allow_non_loopback = true;
        assert!(Config::from_args(&args, &env(&[])).is_ok());
    }

    #[test]
    fn the_source_should_be_chosen_or_detected_from_the_environment() {
        let token = token_path();
        let agent = [
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token.as_str()),
        ];
        // Only the Pod Identity variables: Pod Identity, its token watched,
        // the role unnamed.
        let c = Config::from_args(&ServeArgs::default(), &env(&agent)).unwrap();
        assert_eq!(c.source(), SourceKind::PodIdentity);
        assert_eq!(c.token_file, PathBuf::from(token_path()));
        assert_eq!(c.role_arn.name, UNNAMED_ROLE);
        assert!(c.role_arn.arn.is_empty());
        // A web-identity token file alone (inject's --token-file) changes nothing.
        let mut with_token = agent.to_vec();
        with_token.push(("AWS_WEB_IDENTITY_TOKEN_FILE", token.as_str()));
        let c = Config::from_args(&ServeArgs::default(), &env(&with_token)).unwrap();
        assert_eq!(c.source(), SourceKind::PodIdentity);
        // IRSA's role as well: web identity, as the SDKs' chains decide.
        let mut both = agent.to_vec();
        both.push(("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/app"));
        both.push(("AWS_WEB_IDENTITY_TOKEN_FILE", token.as_str()));
        let c = Config::from_args(&ServeArgs::default(), &env(&both)).unwrap();
        assert_eq!(c.source(), SourceKind::WebIdentity);
        // ... unless asked for, and then --role-arn names the IMDS role.
        let mut asked = both.clone();
        asked.push(("IRSA_PROXY_SOURCE", "pod-identity"));
        let c = Config::from_args(&ServeArgs::default(), &env(&asked)).unwrap();
        assert_eq!(c.source(), SourceKind::PodIdentity);
        assert_eq!(c.role_arn.name, "app");
        // Nothing at all: the web-identity lines, as before.
        let all = flags::lines(&Config::from_args(&ServeArgs::default(), &env(&[])).unwrap_err());
        assert!(
            all.contains("--role-arn") && all.contains("--token-file"),
            "{all}"
        );
    }

    #[test]
    fn a_pod_identity_source_should_refuse_what_cannot_work() {
        let args = ServeArgs {
            source: Some("pod-identity".into()),
            ..Default::default()
        };
        let all = flags::lines(&Config::from_args(&args, &env(&[])).unwrap_err());
        assert!(
            all.contains("--pod-identity-uri (AWS_CONTAINER_CREDENTIALS_FULL_URI)"),
            "{all}"
        );
        assert!(all.contains("--pod-identity-token-file"), "{all}");
        let args = ServeArgs {
            source: Some("irsa".into()),
            ..Default::default()
        };
        let all = flags::lines(&Config::from_args(&args, &env(&[])).unwrap_err());
        assert!(
            all.contains("--source: \"irsa\" is not a credential source; expected web-identity, pod-identity or auto"),
            "{all}"
        );
        // The agent must not be this proxy, nor somewhere else on the network.
        for (uri, why) in [
            (
                "http://127.0.0.1:9911/v1/credentials",
                "is this proxy's own --listen address",
            ),
            (
                "http://10.1.2.3/v1/credentials",
                "is not the Pod Identity agent's address or loopback",
            ),
        ] {
            let e = env(&[
                ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_path()),
            ]);
            let all = flags::lines(&Config::from_args(&ServeArgs::default(), &e).unwrap_err());
            assert!(all.contains(why), "{uri}: {all}");
            assert!(all.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"), "{all}");
        }
        // A chain runs on Pod Identity too: the last hop's role is served.
        let e = env(&[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_path()),
            (
                "IRSA_PROXY_CHAIN_ROLE_ARN",
                "arn:aws:iam::444455556666:role/target",
            ),
        ]);
        let c = Config::from_args(&ServeArgs::default(), &e).unwrap();
        assert_eq!(c.source(), SourceKind::PodIdentity);
        assert_eq!(c.served_role().arn, "arn:aws:iam::444455556666:role/target");
        // The chain inherits the agent's six transitive tags: setting one again
        // is what STS refuses, so it is refused here; other tags are fine.
        for (tags, refused) in [
            ("pod-identity", true),
            ("Kubernetes-Namespace=shop", true),
            ("team=payments", false),
        ] {
            let mut with_tags = e.clone();
            with_tags.insert("IRSA_PROXY_SESSION_TAGS".into(), tags.into());
            with_tags.insert("IRSA_PROXY_CLUSTER_NAME".into(), "prod".into());
            match Config::from_args(&ServeArgs::default(), &with_tags) {
                Ok(_) => assert!(!refused, "{tags}"),
                Err(e) => {
                    let all = flags::lines(&e);
                    assert!(refused, "{tags}: {all}");
                    assert!(
                        all.contains("--session-tags (IRSA_PROXY_SESSION_TAGS)")
                            && all.contains("already carries as a transitive tag"),
                        "{all}"
                    );
                }
            }
        }
    }

    fn roles_json() -> String {
        serde_json::json!({
            "imds_role": "app",
            "roles": {
                "app": {"role_arn": "arn:aws:iam::111122223333:role/app"},
                "copier": {
                    "chain_role_arn": ["arn:aws:iam::444455556666:role/a", "arn:aws:iam::444455556666:role/b"],
                    "session_policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
                }
            }
        })
        .to_string()
    }

    #[test]
    fn several_roles_should_each_get_their_role_chain_and_token() {
        let dir = tempfile::tempdir().unwrap();
        let dir_s = dir.path().display().to_string();
        let token = "0123456789abcdef".repeat(4);
        let json = roles_json();
        let e = env(&[
            ("IRSA_PROXY_ROLES", json.as_str()),
            ("IRSA_PROXY_AUTH_TOKEN_DIR", dir_s.as_str()),
            ("IRSA_PROXY_AUTH_TOKEN_COPIER", token.as_str()),
            ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/base"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_path()),
            ("IRSA_PROXY_CHAIN_EXTERNAL_ID", "ext-1234"),
        ]);
        let c = Config::from_args(&ServeArgs::default(), &e).unwrap();
        let roles = c.roles.as_ref().unwrap();
        assert_eq!(roles.names(), "app, copier");
        assert_eq!(roles.token_dir, dir.path());
        assert!(roles.roles[0].token.is_none());
        assert!(roles.roles[1]
            .token
            .as_ref()
            .unwrap()
            .matches(token.as_bytes()));
        let app = c.for_role(&roles.roles[0]);
        assert_eq!(app.role_arn.name, "app");
        assert!(app.chain.hops.is_empty());
        let copier = c.for_role(&roles.roles[1]);
        assert_eq!(copier.role_arn.name, "base", "the top-level --role-arn");
        assert_eq!(copier.served_role().name, "b");
        assert_eq!(copier.chain.hops[0].external_id, None);
        assert!(
            copier.chain.hops[1].external_id.is_some(),
            "on the last hop"
        );
        assert!(copier.roles.is_none() && copier.auth_token.is_none());
        assert_eq!(
            copier.chain.session_policy.arns,
            ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
            "the role's own session policy, for its last call"
        );
        assert!(app.chain.session_policy.is_empty());
        // Every role names its own: --role-arn may be left out.
        let json = r#"{"roles": {"a": {"role_arn": "arn:aws:iam::111122223333:role/a"}}}"#;
        let e = env(&[
            ("IRSA_PROXY_ROLES", json),
            ("IRSA_PROXY_AUTH_TOKEN_DIR", dir_s.as_str()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_path()),
        ]);
        let c = Config::from_args(&ServeArgs::default(), &e).unwrap();
        assert_eq!(c.role_arn.name, "a");
        assert!(c.roles.unwrap().imds_role.is_none());
    }

    #[test]
    fn several_roles_should_refuse_what_cannot_work_one_line_each() {
        let dir = tempfile::tempdir().unwrap();
        let dir_s = dir.path().display().to_string();
        let json = roles_json();
        let same = "0123456789abcdef".repeat(4);
        let tp = token_path();
        let e = env(&[
            ("IRSA_PROXY_ROLES", json.as_str()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", tp.as_str()),
            (
                "IRSA_PROXY_AUTH_TOKEN",
                "SECRET-VALUE-0123456789abcdef0123456789",
            ),
            ("IRSA_PROXY_AUTH_TOKEN_FILE", "/tmp/auth-token"),
            ("IRSA_PROXY_AUTH_TOKEN_APP", "SECRET-short"),
            ("IRSA_PROXY_SESSION_TAGS", "team=payments"),
            (
                "IRSA_PROXY_CHAIN_ROLE_ARN",
                "arn:aws:iam::444455556666:role/x",
            ),
            ("IRSA_PROXY_DURATION", "2h"),
        ]);
        let all = flags::lines(&Config::from_args(&ServeArgs::default(), &e).unwrap_err());
        for needle in [
            "--auth-token-dir (IRSA_PROXY_AUTH_TOKEN_DIR) is required; expected the directory where each role's token is written",
            "--auth-token-file (IRSA_PROXY_AUTH_TOKEN_FILE): \"/tmp/auth-token\" is for one role; expected --auth-token-dir",
            "IRSA_PROXY_AUTH_TOKEN: a value of 39 characters is for one role",
            "IRSA_PROXY_AUTH_TOKEN_APP: a value of 12 characters is not allowed",
            "IRSA_PROXY_ROLES has roles.copier without role_arn, and --role-arn (AWS_ROLE_ARN) is not given",
            "--chain-role-arn (IRSA_PROXY_CHAIN_ROLE_ARN): \"arn:aws:iam::444455556666:role/x\" is given together with several roles",
            "--duration (IRSA_PROXY_DURATION): \"2h\" is longer than the 1h AWS allows a session obtained by role chaining (roles.copier.chain_role_arn)",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
        assert!(!all.contains("SECRET"), "{all}");
        // Chain settings with no chained role.
        let e = env(&[
            ("IRSA_PROXY_ROLES", r#"{"roles": {"a": {}}}"#),
            ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/base"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", tp.as_str()),
            ("IRSA_PROXY_AUTH_TOKEN_DIR", dir_s.as_str()),
            ("IRSA_PROXY_SESSION_TAGS", "team=payments"),
            ("IRSA_PROXY_SOURCE_IDENTITY", "{pod}"),
        ]);
        let all = flags::lines(&Config::from_args(&ServeArgs::default(), &e).unwrap_err());
        assert_eq!(
            all,
            "IRSA_PROXY_ROLES has no role with chain_role_arn, but --session-tags and --source-identity need a chain (AssumeRoleWithWebIdentity takes no ExternalId, session tags or SourceIdentity); expected chain_role_arn in a role, or none of --session-tags, --source-identity"
        );
        // The same token for two roles; the token dir without roles; both
        // ways of giving roles at once.
        let e = env(&[
            ("IRSA_PROXY_ROLES", json.as_str()),
            ("AWS_ROLE_ARN", "arn:aws:iam::111122223333:role/base"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", tp.as_str()),
            ("IRSA_PROXY_AUTH_TOKEN_DIR", dir_s.as_str()),
            ("IRSA_PROXY_AUTH_TOKEN_APP", same.as_str()),
            ("IRSA_PROXY_AUTH_TOKEN_COPIER", same.as_str()),
        ]);
        let all = flags::lines(&Config::from_args(&ServeArgs::default(), &e).unwrap_err());
        assert_eq!(
            all,
            "IRSA_PROXY_AUTH_TOKEN_COPIER: a value of 64 characters is the same as IRSA_PROXY_AUTH_TOKEN_APP; expected a different token for every role (the token decides which role a request gets)"
        );
        let args = ServeArgs {
            role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
            token_file: Some(tp.clone()),
            auth_token_dir: Some(dir_s.clone()),
            ..Default::default()
        };
        let all = flags::lines(&Config::from_args(&args, &env(&[])).unwrap_err());
        assert!(all.starts_with("--auth-token-dir: "), "{all}");
        assert!(all.contains("is for several roles"), "{all}");
        let args = ServeArgs {
            roles_file: Some("/nonexistent-for-test/roles.json".into()),
            ..args
        };
        let all = flags::lines(
            &Config::from_args(&args, &env(&[("IRSA_PROXY_ROLES", "{}")])).unwrap_err(),
        );
        assert_eq!(
            all,
            "--roles-file: \"/nonexistent-for-test/roles.json\" is given together with IRSA_PROXY_ROLES; expected one of them"
        );
        // Pod Identity: the agent picks the pod's role; a role_arn is a hop
        // from it, so the chained session's 1h cap holds.
        let e = env(&[
            ("IRSA_PROXY_ROLES", json.as_str()),
            ("IRSA_PROXY_AUTH_TOKEN_DIR", dir_s.as_str()),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tp.as_str()),
        ]);
        let args = ServeArgs {
            duration: Some("2h".into()),
            ..Default::default()
        };
        let all = flags::lines(&Config::from_args(&args, &e).unwrap_err());
        assert_eq!(
            all,
            "--duration: \"2h\" is longer than the 1h AWS allows a session obtained by role chaining (roles.app.role_arn, assumed from the Pod Identity role); expected 15m to 1h with a chain"
        );
    }

    #[test]
    fn on_pod_identity_a_roles_role_arn_should_be_its_first_hop() {
        let dir = tempfile::tempdir().unwrap();
        let dir_s = dir.path().display().to_string();
        let json = serde_json::json!({"roles": {
            "app": {"role_arn": "arn:aws:iam::111122223333:role/app",
                    "session_policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]},
            "copier": {"role_arn": "arn:aws:iam::111122223333:role/copy",
                       "chain_role_arn": ["arn:aws:iam::444455556666:role/b"]},
            "plain": {},
        }})
        .to_string();
        let tp = token_path();
        let e = env(&[
            ("IRSA_PROXY_ROLES", json.as_str()),
            ("IRSA_PROXY_AUTH_TOKEN_DIR", dir_s.as_str()),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://169.254.170.23/v1/credentials",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tp.as_str()),
        ]);
        let c = Config::from_args(&ServeArgs::default(), &e).unwrap();
        assert_eq!(c.source(), SourceKind::PodIdentity);
        let roles = c.roles.clone().unwrap();
        let hops = |i: usize| -> Vec<String> {
            let r = c.for_role(&roles.roles[i]);
            assert_eq!(r.role_arn, c.role_arn, "the agent's role is the base");
            r.chain.hops.iter().map(|h| h.role.name.clone()).collect()
        };
        assert_eq!(hops(0), ["app"]);
        assert_eq!(hops(1), ["copy", "b"]);
        assert!(hops(2).is_empty(), "the agent's own role");
        assert_eq!(c.for_role(&roles.roles[1]).served_role().name, "b");
    }

    #[test]
    fn session_names_should_follow_sts_rules() {
        assert_eq!(sanitize_session_name("a"), "a-");
        assert_eq!(sanitize_session_name(&"x".repeat(100)).len(), 64);
        assert_eq!(sanitize_session_name("ok_name+=,.@-"), "ok_name+=,.@-");
        assert_eq!(sanitize_session_name("héllo wörld"), "h-llo-w-rld");
    }
}
