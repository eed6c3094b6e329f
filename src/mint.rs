//! `mint`: sign a web-identity token with a private key, so that the
//! `sts-emulator` (given the matching public key) can be tried by hand without
//! a cluster. The token goes to standard output and nowhere else.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use serde_json::json;

use crate::cli::MintArgs;
use crate::clock::unix_seconds;
use crate::duration::parse_duration;
use crate::emulator::Issuer;
use crate::Fatal;

/// The subcommand: check every flag, then print one signed token.
pub async fn run(args: MintArgs) -> Result<ExitCode, Fatal> {
    let mut errors = Vec::new();
    let ttl = parse_duration(&args.ttl)
        .map_err(|allowed| format!("--ttl: {:?}: expected {allowed}", args.ttl))
        .and_then(|d| {
            if d.is_zero() {
                Err(format!("--ttl: {:?}: must be more than 0s", args.ttl))
            } else {
                Ok(d)
            }
        });
    let issuer = std::fs::read(&args.issuer_key)
        .map_err(|e| {
            format!(
                "--issuer-key: {}: cannot read: {e}",
                args.issuer_key.display()
            )
        })
        .and_then(|pem| {
            Issuer::from_private_key_pem(args.issuer.clone(), &pem)
                .map_err(|e| format!("--issuer-key: {}: {e}", args.issuer_key.display()))
        });
    if args.sub.trim().is_empty() {
        errors.push("--sub: must not be empty".to_string());
    }
    let (ttl, issuer) = match (ttl, issuer) {
        (Ok(ttl), Ok(issuer)) if errors.is_empty() => (ttl, issuer),
        (ttl, issuer) => {
            errors.extend(ttl.err());
            errors.extend(issuer.err());
            return Err(Fatal::Usage(errors.join("\n")));
        }
    };
    let now = unix_seconds(SystemTime::now());
    let exp = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2));
    let token = issuer
        .mint(&json!({
            "iss": args.issuer,
            "sub": args.sub,
            "aud": args.aud,
            "iat": now,
            "nbf": now,
            "exp": exp,
        }))
        .map_err(|e| Fatal::Runtime(e.to_string()))?;
    // No newline into a file or a pipe: `curl --data-urlencode WebIdentityToken@token`
    // and `file://token` send a file's bytes as they are, and a JWT with a newline
    // is malformed (kubelet's token files have none either). A terminal gets one.
    let mut stdout = std::io::stdout().lock();
    let end = if stdout.is_terminal() { "\n" } else { "" };
    write!(stdout, "{token}{end}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Fatal::Runtime(format!("stdout: cannot write: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
