//! `irsa-proxy dev`: the whole credential chain on one machine, no AWS account.
//!
//! In one process: the STS emulator on a loopback port, an RSA issuer, a signed
//! service-account token in a temporary directory written with kubelet's `..data`
//! swap and rotated at 80 % of `--token-ttl`, and `serve` pointed at both. Prints
//! the `export` lines an app needs, or with `-- COMMAND ARGS...` runs the command
//! with them (and none of the caller's AWS credentials or profiles) and exits with
//! its exit code. The temporary directory is removed on exit.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::arn::RoleArn;
use crate::cli::DevArgs;
use crate::config::Config;
use crate::duration::format_duration;
use crate::emulator::{self, EmulatorSettings, Issuer, ServiceAccountToken};
use crate::flags::{self, dev as f, FlagError, Flags, NoEnvironment, Refusal};
use crate::logging::LogFormat;
use crate::serve;
use crate::token::projected::ProjectedTokenDir;
use crate::Fatal;

const ISSUER: &str = "https://oidc.irsa-proxy.local/id/dev";
const NAMESPACE: &str = "default";
const SERVICE_ACCOUNT: &str = "dev";
const AUDIENCE: &str = "sts.amazonaws.com";
const REGION: &str = "us-east-1";

struct DevSettings {
    listen: std::net::SocketAddr,
    link_local: bool,
    credential_ttl: Duration,
    token_ttl: Duration,
    role_arn: RoleArn,
    log_format: LogFormat,
}

fn validate(args: &DevArgs) -> Result<DevSettings, Vec<FlagError>> {
    let mut flags = Flags::new(&NoEnvironment);
    let credential_ttl = flags.parse(
        &f::CREDENTIAL_TTL,
        Some(&args.credential_ttl),
        flags::duration_in(f::CREDENTIAL_TTL_RANGE),
    );
    let token_ttl = flags.parse(
        &f::TOKEN_TTL,
        Some(&args.token_ttl),
        flags::duration_in(f::TOKEN_TTL_RANGE),
    );
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
    flags.finish(|| {
        Some(DevSettings {
            listen: listen?,
            link_local: args.link_local,
            credential_ttl: credential_ttl?,
            token_ttl: token_ttl?,
            role_arn: role_arn?,
            log_format: log_format?,
        })
    })
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
    let sts = emulator::spawn(
        "127.0.0.1:0".parse().map_err(|e| runtime("address", &e))?,
        settings,
    )
    .await
    .map_err(|e| runtime("cannot start the STS emulator", &e))?;
    tracing::info!(endpoint = %sts.endpoint_url(), "STS emulator listening");

    let token_dir = root.join("serviceaccount");
    std::fs::create_dir(&token_dir)
        .map_err(|e| runtime("cannot create the token directory", &e))?;
    let token_ttl = s.token_ttl;
    let mint = move |issuer: &Issuer| {
        issuer.mint_service_account(&ServiceAccountToken {
            namespace: NAMESPACE,
            service_account: SERVICE_ACCOUNT,
            audience: AUDIENCE,
            issued_at: SystemTime::now(),
            ttl: token_ttl,
        })
    };
    let first = mint(&issuer).map_err(|e| runtime("cannot sign a token", &e))?;
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
    // The emulator is in this process, on loopback: never through a proxy the
    // caller's environment names.
    config.egress.ignore_proxy_variables = true;
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
    let addr = proxy.addrs[0];

    // Rotate at 80 % of the token's lifetime, as kubelet does.
    let rotate_every = s.token_ttl.mul_f64(0.8);
    let issuer = Arc::new(issuer);
    let rotator = tokio::spawn({
        let issuer = issuer.clone();
        let mut projected = projected;
        async move {
            let mut tick = tokio::time::interval(rotate_every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match mint(&issuer).map(|t| projected.write(&t)) {
                    Ok(Ok(())) => tracing::info!(
                        next_in_s = rotate_every.as_secs(),
                        "dev: wrote a new web-identity token (kubelet ..data swap)"
                    ),
                    Ok(Err(e)) => tracing::error!(error = %e, "dev: cannot write the new token"),
                    Err(e) => tracing::error!(error = %e, "dev: cannot sign a new token"),
                }
            }
        }
    });

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
    // Most SDKs read AWS_REGION; botocore reads AWS_DEFAULT_REGION.
    exports.push(("AWS_REGION", REGION.to_string()));
    exports.push(("AWS_DEFAULT_REGION", REGION.to_string()));

    let code = if args.command.is_empty() {
        for (k, v) in &exports {
            println!("export {k}={v}");
        }
        tracing::info!(
            credential_ttl = %format_duration(s.credential_ttl),
            token_ttl = %format_duration(s.token_ttl),
            "dev: ready; paste the export lines into another shell. Ctrl-C stops."
        );
        crate::serving::shutdown_signal().await;
        ExitCode::SUCCESS
    } else {
        run_command(&args.command, &exports, &root).await?
    };

    rotator.abort();
    proxy.shutdown(Duration::ZERO).await;
    sts.stop().await;
    drop(temp);
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

/// Runs the command with the export lines set and every other AWS variable
/// removed; profile files point at empty files so the SDKs' chains reach the
/// container provider. Exits with the command's code.
async fn run_command(
    command: &[String],
    exports: &[(&str, String)],
    root: &std::path::Path,
) -> Result<ExitCode, Fatal> {
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
            // As a shell does: 127 for a command not found, 126 for one that
            // cannot be executed, and one line saying which.
            eprintln!("irsa-proxy: error: cannot run {:?}: {e}", command[0]);
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Ok(ExitCode::from(code));
        }
    };
    tokio::select! {
        status = child.wait() => {
            let status = status.map_err(|e| Fatal::Runtime(format!("waiting for {:?}: {e}", command[0])))?;
            let code = status.code().unwrap_or(1).clamp(0, 255) as u8;
            tracing::info!(code, "dev: the command exited");
            Ok(ExitCode::from(code))
        }
        _ = crate::serving::shutdown_signal() => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Ok(ExitCode::from(130))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DevArgs {
        DevArgs {
            listen: "127.0.0.1:0".into(),
            credential_ttl: "5m".into(),
            token_ttl: "10m".into(),
            role_arn: "arn:aws:iam::111122223333:role/irsa-proxy-dev".into(),
            log_format: "text".into(),
            link_local: false,
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
            credential in proptest::option::of(30u64..=43_200),
            token in proptest::option::of(20u64..=86_400),
            out_of_range in proptest::option::of(43_201u64..=10_000_000),
        ) {
            use clap::Parser;
            let mut argv = vec!["irsa-proxy".to_string(), "dev".to_string()];
            if let Some(c) = credential {
                argv.extend(["--credential-ttl".into(), format!("{c}s")]);
            }
            if let Some(t) = token {
                argv.extend(["--token-ttl".into(), format!("{t}s")]);
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
        a.credential_ttl = "10s".into();
        a.token_ttl = "5s".into();
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
}
