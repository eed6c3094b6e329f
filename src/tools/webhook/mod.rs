//! `irsa-proxy webhook`: a mutating admission webhook that gives opted-in pods
//! the sidecar when they are created, with the `inject` engine.
//!
//! - [`admission`]: one `AdmissionReview` in, one out; opt-in, annotations,
//!   the patch. No I/O, so the decision is unit-tested and fuzzed.
//! - [`server`]: the routes, limits and metrics, served over HTTPS (rustls
//!   only, no plaintext mode) by the shared skeleton [`crate::sidecar::http_server`]
//!   with the TLS handshake of [`crate::tools::tls`], which reloads the serving
//!   certificate when its files change.
//! - [`certs`]: `webhook certs`, a CA and serving certificate for clusters
//!   without cert-manager, or for trying the webhook on one's own machine.
//!
//! No Kubernetes API access: the role comes from the pod annotation, from
//! `inject`'s copy of the app containers' `AWS_ROLE_ARN` (the EKS webhook ran
//! first), or from the EKS webhook mutating our sidecar (it runs after us);
//! docs/webhook.md, "The role: no Kubernetes API access", says why.

pub mod admission;
pub mod certs;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{InjectArgs, ServeWebhookArgs, WebhookArgs, WebhookCommand};
use crate::flags::{self, webhook as f, FlagError, Flags, NoEnvironment, Refusal};
use crate::logging::LogFormat;
use crate::tools::inject::Options;
use crate::tools::tls::Tls;
use crate::Fatal;

/// The subcommand.
pub async fn run(args: WebhookArgs) -> Result<ExitCode, Fatal> {
    match args.command {
        Some(WebhookCommand::Certs(c)) => certs::run(&c),
        None => serve(args.serve).await,
    }
}

/// The webhook server's flags, checked.
#[derive(Debug)]
pub struct Settings {
    pub log_format: LogFormat,
    pub listen: SocketAddr,
    pub header_timeout: Duration,
    pub max_connections: usize,
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    /// The sidecar every pod gets, in `inject`'s terms: the defaults the pod
    /// annotations override.
    pub defaults: InjectArgs,
}

impl Settings {
    /// Checks every flag, and reports every bad one, each on its own line.
    pub fn from_args(args: ServeWebhookArgs) -> Result<Settings, Vec<FlagError>> {
        const HTTPS_ONLY: &str = "a PEM file: the webhook serves HTTPS only";
        let mut flags = Flags::new(&NoEnvironment);
        let log_format = flags.parse(&f::LOG_FORMAT, Some(&args.log_format), flags::text_or_json);
        let listen = flags.parse(&f::LISTEN, Some(&args.listen), flags::listen_address);
        let header_timeout = flags.parse(
            &f::HEADER_TIMEOUT,
            Some(&args.header_timeout),
            flags::duration_in(f::HEADER_TIMEOUT_RANGE),
        );
        let max_connections = flags.parse(
            &f::MAX_CONNECTIONS,
            Some(&args.max_connections.to_string()),
            flags::number_in(f::MAX_CONNECTIONS_RANGE),
        );
        let path = |p: &str| -> Result<PathBuf, Refusal> {
            if p.trim().is_empty() {
                Err(Refusal::new("is empty", HTTPS_ONLY))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        let tls_cert_file = flags.required(
            &f::TLS_CERT_FILE,
            args.tls_cert_file.as_ref().and_then(|p| p.to_str()),
            HTTPS_ONLY,
            path,
        );
        let tls_key_file = flags.required(
            &f::TLS_KEY_FILE,
            args.tls_key_file.as_ref().and_then(|p| p.to_str()),
            HTTPS_ONLY,
            path,
        );
        // The sidecar flags are `inject`'s, checked by `inject`'s own
        // validation (which also requires --image: no image is published).
        let defaults = match InjectArgs::with_sidecar(args.sidecar) {
            Ok(defaults) => {
                if let Err(errors) = Options::from_args(&defaults) {
                    for e in errors {
                        flags.refuse(e);
                    }
                }
                Some(defaults)
            }
            Err(e) => {
                // clap refusing an empty `inject` command line is a bug of ours.
                flags.refuse(FlagError::refused(
                    "inject",
                    None,
                    "",
                    Refusal::new(format!("has no defaults ({e})"), "the defaults of inject"),
                ));
                None
            }
        };
        flags.finish(|| {
            Some(Settings {
                log_format: log_format?,
                listen: listen?,
                header_timeout: header_timeout?,
                max_connections: max_connections?,
                tls_cert_file: tls_cert_file?,
                tls_key_file: tls_key_file?,
                defaults: defaults?,
            })
        })
    }
}

async fn serve(args: ServeWebhookArgs) -> Result<ExitCode, Fatal> {
    let Settings {
        log_format,
        listen,
        header_timeout,
        max_connections,
        tls_cert_file: cert,
        tls_key_file: key,
        defaults,
    } = Settings::from_args(args).map_err(Fatal::Flags)?;
    let metrics = server::WebhookMetrics::new();
    let (reloads, reload_failures) = (
        metrics.cert_reloads.clone(),
        metrics.cert_reload_failures.clone(),
    );
    let config = crate::tools::tls::reloading_config(cert, key, move |outcome| match outcome {
        Ok(()) => {
            reloads.inc();
            tracing::info!("serving certificate reloaded");
        }
        Err(e) => {
            reload_failures.inc();
            tracing::warn!(error = %e, "changed certificate files did not load; keeping the previous pair");
        }
    })
    .map_err(|e| Fatal::usage(e.to_string()))?;
    crate::logging::init(log_format);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Fatal::Runtime(format!("--listen {listen}: cannot bind: {e}")))?;
    let state = Arc::new(server::State {
        defaults,
        metrics,
        shutting_down: Default::default(),
        body_timeout: header_timeout,
    });
    let limits = crate::sidecar::http_server::Limits {
        header_read_timeout: header_timeout,
        max_head_bytes: f::MAX_HEAD_BYTES,
        max_connections,
        drain_timeout: f::DRAIN_TIMEOUT,
    };
    // Installed before the first log line that says we serve.
    let signal = crate::sidecar::http_server::shutdown_signal();
    tracing::info!(listen = %listener.local_addr().unwrap_or(listen), "webhook serving HTTPS");

    let shutdown_state = state.clone();
    let shutdown = async move {
        signal.await;
        shutdown_state.shutting_down.store(true, Ordering::Relaxed);
        // Keep answering while readiness (503 now) takes the pod out of the
        // Service's endpoints, so that the API server's next call goes to
        // the other replica instead of a closed port.
        tracing::info!(
            delay_s = f::SHUTDOWN_DELAY.as_secs_f64(),
            drain_timeout_s = f::DRAIN_TIMEOUT.as_secs_f64(),
            "stopping: readiness is 503; serving a little longer, then draining the reviews in flight"
        );
        tokio::time::sleep(f::SHUTDOWN_DELAY).await;
    };
    server::serve(listener, Tls::new(config), limits, state, shutdown).await;
    tracing::info!("webhook stopped");
    Ok(ExitCode::SUCCESS)
}
