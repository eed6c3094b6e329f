//! Placeholder until the subcommand lands.

use std::process::ExitCode;

use crate::cli::DoctorArgs;
use crate::Fatal;

pub async fn run(_args: DoctorArgs) -> Result<ExitCode, Fatal> {
    Err(Fatal::Runtime("this subcommand is not built yet".into()))
}
