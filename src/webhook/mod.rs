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

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio_rustls::TlsAcceptor;

use crate::cli::InjectArgs;
use crate::inject::Options;
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
            path: None,
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
    use crate::flags::{self, Flag, Flags, NoEnvironment, Refusal};
    const LOG_FORMAT: Flag = Flag::bare("--log-format");
    const LISTEN: Flag = Flag::bare("--listen");
    const HEADER_TIMEOUT: Flag = Flag::bare("--header-timeout");
    const MAX_CONNECTIONS: Flag = Flag::bare("--max-connections");
    const TLS_CERT_FILE: Flag = Flag::bare("--tls-cert-file");
    const TLS_KEY_FILE: Flag = Flag::bare("--tls-key-file");
    const HTTPS_ONLY: &str = "a PEM file: the webhook serves HTTPS only";

    let mut f = Flags::new(&NoEnvironment);
    let format = f.parse(&LOG_FORMAT, Some(&args.log_format), flags::text_or_json);
    let listen = f.parse(&LISTEN, Some(&args.listen), flags::listen_address);
    let header_timeout = f.parse(
        &HEADER_TIMEOUT,
        Some(&args.header_timeout),
        flags::duration_in(Duration::from_secs(1)..=Duration::from_secs(600)),
    );
    f.parse(
        &MAX_CONNECTIONS,
        Some(&args.max_connections.to_string()),
        flags::number_in(8usize..=65536),
    );
    let path = |p: &str| -> Result<std::path::PathBuf, Refusal> {
        if p.trim().is_empty() {
            Err(Refusal::new("is empty", HTTPS_ONLY))
        } else {
            Ok(std::path::PathBuf::from(p))
        }
    };
    let cert = f.required(
        &TLS_CERT_FILE,
        args.tls_cert_file.as_ref().and_then(|p| p.to_str()),
        HTTPS_ONLY,
        path,
    );
    let key = f.required(
        &TLS_KEY_FILE,
        args.tls_key_file.as_ref().and_then(|p| p.to_str()),
        HTTPS_ONLY,
        path,
    );
    let defaults = args.inject.inject_args();
    if let Err(errors) = Options::from_args(&defaults) {
        for e in errors {
            f.refuse(e);
        }
    }
    let (format, listen, header_timeout, cert, key) = f
        .finish(|| Some((format?, listen?, header_timeout?, cert?, key?)))
        .map_err(Fatal::Flags)?;
    let metrics = server::WebhookMetrics::new();
    let (reloads, reload_failures) = (
        metrics.cert_reloads.clone(),
        metrics.cert_reload_failures.clone(),
    );
    let config = crate::serving::tls::reloading_config(cert, key, move |outcome| match outcome {
        Ok(()) => {
            reloads.inc();
            tracing::info!("serving certificate reloaded");
        }
        Err(e) => {
            reload_failures.inc();
            tracing::warn!(error = %e, "changed certificate files did not load; keeping the previous pair");
        }
    })
    .map_err(Fatal::Usage)?;
    crate::logging::init(format);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Fatal::Runtime(format!("--listen {listen}: cannot bind: {e}")))?;
    let state = Arc::new(server::State {
        defaults,
        metrics,
        shutting_down: Default::default(),
        header_timeout,
        max_connections: args.max_connections,
        drain_timeout: Duration::from_secs(10),
    });
    let signal = crate::serving::shutdown_signal();
    tracing::info!(listen = %listener.local_addr().unwrap_or(listen), "webhook serving HTTPS");

    let shutdown_state = state.clone();
    let shutdown = async move {
        signal.await;
        shutdown_state.shutting_down.store(true, Ordering::Relaxed);
        // Keep answering while readiness (503 now) takes the pod out of the
        // Service's endpoints, so that the API server's next call goes to
        // the other replica instead of a closed port.
        tracing::info!(
            "stopping: readiness is 503; serving {SHUTDOWN_DELAY:?} more, then draining"
        );
        tokio::time::sleep(SHUTDOWN_DELAY).await;
    };
    server::serve(listener, TlsAcceptor::from(config), state, shutdown).await;
    Ok(ExitCode::SUCCESS)
}
