//! Logging with `tracing`: human text or one JSON object per line, level from
//! `RUST_LOG` (default `info`). Logs go to stderr so that stdout stays free for
//! what a subcommand prints for scripts (`dev`'s export lines, `inject`'s YAML).

use tracing_subscriber::EnvFilter;

/// How log lines (and doctor's report) are written; parsed by
/// [`crate::flags::text_or_json`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Crates whose debug and trace output may contain request or response bodies.
const QUIET_TARGETS: &[&str] = &[
    "aws_config",
    "aws_runtime",
    "aws_sdk_sts",
    "aws_sigv4",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_smithy_xml",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
];

/// Installs the global subscriber. Safe to call more than once (later calls are
/// ignored), which keeps in-process tests simple.
pub fn init(format: LogFormat) {
    init_at(format, "info");
}

/// [`init`] with another level than `info` when RUST_LOG is not set (`dev`
/// with a command logs warnings only unless `--verbose`).
pub fn init_at(format: LogFormat, default_level: &str) {
    let (mut filter, cap) = match EnvFilter::try_from_default_env() {
        Ok(filter) => (filter, "info"),
        // Quieter than info: the capped targets are as quiet.
        Err(_) if matches!(default_level, "warn" | "error" | "off") => {
            (EnvFilter::new(default_level), default_level)
        }
        Err(_) => (EnvFilter::new(default_level), "info"),
    };
    // The SDK, its HTTP stack and TLS log requests and bodies at debug and trace
    // level, and an STS request carries the web-identity token and its response
    // the secret key: cap them at info whatever RUST_LOG asks.
    for target in QUIET_TARGETS {
        if let Ok(d) = format!("{target}={cap}").parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
