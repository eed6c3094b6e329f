//! `irsa-proxy webhook certs`: a serving certificate for clusters without
//! cert-manager, and for trying the webhook on one's own machine.
//!
//! Makes a new CA (its key is never written: nothing else is ever signed with
//! it, and a new run makes a new one) and a serving certificate signed by it
//! for the Service's DNS names (and, with `--localhost`, for `localhost`,
//! `127.0.0.1` and `::1`). Then either prints a `kubernetes.io/tls` Secret
//! (`tls.crt`, `tls.key`, `ca.crt`) as YAML, preceded by the `kubectl patch`
//! command that puts the CA into the `MutatingWebhookConfiguration`'s
//! `caBundle` (a YAML comment, so the output applies as it is), or, with
//! `--out-dir`, writes the same three files as PEM into a directory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::WebhookCertsArgs;
use crate::flags::{self, webhook_certs as f, Flags, NoEnvironment, Refusal};
use crate::tools::tls::ca::{issue, Issued};
use crate::Fatal;

/// Webhook entries in k8s/webhook/mutatingwebhookconfiguration.yaml.
const WEBHOOK_ENTRIES: usize = 2;

/// The names `--localhost` adds.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

fn dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Why the files of `--out-dir` could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("--out-dir {dir}: cannot create the directory: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("--out-dir: {file}: cannot write: {source}")]
    File {
        file: PathBuf,
        source: std::io::Error,
    },
}

pub fn run(args: &WebhookCertsArgs) -> Result<ExitCode, Fatal> {
    let mut flags = Flags::new(&NoEnvironment);
    for (flag, v) in [
        (&f::SERVICE, &args.service),
        (&f::NAMESPACE, &args.namespace),
        (&f::SECRET, &args.secret),
        (&f::CONFIGURATION, &args.configuration),
    ] {
        flags.parse(flag, Some(v), |v| {
            if dns_label(v) {
                Ok(())
            } else {
                Err(Refusal::new(
                    "is not a DNS label",
                    "lowercase letters, digits and '-', at most 63",
                ))
            }
        });
    }
    flags.parse(
        &f::DAYS,
        Some(&args.days.to_string()),
        flags::number_in(f::DAYS_RANGE),
    );
    if let Some(dir) = &args.out_dir {
        flags.parse(&f::OUT_DIR, dir.to_str().or(Some("")), |d| {
            if d.trim().is_empty() {
                Err(Refusal::new("is empty", "a directory, made if missing"))
            } else {
                Ok(())
            }
        });
    }
    flags.finish(|| Some(())).map_err(Fatal::Flags)?;
    let issued = issue_for(args).map_err(|e| Fatal::Runtime(format!("certificates: {e}")))?;
    match &args.out_dir {
        Some(dir) => {
            write_pem_files(dir, &issued).map_err(|e| Fatal::Runtime(e.to_string()))?;
            let shown = dir.display();
            eprintln!(
                "wrote {shown}/tls.crt, {shown}/tls.key and {shown}/ca.crt: a serving certificate for {}, valid {} days, from a new CA whose key was not kept",
                names(args).join(", "),
                args.days
            );
        }
        None => print!("{}", secret_yaml(args, &issued)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `tls.crt`, `tls.key` (mode 0600) and `ca.crt` in `dir`, each written to a
/// temporary file and renamed over the old one, so that a webhook reloading
/// them never reads half a file.
pub fn write_pem_files(dir: &Path, issued: &Issued) -> Result<(), WriteError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|source| WriteError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    for (name, pem, mode) in [
        ("ca.crt", &issued.ca_pem, 0o644),
        ("tls.key", &issued.key_pem, 0o600),
        ("tls.crt", &issued.cert_pem, 0o644),
    ] {
        let file = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let error = |source| WriteError::File {
            file: file.clone(),
            source,
        };
        let _ = std::fs::remove_file(&tmp);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .and_then(|mut out| out.write_all(pem.as_bytes()))
            .map_err(error)?;
        std::fs::rename(&tmp, &file).map_err(error)?;
    }
    Ok(())
}

/// The serving certificate's names: the Service's, first the one the API
/// server calls (`SERVICE.NAMESPACE.svc`), then the local ones if asked for.
fn names(args: &WebhookCertsArgs) -> Vec<String> {
    let (svc, ns) = (&args.service, &args.namespace);
    let mut names = vec![
        format!("{svc}.{ns}.svc"),
        svc.clone(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ];
    if args.localhost {
        names.extend(LOCAL_NAMES.iter().map(|n| n.to_string()));
    }
    names
}

fn issue_for(args: &WebhookCertsArgs) -> Result<Issued, rcgen::Error> {
    issue(
        &format!("irsa-proxy webhook CA {}/{}", args.namespace, args.service),
        names(args),
        args.days,
    )
}

/// The Secret and the patch command, as text.
fn secret_yaml(args: &WebhookCertsArgs, issued: &Issued) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (svc, ns) = (&args.service, &args.namespace);
    let ca_bundle = b64(&issued.ca_pem);
    let ops: Vec<String> = (0..WEBHOOK_ENTRIES)
        .map(|i| {
            format!(
                r#"{{"op":"add","path":"/webhooks/{i}/clientConfig/caBundle","value":"{ca_bundle}"}}"#
            )
        })
        .collect();
    format!(
        "# Serving certificate for {svc}.{ns}.svc, valid {days} days, from a new CA whose key was not kept.\n\
         # Apply this Secret, then put the CA into the webhook configuration:\n\
         #   kubectl patch mutatingwebhookconfiguration {conf} --type=json -p '[{ops}]'\n\
         apiVersion: v1\n\
         kind: Secret\n\
         type: kubernetes.io/tls\n\
         metadata:\n  name: {secret}\n  namespace: {ns}\n\
         data:\n  tls.crt: {crt}\n  tls.key: {key}\n  ca.crt: {ca_bundle}\n",
        days = args.days,
        conf = args.configuration,
        ops = ops.join(","),
        secret = args.secret,
        crt = b64(&issued.cert_pem),
        key = b64(&issued.key_pem),
    )
}
