//! Issue 10: `--duration 15m` was refused by the default of `--refresh-before`.
//! The class of that bug, checked for every flag: a default never refuses a legal
//! value of another flag, and a refusal names only values the user gave.
//!
//! Each case draws every flag of `serve` (and of `inject` and `webhook`) from its legal range,
//! leaves some at their defaults, and gives the rest either as a flag or as its
//! environment twin. Legal draws must be accepted; a draw with one value pushed
//! out of range must be refused naming that value, and nothing else.

use std::collections::HashMap;
use std::time::Duration;

use clap::Parser;
use irsa_proxy::cli::WebhookArgs;
use irsa_proxy::cli::{Cli, Command, ServeArgs};
use irsa_proxy::flags::{inject as inj, serve as f, webhook as wh, FlagError, Given};
use irsa_proxy::sidecar::config::Config;
use irsa_proxy::tools::inject::Options;
use irsa_proxy::tools::webhook::Settings;
use proptest::prelude::*;

/// A value for one flag: left at its default, given as the flag, or given as
/// its environment variable.
#[derive(Debug, Clone)]
enum Source {
    Default,
    Flag(String),
    Env(String),
}

fn seconds(range: std::ops::RangeInclusive<Duration>) -> impl Strategy<Value = String> {
    (range.start().as_secs()..=range.end().as_secs()).prop_map(|s| format!("{s}s"))
}

fn source(values: impl Strategy<Value = String>) -> impl Strategy<Value = Source> {
    (0..3u8, values).prop_map(|(how, v)| match how {
        0 => Source::Default,
        1 => Source::Flag(v),
        _ => Source::Env(v),
    })
}

/// Every `serve` flag with an environment twin, drawn from its legal range.
#[derive(Debug, Clone)]
struct Draw {
    duration: Source,
    refresh_before: Source,
    shutdown_delay: Source,
    header_timeout: Source,
    max_connections: Source,
    listen: Source,
    imds_v1: Source,
    log_format: Source,
    region: Source,
    session_name: Source,
    imds: Source,
    require_token: bool,
}

fn draw() -> impl Strategy<Value = Draw> {
    (
        (
            source(seconds(f::DURATION_RANGE)),
            source(seconds(f::REFRESH_BEFORE_RANGE)),
            source(seconds(f::SHUTDOWN_DELAY_RANGE)),
            source(seconds(f::HEADER_TIMEOUT_RANGE)),
            source(
                (*f::MAX_CONNECTIONS_RANGE.start()..=*f::MAX_CONNECTIONS_RANGE.end())
                    .prop_map(|n| n.to_string()),
            ),
            source(prop_oneof![
                (1u16..).prop_map(|p| format!("127.0.0.1:{p}")),
                (1u16..).prop_map(|p| format!("[::1]:{p}")),
                (1u16..).prop_map(|p| format!("localhost:{p}")),
            ]),
        ),
        (
            source(
                prop_oneof![Just("never"), Just("link-local"), Just("always")]
                    .prop_map(String::from),
            ),
            source(prop_oneof![Just("text"), Just("json")].prop_map(String::from)),
            source("[a-z]{2}-[a-z]{4,9}-[1-9]"),
            // Printable text; braces are the placeholders of a template.
            source("[ -z|~]{0,80}"),
            source(prop_oneof![Just("true"), Just("false")].prop_map(String::from)),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (duration, refresh_before, shutdown_delay, header_timeout, max_connections, listen),
                (imds_v1, log_format, region, session_name, imds, require_token),
            )| {
                // --imds-require-token is the same as --imds-v1=never: with it,
                // only `never` is a legal --imds-v1.
                let imds_v1 = match imds_v1 {
                    Source::Flag(_) if require_token => Source::Flag("never".into()),
                    Source::Env(_) if require_token => Source::Env("never".into()),
                    other => other,
                };
                Draw {
                    duration,
                    refresh_before,
                    shutdown_delay,
                    header_timeout,
                    max_connections,
                    listen,
                    imds_v1,
                    log_format,
                    region,
                    session_name,
                    imds,
                    require_token,
                }
            },
        )
}

/// The arguments and environment of a draw, with the role and token given.
fn serve_args(d: &Draw, token: &str) -> (ServeArgs, HashMap<String, String>) {
    let mut args = ServeArgs {
        role_arn: Some("arn:aws:iam::123456789012:role/app".into()),
        token_file: Some(token.into()),
        imds_require_token: d.require_token,
        ..Default::default()
    };
    let mut env = HashMap::new();
    let mut put = |s: &Source, var: &str, slot: &mut Option<String>| match s {
        Source::Default => {}
        Source::Flag(v) => *slot = Some(v.clone()),
        Source::Env(v) => {
            env.insert(var.to_string(), v.clone());
        }
    };
    put(&d.duration, f::DURATION.env[0], &mut args.duration);
    put(
        &d.refresh_before,
        f::REFRESH_BEFORE.env[0],
        &mut args.refresh_before,
    );
    put(
        &d.shutdown_delay,
        f::SHUTDOWN_DELAY.env[0],
        &mut args.shutdown_delay,
    );
    put(
        &d.header_timeout,
        f::HEADER_TIMEOUT.env[0],
        &mut args.header_timeout,
    );
    put(
        &d.max_connections,
        f::MAX_CONNECTIONS.env[0],
        &mut args.max_connections,
    );
    put(&d.imds_v1, f::IMDS_V1.env[0], &mut args.imds_v1);
    put(&d.log_format, f::LOG_FORMAT.env[0], &mut args.log_format);
    put(&d.region, f::REGION.env[0], &mut args.region);
    put(
        &d.session_name,
        f::SESSION_NAME.env[0],
        &mut args.session_name,
    );
    let mut listen = None;
    put(&d.listen, f::LISTEN.env[0], &mut listen);
    args.listen = listen.into_iter().collect();
    // IRSA_PROXY_IMDS has no value flag (--imds/--no-imds are switches).
    let mut imds = None;
    put(&d.imds, f::IMDS.env[0], &mut imds);
    match imds.as_deref() {
        Some("true") => args.imds = true,
        Some(_) => args.no_imds = true,
        None => {}
    }
    (args, env)
}

/// The value the user gave for `flag` in this draw, as flag or variable.
fn given(args: &ServeArgs, env: &HashMap<String, String>, e: &FlagError) -> Option<String> {
    if let Some(var) = e.source {
        return env.get(var).cloned();
    }
    let flag = match e.flag {
        "--duration" => &args.duration,
        "--refresh-before" => &args.refresh_before,
        "--shutdown-delay" => &args.shutdown_delay,
        "--header-timeout" => &args.header_timeout,
        "--max-connections" => &args.max_connections,
        "--imds-v1" => &args.imds_v1,
        "--log-format" => &args.log_format,
        "--region" => &args.region,
        "--listen" => return args.listen.first().cloned(),
        _ => return None,
    };
    flag.clone()
}

fn token_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token").display().to_string();
    (dir, token)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn legal_serve_flags_should_be_accepted_whatever_the_defaults(d in draw()) {
        let (_dir, token) = token_dir();
        let (args, env) = serve_args(&d, &token);
        let result = Config::from_args(&args, &env);
        prop_assert!(
            result.is_ok(),
            "{args:?} {env:?} refused: {}",
            irsa_proxy::flags::lines(&result.err().unwrap_or_default())
        );
    }

    #[test]
    fn an_out_of_range_serve_flag_should_be_refused_naming_only_that_value(
        d in draw(),
        which in 0..5usize,
        as_env in any::<bool>(),
    ) {
        let (_dir, token) = token_dir();
        // One value just outside its range; every other flag legal or default.
        let (flag, bad) = match which {
            0 => (f::DURATION, "899s"),
            1 => (f::REFRESH_BEFORE, "0s"),
            2 => (f::SHUTDOWN_DELAY, "601s"),
            3 => (f::HEADER_TIMEOUT, "3601s"),
            _ => (f::MAX_CONNECTIONS, "7"),
        };
        let (mut args, mut env) = serve_args(&d, &token);
        env.remove(flag.env[0]);
        let slot = match which {
            0 => &mut args.duration,
            1 => &mut args.refresh_before,
            2 => &mut args.shutdown_delay,
            3 => &mut args.header_timeout,
            _ => &mut args.max_connections,
        };
        if as_env {
            *slot = None;
            env.insert(flag.env[0].to_string(), bad.to_string());
        } else {
            *slot = Some(bad.to_string());
        }
        let errors = Config::from_args(&args, &env).err().unwrap_or_default();
        prop_assert_eq!(errors.len(), 1, "{}", irsa_proxy::flags::lines(&errors));
        let e = &errors[0];
        prop_assert_eq!(e.flag, flag.name);
        prop_assert_eq!(&e.value, &Given::Value(bad.to_string()));
        let user_gave = given(&args, &env, e);
        prop_assert_eq!(user_gave.as_deref(), Some(bad));
    }

    #[test]
    fn legal_inject_flags_should_be_accepted_whatever_the_defaults(
        port in proptest::option::of(*inj::PORT_RANGE.start()..=*inj::PORT_RANGE.end()),
        expiration in proptest::option::of(
            *inj::TOKEN_EXPIRATION_RANGE.start()..=*inj::TOKEN_EXPIRATION_RANGE.end()
        ),
        link_local in any::<bool>(),
        classic in any::<bool>(),
        auth_secret in proptest::option::of("[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?"),
    ) {
        // Through clap, so that its defaults are the ones drawn against.
        // --image has no default (none is published): always given.
        let mut argv: Vec<String> = ["irsa-proxy", "inject", "--image", "registry.example/irsa-proxy:1"]
            .map(String::from)
            .to_vec();
        if let Some(p) = port {
            argv.extend(["--port".into(), p.to_string()]);
        }
        if let Some(e) = expiration {
            argv.extend(["--token-expiration".into(), e.to_string()]);
        }
        if let Some(name) = auth_secret {
            argv.extend(["--auth-secret".into(), name]);
        }
        if link_local {
            argv.push("--link-local".into());
        }
        if classic {
            argv.push("--classic-sidecar".into());
        }
        let Ok(Cli { command: Command::Inject(args) }) = Cli::try_parse_from(&argv) else {
            return Err(TestCaseError::fail(format!("clap refused {argv:?}")));
        };
        let result = Options::from_args(&args);
        prop_assert!(
            result.is_ok(),
            "{args:?} refused: {}",
            irsa_proxy::flags::lines(&result.err().unwrap_or_default())
        );
    }

    #[test]
    fn legal_webhook_flags_should_be_accepted_whatever_the_defaults(
        d in webhook_draw(),
    ) {
        let argv = webhook_argv(&d);
        let args = parse_webhook(&argv)?;
        let result = Settings::from_args(args.serve);
        prop_assert!(
            result.is_ok(),
            "{argv:?} refused: {}",
            irsa_proxy::flags::lines(&result.err().unwrap_or_default())
        );
    }

    #[test]
    fn an_out_of_range_webhook_flag_should_be_refused_naming_only_that_value(
        d in webhook_draw(),
        which in 0..4usize,
    ) {
        let (flag, bad) = match which {
            0 => (wh::HEADER_TIMEOUT.name, "601s"),
            1 => (wh::MAX_CONNECTIONS.name, "65537"),
            2 => (inj::TOKEN_EXPIRATION.name, "599"),
            _ => (wh::LOG_FORMAT.name, "yaml"),
        };
        let mut argv = webhook_argv(&d);
        if let Some(at) = argv.iter().position(|a| a == flag) {
            argv.drain(at..at + 2);
        }
        argv.extend([flag.to_string(), bad.to_string()]);
        let args = parse_webhook(&argv)?;
        let errors = Settings::from_args(args.serve).err().unwrap_or_default();
        prop_assert_eq!(errors.len(), 1, "{}", irsa_proxy::flags::lines(&errors));
        prop_assert_eq!(errors[0].flag, flag);
        prop_assert_eq!(&errors[0].value, &Given::Value(bad.to_string()));
    }
}

/// The webhook's flags given in one case, each drawn from its legal range
/// (the others left at their defaults); the sidecar's are `inject`'s.
#[derive(Debug, Clone)]
struct WebhookDraw {
    given: Vec<(&'static str, String)>,
    classic: bool,
}

fn webhook_draw() -> impl Strategy<Value = WebhookDraw> {
    let flag = |name: &'static str, values: BoxedStrategy<String>| {
        proptest::option::of(values).prop_map(move |v| v.map(|v| (name, v)))
    };
    (
        vec![
            flag(
                wh::LISTEN.name,
                prop_oneof![
                    (1u16..).prop_map(|p| format!("0.0.0.0:{p}")),
                    (1u16..).prop_map(|p| format!("127.0.0.1:{p}")),
                    (1u16..).prop_map(|p| format!("[::]:{p}")),
                ]
                .boxed(),
            ),
            flag(
                wh::HEADER_TIMEOUT.name,
                seconds(wh::HEADER_TIMEOUT_RANGE).boxed(),
            ),
            flag(
                wh::MAX_CONNECTIONS.name,
                (*wh::MAX_CONNECTIONS_RANGE.start()..=*wh::MAX_CONNECTIONS_RANGE.end())
                    .prop_map(|n| n.to_string())
                    .boxed(),
            ),
            flag(
                wh::LOG_FORMAT.name,
                prop_oneof![Just("text"), Just("json")]
                    .prop_map(String::from)
                    .boxed(),
            ),
            flag(
                inj::PORT.name,
                (*inj::PORT_RANGE.start()..=*inj::PORT_RANGE.end())
                    .prop_map(|p| p.to_string())
                    .boxed(),
            ),
            flag(
                inj::TOKEN_EXPIRATION.name,
                (*inj::TOKEN_EXPIRATION_RANGE.start()..=*inj::TOKEN_EXPIRATION_RANGE.end())
                    .prop_map(|e| e.to_string())
                    .boxed(),
            ),
            flag(inj::TOKEN_AUDIENCE.name, "[a-z][a-z0-9.:/-]{0,30}".boxed()),
        ],
        any::<bool>(),
    )
        .prop_map(|(given, classic)| WebhookDraw {
            given: given.into_iter().flatten().collect(),
            classic,
        })
}

/// The command line of a draw; the certificate files and --image, which
/// have no default, always given.
fn webhook_argv(d: &WebhookDraw) -> Vec<String> {
    let mut argv: Vec<String> = [
        "irsa-proxy",
        "webhook",
        "--tls-cert-file",
        "/etc/webhook/tls.crt",
        "--tls-key-file",
        "/etc/webhook/tls.key",
        "--image",
        "registry.example/irsa-proxy:1",
    ]
    .map(String::from)
    .to_vec();
    for (flag, value) in &d.given {
        argv.extend([flag.to_string(), value.clone()]);
    }
    if d.classic {
        argv.push("--classic-sidecar".into());
    }
    argv
}

fn parse_webhook(argv: &[String]) -> Result<WebhookArgs, TestCaseError> {
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Webhook(args),
        }) => Ok(args),
        _ => Err(TestCaseError::fail(format!("clap refused {argv:?}"))),
    }
}
