//! `irsa-proxy webhook certs`: a serving certificate for clusters without
//! cert-manager.
//!
//! Makes a new CA (its key is never written: nothing else is ever signed with
//! it, and a new run makes a new one) and a serving certificate signed by it
//! for the Service's DNS names, then prints a `kubernetes.io/tls` Secret
//! (`tls.crt`, `tls.key`, `ca.crt`) as YAML, preceded by the `kubectl patch`
//! command that puts the CA into the `MutatingWebhookConfiguration`'s
//! `caBundle` (a YAML comment, so the output applies as it is).

use std::process::ExitCode;

use clap::Args;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::Fatal;

/// Flags of `webhook certs`.
#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// The webhook's Service name
    #[arg(long, value_name = "NAME", default_value = "irsa-proxy-webhook")]
    pub service: String,

    /// The webhook's namespace
    #[arg(long, value_name = "NS", default_value = "irsa-proxy-system")]
    pub namespace: String,

    /// Name of the Secret to print (the Deployment mounts this one)
    #[arg(long, value_name = "NAME", default_value = "irsa-proxy-webhook-tls")]
    pub secret: String,

    /// The MutatingWebhookConfiguration whose caBundle the patch sets
    #[arg(long, value_name = "NAME", default_value = "irsa-proxy-webhook")]
    pub configuration: String,

    /// Validity of the certificates in days, 1..=3650
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    pub days: u32,
}

/// Webhook entries in k8s/webhook/mutatingwebhookconfiguration.yaml.
const WEBHOOK_ENTRIES: usize = 2;

fn dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn run(args: &CertsArgs) -> Result<ExitCode, Fatal> {
    use crate::flags::{self, Flag, Flags, NoEnvironment, Refusal};
    const NAMES: [Flag; 4] = [
        Flag::bare("--service"),
        Flag::bare("--namespace"),
        Flag::bare("--secret"),
        Flag::bare("--configuration"),
    ];
    let mut f = Flags::new(&NoEnvironment);
    for (flag, v) in NAMES.iter().zip([
        &args.service,
        &args.namespace,
        &args.secret,
        &args.configuration,
    ]) {
        f.parse(flag, Some(v), |v| {
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
    f.parse(
        &Flag::bare("--days"),
        Some(&args.days.to_string()),
        flags::number_in(1u32..=3650),
    );
    f.finish(|| Some(())).map_err(Fatal::Flags)?;
    let out = generate(args).map_err(|e| Fatal::Runtime(format!("certificates: {e}")))?;
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Backdated by an hour for clocks a little behind ours.
    let start = now.saturating_sub(3600);
    let end = now + u64::from(days) * 86400;
    let at = |secs: u64| rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(secs);
    params.not_before = at(start);
    params.not_after = at(end);
}

/// A new CA (whose key is not kept) and a serving certificate it signed.
#[derive(Debug)]
pub struct Issued {
    pub ca_pem: String,
    pub cert_pem: String,
    /// PEM private key of `cert_pem`.
    pub key_pem: String,
}

/// Issues a CA named `ca_name` and a serving certificate for `names` (DNS
/// names or IP addresses; the first is the common name), valid `days`.
pub fn issue(ca_name: &str, names: Vec<String>, days: u32) -> Result<Issued, rcgen::Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name.to_string());
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca_params, days);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let common_name = names.first().cloned().unwrap_or_default();
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut params, days);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(Issued {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The Secret and the patch command, as text.
pub fn generate(args: &CertsArgs) -> Result<String, rcgen::Error> {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);

    let (svc, ns) = (&args.service, &args.namespace);
    let issued = issue(
        &format!("irsa-proxy webhook CA {ns}/{svc}"),
        vec![
            format!("{svc}.{ns}.svc"),
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ],
        args.days,
    )?;
    let ca_bundle = b64(&issued.ca_pem);
    let ops: Vec<String> = (0..WEBHOOK_ENTRIES)
        .map(|i| {
            format!(
                r#"{{"op":"add","path":"/webhooks/{i}/clientConfig/caBundle","value":"{ca_bundle}"}}"#
            )
        })
        .collect();
    Ok(format!(
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
    ))
}
