//! The validated configuration of `serve`, built from its flags and their
//! environment twins.
//!
//! Every value is resolved as flag, then environment, then default, and every
//! problem is collected before any is reported, so one start-up shows all of them,
//! each on one line naming the flag (and its variable), the value and what is
//! allowed. Nothing is bound, created or called until this succeeds.
//!
//! The environment is read through [`Environment`] so tests pass a map instead of
//! touching the process environment.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::ServeArgs;
use crate::duration::{format_duration, parse_duration};
use crate::logging::LogFormat;
use crate::server::{AuthToken, ImdsV1};

/// Where environment variables come from.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9911";
pub const MIN_DURATION: Duration = Duration::from_secs(15 * 60);
pub const MAX_DURATION: Duration = Duration::from_secs(12 * 3600);
pub const MAX_SHUTDOWN_DELAY: Duration = Duration::from_secs(600);
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// `--max-connections` bounds: a handful for tests, and no more than a process
/// can hold open file descriptors for in any sane set-up.
pub const MAX_CONNECTIONS_RANGE: std::ops::RangeInclusive<usize> = 8..=65_536;

/// A role ARN, split into the parts the endpoints need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn {
    /// The ARN as given.
    pub arn: String,
    /// `aws`, `aws-cn`, `aws-us-gov`, ...: used for the instance-profile ARN.
    pub partition: String,
    /// The 12-digit account: the ECS body's `AccountId`.
    pub account: String,
    /// The role's name (the last path segment): the IMDS credentials path.
    pub name: String,
}

impl RoleArn {
    /// Parses `arn:<partition>:iam::<12 digits>:role/<path/>name`.
    pub fn parse(s: &str) -> Result<RoleArn, String> {
        const FORM: &str = "arn:<partition>:iam::<12-digit account>:role/<optional/path/>name";
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        if parts.len() != 6 || parts[0] != "arn" || parts[2] != "iam" || !parts[3].is_empty() {
            return Err(FORM.into());
        }
        let partition = parts[1];
        if partition.is_empty()
            || !partition
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "{FORM} (the partition is aws, aws-cn, aws-us-gov, ...)"
            ));
        }
        let account = parts[4];
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{FORM} (the account is 12 digits)"));
        }
        let Some(resource) = parts[5].strip_prefix("role/") else {
            return Err(FORM.into());
        };
        let name = resource.rsplit('/').next().unwrap_or_default();
        let name_ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
        let path_ok = resource[..resource.len() - name.len()]
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b));
        if !name_ok || !path_ok || resource.len() > 576 {
            return Err(format!("{FORM} (the name is 1-64 of [A-Za-z0-9+=,.@_-])"));
        }
        Ok(RoleArn {
            arn: s.to_string(),
            partition: partition.to_string(),
            account: account.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.arn)
    }
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub role_arn: RoleArn,
    /// Re-read before every STS call; its directory is watched for rotation.
    pub token_file: PathBuf,
    /// Already sanitised to STS's rules.
    pub session_name: String,
    /// The region given by flag or environment; `None` lets the SDK decide and
    /// makes the IMDS region documents answer 404.
    pub region: Option<String>,
    pub sts_endpoint: Option<String>,
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
}

impl Config {
    /// A configuration with defaults, for tests and `dev`.
    pub fn new(role_arn: RoleArn, token_file: PathBuf) -> Config {
        Config {
            role_arn,
            token_file,
            session_name: default_session_name(),
            region: None,
            sts_endpoint: None,
            listen: vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9911)],
            duration: Duration::from_secs(3600),
            refresh_before: Duration::from_secs(1800),
            auth_token_file: None,
            auth_token: None,
            imds: true,
            imds_v1: ImdsV1::LinkLocal,
            log_format: LogFormat::Text,
            shutdown_delay: Duration::from_secs(5),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// Resolves flags, then environment, then defaults, and validates all of it.
    /// The error lists every problem, one line each.
    pub fn from_args(args: &ServeArgs, env: &dyn Environment) -> Result<Config, Vec<String>> {
        let mut errors = Vec::new();
        let pick = |flag: &Option<String>, vars: &[&'static str]| -> Option<(String, String)> {
            if let Some(v) = flag {
                return Some((v.clone(), String::new()));
            }
            vars.iter().find_map(|name| {
                env.var(name)
                    .filter(|v| !v.is_empty())
                    .map(|v| (v, format!(" ({name})")))
            })
        };

        let role_arn = match pick(&args.role_arn, &["AWS_ROLE_ARN"]) {
            None => {
                errors.push(
                    "--role-arn (AWS_ROLE_ARN) is required: the ARN of the IAM role to assume"
                        .to_string(),
                );
                None
            }
            Some((v, src)) => match RoleArn::parse(v.trim()) {
                Ok(a) => Some(a),
                Err(allowed) => {
                    errors.push(format!(
                        "--role-arn{src}: {v:?} is not a role ARN; expected {allowed}"
                    ));
                    None
                }
            },
        };

        let token_file = match pick(&args.token_file, &["AWS_WEB_IDENTITY_TOKEN_FILE"]) {
            None => {
                errors.push("--token-file (AWS_WEB_IDENTITY_TOKEN_FILE) is required: the path of the projected service-account token".to_string());
                None
            }
            Some((v, src)) => {
                let path = PathBuf::from(&v);
                match check_directory(&path) {
                    Ok(()) => Some(path),
                    Err(why) => {
                        errors.push(format!("--token-file{src}: {v:?}: {why}"));
                        None
                    }
                }
            }
        };

        let session_name = match pick(&args.session_name, &["AWS_ROLE_SESSION_NAME"]) {
            Some((v, _)) => sanitize_session_name(&v),
            None => default_session_name(),
        };

        let region = match pick(&args.region, &["AWS_REGION", "AWS_DEFAULT_REGION"]) {
            None => None,
            Some((v, src)) => {
                let r = v.trim().to_string();
                let ok = !r.is_empty()
                    && r.len() <= 32
                    && r.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !ok {
                    errors.push(format!(
                        "--region{src}: {v:?} is not a region; expected a name such as us-east-1"
                    ));
                }
                Some(r)
            }
        };

        let sts_endpoint = match pick(&args.sts_endpoint, &["AWS_ENDPOINT_URL_STS"]) {
            None => None,
            Some((v, src)) => {
                let ok = v
                    .parse::<http::Uri>()
                    .ok()
                    .filter(|u| {
                        matches!(u.scheme_str(), Some("http") | Some("https"))
                            && u.authority().is_some()
                    })
                    .is_some();
                if !ok {
                    errors.push(format!(
                        "--sts-endpoint{src}: {v:?} is not a URL; expected http(s)://host[:port]"
                    ));
                }
                Some(v.trim().to_string())
            }
        };

        let allow_non_loopback = args.allow_non_loopback
            || parse_bool_env(env, "IRSA_PROXY_ALLOW_NON_LOOPBACK", &mut errors).unwrap_or(false);
        let (listen_values, listen_src): (Vec<String>, String) = if !args.listen.is_empty() {
            (args.listen.clone(), String::new())
        } else if let Some(v) = env
            .var("IRSA_PROXY_LISTEN")
            .filter(|v| !v.trim().is_empty())
        {
            (
                v.split(',').map(|s| s.trim().to_string()).collect(),
                " (IRSA_PROXY_LISTEN)".to_string(),
            )
        } else {
            (vec![DEFAULT_LISTEN.to_string()], String::new())
        };
        let mut listen = Vec::new();
        for v in &listen_values {
            match parse_listen(v) {
                Err(allowed) => errors.push(format!("--listen{listen_src}: {v:?}: expected {allowed}")),
                // The link-local credential addresses pass here; `serve` checks at
                // start-up that they sit on a loopback interface.
                Ok(addr)
                    if !addr.ip().is_loopback()
                        && !crate::netns::is_credential_address(addr.ip())
                        && !allow_non_loopback =>
                {
                    errors.push(format!(
                        "--listen{listen_src}: {v:?} is not a loopback address; credentials would be reachable from outside the pod. Use 127.0.0.1 or [::1] (or a link-local credential address on lo), or add --allow-non-loopback"
                    ))
                }
                Ok(addr) => {
                    if !listen.contains(&addr) {
                        listen.push(addr)
                    }
                }
            }
        }

        let mut duration_of = |flag: &'static str,
                               value: &Option<String>,
                               var: &'static str,
                               default: Duration,
                               min: Duration,
                               max: Duration|
         -> Option<Duration> {
            let Some((v, src)) = pick(value, &[var]) else {
                return Some(default);
            };
            match parse_duration(&v) {
                Err(forms) => {
                    errors.push(format!(
                        "{flag}{src}: {v:?} is not a duration; expected {forms}"
                    ));
                    None
                }
                Ok(d) if d < min || d > max => {
                    errors.push(format!(
                        "{flag}{src}: {v:?} is out of range; allowed {} to {}",
                        format_duration(min),
                        format_duration(max)
                    ));
                    None
                }
                Ok(d) => Some(d),
            }
        };
        let duration = duration_of(
            "--duration",
            &args.duration,
            "IRSA_PROXY_DURATION",
            Duration::from_secs(3600),
            MIN_DURATION,
            MAX_DURATION,
        );
        let refresh_before = duration_of(
            "--refresh-before",
            &args.refresh_before,
            "IRSA_PROXY_REFRESH_BEFORE",
            Duration::from_secs(1800),
            Duration::from_secs(1),
            MAX_DURATION,
        );
        let shutdown_delay = duration_of(
            "--shutdown-delay",
            &args.shutdown_delay,
            "IRSA_PROXY_SHUTDOWN_DELAY",
            Duration::from_secs(5),
            Duration::ZERO,
            MAX_SHUTDOWN_DELAY,
        );
        let header_timeout = duration_of(
            "--header-timeout",
            &args.header_timeout,
            "IRSA_PROXY_HEADER_TIMEOUT",
            DEFAULT_HEADER_TIMEOUT,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        );
        let max_connections = match pick(&args.max_connections, &["IRSA_PROXY_MAX_CONNECTIONS"]) {
            None => Some(DEFAULT_MAX_CONNECTIONS),
            Some((v, src)) => match v.trim().parse::<usize>() {
                Ok(n) if MAX_CONNECTIONS_RANGE.contains(&n) => Some(n),
                _ => {
                    errors.push(format!(
                        "--max-connections{src}: {v:?} is not allowed; expected a whole number from {} to {}",
                        MAX_CONNECTIONS_RANGE.start(),
                        MAX_CONNECTIONS_RANGE.end()
                    ));
                    None
                }
            },
        };
        // No check of --refresh-before against --duration: the refresh window is
        // min(--refresh-before, lifetime / 2) of what STS returned, so any pair of
        // legal values works, and the 30m default must not refuse `--duration 15m`
        // (issue 10).

        let auth_token_file = match pick(&args.auth_token_file, &["IRSA_PROXY_AUTH_TOKEN_FILE"]) {
            None => None,
            Some((v, src)) => {
                let path = PathBuf::from(&v);
                if path.is_dir() {
                    errors.push(format!(
                        "--auth-token-file{src}: {v:?} is a directory; expected a file path"
                    ));
                } else if let Err(why) = check_directory(&path) {
                    errors.push(format!("--auth-token-file{src}: {v:?}: {why}"));
                }
                Some(path)
            }
        };

        let imds = if args.no_imds {
            false
        } else if args.imds {
            true
        } else {
            parse_bool_env(env, "IRSA_PROXY_IMDS", &mut errors).unwrap_or(true)
        };
        let imds_require_token = args.imds_require_token
            || parse_bool_env(env, "IRSA_PROXY_IMDS_REQUIRE_TOKEN", &mut errors).unwrap_or(false);
        let imds_v1 = match pick(&args.imds_v1, &["IRSA_PROXY_IMDS_V1"]) {
            None if imds_require_token => ImdsV1::Never,
            None => ImdsV1::LinkLocal,
            Some((v, src)) => match ImdsV1::parse(&v) {
                Ok(ImdsV1::Never) => ImdsV1::Never,
                Ok(_) if imds_require_token => {
                    errors.push(format!(
                        "--imds-v1{src}: {v:?} contradicts --imds-require-token (IRSA_PROXY_IMDS_REQUIRE_TOKEN); give one of them"
                    ));
                    ImdsV1::Never
                }
                Ok(w) => w,
                Err(allowed) => {
                    errors.push(format!(
                        "--imds-v1{src}: {v:?} is not allowed; expected {allowed}"
                    ));
                    ImdsV1::Never
                }
            },
        };
        // A value only, from the environment (a Secret): a flag would show the
        // secret in the process list and in the pod's args.
        let auth_token = match env.var("IRSA_PROXY_AUTH_TOKEN").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => match AuthToken::from_value(&v) {
                Ok(t) => Some(t),
                Err(line) => {
                    errors.push(line);
                    None
                }
            },
        };

        let log_format = match pick(&args.log_format, &["IRSA_PROXY_LOG_FORMAT"]) {
            None => LogFormat::Text,
            Some((v, src)) => LogFormat::parse(&v).unwrap_or_else(|allowed| {
                errors.push(format!(
                    "--log-format{src}: {v:?} is not a log format; expected {allowed}"
                ));
                LogFormat::Text
            }),
        };

        match (
            role_arn,
            token_file,
            duration,
            refresh_before,
            shutdown_delay,
            header_timeout,
            max_connections,
        ) {
            (
                Some(role_arn),
                Some(token_file),
                Some(duration),
                Some(refresh_before),
                Some(shutdown_delay),
                Some(header_timeout),
                Some(max_connections),
            ) if errors.is_empty() => Ok(Config {
                role_arn,
                token_file,
                session_name,
                region,
                sts_endpoint,
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
            }),
            _ => Err(errors),
        }
    }
}

/// A boolean environment variable; a bad value is recorded as an error.
fn parse_bool_env(env: &dyn Environment, name: &str, errors: &mut Vec<String>) -> Option<bool> {
    let v = env.var(name)?;
    match v.trim().to_ascii_lowercase().as_str() {
        "" => None,
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => {
            errors.push(format!(
                "{name}: {v:?} is not a boolean; expected true or false"
            ));
            None
        }
    }
}

/// `127.0.0.1:9911`, `[::1]:9911`, `localhost:9911`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, &'static str> {
    const ALLOWED: &str =
        "an address and port such as 127.0.0.1:9911, [::1]:9911 or localhost:9911";
    let s = s.trim();
    if let Some(port) = s.strip_prefix("localhost:") {
        return port
            .parse::<u16>()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
            .map_err(|_| ALLOWED);
    }
    s.parse::<SocketAddr>().map_err(|_| ALLOWED)
}

/// The directory holding `path` must exist and be listable: the token watch needs
/// it, and a typo there would otherwise leave the proxy waiting forever.
fn check_directory(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match std::fs::read_dir(&dir) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "its directory {} cannot be read ({}); expected an existing, readable directory",
            dir.display(),
            e.kind().to_string().to_lowercase()
        )),
    }
}

/// `irsa-proxy-<hostname>`, sanitised.
pub fn default_session_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    sanitize_session_name(&format!("irsa-proxy-{host}"))
}

/// STS allows `[\w+=,.@-]{2,64}`: other characters become `-`, the name is cut at
/// 64 characters and padded to 2.
pub fn sanitize_session_name(raw: &str) -> String {
    let mut s: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    while s.len() < 2 {
        s.push('-');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn role_arns_should_parse_with_paths_and_partitions() {
        let a = RoleArn::parse("arn:aws:iam::123456789012:role/app").unwrap();
        assert_eq!(
            (a.account.as_str(), a.name.as_str()),
            ("123456789012", "app")
        );
        let a = RoleArn::parse("arn:aws-cn:iam::123456789012:role/team/x/app-role").unwrap();
        assert_eq!(
            (a.partition.as_str(), a.name.as_str()),
            ("aws-cn", "app-role")
        );
        for bad in [
            "",
            "arn:aws:iam::12345678901:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:sts::123456789012:role/x",
            "arn:aws:iam:us-east-1:123456789012:role/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/bad name",
            "arn:AWS:iam::123456789012:role/x",
        ] {
            assert!(RoleArn::parse(bad).is_err(), "{bad:?} accepted");
        }
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
        let all = errs.join("\n");
        for needle in [
            "--role-arn",
            "--token-file",
            "--duration: \"5m\" is out of range; allowed 15m to 12h",
            "--refresh-before",
            "--listen: \"0.0.0.0:9911\" is not a loopback address",
            "--listen: \"nope\"",
            "--log-format",
            "IRSA_PROXY_IMDS",
            "--header-timeout: \"0s\" is out of range; allowed 1s to 1h",
            "--max-connections: \"lots\" is not allowed; expected a whole number from 8 to 65536",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert!(errs.iter().all(|l| !l.contains('\n')));
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
    fn session_names_should_follow_sts_rules() {
        assert_eq!(sanitize_session_name("a"), "a-");
        assert_eq!(sanitize_session_name(&"x".repeat(100)).len(), 64);
        assert_eq!(sanitize_session_name("ok_name+=,.@-"), "ok_name+=,.@-");
        assert_eq!(sanitize_session_name("héllo wörld"), "h-llo-w-rld");
    }
}
