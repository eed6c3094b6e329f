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
use crate::tools::emulator::Issuer;
use crate::Fatal;

/// The subcommand: check every flag, then print one signed token.
pub async fn run(args: MintArgs) -> Result<ExitCode, Fatal> {
    use crate::flags::{Flag, Flags, NoEnvironment, Refusal};
    const TTL: Flag = Flag::bare("--ttl");
    const ISSUER_KEY: Flag = Flag::bare("--issuer-key");
    const SUB: Flag = Flag::bare("--sub");

    let mut f = Flags::new(&NoEnvironment);
    let ttl = f.parse(&TTL, Some(&args.ttl), |v| {
        let d = parse_duration(v)
            .map_err(|forms| Refusal::new("is not a duration", forms.to_string()))?;
        if d.is_zero() {
            Err(Refusal::new("is zero", "a duration of 1s or more"))
        } else {
            Ok(d)
        }
    });
    let key_path = args.issuer_key.display().to_string();
    let issuer = f.parse(&ISSUER_KEY, Some(&key_path), |_| {
        let pem = std::fs::read(&args.issuer_key)
            .map_err(|e| Refusal::new(format!("cannot be read ({e})"), "a readable file"))?;
        Issuer::from_private_key_pem(args.issuer.clone(), &pem).map_err(|e| {
            Refusal::new(
                format!("is not usable: {e}"),
                "a PEM private key (PKCS#8, or PKCS#1 RSA)",
            )
        })
    });
    f.parse(&SUB, Some(&args.sub), |v| {
        if v.trim().is_empty() {
            Err(Refusal::new(
                "is empty",
                "a subject such as system:serviceaccount:NS:SA",
            ))
        } else {
            Ok(())
        }
    });
    let (ttl, issuer) = f.finish(|| Some((ttl?, issuer?))).map_err(Fatal::Flags)?;
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
