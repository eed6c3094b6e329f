//! `irsa-proxy webhook`: a mutating admission webhook that gives opted-in pods
//! the sidecar when they are created, with the `inject` engine.
//!
//! - [`admission`]: one `AdmissionReview` in, one out; opt-in, annotations,
//!   the patch. No I/O, so the decision is unit-tested.
//! - [`server`]: HTTPS (rustls only, no plaintext mode), routes, limits, metrics.
//! - [`tls`]: the serving certificate, reloaded when its files change.
//! - [`certs`]: `webhook certs`, a CA and serving certificate for clusters
//!   without cert-manager.
//!
//! No Kubernetes API access: the role comes from the pod annotation, from
//! `inject`'s copy of the app containers' `AWS_ROLE_ARN` (the EKS webhook ran
//! first), or from the EKS webhook mutating our sidecar (it runs after us);
//! README "Cluster-wide: the webhook" says why.

pub mod admission;
pub mod certs;
pub mod server;
pub mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio_rustls::TlsAcceptor;

use crate::cli::InjectArgs;
use crate::inject::Options;
use crate::logging::LogFormat;
use crate::Fatal;

/// How long the webhook keeps serving after SIGTERM, readiness failing: a few
/// readiness periods (5 s in the Deployment) for the endpoint to be removed.
const SHUTDOWN_DELAY: Duration = Duration::from_secs(5);

/// Flags of `webhook`.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WebhookArgs {
    #[command(subcommand)]
    pub command: Option<WebhookCommand>,

    #[command(flatten)]
    pub serve: ServeWebhookArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhookCommand {
    /// Print a Secret with a new CA-signed serving certificate and the caBundle patch, for clusters without cert-manager
    Certs(certs::CertsArgs),
}

/// Flags of the webhook server.
#[derive(Debug, Clone, Args)]
pub struct ServeWebhookArgs {
    /// Address to serve HTTPS on
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub listen: String,

    /// PEM certificate chain, serving certificate first; reloaded when it changes
    #[arg(long, value_name = "PATH")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of the certificate; reloaded when it changes
    #[arg(long, value_name = "PATH")]
    pub tls_key_file: Option<PathBuf>,

    /// A request head (and the TLS handshake, and the body) must arrive within this long, 1s..10m
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub header_timeout: String,

    /// Open connections at most, 8..65536
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,

    /// Log format: text or json; the level comes from RUST_LOG
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: String,

    /// The sidecar every pod gets, as `inject` would add it; pod annotations override some
    #[command(flatten)]
    pub inject: SidecarDefaults,
}

/// The `inject` flags that make sense cluster-wide; the pod annotations
/// `irsa-proxy.io/*` override them per pod.
#[derive(Debug, Clone, Args)]
pub struct SidecarDefaults {
    /// Sidecar image [annotation: irsa-proxy.io/image]
    #[arg(
        long,
        value_name = "IMAGE",
        default_value = "ghcr.io/irsa-proxy/irsa-proxy:0.1.0"
    )]
    pub image: String,

    /// Port the sidecar serves on (loopback) [annotation: irsa-proxy.io/port]
    #[arg(long, value_name = "N", default_value_t = 9911)]
    pub port: u16,

    /// Audience of the projected token [annotation: irsa-proxy.io/audience]
    #[arg(long, value_name = "AUD", default_value = "sts.amazonaws.com")]
    pub token_audience: String,

    /// Lifetime of the projected token, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 86400)]
    pub token_expiration: i64,

    /// Add the sidecar as an ordinary container instead of a native sidecar (clusters before 1.29)
    #[arg(long)]
    pub classic_sidecar: bool,
}

impl SidecarDefaults {
    /// The same defaults in `inject`'s terms, so that one validation serves both.
    fn inject_args(&self) -> InjectArgs {
        InjectArgs {
            file: "-".into(),
            image: self.image.clone(),
            role_arn: None,
            classic_sidecar: self.classic_sidecar,
            port: self.port,
            container: Vec::new(),
            token_audience: self.token_audience.clone(),
            token_expiration: self.token_expiration,
            strip_web_identity: false,
            auth_secret: None,
            link_local: false,
        }
    }
}

/// The subcommand.
pub async fn run(args: WebhookArgs) -> Result<ExitCode, Fatal> {
    match args.command {
        Some(WebhookCommand::Certs(c)) => certs::run(&c),
        None => serve(args.serve).await,
    }
}

async fn serve(args: ServeWebhookArgs) -> Result<ExitCode, Fatal> {
    let mut errors = Vec::new();
    let format = LogFormat::parse(&args.log_format)
        .map_err(|e| errors.push(format!("--log-format: {e}")))
        .ok();
    let listen = crate::config::parse_listen(&args.listen)
        .map_err(|e| errors.push(format!("--listen: {:?}: {e}", args.listen)))
        .ok();
    let header_timeout = crate::duration::parse_duration(&args.header_timeout)
        .ok()
        .filter(|d| (Duration::from_secs(1)..=Duration::from_secs(600)).contains(d));
    if header_timeout.is_none() {
        errors.push(format!(
            "--header-timeout: {:?}: expected a duration in 1s..10m",
            args.header_timeout
        ));
    }
    if !(8..=65536).contains(&args.max_connections) {
        errors.push(format!(
            "--max-connections: {}: expected 8..=65536",
            args.max_connections
        ));
    }
    let (cert, key) = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(c), Some(k)) => (Some(c.clone()), Some(k.clone())),
        (c, k) => {
            if c.is_none() {
                errors.push("--tls-cert-file: required: the webhook serves HTTPS only".into());
            }
            if k.is_none() {
                errors.push("--tls-key-file: required: the webhook serves HTTPS only".into());
            }
            (None, None)
        }
    };
    let defaults = args.inject.inject_args();
    if let Err(e) = Options::from_args(&defaults) {
        errors.extend(e);
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = match (cert, key) {
        (Some(c), Some(k)) => tls::Reloading::load(c, k, provider.clone())
            .map_err(|e| errors.push(e))
            .ok(),
        _ => None,
    };
    let (Some(format), Some(listen), Some(header_timeout), Some(resolver), true) =
        (format, listen, header_timeout, resolver, errors.is_empty())
    else {
        return Err(Fatal::Usage(errors));
    };
    crate::logging::init(format);
    let resolver = Arc::new(resolver);
    let config = tls::server_config(resolver.clone(), provider).map_err(Fatal::Runtime)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Fatal::Runtime(format!("--listen {listen}: cannot bind: {e}")))?;
    let state = Arc::new(server::State {
        defaults,
        metrics: server::WebhookMetrics::new(),
        shutting_down: Default::default(),
        header_timeout,
        max_connections: args.max_connections,
        drain_timeout: Duration::from_secs(10),
    });
    tracing::info!(listen = %listener.local_addr().unwrap_or(listen), "webhook serving HTTPS");

    let reload_state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(tls::RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match resolver.reload_if_changed() {
                Ok(false) => {}
                Ok(true) => {
                    reload_state.metrics.cert_reloads.inc();
                    tracing::info!("serving certificate reloaded");
                }
                Err(e) => {
                    reload_state.metrics.cert_reload_failures.inc();
                    tracing::warn!(error = %e, "changed certificate files did not load; keeping the previous pair");
                }
            }
        }
    });

    let shutdown_state = state.clone();
    let shutdown = async move {
        crate::serve::shutdown_signal().await;
        shutdown_state.shutting_down.store(true, Ordering::Relaxed);
        // Keep answering while readiness (503 now) takes the pod out of the
        // Service's endpoints, so that the API server's next call goes to
        // the other replica instead of a closed port.
        tracing::info!(
            "stopping: readiness is 503; serving {SHUTDOWN_DELAY:?} more, then draining"
        );
        tokio::time::sleep(SHUTDOWN_DELAY).await;
    };
    server::serve(
        listener,
        TlsAcceptor::from(Arc::new(config)),
        state,
        shutdown,
    )
    .await;
    Ok(ExitCode::SUCCESS)
}
