//! `irsa-proxy serve`: wires configuration, STS client, credential caches and
//! refreshers (one per role: `default`, or each of several roles, docs/contract.md
//! §13), token watcher and HTTP server together, and runs the shutdown
//! sequence on SIGTERM/SIGINT: readiness 503 at once, keep serving for
//! `--shutdown-delay`, stop accepting, let in-flight requests finish, exit 0.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::cli::ServeArgs;
use crate::clock::SystemClock;
use crate::sidecar::cache::{CredentialStore, RefreshSettings, RefresherParts, RoleInfo};
use crate::sidecar::chain::{AssumeHop, Chained, ChainedSource};
use crate::sidecar::config::{Config, ProcessEnv, RoleConfig};
use crate::sidecar::endpoints::{AppState, AuthToken, ServedRole, ServerSettings, TokenTable};
use crate::sidecar::http_server::shutdown_signal;
use crate::sidecar::metrics::Metrics;
use crate::sidecar::source::pod_identity::PodIdentity;
use crate::sidecar::source::SourceKind;
use crate::sidecar::sts::{AssumeRole, ClientSettings, SdkSts};
use crate::sidecar::token::watch::TokenWatcher;
use crate::Fatal;

/// How often the token is re-read when no file event arrives.
pub const TOKEN_POLL_INTERVAL: Duration = Duration::from_secs(60);

pub async fn run(args: ServeArgs) -> Result<ExitCode, Fatal> {
    if args.print_endpoint {
        let settings = crate::sidecar::config::client_settings_from_args(&args, &ProcessEnv)
            .map_err(Fatal::Flags)?;
        let sts = SdkSts::new(&settings)
            .await
            .map_err(|e| Fatal::Usage(e.to_string()))?;
        println!("{}", sts.route());
        return Ok(ExitCode::SUCCESS);
    }
    let config = Config::from_args(&args, &ProcessEnv).map_err(Fatal::Flags)?;
    crate::logging::init(config.log_format);
    let sts = sts_client(&config.client_settings()).await?;
    let route = sts.route().clone();
    let signal = shutdown_signal();
    let proxy = start(&config, server_settings(&config), sts).await?;
    if config.pod_identity.is_none() {
        log_route(&route);
    }
    signal.await;
    proxy.shutdown(config.shutdown_delay).await;
    Ok(ExitCode::SUCCESS)
}

/// The STS client for these settings; a configuration that cannot work is a
/// usage error (exit 2).
pub async fn sts_client(settings: &ClientSettings) -> Result<SdkSts, Fatal> {
    SdkSts::new(settings)
        .await
        .map_err(|e| Fatal::Usage(e.to_string()))
}

/// Logs which way the STS calls go, once the proxy has started: the endpoint,
/// the proxy (never its password) and the trust roots.
pub fn log_route(route: &crate::sidecar::egress::Route) {
    tracing::info!(
        endpoint = %route.endpoint,
        proxy = %route.proxy_description(),
        trust = %route.trust_roots(),
        "STS route"
    );
}

/// The server settings that follow from a configuration.
pub fn server_settings(config: &Config) -> ServerSettings {
    ServerSettings {
        imds: config.imds,
        imds_v1: config.imds_v1,
        region: config.region.clone(),
        header_read_timeout: config.header_timeout,
        max_connections: fit_to_fd_limit(config.max_connections),
        ..ServerSettings::default()
    }
}

/// File descriptors needed besides the connections: listeners, the token watch,
/// STS connections, the runtime.
const RESERVED_FDS: usize = 64;

/// Makes room for `wanted` connections in the open-files limit: raises the soft
/// limit towards the hard one if needed (as Go and nginx do), and if even the
/// hard limit is too low, lowers the connection limit with a warning. Without
/// this a default soft limit of 1024 would make `accept` fail with EMFILE before
/// the connection limit is reached, and the longest-idle connection would never
/// be closed to make room.
fn fit_to_fd_limit(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        use libc::{rlim_t, RLIM_INFINITY};
        let need = rlim_t::try_from(wanted + RESERVED_FDS).unwrap_or(RLIM_INFINITY);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into the valid pointer given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return wanted;
        }
        if lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < need {
            let raised = libc::rlimit {
                rlim_cur: if lim.rlim_max == RLIM_INFINITY {
                    need
                } else {
                    need.min(lim.rlim_max)
                },
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit reads one rlimit from the valid pointer given.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim = raised;
            }
        }
        if lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < need {
            let limit = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
            let fit = limit.saturating_sub(RESERVED_FDS).max(8);
            tracing::warn!(
                max_connections = wanted,
                open_files_limit = limit,
                using = fit,
                "the open-files limit is too low for --max-connections; serving fewer connections at once"
            );
            return fit;
        }
    }
    wanted
}

/// A running proxy.
pub struct Proxy {
    /// The bound addresses (with the real ports when `:0` was asked).
    pub addrs: Vec<SocketAddr>,
    pub state: Arc<AppState>,
    stop_server: Arc<Notify>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    /// Stops the refresher's thread.
    stop_refresher: tokio::sync::oneshot::Sender<()>,
    /// Makes the refresher call STS at once.
    refresh_now: Arc<Notify>,
}

/// Binds, starts the refreshers (one per role) and the token watcher, and
/// serves. Returns once the listeners are bound; the first STS calls are
/// already under way.
pub async fn start<S: AssumeRole + AssumeHop + Clone>(
    config: &Config,
    settings: ServerSettings,
    sts: S,
) -> Result<Proxy, Fatal> {
    let units = role_units(config)?;
    for u in &units {
        check_claims(&u.config)?;
    }
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for addr in &config.listen {
        check_credential_address(addr).await?;
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| bind_error(addr, &e))?;
        let bound = l
            .local_addr()
            .map_err(|e| Fatal::Runtime(format!("--listen: {addr}: {e}")))?;
        addrs.push(bound);
        listeners.push(l);
    }

    let metrics = Arc::new(Metrics::new());
    let several = config.roles.is_some();
    // The token watcher and `refresh_trigger` signal these; with several roles
    // a task passes each signal on to every role's refresher.
    let rotated = Arc::new(Notify::new());
    let refresh_now = Arc::new(Notify::new());
    let mut fan_out = Vec::new();
    let mut served = Vec::new();
    let mut tokens = Vec::new();
    let mut refreshers: Vec<RefresherTask> = Vec::new();
    for unit in &units {
        let c = &unit.config;
        let (role_rotated, role_refresh_now) = if several {
            let pair = (Arc::new(Notify::new()), Arc::new(Notify::new()));
            fan_out.push(pair.clone());
            pair
        } else {
            (rotated.clone(), refresh_now.clone())
        };
        // With a chain, the endpoints name the last role: its credentials are
        // the only ones served.
        let served_role = c.served_role();
        let store = Arc::new(CredentialStore::new(
            RoleInfo {
                role_arn: served_role.arn.clone(),
                account: served_role.account.clone(),
            },
            Arc::new(SystemClock),
        ));
        let parts = RefresherParts {
            store: store.clone(),
            settings: RefreshSettings {
                role: unit.name.clone(),
                role_arn: c.role_arn.arn.clone(),
                session_name: c.session_name.clone(),
                duration: c.duration,
                refresh_before: c.refresh_before,
                token_file: c.token_file.clone(),
            },
            metrics: metrics.clone(),
            rotated: role_rotated,
            refresh_now: role_refresh_now,
        };
        // Say once which source is in use, and what it reads.
        let task: RefresherTask = match &c.pod_identity {
            None => {
                tracing::info!(
                    role = %unit.name,
                    source = %SourceKind::WebIdentity,
                    role_arn = %c.role_arn,
                    served_role_arn = %served_role,
                    hops = c.chain.hops.len(),
                    session_name = %session_name_sent(c),
                    token_file = %c.token_file.display(),
                    "credential source: web identity (STS AssumeRoleWithWebIdentity)"
                );
                Box::pin(
                    parts
                        .with(Chained::new(sts.clone(), Arc::new(c.chain.clone())))
                        .run(),
                )
            }
            Some(uri) => {
                tracing::info!(
                    role = %unit.name,
                    source = %SourceKind::PodIdentity,
                    agent = %uri,
                    served_role_arn = %served_role,
                    hops = c.chain.hops.len(),
                    session_name = %session_name_sent(c),
                    token_file = %c.token_file.display(),
                    "credential source: EKS Pod Identity agent"
                );
                Box::pin(
                    parts
                        .with(ChainedSource::new(
                            PodIdentity::new(uri.clone()),
                            Chained::new(sts.clone(), Arc::new(c.chain.clone())),
                        ))
                        .run(),
                )
            }
        };
        // With several roles, every line a refresher logs names its role.
        refreshers.push(if several {
            Box::pin(task.instrument(tracing::info_span!("role", role = %unit.name)))
        } else {
            task
        });
        served.push(ServedRole::new(&unit.name, store, served_role.name.clone()));
        if let Some(t) = &unit.token {
            tokens.push(t.clone());
        }
    }
    let stop_refresher = spawn_refreshers(refreshers)?;
    let watcher = TokenWatcher::start(
        config.token_file.clone(),
        metrics.clone(),
        rotated.clone(),
        TOKEN_POLL_INTERVAL,
    );
    let mut background = vec![tokio::spawn(watcher.run())];
    if several {
        let (to_rotated, to_refresh): (Vec<_>, Vec<_>) = fan_out.into_iter().unzip();
        background.push(tokio::spawn(pass_on(rotated, to_rotated)));
        background.push(tokio::spawn(pass_on(refresh_now.clone(), to_refresh)));
    }

    let state = Arc::new(match &config.roles {
        None => AppState::single(
            served
                .pop()
                .ok_or_else(|| Fatal::Runtime("no role to serve".into()))?,
            tokens.pop(),
            metrics,
            settings,
        ),
        Some(roles) => {
            let imds_role = roles
                .imds_role
                .as_ref()
                .and_then(|name| served.iter().position(|r| r.name == name.as_str()));
            AppState::new(
                served,
                TokenTable::new(tokens),
                imds_role,
                true,
                metrics,
                settings,
            )
        }
    });
    let stop_server = Arc::new(Notify::new());
    let stop = stop_server.clone();
    let server = tokio::spawn(crate::sidecar::endpoints::serve(
        listeners,
        state.clone(),
        async move { stop.notified().await },
    ));
    for a in &addrs {
        match &config.roles {
            None => {
                let served = config.served_role();
                tracing::info!(
                    source = %config.source(),
                    role_arn = %config.role_arn,
                    served_role_arn = %served,
                    hops = config.chain.hops.len(),
                    session_name = %session_name_sent(config),
                    imds = config.imds,
                    "listening on {a}"
                );
            }
            Some(roles) => tracing::info!(
                source = %config.source(),
                roles = %roles.names(),
                imds_role = roles.imds_role.as_deref().unwrap_or("-"),
                token_dir = %roles.token_dir.display(),
                imds = config.imds,
                "listening on {a}"
            ),
        }
    }
    Ok(Proxy {
        addrs,
        state,
        stop_server,
        server,
        background,
        stop_refresher,
        refresh_now,
    })
}

/// A refresher's loop, boxed so that roles of either source run side by side.
type RefresherTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One role to serve: its name, its configuration, its token.
struct RoleUnit {
    /// `default` with one role.
    name: String,
    config: Config,
    token: Option<AuthToken>,
}

/// The roles to serve: the one of `--role-arn` (`default`, with the pod's
/// token if configured), or each of several with its token written to
/// `--auth-token-dir/<name>/token`.
fn role_units(config: &Config) -> Result<Vec<RoleUnit>, Fatal> {
    let Some(roles) = &config.roles else {
        let token = match (&config.auth_token, &config.auth_token_file) {
            (Some(token), Some(path)) => {
                token
                    .write_file(path)
                    .map_err(|e| Fatal::Runtime(e.to_string()))?;
                Some(token.clone())
            }
            (Some(token), None) => Some(token.clone()),
            (None, Some(path)) => {
                Some(AuthToken::load_or_create(path).map_err(|e| Fatal::usage(e.to_string()))?)
            }
            (None, None) => None,
        };
        return Ok(vec![RoleUnit {
            name: DEFAULT_ROLE.into(),
            config: config.clone(),
            token,
        }]);
    };
    let mut units: Vec<RoleUnit> = Vec::new();
    for role in &roles.roles {
        let token = role_token(&roles.token_dir, role)?;
        if let Some(other) = units
            .iter()
            .find(|u| u.token.as_ref().is_some_and(|t| t.same_as(&token)))
        {
            return Err(Fatal::usage(format!(
                "--auth-token-dir: the token files of roles {} and {} hold the same token; every role needs its own (remove both files to have new ones made, or set IRSA_PROXY_AUTH_TOKEN_<NAME>)",
                other.name, role.name
            )));
        }
        // The EKS webhook adds Pod Identity after `inject` wrote role_arn:
        // the role is then assumed from the agent's role, as a first hop.
        if let (SourceKind::PodIdentity, Some(arn)) = (config.source(), &role.role_arn) {
            tracing::info!(
                role = %role.name,
                role_arn = %arn,
                hops = role.hops.len() + 1,
                "role {}: Pod Identity source; {} assumed as a hop from the agent's role",
                role.name,
                arn
            );
        }
        units.push(RoleUnit {
            name: role.name.clone(),
            config: config.for_role(role),
            token: Some(token),
        });
    }
    Ok(units)
}

/// The metrics' `role` label and the logs' role name with one role.
pub const DEFAULT_ROLE: &str = "default";

/// Writes (from `IRSA_PROXY_AUTH_TOKEN_<NAME>`) or reads or creates
/// `dir/<name>/token`, in a directory of its own that each role's container
/// mounts alone (`subPath`).
fn role_token(dir: &std::path::Path, role: &RoleConfig) -> Result<AuthToken, Fatal> {
    let file = role.token_file(dir);
    let what = |e: &dyn std::fmt::Display| {
        // The file errors name --auth-token-file; here it is a role's file.
        let e = e.to_string();
        let e = e.trim_start_matches("--auth-token-file: ").to_string();
        format!("--auth-token-dir: role {}: {e}", role.name)
    };
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Fatal::usage(what(&format!("cannot create {}: {e}", parent.display()))))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Every container of the role may run as another user.
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755));
        }
    }
    match &role.token {
        Some(token) => {
            token
                .write_file(&file)
                .map_err(|e| Fatal::Runtime(what(&e)))?;
            Ok(token.clone())
        }
        None => AuthToken::load_or_create(&file).map_err(|e| Fatal::usage(what(&e))),
    }
}

/// Passes every signal of `from` on to each of `to`.
async fn pass_on(from: Arc<Notify>, to: Vec<Arc<Notify>>) {
    loop {
        from.notified().await;
        for n in &to {
            n.notify_one();
        }
    }
}

/// The session name the first STS call sends: `--session-name` rendered from
/// the token's claims when it is a template (as the chain renders it), else the
/// fixed name. A template whose token is not there yet, or lacks the claim, is
/// shown as written, to be rendered at the first call.
fn session_name_sent(config: &Config) -> String {
    let Some(template) = &config.chain.session_name else {
        return config.session_name.clone();
    };
    let rendered = crate::sidecar::token::read_token(&config.token_file)
        .ok()
        .and_then(|token| token.claims().ok())
        .and_then(|claims| template.render(&claims).ok());
    match rendered {
        Some(name) => crate::sidecar::chain::session::fit(&name),
        None => format!("{template} (rendered from the token at the first call)"),
    }
}

/// With a session name, SourceIdentity or tag over the token's claims, a token
/// already there that lacks one is refused at start-up (exit 2), naming the
/// claim; a token not there yet is checked at the first call, where a missing
/// claim is a 503 `MissingClaim` that names it.
fn check_claims(config: &Config) -> Result<(), Fatal> {
    if !config.chain.needs_claims() {
        return Ok(());
    }
    let Ok(token) = crate::sidecar::token::read_token(&config.token_file) else {
        return Ok(());
    };
    let claims = token.claims().unwrap_or_default();
    match config.chain.render(&claims) {
        Ok(_) => Ok(()),
        Err(e) => Err(Fatal::usage(format!(
            "{e}; token file {}",
            config.token_file.display()
        ))),
    }
}

/// A link-local credential address may be served only from this network
/// namespace's loopback interface, where `irsa-proxy link-local` (an init
/// container) puts it: there it is the pod's own. On any other interface it
/// would be the node's network, or a real metadata service's address.
async fn check_credential_address(addr: &SocketAddr) -> Result<(), Fatal> {
    if addr.ip().is_loopback() || !crate::sidecar::addresses::is_credential_address(addr.ip()) {
        return Ok(());
    }
    match crate::sidecar::netns::is_on_loopback(addr.ip()).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Fatal::usage(format!(
            "--listen: {addr}: {} is not on this network namespace's loopback interface; add it first with `irsa-proxy link-local` (an init container with NET_ADMIN; `irsa-proxy inject --link-local` writes it)",
            addr.ip()
        ))),
        Err(e) => Err(Fatal::Runtime(format!("--listen: {addr}: {e}"))),
    }
}

/// One line for a listener that cannot be bound, with the fix for the usual
/// cause of each error.
fn bind_error(addr: &SocketAddr, e: &std::io::Error) -> Fatal {
    let hint = match e.kind() {
        std::io::ErrorKind::PermissionDenied if addr.port() < 1024 => format!(
            "; ports below 1024 need root or the pod sysctl net.ipv4.ip_unprivileged_port_start={} (in a pod, `inject --link-local` avoids both: the sidecar listens on its own port and `link-local --redirect-port` sends port 80 there)",
            addr.port()
        ),
        std::io::ErrorKind::AddrInUse => "; another process serves this port (choose another with --listen)".to_string(),
        _ => String::new(),
    };
    Fatal::Runtime(format!("--listen: cannot listen on {addr}: {e}{hint}"))
}

/// Runs the refreshers, one per role, on their own thread with its own
/// single-threaded runtime; each is a task of its own there, so one role's
/// failing calls and back-off never hold up another's.
///
/// An STS call costs milliseconds of CPU in the SDK (endpoint resolution, the
/// orchestrator, XML parsing). On the serving runtime, which is one thread, every
/// request would wait behind it; on a thread of its own the kernel interleaves
/// the two, so a refresh barely shows in request latency (measured in
/// BENCHMARKS.md).
fn spawn_refreshers(
    refreshers: Vec<RefresherTask>,
) -> Result<tokio::sync::oneshot::Sender<()>, Fatal> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fatal::Runtime(format!("cannot start the refresher's runtime: {e}")))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("irsa-proxy-sts".into())
        .spawn(move || {
            runtime.block_on(async move {
                for r in refreshers {
                    tokio::spawn(r);
                }
                // Stopped, or the sender dropped: either way, stop. The
                // tasks go with the runtime.
                let _ = stopped.await;
            })
        })
        .map_err(|e| Fatal::Runtime(format!("cannot start the refresher's thread: {e}")))?;
    Ok(stop)
}

impl Proxy {
    /// What makes the refresher call STS at once, whatever the cache holds.
    pub fn refresh_trigger(&self) -> Arc<Notify> {
        self.refresh_now.clone()
    }

    /// The shutdown sequence: not ready at once, serve for `delay`, drain, stop.
    pub async fn shutdown(self, delay: Duration) {
        self.state.shutting_down.store(true, Ordering::SeqCst);
        tracing::info!(
            delay_s = delay.as_secs_f64(),
            "shutting down: readiness is 503; still serving during the shutdown delay"
        );
        tokio::time::sleep(delay).await;
        self.stop_server.notify_one();
        let _ = self.server.await;
        for t in self.background {
            t.abort();
        }
        let _ = self.stop_refresher.send(());
        tracing::info!("stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arn::RoleArn;
    use crate::sidecar::chain::session::Template;
    use base64::Engine;

    fn config_with_token(dir: &std::path::Path, claims: &serde_json::Value) -> Config {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let token = format!(
            "{}.{}.sig",
            b64(br#"{"alg":"RS256"}"#),
            b64(claims.to_string().as_bytes())
        );
        let file = dir.join("token");
        std::fs::write(&file, token).unwrap();
        let role = RoleArn::parse("arn:aws:iam::111122223333:role/app").unwrap();
        Config::new(role, file)
    }

    #[test]
    fn logged_session_name_should_be_the_one_sent() {
        let dir = tempfile::tempdir().unwrap();
        let claims = serde_json::json!({
            "sub": "system:serviceaccount:payments:api",
            "kubernetes.io": {"namespace": "payments", "pod": {"name": "api-7d9f8"}}
        });
        let mut config = config_with_token(dir.path(), &claims);
        config.session_name = "fixed-name".into();
        assert_eq!(session_name_sent(&config), "fixed-name");

        config.session_name = "-namespace-.-pod-".into();
        config.chain.session_name = Some(Template::parse("{namespace}.{pod}").unwrap());
        assert_eq!(session_name_sent(&config), "payments.api-7d9f8");

        // A token without the claim: the template, to be rendered at the first call.
        let config = Config {
            chain: config.chain.clone(),
            ..config_with_token(dir.path(), &serde_json::json!({"sub": "x"}))
        };
        assert_eq!(
            session_name_sent(&config),
            "{namespace}.{pod} (rendered from the token at the first call)"
        );
    }
}
