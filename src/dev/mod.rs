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
//! Faults, scripted ([`Schedule`], the emulator's [`Faults`]) or on demand
//! ([`control`]): STS failures and outages, an expired token in the token file,
//! credentials issued with a shorter lifetime, and, while running, "rotate the
//! token now" (SIGUSR1, `POST /rotate-token`) and "expire the credentials now"
//! (SIGUSR2, `POST /expire-credentials`).

mod control;
pub(crate) mod report;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::arn::RoleArn;
use crate::cli::DevArgs;
use crate::config::Config;
use crate::duration::format_duration;
use crate::emulator::{
    self, EmulatorSettings, Faults, Issuer, Ledger, ServiceAccountToken, Window,
};
use crate::flags::{self, dev as f, FlagError, Flags, NoEnvironment, Refusal};
use crate::logging::LogFormat;
use crate::serve;
use crate::token::projected::ProjectedTokenDir;
use crate::Fatal;
use report::{Ending, FaultSummary, RunFacts};

const ISSUER: &str = "https://oidc.irsa-proxy.local/id/dev";
const NAMESPACE: &str = "default";
const SERVICE_ACCOUNT: &str = "dev";
const AUDIENCE: &str = "sts.amazonaws.com";
const REGION: &str = "us-east-1";
/// The bucket the emulator's S3 has from the start (`IRSA_PROXY_DEV_BUCKET`).
const BUCKET: &str = "irsa-proxy-dev";

struct DevSettings {
    listen: std::net::SocketAddr,
    link_local: bool,
    credential_ttl: Duration,
    token_ttl: Duration,
    role_arn: RoleArn,
    log_format: LogFormat,
    run_for: Option<Duration>,
    report: LogFormat,
    report_file: Option<std::path::PathBuf>,
    scenario: Option<String>,
    sts_fail_percent: u8,
    sts_outages: Vec<Window>,
    expired_tokens: Vec<Window>,
    early_expiry_percent: u8,
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

fn validate(args: &DevArgs) -> Result<DevSettings, Vec<FlagError>> {
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
    let log_format = flags.parse(&f::LOG_FORMAT, Some(&args.log_format), flags::text_or_json);
    let report = flags.parse(&f::REPORT, Some(&args.report), flags::text_or_json);
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
        })
    })
}

/// The token file's schedule: fresh tokens every `rotate_every`, and an
/// expired token inside each `--expired-token` window. Pure, so that its
/// tests need no clock.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub expired_tokens: Vec<Window>,
}

impl Schedule {
    /// Whether the token file should hold an expired token at `elapsed`.
    pub(crate) fn expired_at(&self, elapsed: Duration) -> bool {
        self.expired_tokens.iter().any(|w| w.contains(elapsed))
    }

    /// The next time after `elapsed` at which a window opens or closes.
    pub(crate) fn next_edge(&self, elapsed: Duration) -> Option<Duration> {
        self.expired_tokens
            .iter()
            .flat_map(|w| [w.start, w.end()])
            .filter(|t| *t > elapsed)
            .min()
    }
}

/// Why the token writer woke.
enum Wake {
    Tick,
    Demand,
    Edge,
}

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
}

impl Bench {
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
        }
    }
}

fn show_windows(windows: &[Window]) -> Vec<String> {
    windows
        .iter()
        .map(|w| format!("{}@{}", format_duration(w.length), format_duration(w.start)))
        .collect()
}

pub async fn run(args: DevArgs) -> Result<ExitCode, Fatal> {
    let s = validate(&args).map_err(Fatal::Flags)?;
    crate::logging::init(s.log_format);
    if s.link_local {
        add_link_local_addresses().await?;
    }

    let temp = tempfile::Builder::new()
        .prefix("irsa-proxy-dev-")
        .tempdir()
        .map_err(|e| Fatal::Runtime(format!("cannot create a temporary directory: {e}")))?;
    let root = temp.path().to_path_buf();
    let runtime = |what: &str, e: &dyn std::fmt::Display| Fatal::Runtime(format!("{what}: {e}"));

    let issuer =
        Issuer::generate_rsa(ISSUER).map_err(|e| runtime("cannot make a signing key", &e))?;
    let mut settings = EmulatorSettings::new(
        issuer
            .verifying_keys()
            .map_err(|e| runtime("cannot use the signing key", &e))?,
    );
    settings.credential_ttl = s.credential_ttl;
    let started = Instant::now();
    settings.faults = Faults {
        start: started,
        sts_fail_percent: s.sts_fail_percent,
        sts_outages: s.sts_outages.clone(),
        early_expiry_percent: s.early_expiry_percent,
    };
    let ledger = Arc::new(Ledger::default());
    settings.ledger = ledger.clone();
    settings.s3_buckets = vec![BUCKET.to_string()];
    let bench = Arc::new(Bench {
        ledger,
        started,
        rotate_now: Notify::new(),
        rotations: AtomicU64::new(0),
        expired_tokens_written: AtomicU64::new(0),
        rotations_on_demand: AtomicU64::new(0),
        expiries_on_demand: AtomicU64::new(0),
        proxy_refresh: std::sync::OnceLock::new(),
        // The program's name only: its path and arguments may carry anything.
        program: args.command.first().map(|p| {
            std::path::Path::new(p)
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
    });
    // With --sts-tls: a CA for this run only (its key is not kept), and a
    // certificate it signs for the emulator's loopback address.
    let tls = if args.sts_tls {
        let issued = crate::webhook::certs::issue(
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
        let config = crate::serving::tls::reloading_config(cert, key, |_| {})
            .map_err(|e| runtime("cannot load the emulator's certificate", &e))?;
        Some((ca, config))
    } else {
        None
    };
    let sts = emulator::spawn_with(
        "127.0.0.1:0".parse().map_err(|e| runtime("address", &e))?,
        settings,
        tls.as_ref().map(|(_, config)| config.clone()),
    )
    .await
    .map_err(|e| runtime("cannot start the STS emulator", &e))?;
    tracing::info!(endpoint = %sts.endpoint_url(), "STS emulator listening");

    let token_dir = root.join("serviceaccount");
    std::fs::create_dir(&token_dir)
        .map_err(|e| runtime("cannot create the token directory", &e))?;
    let token_ttl = s.token_ttl;
    // An expired token was issued a token lifetime and a minute ago.
    let mint = move |issuer: &Issuer, expired: bool| {
        let now = SystemTime::now();
        issuer.mint_service_account(&ServiceAccountToken {
            namespace: NAMESPACE,
            service_account: SERVICE_ACCOUNT,
            audience: AUDIENCE,
            issued_at: if expired {
                now.checked_sub(token_ttl + Duration::from_secs(60))
                    .unwrap_or(SystemTime::UNIX_EPOCH)
            } else {
                now
            },
            ttl: token_ttl,
        })
    };
    let first = mint(&issuer, false).map_err(|e| runtime("cannot sign a token", &e))?;
    let projected = ProjectedTokenDir::create(&token_dir, &first)
        .map_err(|e| runtime("cannot write the token", &e))?;

    let mut config = Config::new(s.role_arn.clone(), projected.token_path());
    config.listen = vec![s.listen];
    config.sts_endpoint = Some(sts.endpoint_url());
    config.region = Some(REGION.to_string());
    // One token, given to the app both ways (file and value), as `inject` does:
    // SDKs from before 2023 read only the value.
    let auth_token = crate::server::random_token();
    config.auth_token = Some(
        crate::server::AuthToken::from_value(&auth_token)
            .map_err(|e| runtime("cannot make the authorization token", &e))?,
    );
    config.auth_token_file = Some(root.join("auth-token"));
    if s.link_local {
        config
            .listen
            .extend(LINK_LOCAL_LISTEN.map(|ip| std::net::SocketAddr::new(ip, 80)));
    }
    config.session_name = crate::config::sanitize_session_name("irsa-proxy-dev");
    // The emulator caps the lifetime at --credential-ttl; asking for at least 15 min
    // keeps the request valid for real STS rules.
    config.duration = s.credential_ttl.max(Duration::from_secs(900));
    config.refresh_before = Duration::from_secs(1800).min(config.duration / 2);
    config.log_format = s.log_format;
    // `config.egress` is not read from the environment: the emulator is in
    // this process, on loopback, never behind the caller's proxy.
    if let Some((ca, _)) = &tls {
        config.egress.ca_bundle = Some(
            crate::egress::CaBundle::load(ca, "dev --sts-tls".into())
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
    serve::log_route(&route);
    let _ = bench.proxy_refresh.set(proxy.refresh_trigger());
    let addr = proxy.addrs[0];

    // Rotate at 80 % of the token's lifetime, as kubelet does; write an
    // expired token inside each --expired-token window, and a fresh one on demand.
    let rotate_every = s.token_ttl.mul_f64(0.8);
    let issuer = Arc::new(issuer);
    let schedule = Schedule {
        expired_tokens: s.expired_tokens.clone(),
    };
    let rotator = tokio::spawn({
        let issuer = issuer.clone();
        let bench = bench.clone();
        let mut projected = projected;
        async move {
            let mut tick = tokio::time::interval(rotate_every);
            tick.tick().await;
            loop {
                let edge = schedule.next_edge(started.elapsed());
                let wake = tokio::select! {
                    _ = tick.tick() => Wake::Tick,
                    _ = bench.rotate_now.notified() => Wake::Demand,
                    _ = tokio::time::sleep_until(started + edge.unwrap_or_default()), if edge.is_some() => Wake::Edge,
                };
                let in_window = schedule.expired_at(started.elapsed());
                let expired = match wake {
                    Wake::Demand => false,
                    // kubelet's rotation does not end an --expired-token window.
                    Wake::Tick if in_window => continue,
                    Wake::Tick => false,
                    Wake::Edge => in_window,
                };
                match mint(&issuer, expired).map(|t| projected.write(&t)) {
                    Ok(Ok(())) if expired => {
                        bench.expired_tokens_written.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            "dev: wrote an EXPIRED web-identity token (--expired-token)"
                        );
                    }
                    Ok(Ok(())) => {
                        bench.rotations.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            next_in_s = rotate_every.as_secs(),
                            "dev: wrote a new web-identity token (kubelet ..data swap)"
                        );
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "dev: cannot write the new token"),
                    Err(e) => tracing::error!(error = %e, "dev: cannot sign a new token"),
                }
            }
        }
    });

    let control = control::spawn(bench.clone())
        .await
        .map_err(|e| runtime("cannot start the control endpoint", &e))?;
    let signals = control::on_signals(bench.clone());

    // Wait until the first credentials are cached, so the app's first call works:
    // on the store, woken by the refresher's first success or failure.
    if let Err(u) = proxy.state.store.get(Duration::from_secs(10)).await {
        tracing::warn!(code = %u.code, message = %u.message, "dev: no credentials yet");
    }

    let mut exports = vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            format!("http://{addr}/v1/credentials"),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            root.join("auth-token").display().to_string(),
        ),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", auth_token.clone()),
        ("AWS_ENDPOINT_URL_STS", sts.endpoint_url()),
    ];
    if s.link_local {
        // The SDKs from 2016 on take the relative URI (resolved against
        // 169.254.170.2) before the full one; IMDS is at its own address, where
        // every SDK looks by default. No IMDS endpoint variable: the Ruby SDK v3
        // reads it but always dials port 80.
        exports.push((
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            format!("/v2/credentials/{auth_token}"),
        ));
    } else {
        exports.push((
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            format!("http://{addr}"),
        ));
    }
    // S3 at the emulator: an IP address, so every SDK uses path style.
    exports.push(("AWS_ENDPOINT_URL_S3", sts.endpoint_url()));
    if let Some((ca, _)) = &tls {
        // botocore and the AWS CLI read AWS_CA_BUNDLE; Node reads
        // NODE_EXTRA_CA_CERTS (the JavaScript SDK v3 has no variable of its own).
        exports.push(("AWS_CA_BUNDLE", ca.display().to_string()));
        exports.push(("NODE_EXTRA_CA_CERTS", ca.display().to_string()));
    }
    exports.push(("IRSA_PROXY_DEV_BUCKET", BUCKET.to_string()));
    exports.push(("IRSA_PROXY_DEV_CONTROL_URL", control.url()));
    // Most SDKs read AWS_REGION; botocore reads AWS_DEFAULT_REGION.
    exports.push(("AWS_REGION", REGION.to_string()));
    exports.push(("AWS_DEFAULT_REGION", REGION.to_string()));

    let deadline = s.run_for.map(|d| started + d);
    let ending = if args.command.is_empty() {
        for (k, v) in &exports {
            println!("export {k}={v}");
        }
        tracing::info!(
            credential_ttl = %format_duration(s.credential_ttl),
            token_ttl = %format_duration(s.token_ttl),
            control = %control.url(),
            "dev: ready; paste the export lines into another shell. Ctrl-C stops and prints the report."
        );
        // Without a command, Ctrl-C is how a run ends: the verdict stands.
        tokio::select! {
            _ = crate::serving::shutdown_signal() => Ending::TimeUp,
            _ = sleep_until(deadline) => Ending::TimeUp,
        }
    } else {
        match run_command(&args.command, &exports, &root, deadline).await? {
            Ok(ending) => ending,
            Err(code) => {
                rotator.abort();
                signals.abort();
                proxy.shutdown(Duration::ZERO).await;
                sts.stop().await;
                return Ok(ExitCode::from(code));
            }
        }
    };

    let report = report::build(&bench.ledger.snapshot(), &bench.facts(), &ending);
    let code = ExitCode::from(report.exit_code);

    signals.abort();
    control.stop().await;
    rotator.abort();
    proxy.shutdown(Duration::ZERO).await;
    sts.stop().await;
    drop(temp);
    // Last, so that it is the end of the output.
    let rendered = match s.report {
        LogFormat::Json => report.json(),
        LogFormat::Text => report.text(),
    };
    // With a file, the file gets the chosen format and the terminal the text.
    match &s.report_file {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &rendered) {
                eprintln!("irsa-proxy: error: --report-file {}: {e}", path.display());
            }
            eprint!("{}", report.text());
        }
        None => eprint!("{rendered}"),
    }
    Ok(code)
}

/// The addresses `--link-local` serves on, port 80.
const LINK_LOCAL_LISTEN: [std::net::IpAddr; 2] = [
    std::net::IpAddr::V4(crate::netns::ECS_ADDR),
    std::net::IpAddr::V4(crate::netns::IMDS_V4),
];

/// Adds the link-local credential addresses to `lo`, but only in a network
/// namespace with no route out: on a cloud VM's own namespace, 169.254.169.254
/// on `lo` would hijack the real metadata service for every process.
async fn add_link_local_addresses() -> Result<(), Fatal> {
    let routes = crate::netns::routes_out()
        .await
        .map_err(|e| Fatal::Runtime(format!("--link-local: {e}")))?;
    if !routes.is_empty() {
        return Err(Fatal::usage(format!(
            "--link-local: this network namespace has a route out ({}); adding 169.254.169.254 here could hijack a real metadata service. Give dev a command (`dev --link-local -- CMD` makes a namespace of its own), or run it in one you made: unshare --net -- sh -c 'ip link set lo up && irsa-proxy dev --link-local'",
            routes.join("; ")
        )));
    }
    crate::netns::add_to_loopback(&LINK_LOCAL_LISTEN)
        .await
        .map_err(|e| Fatal::Runtime(format!("--link-local: {e}")))
}

/// Variables of the caller's environment that would let the command find other
/// credentials or configuration before the proxy's.
fn is_aws_variable(name: &str) -> bool {
    name.starts_with("AWS_") || name.starts_with("AMAZON_")
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// How long a command stopped at `--for` has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs the command with the export lines set and every other AWS variable
/// removed; profile files point at empty files so the SDKs' chains reach the
/// container provider. Returns how it ended, or `Err(126|127)` when it could
/// not be started (as a shell says it).
async fn run_command(
    command: &[String],
    exports: &[(&str, String)],
    root: &std::path::Path,
    deadline: Option<Instant>,
) -> Result<Result<Ending, u8>, Fatal> {
    let empty = root.join("empty-aws-config");
    std::fs::write(&empty, "")
        .map_err(|e| Fatal::Runtime(format!("cannot write {}: {e}", empty.display())))?;
    let mut env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| !is_aws_variable(k))
        .collect();
    for (k, v) in exports {
        env.insert(k.to_string(), v.clone());
    }
    env.insert("AWS_CONFIG_FILE".into(), empty.display().to_string());
    env.insert(
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        empty.display().to_string(),
    );
    let child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env_clear()
        .envs(&env)
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("irsa-proxy: error: cannot run {:?}: {e}", command[0]);
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Ok(Err(code));
        }
    };
    let waited = |status: std::io::Result<std::process::ExitStatus>| {
        status.map_err(|e| Fatal::Runtime(format!("waiting for {:?}: {e}", command[0])))
    };
    tokio::select! {
        status = child.wait() => {
            let status = waited(status)?;
            tracing::info!(code = ?status.code(), "dev: the command exited");
            Ok(Ok(ending_of(status)))
        }
        _ = sleep_until(deadline) => {
            tracing::info!("dev: --for ran out; stopping the command (SIGTERM)");
            if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill(2) on our own child's pid, which `child` keeps
                // from being reaped (and reused) until `wait` below.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
            if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            Ok(Ok(Ending::TimeUp))
        }
        _ = crate::serving::shutdown_signal() => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Ok(Ok(Ending::Interrupted))
        }
    }
}

fn ending_of(status: std::process::ExitStatus) -> Ending {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Ending::Exited(code),
        (None, Some(sig)) => Ending::Signaled(sig),
        (None, None) => Ending::Exited(1),
    }
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
            link_local: false,
            sts_tls: false,
            run_for: None,
            report: "text".into(),
            report_file: None,
            sts_fail: None,
            sts_outage: vec![],
            expired_token: vec![],
            early_expiry: None,
            scenario: None,
            command: vec![],
        }
    }

    #[test]
    fn defaults_should_validate() {
        assert!(validate(&args()).is_ok());
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
    fn only_aws_variables_should_be_removed() {
        assert!(is_aws_variable("AWS_ACCESS_KEY_ID"));
        assert!(is_aws_variable("AWS_PROFILE"));
        assert!(!is_aws_variable("PATH"));
        assert!(!is_aws_variable("HOME"));
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
            "--report: \"yaml\" is not a format; expected text or json",
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

    #[test]
    fn the_token_schedule_should_open_and_close_expired_windows() {
        let s = Schedule {
            expired_tokens: vec![
                Window {
                    start: Duration::from_secs(10),
                    length: Duration::from_secs(5),
                },
                Window {
                    start: Duration::from_secs(30),
                    length: Duration::from_secs(1),
                },
            ],
        };
        let secs = Duration::from_secs;
        assert!(!s.expired_at(secs(9)));
        assert!(s.expired_at(secs(10)));
        assert!(s.expired_at(secs(14)));
        assert!(!s.expired_at(secs(15)));
        assert_eq!(s.next_edge(secs(0)), Some(secs(10)));
        assert_eq!(s.next_edge(secs(10)), Some(secs(15)));
        assert_eq!(s.next_edge(secs(15)), Some(secs(30)));
        assert_eq!(s.next_edge(secs(31)), None);
    }
}
