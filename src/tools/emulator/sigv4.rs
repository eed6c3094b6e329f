//! SigV4 verification for `GetCallerIdentity` and the S3 emulation: find the
//! issued credentials the request names, and recompute its signature with
//! `aws-sigv4` from their secret.
//!
//! Both forms are accepted: the `Authorization: AWS4-HMAC-SHA256 ...` header (what
//! SDKs send) and a presigned query string (`X-Amz-Signature=...`). The signature
//! is recomputed over exactly the headers the client says it signed. For S3 the
//! canonical request follows S3's rules (the path encoded once and not
//! normalised; the payload hash is what `x-amz-content-sha256` says, which the
//! caller checks against the body). Every verification is recorded in the
//! [`Ledger`], classified.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use http::request::Parts;
use subtle::ConstantTimeEq;

use super::ledger::{CallClass, Ledger};
use super::store::{IssuedCredentials, IssuedStore};
use super::xml::StsFault;

/// The service a request is verified for: its credential scope and the rules of
/// its canonical request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Sts,
    S3,
}

impl Service {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Sts => "sts",
            Service::S3 => "s3",
        }
    }
}

/// What the signature covers of the body.
pub(crate) enum Payload<'a> {
    /// The body itself (STS: its SHA-256 is computed here).
    Bytes(&'a [u8]),
    /// The payload hash the request declares (S3's `x-amz-content-sha256`: a hex
    /// SHA-256, `UNSIGNED-PAYLOAD` or a `STREAMING-...` form).
    Declared(String),
}

/// A refused request: its class in the ledger, and the STS error.
#[derive(Debug)]
pub(crate) struct Refused {
    pub class: CallClass,
    pub fault: StsFault,
}

/// How far the request's `X-Amz-Date` may be from the emulator's clock, as AWS allows.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The signing values a request carries, from its header or its query.
struct Presented {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    session_token: Option<String>,
    /// `Some(expires)` for a presigned URL.
    expires_in: Option<Duration>,
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Parses `Credential=AKID/20240101/us-east-1/sts/aws4_request`.
fn parse_scope(credential: &str) -> Result<(String, String, String, String), StsFault> {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [akid, date, region, service, "aws4_request"] if !akid.is_empty() => Ok((
            akid.to_string(),
            date.to_string(),
            region.to_string(),
            service.to_string(),
        )),
        _ => Err(StsFault::incomplete_signature(
            "Authorization header requires a Credential of the form <key>/<date>/<region>/<service>/aws4_request",
        )),
    }
}

fn from_header(value: &str, parts: &Parts) -> Result<Presented, StsFault> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        StsFault::incomplete_signature(
            "Only the AWS4-HMAC-SHA256 authorization scheme is supported",
        )
    })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for item in rest.split(',') {
        let item = item.trim();
        if let Some(v) = item.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = item.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = item.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(StsFault::incomplete_signature(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters",
        ));
    };
    let (access_key_id, date, region, service) = parse_scope(credential)?;
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let amz_date = header("x-amz-date").ok_or_else(|| {
        StsFault::incomplete_signature("Authorization header requires an X-Amz-Date header")
    })?;
    Ok(Presented {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
        signature: signature.to_string(),
        amz_date,
        session_token: header("x-amz-security-token"),
        expires_in: None,
    })
}

fn from_query(query: &[(String, String)]) -> Result<Presented, StsFault> {
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let missing = |what: &str| {
        StsFault::incomplete_signature(format!("Presigned request requires the {what} parameter"))
    };
    if get("X-Amz-Algorithm").as_deref() != Some("AWS4-HMAC-SHA256") {
        return Err(StsFault::incomplete_signature(
            "Only the AWS4-HMAC-SHA256 algorithm is supported",
        ));
    }
    let credential = get("X-Amz-Credential").ok_or_else(|| missing("X-Amz-Credential"))?;
    let (access_key_id, date, region, service) = parse_scope(&credential)?;
    let expires: u64 = get("X-Amz-Expires")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| missing("X-Amz-Expires"))?;
    Ok(Presented {
        access_key_id,
        date,
        region,
        service,
        signed_headers: get("X-Amz-SignedHeaders")
            .ok_or_else(|| missing("X-Amz-SignedHeaders"))?
            .split(';')
            .map(str::to_ascii_lowercase)
            .collect(),
        signature: get("X-Amz-Signature").ok_or_else(|| missing("X-Amz-Signature"))?,
        amz_date: get("X-Amz-Date").ok_or_else(|| missing("X-Amz-Date"))?,
        session_token: get("X-Amz-Security-Token"),
        expires_in: Some(Duration::from_secs(expires.min(7 * 24 * 3600))),
    })
}

/// `20240101T120000Z` to a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if !s.is_ascii() || b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// Verifies the request's signature for `service`, records the outcome in
/// `ledger`, and returns the credentials that made it.
///
/// `query` is the decoded query string in order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn verify(
    parts: &Parts,
    query: &[(String, String)],
    payload: Payload<'_>,
    store: &IssuedStore,
    ledger: &Ledger,
    service: Service,
    now: SystemTime,
) -> Result<IssuedCredentials, Refused> {
    let mut key = None;
    let result = verify_presented(parts, query, payload, store, ledger, service, now, &mut key);
    let class = match &result {
        Ok(_) => CallClass::Live,
        Err(r) => r.class,
    };
    let class = ledger.call(service.name(), key.as_deref(), class, now);
    result.map_err(|r| Refused { class, ..r })
}

/// [`verify`] for a chained `AssumeRole`: the proxy's own call, not an app's,
/// so it is not recorded among the signed calls `dev`'s verdict counts.
pub(crate) fn verify_hop(
    parts: &Parts,
    query: &[(String, String)],
    payload: Payload<'_>,
    store: &IssuedStore,
    ledger: &Ledger,
    now: SystemTime,
) -> Result<IssuedCredentials, Refused> {
    let mut key = None;
    verify_presented(
        parts,
        query,
        payload,
        store,
        ledger,
        Service::Sts,
        now,
        &mut key,
    )
}

#[allow(clippy::too_many_arguments)]
fn verify_presented(
    parts: &Parts,
    query: &[(String, String)],
    payload: Payload<'_>,
    store: &IssuedStore,
    ledger: &Ledger,
    service: Service,
    now: SystemTime,
    key: &mut Option<String>,
) -> Result<IssuedCredentials, Refused> {
    let rejected = |fault| Refused {
        class: CallClass::Rejected,
        fault,
    };
    let presented = if let Some(auth) = parts.headers.get(http::header::AUTHORIZATION) {
        let auth = auth.to_str().map_err(|_| {
            rejected(StsFault::incomplete_signature(
                "Authorization header is not ASCII",
            ))
        })?;
        from_header(auth, parts).map_err(rejected)?
    } else if query.iter().any(|(k, _)| k == "X-Amz-Signature") {
        from_query(query).map_err(rejected)?
    } else {
        return Err(rejected(StsFault::missing_authentication_token()));
    };
    *key = Some(presented.access_key_id.clone());

    let never_issued = || Refused {
        class: CallClass::NeverIssued,
        fault: StsFault::invalid_client_token_id(),
    };
    let creds = store
        .get(&presented.access_key_id)
        .ok_or_else(never_issued)?;
    match &presented.session_token {
        Some(t) if ct_eq(t, &creds.session_token) => {}
        _ => return Err(never_issued()),
    }
    if now >= ledger.effective_expiration(&creds.access_key_id, creds.expiration) {
        return Err(Refused {
            class: CallClass::Expired,
            fault: StsFault::expired_token(),
        });
    }
    verify_signature(parts, query, payload, &presented, &creds, service, now).map_err(rejected)?;
    Ok(creds)
}

/// The scope, the date and the signature itself.
fn verify_signature(
    parts: &Parts,
    query: &[(String, String)],
    payload: Payload<'_>,
    presented: &Presented,
    creds: &IssuedCredentials,
    service: Service,
    now: SystemTime,
) -> Result<(), StsFault> {
    if presented.service != service.name() {
        return Err(StsFault::signature_does_not_match(format!(
            "Credential should be scoped to correct service: '{}', not '{}'",
            service.name(),
            presented.service
        )));
    }
    let signed_at = parse_amz_date(&presented.amz_date)
        .filter(|_| presented.amz_date.starts_with(&presented.date))
        .ok_or_else(|| {
            StsFault::signature_does_not_match(
                "X-Amz-Date must be YYYYMMDDTHHMMSSZ and match the date of the credential scope",
            )
        })?;
    match presented.expires_in {
        None => {
            let skew = now
                .duration_since(signed_at)
                .or_else(|e| Ok::<_, ()>(e.duration()))
                .unwrap_or_default();
            if skew > MAX_SKEW {
                return Err(StsFault::signature_does_not_match(format!(
                    "Signature expired: {} is not within 15 minutes of the server time {}",
                    presented.amz_date,
                    crate::clock::format_timestamp(now)
                )));
            }
        }
        Some(expires) => {
            if now > signed_at + expires {
                return Err(StsFault::signature_does_not_match(
                    "Signature expired: the presigned request's X-Amz-Expires has passed",
                ));
            }
        }
    }

    let expected = recompute(parts, query, payload, presented, creds, service, signed_at)?;
    if !ct_eq(&expected, &presented.signature) {
        return Err(StsFault::signature_does_not_match(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ));
    }
    Ok(())
}

/// The signature `aws-sigv4` computes for this request with the issued secret.
fn recompute(
    parts: &Parts,
    query: &[(String, String)],
    payload: Payload<'_>,
    presented: &Presented,
    creds: &IssuedCredentials,
    service: Service,
    signed_at: SystemTime,
) -> Result<String, StsFault> {
    let mismatch = |why: &str| StsFault::signature_does_not_match(why.to_string());
    // `host` must be among the signed headers (aws-sigv4 would otherwise take it
    // from the URI, which has none here).
    if !presented.signed_headers.iter().any(|h| h == "host") {
        return Err(mismatch("SignedHeaders must include host"));
    }
    let header_mode = presented.expires_in.is_none();
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for name in &presented.signed_headers {
        // aws-sigv4 adds these itself, from the signing time and the identity.
        if header_mode && (name == "x-amz-date" || name == "x-amz-security-token") {
            continue;
        }
        let values: Vec<&str> = parts
            .headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Err(mismatch("a signed header is missing from the request"));
        }
        for v in values {
            headers.push((name.as_str(), v));
        }
    }
    // The query without the presigning parameters, which aws-sigv4 adds back.
    let kept: Vec<(&str, &str)> = query
        .iter()
        .filter(|(k, _)| {
            !(presented.expires_in.is_some()
                && matches!(
                    k.as_str(),
                    "X-Amz-Algorithm"
                        | "X-Amz-Credential"
                        | "X-Amz-Date"
                        | "X-Amz-Expires"
                        | "X-Amz-SignedHeaders"
                        | "X-Amz-Signature"
                        | "X-Amz-Security-Token"
                ))
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut uri = parts.uri.path().to_string();
    if !kept.is_empty() {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(kept)
            .finish()
            .replace('+', "%20");
        uri.push('?');
        uri.push_str(&encoded);
    }

    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(Vec::new());
    settings.signature_location = if header_mode {
        SignatureLocation::Headers
    } else {
        SignatureLocation::QueryParams
    };
    settings.expires_in = presented.expires_in;
    if service == Service::S3 {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let token_signed = !header_mode
        || presented
            .signed_headers
            .iter()
            .any(|h| h == "x-amz-security-token");
    if !token_signed {
        settings.session_token_mode = SessionTokenMode::Exclude;
    }
    let identity = Credentials::new(
        &creds.access_key_id,
        &creds.secret_access_key,
        Some(creds.session_token.clone()),
        None,
        "irsa-proxy-sts-emulator",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&presented.region)
        .name(&presented.service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|_| mismatch("the credential scope cannot be used for signing"))?
        .into();
    let signable = SignableRequest::new(
        parts.method.as_str(),
        uri,
        headers.into_iter(),
        match payload {
            Payload::Bytes(b) => SignableBody::Bytes(b),
            Payload::Declared(hash) => SignableBody::Precomputed(hash),
        },
    )
    .map_err(|_| mismatch("the request cannot be canonicalised"))?;
    let output =
        sign(signable, &params).map_err(|_| mismatch("the request cannot be canonicalised"))?;
    Ok(output.signature().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_date_should_parse() {
        let t = parse_amz_date("20240102T030405Z").unwrap();
        assert_eq!(crate::clock::format_timestamp(t), "2024-01-02T03:04:05Z");
        assert!(parse_amz_date("2024-01-02").is_none());
        assert!(parse_amz_date("2024010xT030405Z").is_none());
        assert!(parse_amz_date("20240102T03040ÿ").is_none());
    }

    /// An S3 request as an SDK signs it: S3's canonical request (path encoded
    /// once, not normalised), `x-amz-content-sha256` declared and signed.
    fn signed_s3_get(creds: &IssuedCredentials, at: SystemTime, scope: &str) -> Parts {
        let mut req = http::Request::builder()
            .method("GET")
            .uri("/irsa-proxy-dev/a%20b//../c.txt?x-id=GetObject")
            .header("host", "127.0.0.1:9912")
            .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
            .body(())
            .unwrap();
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity = Credentials::new(
            &creds.access_key_id,
            &creds.secret_access_key,
            Some(creds.session_token.clone()),
            None,
            "test",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(scope)
            .time(at)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let headers: Vec<(&str, &str)> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        let signable = SignableRequest::new(
            "GET",
            req.uri().to_string(),
            headers.into_iter(),
            SignableBody::UnsignedPayload,
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        instructions.apply_to_request_http1x(&mut req);
        req.into_parts().0
    }

    #[test]
    fn s3_requests_should_verify_with_s3_rules_and_be_classified_in_the_ledger() {
        let now = SystemTime::now();
        let creds = IssuedCredentials {
            access_key_id: "ASIATESTTESTTESTTEST".into(),
            secret_access_key: "SECRET-MARKER-0123456789012345678901234".into(),
            session_token: "TOKEN-MARKER".into(),
            expiration: now + Duration::from_secs(60),
            assumed_role_arn: "arn:aws:sts::111122223333:assumed-role/r/s".into(),
            assumed_role_id: "AROA:s".into(),
            account: "111122223333".into(),
            session: Default::default(),
            session_tags: Default::default(),
        };
        let store = IssuedStore::default();
        store.insert(creds.clone(), now);
        let ledger = Ledger::default();
        ledger.issued(&creds, now);
        let query = vec![("x-id".to_string(), "GetObject".to_string())];
        let check = |parts: &Parts, service: Service, at: SystemTime| {
            verify(
                parts,
                &query,
                Payload::Declared("UNSIGNED-PAYLOAD".into()),
                &store,
                &ledger,
                service,
                at,
            )
        };

        let parts = signed_s3_get(&creds, now, "s3");
        assert!(check(&parts, Service::S3, now).is_ok());
        // The same request checked by STS's rules: wrong scope.
        let r = check(&parts, Service::Sts, now).unwrap_err();
        assert_eq!(
            (r.class, r.fault.code),
            (CallClass::Rejected, "SignatureDoesNotMatch")
        );
        // A declared payload hash other than the signed one breaks the signature.
        let r = verify(
            &parts,
            &query,
            Payload::Declared("STREAMING-UNSIGNED-PAYLOAD-TRAILER".into()),
            &store,
            &ledger,
            Service::S3,
            now,
        )
        .unwrap_err();
        assert_eq!(r.fault.code, "SignatureDoesNotMatch");
        // After the expiry: expired, whatever the signature.
        let later = now + Duration::from_secs(61);
        let r = check(&signed_s3_get(&creds, later, "s3"), Service::S3, later).unwrap_err();
        assert_eq!(
            (r.class, r.fault.code),
            (CallClass::Expired, "ExpiredToken")
        );
        // A key never issued.
        let mut other = creds.clone();
        other.access_key_id = "ASIANEVERISSUED00000".into();
        let r = check(&signed_s3_get(&other, now, "s3"), Service::S3, now).unwrap_err();
        assert_eq!(r.class, CallClass::NeverIssued);

        let calls = ledger.snapshot().calls;
        assert_eq!(
            (
                calls.live,
                calls.rejected,
                calls.expired,
                calls.never_issued
            ),
            (1, 2, 1, 1)
        );
    }
}
