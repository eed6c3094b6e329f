//! The `irsa-proxy` binary: parse the command line, run the subcommand, map its
//! failure to an exit code (2 for bad configuration or input, 1 otherwise).

// Outside tests nothing may panic on a value that could come from outside;
// tests unwrap freely (clippy.toml allows it in #[test] code).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::process::ExitCode;

use clap::Parser;
use irsa_proxy::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `dev --link-local -- CMD` makes a network namespace of its own for itself
    // and the command, before any thread starts (see `netns::enter_own_namespace`).
    // If that fails, dev's own check refuses a namespace with a route out.
    #[cfg(feature = "tools")]
    if let Command::Dev(args) = &cli.command {
        if args.link_local && !args.command.is_empty() {
            if let Err(e) = irsa_proxy::sidecar::netns::enter_own_namespace() {
                eprintln!("irsa-proxy: dev --link-local: cannot make a network namespace of its own ({e}); staying in this one");
            }
        }
    }
    // One thread, chosen by measurement (BENCHMARKS.md): a sidecar usually gets
    // a fraction of one core, and with two workers on it the OS preempts one
    // worker while it holds ready connections, which multiplied p99 at 1024
    // connections by four; current_thread also answered as many requests per
    // second on one core as two workers did. The STS refresher runs on a thread
    // of its own (serve.rs, `spawn_refresher`); the token watcher is a task on
    // this runtime, fed by notify's own thread.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .thread_name("irsa-proxy")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("irsa-proxy: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => irsa_proxy::sidecar::serve::run(args).await,
            #[cfg(feature = "tools")]
            Command::Dev(args) => irsa_proxy::tools::dev::run(args).await,
            #[cfg(feature = "tools")]
            Command::StsEmulator(args) => irsa_proxy::tools::emulator::run(args).await,
            #[cfg(feature = "tools")]
            Command::Mint(args) => irsa_proxy::tools::mint::run(args).await,
            Command::Doctor(args) => irsa_proxy::sidecar::doctor::run(args).await,
            #[cfg(feature = "tools")]
            Command::Inject(args) => irsa_proxy::tools::inject::run(args).await,
            #[cfg(feature = "tools")]
            Command::Webhook(args) => irsa_proxy::tools::webhook::run(args).await,
            Command::Probe(args) => irsa_proxy::sidecar::probe::run(args).await,
            Command::LinkLocal(args) => {
                irsa_proxy::sidecar::link_local::run(args, &irsa_proxy::sidecar::config::ProcessEnv)
                    .await
            }
        }
    });
    // Do not wait for blocking tasks (stdin readers) to finish.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(fatal) => {
            for line in fatal.to_string().lines() {
                eprintln!("irsa-proxy: error: {line}");
            }
            ExitCode::from(fatal.exit_code())
        }
    }
}
