//! `irsa-proxy dev`: the whole credential chain on one machine, no AWS account.
//!
//! In one process: the STS emulator on a loopback port, an RSA issuer, a signed
//! service-account token in a temporary directory written with kubelet's `..data`
//! swap and rotated at 80 % of `--token-ttl`, and `serve` pointed at both. Prints
//! the `export` lines an app needs, or with `-- COMMAND ARGS...` runs the command
//! with them (and none of the caller's AWS credentials or profiles). The
//! temporary directory is removed on exit.
//!
//! # A test bench
//!
//! When dev ends (the command exits, `--for` runs out, or Ctrl-C) it prints a
//! report ([`report`]) built from the emulator's ledger: credential sets issued,
//! token rotations and credential refreshes the app lived through, and every
//! signed call it made (STS `GetCallerIdentity`, the in-memory S3) classified as
//! live, superseded, expired, revoked, never issued or rejected. The exit code
//! says the verdict: 0 passed, 3 expired credentials presented, 4 the command
//! failed.
//!
//! Faults, scripted ([`token_writer::Schedule`], the emulator's [`Faults`]) or on demand
//! ([`control`]): STS failures and outages, an expired token in the token file,
//! credentials issued with a shorter lifetime, and, while running, "rotate the
//! token now" (SIGUSR1, `POST /rotate-token`) and "expire the credentials now"
//! (SIGUSR2, `POST /expire-credentials`).

//!
//! The files, one job each: [`settings`] (flags and the scenario),
//! [`token_writer`] (the rotating token and the fault schedule), [`child`] (the
//! command and its environment), [`control`] (faults on demand),
//! [`availability`] (the time the proxy had nothing to serve), [`report`] (the
//! verdict) and [`junit`] (it as a JUnit test suite); this module starts the
//! pieces in order and stops them.

mod availability;
mod child;
mod control;
mod junit;
pub(crate) mod report;
mod settings;
mod token_writer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::cli::DevArgs;
use crate::duration::format_duration;
use crate::sidecar::addresses::DEFAULT_ADDRESSES;
use crate::sidecar::config::Config;
use crate::sidecar::serve::{self, Proxy};
use crate::sidecar::source::SourceKind;
use crate::sidecar::token::projected::ProjectedTokenDir;
use crate::tools::emulator::pod_identity;
use crate::tools::emulator::{self, EmulatorHandle, EmulatorSettings, Faults, Issuer, Ledger};
use crate::Fatal;
use report::{Ending, FaultSummary, Report, RunFacts};
use settings::{show_windows, DevSettings, ReportFormat};
use token_writer::Schedule;

const ISSUER: &str = "https://oidc.irsa-proxy.local/id/dev";
const REGION: &str = "us-east-1";
/// The bucket the emulator's S3 has from the start (`IRSA_PROXY_DEV_BUCKET`).
const BUCKET: &str = "irsa-proxy-dev";

/// What the test bench shares between the token writer, the control endpoint,
/// the signal handler and the report.
pub(crate) struct Bench {
    pub ledger: Arc<Ledger>,
    started: Instant,
    /// Wakes the token writer for a rotation on demand.
    rotate_now: Notify,
    rotations: AtomicU64,
    expired_tokens_written: AtomicU64,
    rotations_on_demand: AtomicU64,
    expiries_on_demand: AtomicU64,
    program: Option<String>,
    faults: FaultSummary,
    /// The proxy's "call STS now", once the proxy runs.
    proxy_refresh: std::sync::OnceLock<Arc<Notify>>,
    /// The role the proxy serves (the last of a chain): the report checks that
    /// its principal never changed.
    served_role: crate::arn::RoleArn,
    credential_ttl: Duration,
    token_ttl: Duration,
}

impl Bench {
    /// The bench of a run starting now.
    fn new(s: &DevSettings, given: &[String]) -> Bench {
        // With --run, the first command names the run in the report's
        // `command`; each one is listed with its role in `commands`.
        let command = match s.runs.first() {
            Some((_, argv)) => argv.as_slice(),
            None => given,
        };
        Bench {
            ledger: Arc::new(Ledger::default()),
            started: Instant::now(),
            rotate_now: Notify::new(),
            rotations: AtomicU64::new(0),
            expired_tokens_written: AtomicU64::new(0),
            rotations_on_demand: AtomicU64::new(0),
            expiries_on_demand: AtomicU64::new(0),
            proxy_refresh: std::sync::OnceLock::new(),
            served_role: s.chain.served_role(&s.role_arn).clone(),
            credential_ttl: s.credential_ttl,
            token_ttl: s.token_ttl,
            // The program's name only: its path and arguments may carry anything.
            program: command.first().map(|p| {
                Path::new(p)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.clone())
            }),
            faults: FaultSummary {
                scenario: s.scenario.clone(),
                sts_fail_percent: s.sts_fail_percent,
                sts_outages: show_windows(&s.sts_outages),
                expired_tokens: show_windows(&s.expired_tokens),
                early_expiry_percent: s.early_expiry_percent,
                ..FaultSummary::default()
            },
        }
    }

    /// Asks the token writer for a fresh token now.
    pub(crate) fn rotate(&self) {
        self.rotations_on_demand.fetch_add(1, Ordering::Relaxed);
        self.rotate_now.notify_one();
        tracing::info!("dev: rotating the web-identity token now (on demand)");
    }

    /// Every credential set still valid expires now; returns how many.
    pub(crate) fn expire(&self) -> usize {
        self.expiries_on_demand.fetch_add(1, Ordering::Relaxed);
        let n = self.ledger.revoke_all(SystemTime::now());
        // The proxy fetches a fresh set at once, as if its credentials had
        // expired: an app that fetches again on ExpiredToken recovers; one
        // that waits for its own refresh keeps failing until then.
        if let Some(refresh) = self.proxy_refresh.get() {
            refresh.notify_one();
        }
        tracing::info!(
            sets = n,
            "dev: expired every valid credential set now (on demand); the proxy is fetching a fresh one"
        );
        n
    }

    pub(crate) fn facts(&self) -> RunFacts {
        let mut faults = self.faults.clone();
        faults.rotations_on_demand = self.rotations_on_demand.load(Ordering::Relaxed);
        faults.expiries_on_demand = self.expiries_on_demand.load(Ordering::Relaxed);
        RunFacts {
            program: self.program.clone(),
            token_rotations: self.rotations.load(Ordering::Relaxed),
            expired_tokens_written: self.expired_tokens_written.load(Ordering::Relaxed),
            elapsed: self.started.elapsed(),
            faults,
            served_role: Some(self.served_role.clone()),
            credential_ttl: self.credential_ttl,
            token_ttl: self.token_ttl,
            unavailable: Default::default(),
        }
    }
}

fn runtime(what: &str, e: &dyn std::fmt::Display) -> Fatal {
    Fatal::Runtime(format!("{what}: {e}"))
}

pub async fn run(args: DevArgs) -> Result<ExitCode, Fatal> {
    let s = settings::validate(&args).map_err(Fatal::Flags)?;
    crate::logging::init_at(s.log_format, s.log_level);
    if s.link_local {
        add_link_local_addresses().await?;
    }
    let temp = tempfile::Builder::new()
        .prefix("irsa-proxy-dev-")
        .tempdir()
        .map_err(|e| Fatal::Runtime(format!("cannot create a temporary directory: {e}")))?;
    let root = temp.path().to_path_buf();

    let issuer =
        Issuer::generate_rsa(ISSUER).map_err(|e| runtime("cannot make a signing key", &e))?;
    let bench = Arc::new(Bench::new(&s, &args.command));
    let tls = match args.sts_tls {
        true => Some(sts_tls(&root)?),
        false => None,
    };
    let sts = start_emulator(&s, &issuer, &bench, tls.as_ref()).await?;
    let token_dir = root.join("serviceaccount");
    std::fs::create_dir(&token_dir)
        .map_err(|e| runtime("cannot create the token directory", &e))?;
    let first = token_writer::mint(&issuer, s.token_ttl, false, s.source)
        .map_err(|e| runtime("cannot sign a token", &e))?;
    let projected = ProjectedTokenDir::create(&token_dir, &first)
        .map_err(|e| runtime("cannot write the token", &e))?;
    let (proxy, auth_token) =
        start_proxy(&s, &root, projected.token_path(), &sts, tls.as_ref()).await?;
    // With several roles: each role's token, as the proxy wrote it.
    let role_tokens = match &s.roles {
        None => Vec::new(),
        Some(roles) => {
            let dir = root.join(ROLES_DIR);
            let mut tokens = Vec::new();
            for r in &roles.roles {
                let file = r.token_file(&dir);
                let value = std::fs::read_to_string(&file)
                    .map_err(|e| runtime(&format!("cannot read {}", file.display()), &e))?;
                tokens.push(RoleToken {
                    name: r.name.clone(),
                    file,
                    value: value.trim().to_string(),
                    imds: roles.imds_role.as_deref() == Some(r.name.as_str()),
                });
            }
            tokens
        }
    };
    let _ = bench.proxy_refresh.set(proxy.refresh_trigger());
    let schedule = Schedule {
        expired_tokens: s.expired_tokens.clone(),
    };
    let rotator = token_writer::spawn(
        issuer,
        projected,
        s.token_ttl,
        schedule,
        bench.clone(),
        s.source,
    );
    let control = control::spawn(bench.clone())
        .await
        .map_err(|e| runtime("cannot start the control endpoint", &e))?;
    let signals = control::on_signals(bench.clone());

    // Wait until the first credentials are cached, so the app's first call works:
    // on the store, woken by the refresher's first success or failure.
    for role in &proxy.state.roles {
        if let Err(u) = role.store.get(Duration::from_secs(10)).await {
            tracing::warn!(code = %u.code, message = %u.message, "dev: no credentials yet");
        }
    }
    let control_url = control.url();
    let endpoints = Endpoints {
        proxy: proxy.addrs[0],
        sts: &sts,
        ca: tls.as_ref().map(|(ca, _)| ca.as_path()),
        control: &control_url,
    };
    let single = RoleToken {
        name: String::new(),
        file: root.join("auth-token"),
        value: auth_token.clone(),
        imds: true,
    };
    let exports_of = |name: Option<&str>| {
        let token = match name {
            Some(n) => role_tokens.iter().find(|t| t.name == n).unwrap_or(&single),
            None => &single,
        };
        exports(&s, &endpoints, token)
    };
    let exports = exports_of(s.as_role.as_deref());
    let run_exports: Vec<(String, Vec<String>, Exports)> = s
        .runs
        .iter()
        .map(|(name, argv)| (name.clone(), argv.clone(), exports_of(Some(name))))
        .collect();
    let every_role: Vec<(String, Exports)> = role_tokens
        .iter()
        .map(|t| (t.name.clone(), exports_of(Some(&t.name))))
        .collect();
    let running = Running {
        rotator,
        signals,
        control,
        proxy,
        sts,
    };
    // From here on the app runs: the time the proxy has nothing to serve counts.
    let watch = availability::watch(
        running
            .proxy
            .state
            .roles
            .iter()
            .map(|r| r.store.clone())
            .collect(),
        running.proxy.state.metrics.clone(),
    );
    let deadline = s.run_for.map(|d| bench.started + d);
    let mut commands = Vec::new();
    let ending = if !run_exports.is_empty() {
        let runs = run_exports
            .iter()
            .map(|(_, argv, exports)| child::run_command(argv, exports, &root, deadline));
        let results = futures_util::future::join_all(runs).await;
        let mut endings = Vec::new();
        for ((name, argv, _), result) in run_exports.iter().zip(results) {
            let ending = match result? {
                Ok(ending) => ending,
                // Could not be started: as a shell says, 127 or 126.
                Err(code) => Ending::Exited(i32::from(code)),
            };
            commands.push(report::RoleCommand::new(name, argv, &ending));
            endings.push(ending);
        }
        report::combined(&endings)
    } else if args.command.is_empty() {
        if s.as_role.is_none() && !every_role.is_empty() {
            for (name, exports) in &every_role {
                println!("# role {name}");
                for (k, v) in exports {
                    println!("export {k}={v}");
                }
            }
            wait_without_command(&s, &[], &control_url, deadline).await
        } else {
            wait_without_command(&s, &exports, &control_url, deadline).await
        }
    } else {
        match child::run_command(&args.command, &exports, &root, deadline).await? {
            Ok(ending) => ending,
            Err(code) => {
                running.stop().await;
                return Ok(ExitCode::from(code));
            }
        }
    };

    let mut facts = bench.facts();
    facts.unavailable = watch.finish();
    let mut report = report::build(&bench.ledger.snapshot(), &facts, &ending);
    report.commands = commands;
    running.stop().await;
    drop(temp);
    // Last, so that it is the end of the output.
    print_report(&s, &report);
    Ok(ExitCode::from(report.exit_code))
}

/// With `--sts-tls`: a CA for this run only (its key is not kept), and a
/// certificate it signs for the emulator's loopback address. Returns the CA's
/// file and the emulator's TLS configuration.
fn sts_tls(root: &Path) -> Result<(PathBuf, Arc<rustls::ServerConfig>), Fatal> {
    let issued = crate::tools::tls::ca::issue(
        "irsa-proxy dev CA",
        vec!["127.0.0.1".into(), "localhost".into()],
        1,
    )
    .map_err(|e| runtime("cannot make the emulator's certificate", &e))?;
    let write = |name: &str, pem: &str| {
        let path = root.join(name);
        std::fs::write(&path, pem)
            .map(|()| path)
            .map_err(|e| runtime(&format!("cannot write {name}"), &e))
    };
    let ca = write("ca.pem", &issued.ca_pem)?;
    let cert = write("tls.crt", &issued.cert_pem)?;
    let key = write("tls.key", &issued.key_pem)?;
    let config = crate::tools::tls::reloading_config(cert, key, |_| {})
        .map_err(|e| runtime("cannot load the emulator's certificate", &e))?;
    Ok((ca, config))
}

/// The STS emulator on a free loopback port, trusting the run's issuer, with
/// the scripted faults and the bench's ledger.
async fn start_emulator(
    s: &DevSettings,
    issuer: &Issuer,
    bench: &Bench,
    tls: Option<&(PathBuf, Arc<rustls::ServerConfig>)>,
) -> Result<EmulatorHandle, Fatal> {
    let mut settings = EmulatorSettings::new(
        issuer
            .verifying_keys()
            .map_err(|e| runtime("cannot use the signing key", &e))?,
    );
    settings.credential_ttl = s.credential_ttl;
    settings.faults = Faults {
        start: bench.started,
        sts_fail_percent: s.sts_fail_percent,
        sts_outages: s.sts_outages.clone(),
        early_expiry_percent: s.early_expiry_percent,
    };
    settings.ledger = bench.ledger.clone();
    settings.s3_buckets = vec![BUCKET.to_string()];
    settings.managed_policies = s.managed_policies.clone();
    // With --source pod-identity the emulator is also the node's agent, and
    // the dev service account is associated with the role.
    settings.pod_identity.associations = vec![pod_identity::Association {
        namespace: token_writer::NAMESPACE.into(),
        service_account: token_writer::SERVICE_ACCOUNT.into(),
        role: s.role_arn.clone(),
    }];
    let sts = emulator::spawn_with(
        "127.0.0.1:0".parse().map_err(|e| runtime("address", &e))?,
        settings,
        tls.map(|(_, config)| config.clone()),
    )
    .await
    .map_err(|e| runtime("cannot start the STS emulator", &e))?;
    tracing::info!(endpoint = %sts.endpoint_url(), "STS emulator listening");
    Ok(sts)
}

/// `serve` on `--listen` (and the link-local addresses), pointed at the
/// emulator and the token file. Returns it and the authorization token.
async fn start_proxy(
    s: &DevSettings,
    root: &Path,
    token_path: PathBuf,
    sts: &EmulatorHandle,
    tls: Option<&(PathBuf, Arc<rustls::ServerConfig>)>,
) -> Result<(Proxy, String), Fatal> {
    let mut config = Config::new(s.role_arn.clone(), token_path);
    config.listen = vec![s.listen];
    config.sts_endpoint = Some(sts.endpoint_url());
    config.region = Some(REGION.to_string());
    // One token, given to the app both ways (file and value), as `inject` does:
    // SDKs from before 2023 read only the value.
    let auth_token = crate::sidecar::endpoints::random_token();
    config.auth_token = Some(
        crate::sidecar::endpoints::AuthToken::from_value(&auth_token)
            .map_err(|e| runtime("cannot make the authorization token", &e))?,
    );
    config.auth_token_file = Some(root.join("auth-token"));
    if s.link_local {
        config
            .listen
            .extend(DEFAULT_ADDRESSES.map(|ip| std::net::SocketAddr::new(ip, 80)));
    }
    config.session_name = crate::sidecar::config::sanitize_session_name("irsa-proxy-dev");
    config.chain = s.chain.clone();
    if let Some(roles) = &s.roles {
        // Each role's token is written under the run's directory; no token
        // of the single-role kind.
        let dir = root.join(ROLES_DIR);
        std::fs::create_dir(&dir)
            .map_err(|e| runtime("cannot create the roles' token directory", &e))?;
        let mut roles = roles.clone();
        roles.token_dir = dir;
        config.roles = Some(roles);
        config.auth_token = None;
        config.auth_token_file = None;
    }
    if s.source == SourceKind::PodIdentity {
        config.pod_identity = Some(
            format!("{}{}", sts.endpoint_url(), pod_identity::PATH)
                .parse()
                .map_err(|e| runtime("the agent's URL", &e))?,
        );
    }
    // The emulator caps the lifetime at --credential-ttl; asking for at least 15 min
    // keeps the request valid for real STS rules.
    config.duration = s.credential_ttl.max(Duration::from_secs(900));
    let any_hop = config
        .roles
        .as_ref()
        .is_some_and(|r| r.roles.iter().any(|r| !r.hops.is_empty()));
    if config.chain.is_chained() || any_hop {
        config.duration = config
            .duration
            .min(crate::flags::serve::CHAINED_DURATION_CAP);
    }
    config.refresh_before = Duration::from_secs(1800).min(config.duration / 2);
    config.log_format = s.log_format;
    // `config.egress` is not read from the environment: the emulator is in
    // this process, on loopback, never behind the caller's proxy.
    if let Some((ca, _)) = tls {
        config.egress.ca_bundle = Some(
            crate::sidecar::egress::CaBundle::load(ca, "dev --sts-tls".into())
                .map_err(|why| runtime("the CA of --sts-tls", &why))?,
        );
    }
    let client = serve::sts_client(&config.client_settings()).await?;
    if s.listen.port() != 0 {
        // The default port is often held by another `dev`; name the way out.
        if let Err(e) = std::net::TcpListener::bind(s.listen) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                return Err(Fatal::Runtime(format!(
                    "--listen {}: the port is taken (another irsa-proxy dev?); choose another, or --listen 127.0.0.1:0 for any free one",
                    s.listen
                )));
            }
        }
    }
    let route = client.route().clone();
    let proxy = serve::start(&config, serve::server_settings(&config), client).await?;
    if config.pod_identity.is_none() {
        serve::log_route(&route);
    }
    Ok((proxy, auth_token))
}

/// Where the app finds what `dev` runs.
struct Endpoints<'a> {
    proxy: std::net::SocketAddr,
    sts: &'a EmulatorHandle,
    /// The CA of `--sts-tls`.
    ca: Option<&'a Path>,
    control: &'a str,
}

/// The variables an app gets, in order.
type Exports = Vec<(&'static str, String)>;

/// Where each role's token is written, under the run's directory.
const ROLES_DIR: &str = "roles";

/// The authorization token an app presents: the one of a single-role run, or
/// a role's.
struct RoleToken {
    /// The role's name (empty for a single-role run).
    name: String,
    file: PathBuf,
    value: String,
    /// IMDS serves this role (always with one role; with several, only
    /// `imds_role`).
    imds: bool,
}

/// The variables an app needs, in the order `dev` prints them.
fn exports(s: &DevSettings, e: &Endpoints<'_>, token: &RoleToken) -> Exports {
    let addr = e.proxy;
    let mut exports = vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{addr}/v1/credentials"),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token.file.display().to_string(),
        ),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", token.value.clone()),
        ("AWS_ENDPOINT_URL_STS", e.sts.endpoint_url()),
    ];
    if s.link_local {
        // The SDKs from 2016 on take the relative URI (resolved against
        // 169.254.170.2) before the full one; IMDS is at its own address, where
        // every SDK looks by default. No IMDS endpoint variable: the Ruby SDK v3
        // reads it but always dials port 80. The token in the path picks the
        // role, as the full URI's Authorization does.
        exports.push((
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            format!("/v2/credentials/{}", token.value),
        ));
    } else if token.imds {
        exports.push((
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{addr}"),
        ));
    }
    if !token.imds {
        // IMDS serves another role (or none): an SDK that fell back to it
        // would get a role that is not this one's.
        exports.push(("AWS_EC2_METADATA_DISABLED", "true".to_string()));
    }
    // S3 at the emulator: an IP address, so every SDK uses path style.
    exports.push(("AWS_ENDPOINT_URL_S3", e.sts.endpoint_url()));
    if let Some(ca) = e.ca {
        // botocore and the AWS CLI read AWS_CA_BUNDLE; Node reads
        // NODE_EXTRA_CA_CERTS (the JavaScript SDK v3 has no variable of its own).
        exports.push(("AWS_CA_BUNDLE", ca.display().to_string()));
        exports.push(("NODE_EXTRA_CA_CERTS", ca.display().to_string()));
    }
    exports.push(("IRSA_PROXY_DEV_BUCKET", BUCKET.to_string()));
    exports.push(("IRSA_PROXY_DEV_CONTROL_URL", e.control.to_string()));
    // Most SDKs read AWS_REGION; botocore reads AWS_DEFAULT_REGION.
    exports.push(("AWS_REGION", REGION.to_string()));
    exports.push(("AWS_DEFAULT_REGION", REGION.to_string()));
    exports
}

/// Without a command: prints the export lines and waits for Ctrl-C or `--for`.
async fn wait_without_command(
    s: &DevSettings,
    exports: &[(&str, String)],
    control_url: &str,
    deadline: Option<Instant>,
) -> Ending {
    for (k, v) in exports {
        println!("export {k}={v}");
    }
    tracing::info!(
        credential_ttl = %format_duration(s.credential_ttl),
        token_ttl = %format_duration(s.token_ttl),
        control = %control_url,
        "dev: ready; paste the export lines into another shell. Ctrl-C stops and prints the report."
    );
    // Without a command, Ctrl-C is how a run ends: the verdict stands.
    tokio::select! {
        _ = crate::sidecar::http_server::shutdown_signal() => Ending::TimeUp,
        _ = child::sleep_until(deadline) => Ending::TimeUp,
    }
}

/// What runs until the report: stopped in the reverse order of starting.
struct Running {
    rotator: tokio::task::JoinHandle<()>,
    signals: tokio::task::JoinHandle<()>,
    control: control::Control,
    proxy: Proxy,
    sts: EmulatorHandle,
}

impl Running {
    async fn stop(self) {
        self.signals.abort();
        self.control.stop().await;
        self.rotator.abort();
        self.proxy.shutdown(Duration::ZERO).await;
        self.sts.stop().await;
    }
}

/// The report in the chosen format; with `--report-file`, the file gets the
/// chosen format and the terminal the text.
fn print_report(s: &DevSettings, report: &Report) {
    let rendered = render_report(s.report, report);
    match &s.report_file {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &rendered) {
                eprintln!("irsa-proxy: error: --report-file {}: {e}", path.display());
            }
            eprint!("{}", report.text());
        }
        None => eprint!("{rendered}"),
    }
}

/// The report in `--report`'s format.
fn render_report(format: ReportFormat, report: &Report) -> String {
    match format {
        ReportFormat::Json => report.json(),
        ReportFormat::Text => report.text(),
        ReportFormat::Junit => junit::render(report),
    }
}

/// Adds the link-local credential addresses to `lo`, but only in a network
/// namespace with no route out: on a cloud VM's own namespace, 169.254.169.254
/// on `lo` would hijack the real metadata service for every process.
async fn add_link_local_addresses() -> Result<(), Fatal> {
    crate::sidecar::link_local::refuse_route_out(
        "--link-local",
        "; adding 169.254.169.254 here could hijack a real metadata service. Give dev a command (`dev --link-local -- CMD` makes a namespace of its own), or run it in one you made: unshare --net -- sh -c 'ip link set lo up && irsa-proxy dev --link-local'",
    )
    .await?;
    crate::sidecar::netns::add_to_loopback(&DEFAULT_ADDRESSES)
        .await
        .map_err(|e| Fatal::Runtime(format!("--link-local: {e}")))
}
