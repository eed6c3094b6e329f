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
    /// (empty without them).
    pub chain: crate::sidecar::chain::Plan,
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
        }
    }

    /// The role whose credentials are served: the last hop's, or `--role-arn`.
    pub fn served_role(&self) -> &RoleArn {
        self.chain.served_role(&self.role_arn)
    }

    /// Resolves flags, then environment, then defaults, and validates all of it.
    /// The error lists every problem, one line each.
    pub fn from_args(args: &ServeArgs, env: &dyn Environment) -> Result<Config, Vec<FlagError>> {
        let mut flags = Flags::new(env);

        let (role_arn, token_file, pod_identity) = match source(&mut flags, args) {
            SourceKind::WebIdentity => (
                flags.required(
                    &f::ROLE_ARN,
                    args.role_arn.as_deref(),
                    "the ARN of the IAM role to assume",
                    flags::role_arn,
                ),
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
        let chain = crate::sidecar::chain::Plan::from_args(&mut flags, args, given_duration);
        // The agent takes no session policy: only an AssumeRole hop can carry it.
        if pod_identity.is_some() && !chain.is_chained() && !chain.session_policy.is_empty() {
            let file = args.session_policy_file.as_deref();
            let given = match flags.raw(&f::SESSION_POLICY_FILE, file) {
                Some((v, source)) => Some((f::SESSION_POLICY_FILE.name, v, source)),
                None if !args.session_policy_arn.is_empty() => Some((
                    f::SESSION_POLICY_ARN.name,
                    args.session_policy_arn.join(","),
                    None,
                )),
                None => flags
                    .raw(&f::SESSION_POLICY_ARN, None)
                    .map(|(v, source)| (f::SESSION_POLICY_ARN.name, v, source)),
            };
            if let Some((flag, v, source)) = given {
                flags.refuse(FlagError::refused(
                    flag,
                    source,
                    &v,
                    Refusal::new(
                        "needs a chain with --source pod-identity: the Pod Identity agent takes no session policy",
                        "--chain-role-arn (IRSA_PROXY_CHAIN_ROLE_ARN) too, whose last AssumeRole carries it",
                    ),
                ));
            }
        }
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

        let auth_token_file =
            flags.parse(&f::AUTH_TOKEN_FILE, args.auth_token_file.as_deref(), |v| {
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
    }

    #[test]
    fn session_names_should_follow_sts_rules() {
        assert_eq!(sanitize_session_name("a"), "a-");
        assert_eq!(sanitize_session_name(&"x".repeat(100)).len(), 64);
        assert_eq!(sanitize_session_name("ok_name+=,.@-"), "ok_name+=,.@-");
        assert_eq!(sanitize_session_name("héllo wörld"), "h-llo-w-rld");
    }
}
