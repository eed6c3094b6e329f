//! The command `dev` runs after `--`: its environment (the export lines, and
//! none of the caller's AWS variables or profiles), and how it ends: on its
//! own, at `--for` (SIGTERM, then SIGKILL after a grace), or at Ctrl-C.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::report::Ending;
use crate::Fatal;

/// Variables of the caller's environment that would let the command find other
/// credentials or configuration before the proxy's.
fn is_aws_variable(name: &str) -> bool {
    name.starts_with("AWS_") || name.starts_with("AMAZON_")
}

/// Sleeps until `deadline`, or forever without one.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
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
pub(super) async fn run_command(
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
        _ = crate::sidecar::http_server::shutdown_signal() => {
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

    #[test]
    fn only_aws_variables_should_be_removed() {
        assert!(is_aws_variable("AWS_ACCESS_KEY_ID"));
        assert!(is_aws_variable("AWS_PROFILE"));
        assert!(!is_aws_variable("PATH"));
        assert!(!is_aws_variable("HOME"));
    }
}
