//! The `irsa-proxy` binary: parse the command line, run the subcommand, map its
//! failure to an exit code (2 for bad configuration or input, 1 otherwise).

use std::process::ExitCode;

use clap::Parser;
use irsa_proxy::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One thread, chosen by measurement (BENCHMARKS.md): a sidecar usually gets
    // a fraction of one core, and with two workers on it the OS preempts one
    // worker while it holds ready connections, which multiplied p99 at 1024
    // connections by four; current_thread also answered as many requests per
    // second on one core as two workers did. Blocking work (the token watcher,
    // DNS) still runs on tokio's blocking pool.
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
            Command::Serve(args) => irsa_proxy::serve::run(args).await,
            Command::Dev(args) => irsa_proxy::dev::run(args).await,
            Command::StsEmulator(args) => irsa_proxy::emulator::run(args).await,
            Command::Doctor(args) => irsa_proxy::doctor::run(args).await,
            Command::Inject(args) => irsa_proxy::inject::run(args).await,
            Command::Webhook(args) => irsa_proxy::webhook::run(args).await,
            Command::Probe(args) => irsa_proxy::probe::run(args).await,
            Command::LinkLocal(args) => {
                irsa_proxy::link_local::run(args, &irsa_proxy::config::ProcessEnv).await
            }
        }
    });
    // Do not wait for blocking tasks (the notify watcher, stdin readers) to finish.
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
