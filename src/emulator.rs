//! Placeholder until the subcommand lands.

use std::process::ExitCode;

use crate::cli::EmulatorArgs;
use crate::Fatal;

pub async fn run(_args: EmulatorArgs) -> Result<ExitCode, Fatal> {
    Err(Fatal::Runtime("this subcommand is not built yet".into()))
}
