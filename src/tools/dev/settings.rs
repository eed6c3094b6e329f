//! `dev`'s flags, validated as every subcommand's are ([`crate::flags`]), and
//! the one scenario, `hour-in-production`, which fills in the flags not given.

use std::time::Duration;

use crate::arn::RoleArn;
use crate::cli::DevArgs;
use crate::duration::format_duration;
use crate::flags::{self, dev as f, FlagError, Flags, NoEnvironment, Refusal};
use crate::logging::LogFormat;
use crate::sidecar::source::{SourceChoice, SourceKind};
use crate::tools::emulator::Window;

/// The cluster name of `--session-tags pod-identity` in dev, unless
/// `--cluster-name` is given.
const CLUSTER: &str = "irsa-proxy-dev";

/// `dev`'s validated flags, with `--scenario` filled in.
pub(super) struct DevSettings {
    pub listen: std::net::SocketAddr,
    pub link_local: bool,
    pub credential_ttl: Duration,
    pub token_ttl: Duration,
    pub role_arn: RoleArn,
    pub log_format: LogFormat,
    pub run_for: Option<Duration>,
    pub report: ReportFormat,
    pub report_file: Option<std::path::PathBuf>,
    pub scenario: Option<String>,
    pub sts_fail_percent: u8,
    pub sts_outages: Vec<Window>,
    pub expired_tokens: Vec<Window>,
    pub early_expiry_percent: u8,
    /// `--chain-role-arn` and what the hops carry, as `serve` reads them.
    pub chain: crate::sidecar::chain::Plan,
    /// `--source`: what the proxy uses, and so what the emulator plays.
    pub source: SourceKind,
    /// `--managed-policy`: the managed policies the emulator holds.
    pub managed_policies: std::collections::HashMap<String, crate::policy::Policy>,
    /// `--roles-file`: several roles, checked as `serve` checks them (the
    /// token directory is set when the run's directory exists).
    pub roles: Option<crate::sidecar::roles::Roles>,
    /// `--as`: the role the command (or the export lines) get.
    pub as_role: Option<String>,
    /// `--run NAME=COMMAND`, in order.
    pub runs: Vec<(String, Vec<String>)>,
    /// The level of dev's own log when RUST_LOG is not set.
    pub log_level: &'static str,
}

/// `--report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReportFormat {
    Text,
    Json,
    /// A JUnit XML test suite ([`super::junit`]).
    Junit,
}

fn report_format(v: &str) -> Result<ReportFormat, Refusal> {
    match v.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(ReportFormat::Text),
        "json" => Ok(ReportFormat::Json),
        "junit" => Ok(ReportFormat::Junit),
        _ => Err(Refusal::new("is not a format", "text, json or junit")),
    }
}

/// With a command (`-- COMMAND` or `--run`), dev's own log is warnings only unless `--verbose`: the
/// command's output and the report are what the user reads (a three-minute
/// scenario logs hundreds of INFO lines). Without one, dev is a server whose
/// log is the only thing it shows.
fn log_level(args: &DevArgs) -> &'static str {
    if (args.command.is_empty() && args.run.is_empty()) || args.verbose {
        "info"
    } else {
        "warn"
    }
}

/// What `--scenario` fills in for the flags not given.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scenario {
    credential_ttl: Duration,
    token_ttl: Duration,
    sts_fail_percent: u8,
    sts_outages: Vec<Window>,
    expired_tokens: Vec<Window>,
    run_for: Duration,
}

/// `hour-in-production`, scaled by T, the credential lifetime: the refreshes
/// and rotations of an hour or more, an STS that fails one call in ten, one
/// outage and one expired token, each short enough (T/10) that the proxy's
/// cached credentials cover it (it refreshes with T/2 left and serves until
/// T/4 is left), so that a well-behaved app passes.
fn hour_in_production(credential_ttl: Duration) -> Scenario {
    let t = credential_ttl;
    let window = |length: f64, start: f64| Window {
        start: t.mul_f64(start),
        length: t.mul_f64(length).max(Duration::from_secs(1)),
    };
    Scenario {
        credential_ttl: t,
        token_ttl: t.mul_f64(1.5).max(*f::TOKEN_TTL_RANGE.start()),
        sts_fail_percent: 10,
        sts_outages: vec![window(0.1, 1.3)],
        expired_tokens: vec![window(0.1, 2.2)],
        run_for: t * 3,
    }
}

pub(super) fn validate(args: &DevArgs) -> Result<DevSettings, Vec<FlagError>> {
    let mut flags = Flags::new(&NoEnvironment);
    let scenario_name = flags.parse(&f::SCENARIO, args.scenario.as_deref(), |v| match v.trim() {
        "hour-in-production" => Ok(v.trim().to_string()),
        _ => Err(Refusal::new("is not a scenario", f::SCENARIOS)),
    });
    let default_ttl = if scenario_name.is_some() {
        "60s"
    } else {
        f::DEFAULT_CREDENTIAL_TTL
    };
    let credential_ttl = flags.parse(
        &f::CREDENTIAL_TTL,
        Some(args.credential_ttl.as_deref().unwrap_or(default_ttl)),
        flags::duration_in(f::CREDENTIAL_TTL_RANGE),
    );
    let scenario = scenario_name
        .as_ref()
        .map(|_| hour_in_production(credential_ttl.unwrap_or(Duration::from_secs(60))));
    let token_ttl = match (&args.token_ttl, &scenario) {
        (None, Some(sc)) => Some(sc.token_ttl),
        (given, _) => flags.parse(
            &f::TOKEN_TTL,
            Some(given.as_deref().unwrap_or(f::DEFAULT_TOKEN_TTL)),
            flags::duration_in(f::TOKEN_TTL_RANGE),
        ),
    };
    let listen = flags.parse(&f::LISTEN, Some(&args.listen), |v| {
        flags::listen_address(v).and_then(|a| {
            if a.ip().is_loopback() {
                Ok(a)
            } else {
                Err(Refusal::new(
                    "is not a loopback address",
                    "127.0.0.1 or [::1]: dev serves on loopback only",
                ))
            }
        })
    });
    let role_arn = flags.parse(&f::ROLE_ARN, Some(&args.role_arn), flags::role_arn);
    // The chain's flags are serve's, read by the same code; the emulator caps
    // a chained session at an hour, so no --duration is checked here.
    let serve_args = crate::cli::ServeArgs {
        chain: crate::cli::ChainArgs {
            cluster_name: args.chain.cluster_name.clone().or(Some(CLUSTER.into())),
            ..args.chain.clone()
        },
        session_name: args.session_name.clone(),
        session_policy_file: args.session_policy_file.clone(),
        session_policy_arn: args.session_policy_arn.clone(),
        roles_file: args.roles_file.clone(),
        ..Default::default()
    };
    // Several roles: read and checked as serve reads them.
    let roles = crate::sidecar::roles::read(&mut flags, &serve_args);
    let chain = if args.roles_file.is_some() {
        crate::sidecar::chain::Plan::for_roles(&mut flags, &serve_args).0
    } else {
        crate::sidecar::chain::Plan::from_args(&mut flags, &serve_args, None)
    };
    if args.roles_file.is_some() {
        let (flag, given) = match (&args.session_policy_file, args.session_policy_arn.first()) {
            (Some(v), _) => (Some(&f::SESSION_POLICY_FILE), v.clone()),
            (None, Some(_)) => (
                Some(&f::SESSION_POLICY_ARN),
                args.session_policy_arn.join(","),
            ),
            (None, None) => (None, String::new()),
        };
        if let Some(flag) = flag {
            flags.refuse(FlagError::refused(
                flag.name,
                None,
                &given,
                Refusal::new(
                    "is given together with --roles-file",
                    "session_policy, session_policy_file or session_policy_arns in each role of the roles file",
                ),
            ));
        }
    }
    if let Some(r) = &roles {
        crate::sidecar::roles::check_with(
            &mut flags,
            r,
            crate::sidecar::roles::Context {
                source: match args.source.parse() {
                    Ok(SourceChoice::Given(kind)) => kind,
                    _ => SourceKind::WebIdentity,
                },
                top_role: true,
                chain: &chain,
                external_id: false,
                duration: None,
            },
        );
    }
    let role_names: Vec<String> = roles
        .as_ref()
        .map(|r| r.roles.iter().map(|r| r.name.clone()).collect())
        .unwrap_or_default();
    let needs_roles = |flags: &mut Flags<'_>, flag: &flags::Flag, v: &str| {
        flags.refuse(FlagError::refused(
            flag.name,
            None,
            v,
            Refusal::new(
                "needs several roles",
                "--roles-file too (the roles it names)",
            ),
        ));
    };
    let known = |name: &str| -> Result<String, Refusal> {
        if role_names.iter().any(|n| n == name) {
            Ok(name.to_string())
        } else {
            Err(Refusal::new(
                "is not a role of --roles-file",
                format!("one of {}", role_names.join(", ")),
            ))
        }
    };
    let as_role = match (&args.as_role, args.roles_file.is_some()) {
        (None, _) => None,
        (Some(v), false) => {
            needs_roles(&mut flags, &f::AS, v);
            None
        }
        // The roles file was refused: its names are unknown, nothing to add.
        (Some(_), true) if roles.is_none() => None,
        (Some(v), true) => flags.parse(&f::AS, Some(v), |v| known(v.trim())),
    };
    let mut runs = Vec::new();
    for v in &args.run {
        if args.roles_file.is_none() {
            needs_roles(&mut flags, &f::RUN, v);
            continue;
        }
        if roles.is_none() {
            continue;
        }
        if let Some(run) = flags.parse(&f::RUN, Some(v), |v| {
            let (name, command) = v.split_once('=').ok_or_else(|| {
                Refusal::new(
                    "is not NAME=COMMAND",
                    "a role of --roles-file, =, and a command (split on whitespace, no shell)",
                )
            })?;
            let name = known(name.trim())?;
            let argv: Vec<String> = command.split_whitespace().map(str::to_string).collect();
            if argv.is_empty() {
                return Err(Refusal::new(
                    "has no command",
                    "a role of --roles-file, =, and a command (split on whitespace, no shell)",
                ));
            }
            Ok((name, argv))
        }) {
            runs.push(run);
        }
    }
    if !args.run.is_empty() && !args.command.is_empty() {
        flags.refuse(FlagError::refused(
            f::RUN.name,
            None,
            &args.run.join(" "),
            Refusal::new(
                "is given together with a command after --",
                "--run NAME=COMMAND for every command, or --as NAME -- COMMAND for one",
            ),
        ));
    }
    if roles.is_some() && args.as_role.is_none() && args.run.is_empty() && !args.command.is_empty()
    {
        flags.refuse(FlagError::missing(
            &f::AS,
            "the role the command gets, with --roles-file and a command (or --run NAME=COMMAND)",
        ));
    }
    // Every managed policy a session policy names, the top-level one's or a
    // role's, must be one the emulator holds.
    let mut managed_policies = std::collections::HashMap::new();
    for v in &args.managed_policy {
        if let Some((arn, policy)) = flags.parse(
            &f::MANAGED_POLICY,
            Some(v),
            crate::tools::emulator::session_policy::managed_policy,
        ) {
            managed_policies.insert(arn, policy);
        }
    }
    // The emulator refuses an ARN it holds no document for; say so now.
    let held = |arn: &str| {
        managed_policies.contains_key(arn)
            || args
                .managed_policy
                .iter()
                .any(|m| m.starts_with(&format!("{arn}=")))
    };
    for arn in &chain.session_policy.arns {
        if !held(arn) {
            flags.refuse(FlagError::refused(
                f::SESSION_POLICY_ARN.name,
                None,
                arn,
                Refusal::new(
                    "names a managed policy the emulator does not hold",
                    format!("--managed-policy {arn}=FILE too (its document)"),
                ),
            ));
        }
    }
    if let (Some(r), Some(path)) = (&roles, &args.roles_file) {
        for role in &r.roles {
            for arn in role.session_policy.arns.iter().filter(|a| !held(a)) {
                flags.refuse(FlagError::refused(
                    f::ROLES_FILE.name,
                    None,
                    path,
                    Refusal::new(
                        format!(
                            "has roles.{}.session_policy_arns {arn:?}, a managed policy the emulator does not hold",
                            role.name
                        ),
                        format!("--managed-policy {arn}=FILE too (its document)"),
                    ),
                ));
            }
        }
    }
    let log_format = flags.parse(&f::LOG_FORMAT, Some(&args.log_format), flags::text_or_json);
    let report = flags.parse(&f::REPORT, Some(&args.report), report_format);
    let report_file = flags.parse(&f::REPORT_FILE, args.report_file.as_deref(), |v| {
        if v.trim().is_empty() {
            Err(Refusal::new("is empty", "a file path"))
        } else {
            Ok(std::path::PathBuf::from(v))
        }
    });
    let run_for = match (&args.run_for, &scenario) {
        (None, Some(sc)) => Some(sc.run_for),
        (given, _) => flags.parse(&f::FOR, given.as_deref(), flags::duration_in(f::FOR_RANGE)),
    };
    let sts_fail_percent = match (&args.sts_fail, &scenario) {
        (None, Some(sc)) => sc.sts_fail_percent,
        (given, _) => flags.parse_or(&f::STS_FAIL, given.as_deref(), 0, flags::percent),
    };
    let early_expiry_percent = flags.parse_or(
        &f::EARLY_EXPIRY,
        args.early_expiry.as_deref(),
        0,
        flags::percent,
    );
    let mut windows = |flag: &flags::Flag, given: &[String]| -> Vec<Window> {
        given
            .iter()
            .filter_map(|v| flags.parse(flag, Some(v), flags::window(f::WINDOW_RANGE)))
            .map(|(length, start)| Window { start, length })
            .collect()
    };
    let sts_outages = match &scenario {
        Some(sc) if args.sts_outage.is_empty() => sc.sts_outages.clone(),
        _ => windows(&f::STS_OUTAGE, &args.sts_outage),
    };
    let expired_tokens = match &scenario {
        Some(sc) if args.expired_token.is_empty() => sc.expired_tokens.clone(),
        _ => windows(&f::EXPIRED_TOKEN, &args.expired_token),
    };
    let source = flags.parse(&f::SOURCE, Some(&args.source), |v| match v.parse() {
        Ok(SourceChoice::Given(kind)) => Ok(kind),
        _ => Err(Refusal::new(
            "is not a credential source",
            "web-identity or pod-identity",
        )),
    });
    flags.finish(|| {
        Some(DevSettings {
            listen: listen?,
            link_local: args.link_local,
            credential_ttl: credential_ttl?,
            token_ttl: token_ttl?,
            role_arn: role_arn?,
            log_format: log_format?,
            run_for,
            report: report?,
            report_file,
            scenario: scenario_name,
            sts_fail_percent,
            sts_outages,
            expired_tokens,
            early_expiry_percent,
            chain,
            source: source?,
            managed_policies,
            roles,
            as_role,
            runs,
            log_level: log_level(args),
        })
    })
}

/// The windows as the flags write them, `LENGTH@START`.
pub(super) fn show_windows(windows: &[Window]) -> Vec<String> {
    windows
        .iter()
        .map(|w| format!("{}@{}", format_duration(w.length), format_duration(w.start)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DevArgs {
        DevArgs {
            listen: "127.0.0.1:0".into(),
            credential_ttl: None,
            token_ttl: None,
            role_arn: "arn:aws:iam::111122223333:role/irsa-proxy-dev".into(),
            log_format: "text".into(),
            verbose: false,
            link_local: false,
            sts_tls: false,
            source: "web-identity".into(),
            run_for: None,
            report: "text".into(),
            report_file: None,
            sts_fail: None,
            sts_outage: vec![],
            expired_token: vec![],
            early_expiry: None,
            scenario: None,
            chain: Default::default(),
            session_name: None,
            session_policy_file: None,
            session_policy_arn: vec![],
            managed_policy: vec![],
            roles_file: None,
            as_role: None,
            run: vec![],
            command: vec![],
        }
    }

    #[test]
    fn defaults_should_validate() {
        assert!(validate(&args()).is_ok());
    }

    /// Beside a command dev logs warnings only, unless --verbose; without
    /// one it is a server whose log is all it shows.
    #[test]
    fn the_log_should_be_quiet_beside_a_command_unless_verbose() {
        let mut a = args();
        assert_eq!(validate(&a).map(|s| s.log_level).ok(), Some("info"));
        a.command = vec!["app".into()];
        assert_eq!(validate(&a).map(|s| s.log_level).ok(), Some("warn"));
        a.verbose = true;
        assert_eq!(validate(&a).map(|s| s.log_level).ok(), Some("info"));
        // --run commands are commands too.
        let mut a = args();
        a.run = vec!["x=true".into()];
        assert_eq!(log_level(&a), "warn");
    }

    #[test]
    fn the_report_should_be_text_json_or_junit() {
        let mut a = args();
        for (given, format) in [
            ("text", ReportFormat::Text),
            ("JSON", ReportFormat::Json),
            (" junit ", ReportFormat::Junit),
        ] {
            a.report = given.into();
            assert_eq!(validate(&a).map(|s| s.report).ok(), Some(format));
        }
    }

    proptest::proptest! {
        /// Issue 10's class of defect, for dev: whatever legal values are given
        /// (through clap, so its defaults fill the rest), nothing is refused;
        /// one value out of range is refused naming only that value.
        #[test]
        fn legal_ttls_should_be_accepted_whatever_the_defaults(
            credential in proptest::option::of(10u64..=43_200),
            token in proptest::option::of(20u64..=86_400),
            out_of_range in proptest::option::of(43_201u64..=10_000_000),
            faults in proptest::option::of((
                0u8..=100,
                1u64..=86_400,
                0u64..=1_000_000,
                0u8..=100,
                1u64..=604_800,
                proptest::bool::ANY,
            )),
        ) {
            use clap::Parser;
            let mut argv = vec!["irsa-proxy".to_string(), "dev".to_string()];
            if let Some(c) = credential {
                argv.extend(["--credential-ttl".into(), format!("{c}s")]);
            }
            if let Some(t) = token {
                argv.extend(["--token-ttl".into(), format!("{t}s")]);
            }
            // The fault flags and the scenario, from their legal ranges too.
            if let Some((fail, length, start, early, run_for, scenario)) = faults {
                argv.extend([
                    "--sts-fail".into(), format!("{fail}%"),
                    "--sts-outage".into(), format!("{length}s@{start}s"),
                    "--expired-token".into(), format!("{length}s@{start}s"),
                    "--early-expiry".into(), early.to_string(),
                    "--for".into(), format!("{run_for}s"),
                ]);
                if scenario {
                    argv.extend(["--scenario".into(), "hour-in-production".into()]);
                }
            }
            let parse = |argv: &[String]| match crate::cli::Cli::try_parse_from(argv) {
                Ok(crate::cli::Cli { command: crate::cli::Command::Dev(a) }) => a,
                other => panic!("clap: {other:?}"),
            };
            proptest::prop_assert!(validate(&parse(&argv)).is_ok(), "{argv:?}");
            if let Some(bad) = out_of_range {
                let mut argv = vec!["irsa-proxy".to_string(), "dev".to_string()];
                if let Some(t) = token {
                    argv.extend(["--token-ttl".into(), format!("{t}s")]);
                }
                argv.extend(["--credential-ttl".into(), format!("{bad}s")]);
                let errors = validate(&parse(&argv)).err().unwrap_or_default();
                proptest::prop_assert_eq!(errors.len(), 1, "{:?}", errors);
                let line = errors[0].to_string();
                proptest::prop_assert!(line.starts_with("--credential-ttl: "), "{}", line);
                proptest::prop_assert!(line.contains(&format!("{bad}s")), "{}", line);
            }
        }
    }

    #[test]
    fn a_chain_should_run_on_either_source() {
        let mut a = args();
        a.chain.chain_role_arn = vec!["arn:aws:iam::444455556666:role/target".into()];
        for source in ["web-identity", "pod-identity"] {
            a.source = source.into();
            let s = validate(&a).unwrap_or_else(|e| panic!("{source}: {e:?}"));
            assert!(s.chain.is_chained(), "{source}");
        }
    }

    #[test]
    fn short_ttls_and_bad_values_should_be_named() {
        let mut a = args();
        a.credential_ttl = Some("5s".into());
        a.token_ttl = Some("5s".into());
        a.listen = "0.0.0.0:9911".into();
        a.role_arn = "nope".into();
        let errs = crate::flags::lines(&validate(&a).err().unwrap());
        for needle in ["--credential-ttl", "--token-ttl", "--listen", "--role-arn"] {
            assert!(errs.contains(needle), "{needle} missing: {errs}");
        }
    }

    #[test]
    fn fault_flags_should_parse_and_bad_values_be_named_one_line_each() {
        let mut a = args();
        a.sts_fail = Some("20%".into());
        a.sts_outage = vec!["30s@2m".into(), "5s@10s".into()];
        a.expired_token = vec!["20s@90s".into()];
        a.early_expiry = Some("25".into());
        a.run_for = Some("5m".into());
        a.report = "json".into();
        let s = validate(&a).unwrap();
        assert_eq!(s.sts_fail_percent, 20);
        assert_eq!(s.early_expiry_percent, 25);
        assert_eq!(
            s.sts_outages[0],
            Window {
                start: Duration::from_secs(120),
                length: Duration::from_secs(30)
            }
        );
        assert_eq!(s.expired_tokens.len(), 1);
        assert_eq!(s.run_for, Some(Duration::from_secs(300)));

        let mut a = args();
        a.sts_fail = Some("120%".into());
        a.sts_outage = vec!["30s".into()];
        a.expired_token = vec!["0s@1m".into()];
        a.early_expiry = Some("lots".into());
        a.run_for = Some("forever".into());
        a.report = "yaml".into();
        a.scenario = Some("monday".into());
        let errors = validate(&a).err().unwrap();
        let lines = crate::flags::lines(&errors);
        assert_eq!(errors.len(), 7, "{lines}");
        for needle in [
            "--sts-fail: \"120%\" is not a percentage; expected a whole percentage from 0% to 100%",
            "--sts-outage: \"30s\" is not a window; expected LENGTH@START",
            "--expired-token: \"0s@1m\" has a LENGTH out of range",
            "--early-expiry: \"lots\"",
            "--for: \"forever\" is not a duration",
            "--report: \"yaml\" is not a format; expected text, json or junit",
            "--scenario: \"monday\" is not a scenario; expected hour-in-production",
        ] {
            assert!(lines.contains(needle), "{needle} missing: {lines}");
        }
    }

    #[test]
    fn the_scenario_should_fill_only_what_was_not_given_and_stay_survivable() {
        let mut a = args();
        a.scenario = Some("hour-in-production".into());
        let s = validate(&a).unwrap();
        assert_eq!(s.credential_ttl, Duration::from_secs(60));
        assert_eq!(s.token_ttl, Duration::from_secs(90));
        assert_eq!(s.sts_fail_percent, 10);
        assert_eq!(s.run_for, Some(Duration::from_secs(180)));
        assert_eq!(s.sts_outages.len(), 1);
        assert_eq!(s.expired_tokens.len(), 1);

        a.credential_ttl = Some("10s".into());
        a.sts_fail = Some("0%".into());
        a.run_for = Some("1m".into());
        let s = validate(&a).unwrap();
        assert_eq!(s.sts_fail_percent, 0);
        assert_eq!(s.run_for, Some(Duration::from_secs(60)));
        // A token lifetime below --token-ttl's minimum is raised to it.
        assert_eq!(s.token_ttl, Duration::from_secs(20));
        // Every fault window is shorter than the slack of the proxy's cache:
        // it refreshes with T/2 left and serves until T/4 is left.
        for ttl in [10u64, 30, 60, 3600] {
            let sc = hour_in_production(Duration::from_secs(ttl));
            for w in sc.sts_outages.iter().chain(&sc.expired_tokens) {
                assert!(
                    w.length
                        <= Duration::from_secs(ttl)
                            .mul_f64(0.1)
                            .max(Duration::from_secs(1))
                );
            }
            assert!(f::TOKEN_TTL_RANGE.contains(&sc.token_ttl));
        }
    }
}
