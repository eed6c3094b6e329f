//! A throwaway CA and one serving certificate it signs: `webhook certs` for
//! clusters without cert-manager, `dev --sts-tls` and the private-cluster tests
//! for the emulator over HTTPS. The CA's key is dropped once the certificate is
//! signed: nothing else is ever signed with it.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

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
