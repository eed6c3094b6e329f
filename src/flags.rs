//! Flags: one error type, one parse-and-range helper, and the names, environment
//! twins, defaults and ranges of every subcommand's flags (linkerd2-proxy's
//! `env.rs` is the model).
//!
//! Every refusal of every subcommand is a [`FlagError`] and renders as one line:
//!
//! ```text
//! --flag (VARIABLE): "value" is <problem>; expected <what is allowed>
//! ```
//!
//! (the variable only when the value came from the environment; no value when a
//! required flag is missing). Values are resolved as flag, then environment, then
//! default, through [`Flags`], which collects every refusal before any is
//! reported. Two rules hold for every subcommand, and `tests/flag_ranges.rs` draws
//! every flag from its legal range to check them:
//!
//! - a default never refuses a legal value of another flag (issue 10: the 30m
//!   `--refresh-before` default refused `--duration 15m`);
//! - a refusal names only values the user gave.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::duration::{format_duration, parse_duration};
use crate::logging::LogFormat;

/// Where environment variables come from: the process in production, a map in
/// tests (so tests never call `std::env::set_var`).
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

/// For subcommands whose flags have no environment twins.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoEnvironment;

impl Environment for NoEnvironment {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

/// A flag's name and its environment twins, first match wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// `--duration`; for a setting with no flag, the variable itself.
    pub name: &'static str,
    pub env: &'static [&'static str],
}

impl Flag {
    /// A flag without an environment twin.
    pub const fn bare(name: &'static str) -> Flag {
        Flag { name, env: &[] }
    }
}

/// Why a value was refused, before it is known which flag it came from: what
/// every parser returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Follows the value: "is out of range", "is not a duration".
    pub problem: String,
    /// Follows "expected": "15m to 12h", "text or json".
    pub allowed: String,
}

impl Refusal {
    pub fn new(problem: impl Into<String>, allowed: impl Into<String>) -> Refusal {
        Refusal {
            problem: problem.into(),
            allowed: allowed.into(),
        }
    }
}

/// What the user gave for a refused flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Given {
    /// Nothing: the flag is required.
    Nothing,
    /// A value, quoted in the message.
    Value(String),
    /// A secret: only its length is named.
    Secret { chars: usize },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; expected {}", self.problem, self.allowed)
    }
}

/// One refused flag: which flag, where its value came from, the value, and what
/// is allowed. Renders as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError {
    pub flag: &'static str,
    /// The environment variable the value came from; `None` for the flag itself.
    pub source: Option<&'static str>,
    pub value: Given,
    pub problem: String,
    pub allowed: String,
}

impl FlagError {
    /// `value`, given for `flag` (from `source`), was refused.
    pub fn refused(
        flag: &'static str,
        source: Option<&'static str>,
        value: &str,
        why: Refusal,
    ) -> FlagError {
        FlagError {
            flag,
            source,
            value: Given::Value(value.to_string()),
            problem: why.problem,
            allowed: why.allowed,
        }
    }

    /// A required flag (and its variables) was not given.
    pub fn missing(flag: &Flag, allowed: impl Into<String>) -> FlagError {
        FlagError {
            flag: flag.name,
            source: flag.env.first().copied(),
            value: Given::Nothing,
            problem: "is required".into(),
            allowed: allowed.into(),
        }
    }
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.flag)?;
        // A setting with no flag is named by its variable already.
        if let Some(var) = self.source.filter(|var| *var != self.flag) {
            write!(f, " ({var})")?;
        }
        match &self.value {
            Given::Nothing => f.write_str(" ")?,
            Given::Value(v) => write!(f, ": {v:?} ")?,
            Given::Secret { chars } => write!(f, ": a value of {chars} characters ")?,
        }
        write!(f, "{}; expected {}", self.problem, self.allowed)
    }
}

impl std::error::Error for FlagError {}

/// Refusals as the lines they are printed as.
pub fn lines(errors: &[FlagError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Resolves flags (flag, then environment, then default) and collects every
/// refusal, so that one start-up reports all of them.
pub(crate) struct Flags<'e> {
    env: &'e dyn Environment,
    errors: Vec<FlagError>,
}

impl<'e> Flags<'e> {
    pub fn new(env: &'e dyn Environment) -> Flags<'e> {
        Flags {
            env,
            errors: Vec::new(),
        }
    }

    /// The raw value and the variable it came from (`None`: the flag itself);
    /// an empty variable counts as unset.
    pub fn raw(&self, flag: &Flag, given: Option<&str>) -> Option<(String, Option<&'static str>)> {
        if let Some(v) = given {
            return Some((v.to_string(), None));
        }
        flag.env.iter().find_map(|name| {
            self.env
                .var(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (v, Some(*name)))
        })
    }

    /// The parsed value; `None` when it was not given, or was refused (and the
    /// refusal recorded).
    pub fn parse<T>(
        &mut self,
        flag: &Flag,
        given: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, Refusal>,
    ) -> Option<T> {
        let (v, source) = self.raw(flag, given)?;
        match parse(&v) {
            Ok(t) => Some(t),
            Err(why) => {
                self.refuse(FlagError::refused(flag.name, source, &v, why));
                None
            }
        }
    }

    /// The parsed value, or `default` when it was not given (or was refused: the
    /// refusal is recorded, so the default is never used).
    pub(crate) fn parse_or<T>(
        &mut self,
        flag: &Flag,
        given: Option<&str>,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, Refusal>,
    ) -> T {
        self.parse(flag, given, parse).unwrap_or(default)
    }

    /// Like [`Flags::parse`], but records a refusal when nothing was given.
    pub fn required<T>(
        &mut self,
        flag: &Flag,
        given: Option<&str>,
        what: &str,
        parse: impl FnOnce(&str) -> Result<T, Refusal>,
    ) -> Option<T> {
        if self.raw(flag, given).is_none() {
            self.refuse(FlagError::missing(flag, what));
            return None;
        }
        self.parse(flag, given, parse)
    }

    pub fn refuse(&mut self, e: FlagError) {
        self.errors.push(e);
    }

    /// How many refusals are recorded so far.
    pub fn count(&self) -> usize {
        self.errors.len()
    }

    /// A variable with a name made at run time (not a [`Flag`]'s); an empty
    /// one counts as unset.
    pub fn var(&self, name: &str) -> Option<String> {
        self.env.var(name).filter(|v| !v.trim().is_empty())
    }

    /// Every refusal, or `Ok` with `value` when there was none.
    pub fn finish<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, Vec<FlagError>> {
        if self.errors.is_empty() {
            if let Some(v) = value() {
                return Ok(v);
            }
        }
        Err(self.errors)
    }
}

// ---------------------------------------------------------------------------
// Parsers: each returns a `Refusal` that says what is allowed.

/// `value` if it lies in `range`, else "is out of range; expected MIN to MAX".
pub(crate) fn in_range<T: PartialOrd>(
    value: T,
    range: &RangeInclusive<T>,
    show: impl Fn(&T) -> String,
) -> Result<T, Refusal> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(Refusal::new(
            "is out of range",
            format!("{} to {}", show(range.start()), show(range.end())),
        ))
    }
}

/// A duration (`90s`, `20m`, `1h`) inside `range`.
pub(crate) fn duration_in(
    range: RangeInclusive<Duration>,
) -> impl Fn(&str) -> Result<Duration, Refusal> {
    move |s| {
        let d = parse_duration(s)
            .map_err(|forms| Refusal::new("is not a duration", forms.to_string()))?;
        in_range(d, &range, |d| format_duration(*d))
    }
}

/// A whole number inside `range`.
pub(crate) fn number_in<T>(range: RangeInclusive<T>) -> impl Fn(&str) -> Result<T, Refusal>
where
    T: PartialOrd + std::str::FromStr + fmt::Display,
{
    move |s| {
        let n = s.trim().parse::<T>().map_err(|_| {
            Refusal::new(
                "is not a whole number",
                format!("a whole number from {} to {}", range.start(), range.end()),
            )
        })?;
        in_range(n, &range, |n| n.to_string())
    }
}

/// `text` or `json`: `--log-format` everywhere and doctor's `--output`.
pub(crate) fn text_or_json(s: &str) -> Result<LogFormat, Refusal> {
    match s.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(Refusal::new("is not a format", "text or json")),
    }
}

/// `true`/`false` and their usual spellings.
pub(crate) fn boolean(s: &str) -> Result<bool, Refusal> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Refusal::new("is not a boolean", "true or false")),
    }
}

/// `127.0.0.1:9911`, `[::1]:9911`, `localhost:9911`.
pub(crate) fn listen_address(s: &str) -> Result<SocketAddr, Refusal> {
    let refusal = || {
        Refusal::new(
            "is not an address",
            "an address and port such as 127.0.0.1:9911, [::1]:9911 or localhost:9911",
        )
    };
    let s = s.trim();
    if let Some(port) = s.strip_prefix("localhost:") {
        return port
            .parse::<u16>()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
            .map_err(|_| refusal());
    }
    s.parse::<SocketAddr>().map_err(|_| refusal())
}

/// A share: `20%` or `20`, 0 to 100 (dev's fault flags).
#[cfg(feature = "tools")]
pub(crate) fn percent(s: &str) -> Result<u8, Refusal> {
    let refusal = || {
        Refusal::new(
            "is not a percentage",
            "a whole percentage from 0% to 100%, such as 20%",
        )
    };
    let n = s.trim().trim_end_matches('%').trim();
    match n.parse::<u8>() {
        Ok(n) if n <= 100 => Ok(n),
        _ => Err(refusal()),
    }
}

/// `LENGTH@START`, such as `30s@2m`: for LENGTH, from START after the run began.
#[cfg(feature = "tools")]
pub(crate) fn window(
    length_range: RangeInclusive<Duration>,
) -> impl Fn(&str) -> Result<(Duration, Duration), Refusal> {
    move |s| {
        let allowed = format!(
            "LENGTH@START such as 30s@2m: LENGTH from {} to {}, START a duration from the start of the run",
            format_duration(*length_range.start()),
            format_duration(*length_range.end())
        );
        let (length, start) = s
            .trim()
            .split_once('@')
            .ok_or_else(|| Refusal::new("is not a window", allowed.clone()))?;
        let length = parse_duration(length)
            .map_err(|_| Refusal::new("has a LENGTH that is not a duration", allowed.clone()))?;
        let start = parse_duration(start)
            .map_err(|_| Refusal::new("has a START that is not a duration", allowed.clone()))?;
        if !length_range.contains(&length) {
            return Err(Refusal::new("has a LENGTH out of range", allowed));
        }
        Ok((length, start))
    }
}

/// A role ARN.
pub(crate) fn role_arn(s: &str) -> Result<crate::arn::RoleArn, Refusal> {
    crate::arn::RoleArn::parse(s.trim())
        .map_err(|form| Refusal::new("is not a role ARN", form.to_string()))
}

// ---------------------------------------------------------------------------
// The flags of each subcommand: names, environment twins, defaults, ranges.

/// `--log-format` and doctor's `--output`.
pub(crate) const DEFAULT_FORMAT: &str = "text";

/// The audience of a web-identity token for AWS STS: the projected token's
/// (`inject`, `webhook`), the one STS expects (`doctor`, `sts-emulator`) and
/// the one tokens are minted for (`mint`, `dev`).
pub const DEFAULT_AUDIENCE: &str = "sts.amazonaws.com";

/// `serve`. Every flag has an environment twin.
pub mod serve {
    use super::*;

    pub const ROLE_ARN: Flag = Flag {
        name: "--role-arn",
        env: &["AWS_ROLE_ARN"],
    };
    pub const TOKEN_FILE: Flag = Flag {
        name: "--token-file",
        env: &["AWS_WEB_IDENTITY_TOKEN_FILE"],
    };
    pub const SOURCE: Flag = Flag {
        name: "--source",
        env: &["IRSA_PROXY_SOURCE"],
    };
    /// Pod Identity: the variables the EKS webhook gives every container.
    pub const POD_IDENTITY_URI: Flag = Flag {
        name: "--pod-identity-uri",
        env: &["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
    };
    pub const POD_IDENTITY_TOKEN_FILE: Flag = Flag {
        name: "--pod-identity-token-file",
        env: &["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"],
    };
    pub const SESSION_NAME: Flag = Flag {
        name: "--session-name",
        env: &["AWS_ROLE_SESSION_NAME"],
    };
    pub const REGION: Flag = Flag {
        name: "--region",
        env: &["AWS_REGION", "AWS_DEFAULT_REGION"],
    };
    pub(crate) const STS_ENDPOINT: Flag = Flag {
        name: "--sts-endpoint",
        env: &["AWS_ENDPOINT_URL_STS"],
    };
    /// Comma-separated in the environment.
    pub const LISTEN: Flag = Flag {
        name: "--listen",
        env: &["IRSA_PROXY_LISTEN"],
    };
    pub(crate) const ALLOW_NON_LOOPBACK: Flag = Flag {
        name: "--allow-non-loopback",
        env: &["IRSA_PROXY_ALLOW_NON_LOOPBACK"],
    };
    pub const DURATION: Flag = Flag {
        name: "--duration",
        env: &["IRSA_PROXY_DURATION"],
    };
    pub const REFRESH_BEFORE: Flag = Flag {
        name: "--refresh-before",
        env: &["IRSA_PROXY_REFRESH_BEFORE"],
    };
    pub(crate) const AUTH_TOKEN_FILE: Flag = Flag {
        name: "--auth-token-file",
        env: &["IRSA_PROXY_AUTH_TOKEN_FILE"],
    };
    /// A value only, from the environment (a Secret): a flag would show the
    /// secret in the process list and in the pod's args.
    pub(crate) const AUTH_TOKEN: Flag = Flag {
        name: "IRSA_PROXY_AUTH_TOKEN",
        env: &["IRSA_PROXY_AUTH_TOKEN"],
    };
    /// Several roles (docs/contract.md §13): the roles JSON in a file...
    pub const ROLES_FILE: Flag = Flag {
        name: "--roles-file",
        env: &["IRSA_PROXY_ROLES_FILE"],
    };
    /// ... or inline, in the environment only (what `inject` writes).
    pub const ROLES: Flag = Flag {
        name: "IRSA_PROXY_ROLES",
        env: &["IRSA_PROXY_ROLES"],
    };
    /// With several roles: `DIR/<name>/token` holds each role's token.
    pub const AUTH_TOKEN_DIR: Flag = Flag {
        name: "--auth-token-dir",
        env: &["IRSA_PROXY_AUTH_TOKEN_DIR"],
    };
    /// With several roles: a role's token as a value is
    /// `IRSA_PROXY_AUTH_TOKEN_<NAME>` (NAME upper-cased, `-` as `_`).
    pub const AUTH_TOKEN_ROLE_PREFIX: &str = "IRSA_PROXY_AUTH_TOKEN_";
    /// The environment twin of `--imds`/`--no-imds`.
    pub const IMDS: Flag = Flag {
        name: "IRSA_PROXY_IMDS",
        env: &["IRSA_PROXY_IMDS"],
    };
    /// The environment twin of `--imds-require-token`.
    pub(crate) const IMDS_REQUIRE_TOKEN: Flag = Flag {
        name: "IRSA_PROXY_IMDS_REQUIRE_TOKEN",
        env: &["IRSA_PROXY_IMDS_REQUIRE_TOKEN"],
    };
    pub const IMDS_V1: Flag = Flag {
        name: "--imds-v1",
        env: &["IRSA_PROXY_IMDS_V1"],
    };
    pub const LOG_FORMAT: Flag = Flag {
        name: "--log-format",
        env: &["IRSA_PROXY_LOG_FORMAT"],
    };
    pub const SHUTDOWN_DELAY: Flag = Flag {
        name: "--shutdown-delay",
        env: &["IRSA_PROXY_SHUTDOWN_DELAY"],
    };
    pub const HEADER_TIMEOUT: Flag = Flag {
        name: "--header-timeout",
        env: &["IRSA_PROXY_HEADER_TIMEOUT"],
    };
    pub const MAX_CONNECTIONS: Flag = Flag {
        name: "--max-connections",
        env: &["IRSA_PROXY_MAX_CONNECTIONS"],
    };

    // Role chaining (crate::sidecar::chain): hops after the web-identity role, and what
    // the hops carry (session tags, SourceIdentity).
    /// Repeatable, in order; comma-separated in the environment.
    pub const CHAIN_ROLE_ARN: Flag = Flag {
        name: "--chain-role-arn",
        env: &["IRSA_PROXY_CHAIN_ROLE_ARN"],
    };
    /// The ExternalId of the last hop, as a value: refusals name only its length.
    pub const CHAIN_EXTERNAL_ID: Flag = Flag {
        name: "--chain-external-id",
        env: &["IRSA_PROXY_CHAIN_EXTERNAL_ID"],
    };
    /// The ExternalId of the last hop, from a file re-read before every call.
    pub const CHAIN_EXTERNAL_ID_FILE: Flag = Flag {
        name: "--chain-external-id-file",
        env: &["IRSA_PROXY_CHAIN_EXTERNAL_ID_FILE"],
    };
    /// `pod-identity` and `KEY=VALUE`, repeatable; comma-separated in the environment.
    pub const SESSION_TAGS: Flag = Flag {
        name: "--session-tags",
        env: &["IRSA_PROXY_SESSION_TAGS"],
    };
    pub const TRANSITIVE_TAG_KEYS: Flag = Flag {
        name: "--transitive-tag-keys",
        env: &["IRSA_PROXY_TRANSITIVE_TAG_KEYS"],
    };
    pub const SOURCE_IDENTITY: Flag = Flag {
        name: "--source-identity",
        env: &["IRSA_PROXY_SOURCE_IDENTITY"],
    };
    pub const CLUSTER_NAME: Flag = Flag {
        name: "--cluster-name",
        env: &["IRSA_PROXY_CLUSTER_NAME"],
    };
    pub const CLUSTER_ARN: Flag = Flag {
        name: "--cluster-arn",
        env: &["IRSA_PROXY_CLUSTER_ARN"],
    };

    // The session policy of the role's last call (crate::sidecar::sts::policy).
    pub const SESSION_POLICY_FILE: Flag = Flag {
        name: "--session-policy-file",
        env: &["IRSA_PROXY_SESSION_POLICY_FILE"],
    };
    /// Repeatable; comma-separated in the environment.
    pub const SESSION_POLICY_ARN: Flag = Flag {
        name: "--session-policy-arn",
        env: &["IRSA_PROXY_SESSION_POLICY_ARNS"],
    };

    // The way out to STS (crate::sidecar::egress): the standard variables, no flags, so
    // that the sidecar takes a cluster's proxy settings like every other
    // container does.
    pub(crate) const HTTPS_PROXY: Flag = Flag {
        name: "HTTPS_PROXY",
        env: &["HTTPS_PROXY", "https_proxy"],
    };
    pub(crate) const HTTP_PROXY: Flag = Flag {
        name: "HTTP_PROXY",
        env: &["HTTP_PROXY", "http_proxy"],
    };
    pub(crate) const ALL_PROXY: Flag = Flag {
        name: "ALL_PROXY",
        env: &["ALL_PROXY", "all_proxy"],
    };
    pub(crate) const NO_PROXY: Flag = Flag {
        name: "NO_PROXY",
        env: &["NO_PROXY", "no_proxy"],
    };
    pub(crate) const CA_BUNDLE: Flag = Flag {
        name: "AWS_CA_BUNDLE",
        env: &["AWS_CA_BUNDLE"],
    };
    pub(crate) const USE_FIPS_ENDPOINT: Flag = Flag {
        name: "AWS_USE_FIPS_ENDPOINT",
        env: &["AWS_USE_FIPS_ENDPOINT"],
    };
    pub(crate) const USE_DUALSTACK_ENDPOINT: Flag = Flag {
        name: "AWS_USE_DUALSTACK_ENDPOINT",
        env: &["AWS_USE_DUALSTACK_ENDPOINT"],
    };
    pub(crate) const STS_REGIONAL_ENDPOINTS: Flag = Flag {
        name: "AWS_STS_REGIONAL_ENDPOINTS",
        env: &["AWS_STS_REGIONAL_ENDPOINTS"],
    };

    pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9911);
    /// STS's bounds for `DurationSeconds`.
    pub const DURATION_RANGE: RangeInclusive<Duration> =
        Duration::from_secs(15 * 60)..=Duration::from_secs(12 * 3600);
    pub(crate) const DEFAULT_DURATION: Duration = Duration::from_secs(3600);
    /// Any value works with any `--duration`: the refresh window is
    /// min(this, lifetime / 2) of what STS returned.
    pub const REFRESH_BEFORE_RANGE: RangeInclusive<Duration> =
        Duration::from_secs(1)..=Duration::from_secs(12 * 3600);
    pub(crate) const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(1800);
    /// AWS caps a session obtained by role chaining at one hour, and refuses a
    /// longer `DurationSeconds` on such a hop.
    pub const CHAINED_DURATION_CAP: Duration = Duration::from_secs(3600);
    /// AWS's limit on session tags per call.
    pub const MAX_SESSION_TAGS: usize = 50;
    pub const SHUTDOWN_DELAY_RANGE: RangeInclusive<Duration> =
        Duration::ZERO..=Duration::from_secs(600);
    pub(crate) const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
    pub const HEADER_TIMEOUT_RANGE: RangeInclusive<Duration> =
        Duration::from_secs(1)..=Duration::from_secs(3600);
    pub(crate) const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
    /// A handful for tests, and no more than a process can hold open file
    /// descriptors for in any sane set-up.
    pub const MAX_CONNECTIONS_RANGE: RangeInclusive<usize> = 8..=65_536;
    pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 1024;
}

#[cfg_attr(not(feature = "tools"), allow(dead_code))]
/// `dev`: clap fills the defaults, so every value arrives as if given.
pub mod dev {
    use super::*;

    pub const LISTEN: Flag = Flag::bare("--listen");
    pub const CREDENTIAL_TTL: Flag = Flag::bare("--credential-ttl");
    pub(crate) const TOKEN_TTL: Flag = Flag::bare("--token-ttl");
    pub const ROLE_ARN: Flag = Flag::bare("--role-arn");
    pub const LOG_FORMAT: Flag = Flag::bare("--log-format");
    pub const FOR: Flag = Flag::bare("--for");
    pub const REPORT: Flag = Flag::bare("--report");
    pub const REPORT_FILE: Flag = Flag::bare("--report-file");
    pub const STS_FAIL: Flag = Flag::bare("--sts-fail");
    pub const STS_OUTAGE: Flag = Flag::bare("--sts-outage");
    pub const EXPIRED_TOKEN: Flag = Flag::bare("--expired-token");
    pub const EARLY_EXPIRY: Flag = Flag::bare("--early-expiry");
    pub const SCENARIO: Flag = Flag::bare("--scenario");
    pub const SOURCE: Flag = Flag::bare("--source");
    pub const MANAGED_POLICY: Flag = Flag::bare("--managed-policy");
    pub const SESSION_POLICY_ARN: Flag = Flag::bare("--session-policy-arn");
    pub const SESSION_POLICY_FILE: Flag = Flag::bare("--session-policy-file");
    pub const ROLES_FILE: Flag = Flag::bare("--roles-file");
    pub const AS: Flag = Flag::bare("--as");
    pub const RUN: Flag = Flag::bare("--run");

    pub const DEFAULT_LISTEN: &str = "127.0.0.1:9911";
    pub(crate) const DEFAULT_CREDENTIAL_TTL: &str = "5m";
    /// Down to 10s, so that a test bench sees several refreshes in a minute.
    pub(crate) const CREDENTIAL_TTL_RANGE: RangeInclusive<Duration> =
        Duration::from_secs(10)..=Duration::from_secs(12 * 3600);
    /// `--for`: how long a run may last.
    pub(crate) const FOR_RANGE: RangeInclusive<Duration> =
        Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600);
    /// The LENGTH of an `--sts-outage` or `--expired-token` window.
    pub(crate) const WINDOW_RANGE: RangeInclusive<Duration> =
        Duration::from_secs(1)..=Duration::from_secs(24 * 3600);
    /// The scenarios `--scenario` knows.
    pub(crate) const SCENARIOS: &str = "hour-in-production";
    pub(crate) const DEFAULT_TOKEN_TTL: &str = "10m";
    pub(crate) const TOKEN_TTL_RANGE: RangeInclusive<Duration> =
        Duration::from_secs(20)..=Duration::from_secs(24 * 3600);
    pub(crate) const DEFAULT_ROLE_ARN: &str = "arn:aws:iam::111122223333:role/irsa-proxy-dev";
}

#[cfg_attr(not(feature = "tools"), allow(dead_code))]
/// `sts-emulator`.
pub mod emulator {
    use super::*;

    pub const LISTEN: Flag = Flag::bare("--listen");
    pub(crate) const ISSUER_KEY: Flag = Flag::bare("--issuer-key");
    pub const JWKS: Flag = Flag::bare("--jwks");
    pub const POD_IDENTITY_ASSOCIATION: Flag = Flag::bare("--pod-identity-association");
    pub const POD_IDENTITY_RATE: Flag = Flag::bare("--pod-identity-rate");
    pub const STS_RATE: Flag = Flag::bare("--sts-rate");
    pub(crate) const POD_IDENTITY_RATE_RANGE: RangeInclusive<u32> = 1..=100_000;
    pub(crate) const AUDIENCE: Flag = Flag::bare("--audience");
    pub const TRUST_POLICY: Flag = Flag::bare("--trust-policy");
    pub const ROLE_TRUST_POLICY: Flag = Flag::bare("--role-trust-policy");
    pub const MANAGED_POLICY: Flag = Flag::bare("--managed-policy");
    pub const CREDENTIAL_TTL: Flag = Flag::bare("--credential-ttl");
    pub const LOG_FORMAT: Flag = Flag::bare("--log-format");
    pub(crate) const TLS_CERT_FILE: Flag = Flag::bare("--tls-cert-file");
    pub(crate) const TLS_KEY_FILE: Flag = Flag::bare("--tls-key-file");

    pub const DEFAULT_LISTEN: &str = "127.0.0.1:9912";
    pub(crate) const DEFAULT_AUDIENCE: &str = super::DEFAULT_AUDIENCE;
    pub(crate) const DEFAULT_CREDENTIAL_TTL: &str = "1h";
    /// STS's bounds for `DurationSeconds`, lowered to 1s so that tests can watch
    /// credentials expire.
    pub(crate) const CREDENTIAL_TTL_RANGE: RangeInclusive<Duration> =
        Duration::from_secs(1)..=Duration::from_secs(12 * 3600);
}

/// `doctor`: the token file and role fall back to the same variables as `serve`'s.
pub mod doctor {
    use super::*;

    pub const TOKEN_FILE: Flag = serve::TOKEN_FILE;
    pub const ROLE_ARN: Flag = serve::ROLE_ARN;
    pub const TRUST_POLICY: Flag = Flag::bare("--trust-policy");
    pub const CHAIN_TRUST_POLICY: Flag = Flag::bare("--chain-trust-policy");
    pub(crate) const OUTPUT: Flag = Flag::bare("--output");
    pub(crate) const CA_FILE: Flag = Flag::bare("--ca-file");
    pub(crate) const RESOLVE: Flag = Flag::bare("--resolve");
    pub(crate) const DEFAULT_AUDIENCE: &str = super::DEFAULT_AUDIENCE;
}

#[cfg_attr(not(feature = "tools"), allow(dead_code))]
/// `inject`.
pub mod inject {
    use super::*;

    pub const IMAGE: Flag = Flag::bare("--image");
    pub const ROLE_ARN: Flag = Flag::bare("--role-arn");
    pub const PORT: Flag = Flag::bare("--port");
    pub const TOKEN_AUDIENCE: Flag = Flag::bare("--token-audience");
    pub const TOKEN_EXPIRATION: Flag = Flag::bare("--token-expiration");
    pub(crate) const AUTH_SECRET: Flag = Flag::bare("--auth-secret");
    pub const CONTAINER: Flag = Flag::bare("--container");
    pub const CONTAINER_ROLE: Flag = Flag::bare("--container-role");
    pub const IMDS_ROLE: Flag = Flag::bare("--imds-role");

    pub(crate) const DEFAULT_PORT: u16 = 9911;
    pub const PORT_RANGE: RangeInclusive<u16> = 1..=65535;
    pub const DEFAULT_TOKEN_AUDIENCE: &str = super::DEFAULT_AUDIENCE;
    /// Kubernetes' bounds for a projected token's `expirationSeconds`.
    pub const TOKEN_EXPIRATION_RANGE: RangeInclusive<i64> = 600..=(1 << 32);
    pub(crate) const DEFAULT_TOKEN_EXPIRATION: i64 = 86400;
}

#[cfg_attr(not(feature = "tools"), allow(dead_code))]
/// `webhook`: the server's own flags. The sidecar every pod gets is described
/// by `inject`'s flags ([`inject`], `cli::SidecarArgs`), shared with `inject`.
pub mod webhook {
    use super::*;

    pub const LISTEN: Flag = Flag::bare("--listen");
    pub const TLS_CERT_FILE: Flag = Flag::bare("--tls-cert-file");
    pub const TLS_KEY_FILE: Flag = Flag::bare("--tls-key-file");
    pub const HEADER_TIMEOUT: Flag = Flag::bare("--header-timeout");
    pub const MAX_CONNECTIONS: Flag = Flag::bare("--max-connections");
    pub const LOG_FORMAT: Flag = Flag::bare("--log-format");

    /// Every interface: the API server calls through the Service.
    pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
    /// The API server's own timeout for a webhook call is 10 s at most.
    pub const DEFAULT_HEADER_TIMEOUT: &str = "10s";
    pub const HEADER_TIMEOUT_RANGE: RangeInclusive<Duration> =
        Duration::from_secs(1)..=Duration::from_secs(600);
    pub const DEFAULT_MAX_CONNECTIONS: usize = serve::DEFAULT_MAX_CONNECTIONS;
    pub const MAX_CONNECTIONS_RANGE: RangeInclusive<usize> = serve::MAX_CONNECTIONS_RANGE;
    /// How long the webhook keeps serving after SIGTERM, readiness failing: a
    /// readiness period of the Deployment (5 s) for the endpoint to be removed.
    pub const SHUTDOWN_DELAY: Duration = Duration::from_secs(5);
    /// Then how long reviews in flight may take to finish.
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
    /// Largest request head (hyper's minimum is 8 KiB).
    pub const MAX_HEAD_BYTES: usize = 16 * 1024;
}

#[cfg_attr(not(feature = "tools"), allow(dead_code))]
/// `webhook certs`.
pub mod webhook_certs {
    use super::*;

    pub const SERVICE: Flag = Flag::bare("--service");
    pub const NAMESPACE: Flag = Flag::bare("--namespace");
    pub const SECRET: Flag = Flag::bare("--secret");
    pub const CONFIGURATION: Flag = Flag::bare("--configuration");
    pub const DAYS: Flag = Flag::bare("--days");
    pub const OUT_DIR: Flag = Flag::bare("--out-dir");

    /// The names of k8s/webhook/base.
    pub const DEFAULT_SERVICE: &str = "irsa-proxy-webhook";
    pub const DEFAULT_NAMESPACE: &str = "irsa-proxy-system";
    pub const DEFAULT_SECRET: &str = "irsa-proxy-webhook-tls";
    pub const DEFAULT_CONFIGURATION: &str = "irsa-proxy-webhook";
    pub const DEFAULT_DAYS: u32 = 365;
    pub const DAYS_RANGE: RangeInclusive<u32> = 1..=3650;
}

/// `link-local`.
pub mod link_local {
    use super::*;

    pub(crate) const ADDRESS: Flag = Flag::bare("--address");
    pub const POD_IP: Flag = Flag {
        name: "--pod-ip",
        env: &["IRSA_PROXY_POD_IP"],
    };
    pub const HOST_IP: Flag = Flag {
        name: "--host-ip",
        env: &["IRSA_PROXY_HOST_IP"],
    };
    /// No default: without it nothing is redirected.
    pub const REDIRECT_PORT: Flag = Flag::bare("--redirect-port");
    /// Any port but 80, the one that is redirected (checked by `link-local`).
    pub const REDIRECT_PORT_RANGE: RangeInclusive<u16> = 1..=65535;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_should_render_as_one_line_naming_flag_source_and_value() {
        let e = FlagError::refused(
            "--duration",
            Some("IRSA_PROXY_DURATION"),
            "5m",
            Refusal::new("is out of range", "15m to 12h"),
        );
        assert_eq!(
            e.to_string(),
            "--duration (IRSA_PROXY_DURATION): \"5m\" is out of range; expected 15m to 12h"
        );
        let e = FlagError::missing(&serve::ROLE_ARN, "the ARN of the IAM role to assume");
        assert_eq!(
            e.to_string(),
            "--role-arn (AWS_ROLE_ARN) is required; expected the ARN of the IAM role to assume"
        );
    }

    #[test]
    fn flags_should_win_over_the_environment_and_empty_variables_be_unset() {
        let env: HashMap<String, String> = [
            ("IRSA_PROXY_DURATION".to_string(), "2h".to_string()),
            ("AWS_REGION".to_string(), " ".to_string()),
            ("AWS_DEFAULT_REGION".to_string(), "eu-west-1".to_string()),
        ]
        .into();
        let f = Flags::new(&env);
        assert_eq!(
            f.raw(&serve::DURATION, Some("1h")),
            Some(("1h".into(), None))
        );
        assert_eq!(
            f.raw(&serve::DURATION, None),
            Some(("2h".into(), Some("IRSA_PROXY_DURATION")))
        );
        assert_eq!(
            f.raw(&serve::REGION, None),
            Some(("eu-west-1".into(), Some("AWS_DEFAULT_REGION")))
        );
    }

    #[test]
    fn range_helpers_should_accept_the_bounds_and_refuse_beyond() {
        let d = duration_in(serve::DURATION_RANGE);
        assert_eq!(d("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(d("12h"), Ok(Duration::from_secs(43200)));
        assert_eq!(d("14m"), Err(Refusal::new("is out of range", "15m to 12h")));
        assert_eq!(
            d("soon").map_err(|r| r.problem),
            Err("is not a duration".into())
        );
        let n = number_in(serve::MAX_CONNECTIONS_RANGE);
        assert_eq!(n("8"), Ok(8));
        assert!(n("7").is_err());
        assert_eq!(
            n("lots").map_err(|r| r.allowed),
            Err("a whole number from 8 to 65536".into())
        );
    }

    #[test]
    fn text_or_json_should_be_the_only_formats() {
        assert_eq!(text_or_json(" JSON "), Ok(LogFormat::Json));
        assert!(text_or_json("yaml").is_err());
    }
}
