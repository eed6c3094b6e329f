//! Placeholder until the subcommand lands.

use std::process::ExitCode;

use crate::cli::InjectArgs;
use crate::Fatal;

pub async fn run(_args: InjectArgs) -> Result<ExitCode, Fatal> {
    Err(Fatal::Runtime("this subcommand is not built yet".into()))
}
