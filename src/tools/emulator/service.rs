//! The two STS actions: parameter validation, token checks, trust policy,
//! credential issue, and `GetCallerIdentity`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::request::Parts;
use rand::Rng;
use serde_json::Value;

use super::store::IssuedCredentials;
use super::xml::{result_document, Element, StsFault};
use super::{sigv4, State};
use crate::arn::RoleArn;
use crate::clock::{format_timestamp, from_unix_seconds, unix_seconds};
use crate::policy::{issuer_host_path, RequestContext};

/// The one API version STS speaks.
pub const VERSION: &str = "2011-06-15";

/// A successful answer: the XML document, and fields for the log line.
pub(crate) struct Answer {
    pub xml: String,
    pub log: String,
}

/// Request parameters: the query string, then the form body (first value wins).
pub fn parameters(
    query: &[(String, String)],
    form: &[(String, String)],
) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (k, v) in query.iter().chain(form.iter()) {
        params.entry(k.clone()).or_insert_with(|| v.clone());
    }
    params
}

/// Routes by `Action`.
pub(crate) fn dispatch(
    state: &State,
    params: &HashMap<String, String>,
    parts: &Parts,
    query: &[(String, String)],
    body: &[u8],
    request_id: &str,
) -> Result<Answer, StsFault> {
    let action = params.get("Action").map(String::as_str).unwrap_or("");
    if let Some(version) = params.get("Version") {
        if version != VERSION {
            return Err(StsFault::invalid_action(format!(
                "Could not find operation {action} for version {version}"
            )));
        }
    }
    match action {
        "AssumeRoleWithWebIdentity" => assume_role_with_web_identity(state, params, request_id)
            .inspect_err(|fault| {
                state.settings.ledger.assume_refused(fault.code);
            }),
        "AssumeRole" => {
            super::assume_role::assume_role(state, params, parts, query, body, request_id)
                .inspect_err(|fault| {
                    state.settings.ledger.assume_refused(fault.code);
                })
        }
        "GetCallerIdentity" => get_caller_identity(state, parts, query, body, request_id),
        "" => Err(StsFault::invalid_action(
            "The request must contain the parameter Action",
        )),
        other => Err(StsFault::invalid_action(format!(
            "Could not find operation {other} for version {VERSION}; this emulator serves \
             AssumeRoleWithWebIdentity, AssumeRole and GetCallerIdentity"
        ))),
    }
}

pub(super) fn validation_error(value: Option<&str>, member: &str, constraint: &str) -> StsFault {
    let value = match value {
        Some(v) => format!("'{v}'"),
        None => "null".to_string(),
    };
    StsFault::validation(format!(
        "1 validation error detected: Value {value} at '{member}' failed to satisfy constraint: {constraint}"
    ))
}

pub(super) fn is_session_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// The validated parameters of `AssumeRoleWithWebIdentity`.
struct AssumeParams<'a> {
    role: RoleArn,
    session_name: &'a str,
    token: &'a str,
    duration: Duration,
}

/// `RoleArn` and `RoleSessionName`, validated as STS does for every `AssumeRole*`.
pub(super) fn role_and_session(
    params: &HashMap<String, String>,
) -> Result<(RoleArn, &str), StsFault> {
    let Some(role_arn) = params.get("RoleArn") else {
        return Err(validation_error(None, "roleArn", "Member must not be null"));
    };
    if !(20..=2048).contains(&role_arn.len()) {
        return Err(validation_error(
            Some(role_arn),
            "roleArn",
            "Member must have length between 20 and 2048",
        ));
    }
    let role = RoleArn::parse(role_arn).map_err(|allowed| {
        StsFault::validation(format!("Request ARN is invalid: expected {allowed}"))
    })?;
    let Some(session_name) = params.get("RoleSessionName") else {
        return Err(validation_error(
            None,
            "roleSessionName",
            "Member must not be null",
        ));
    };
    if !(2..=64).contains(&session_name.chars().count()) {
        return Err(validation_error(
            Some(session_name),
            "roleSessionName",
            "Member must have length between 2 and 64",
        ));
    }
    if !session_name.chars().all(is_session_name_char) {
        return Err(validation_error(
            Some(session_name),
            "roleSessionName",
            "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
        ));
    }
    Ok((role, session_name))
}

fn validate_assume(params: &HashMap<String, String>) -> Result<AssumeParams<'_>, StsFault> {
    let (role, session_name) = role_and_session(params)?;
    let token = params.get("WebIdentityToken").map(String::as_str);
    // The token is never quoted back, unlike the other members.
    let Some(token) = token else {
        return Err(validation_error(
            None,
            "webIdentityToken",
            "Member must not be null",
        ));
    };
    if !(4..=20_000).contains(&token.len()) {
        return Err(StsFault::validation(format!(
            "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: \
             Member must have length between 4 and 20000 (it has {})",
            token.len()
        )));
    }
    let duration = match params.get("DurationSeconds") {
        None => Duration::from_secs(3600),
        Some(d) => match d.parse::<u64>() {
            Ok(secs) if (900..=43_200).contains(&secs) => Duration::from_secs(secs),
            Ok(_) => {
                return Err(validation_error(
                    Some(d),
                    "durationSeconds",
                    "Member must have value between 900 and 43200",
                ))
            }
            Err(_) => {
                return Err(validation_error(
                    Some(d),
                    "durationSeconds",
                    "Member must be an integer between 900 and 43200",
                ))
            }
        },
    };
    Ok(AssumeParams {
        role,
        session_name,
        token,
        duration,
    })
}

fn string_claim(claims: &serde_json::Map<String, Value>, name: &str) -> Option<String> {
    claims.get(name).and_then(Value::as_str).map(str::to_string)
}

fn list_claim(claims: &serde_json::Map<String, Value>, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn numeric_claim(
    claims: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<i64>, StsFault> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| {
                StsFault::invalid_identity_token(format!(
                    "The web identity token's '{name}' claim is not a number"
                ))
            }),
    }
}

/// Random upper-case letters and digits.
fn random_upper_alnum(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A 40-character secret access key in AWS's alphabet.
fn random_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A stable `AROA...` role id for a role ARN (the same role always has the same id).
fn role_id(role_arn: &str) -> String {
    crate::id::stable_id("AROA", role_arn)
}

fn assume_role_with_web_identity(
    state: &State,
    params: &HashMap<String, String>,
    request_id: &str,
) -> Result<Answer, StsFault> {
    let faults = &state.settings.faults;
    if state.sts_limiter.as_ref().is_some_and(|l| !l.allow()) {
        return Err(StsFault::throttling());
    }
    if let Some(fault) = faults.assume_fault(tokio::time::Instant::now(), rand::random()) {
        return Err(fault);
    }
    let p = validate_assume(params)?;
    let session_policy =
        super::session_policy::from_params(params, &state.settings.managed_policies, 0)?;
    let claims = state
        .settings
        .keys
        .verify(p.token)
        .map_err(|e| StsFault::invalid_identity_token(e.to_string()))?;
    let now = state.settings.clock.now();
    let now_secs = unix_seconds(now);
    let Some(exp) = numeric_claim(&claims, "exp")? else {
        return Err(StsFault::invalid_identity_token(
            "The web identity token has no 'exp' claim",
        ));
    };
    if now_secs >= exp {
        return Err(StsFault::expired_token_exception(format!(
            "Token expired: current date/time {now_secs} must be before the expiration date/time {exp}"
        )));
    }
    if let Some(nbf) = numeric_claim(&claims, "nbf")? {
        if now_secs < nbf {
            return Err(StsFault::invalid_identity_token(format!(
                "Token is not yet valid: current date/time {now_secs} is before its not-before date/time {nbf}"
            )));
        }
    }
    let audiences = list_claim(&claims, "aud");
    if !audiences.iter().any(|a| a == &state.settings.audience) {
        return Err(StsFault::invalid_identity_token(format!(
            "Incorrect token audience: expected {}",
            state.settings.audience
        )));
    }
    let Some(issuer) = string_claim(&claims, "iss").filter(|s| !s.is_empty()) else {
        return Err(StsFault::invalid_identity_token(
            "The web identity token has no 'iss' claim",
        ));
    };
    let Some(subject) = string_claim(&claims, "sub").filter(|s| !s.is_empty()) else {
        return Err(StsFault::invalid_identity_token(
            "The web identity token has no 'sub' claim",
        ));
    };

    if let Some(policy) = &state.settings.trust_policy {
        let aud: Vec<&str> = audiences.iter().map(String::as_str).collect();
        let amr = list_claim(&claims, "amr");
        let amr: Vec<&str> = amr.iter().map(String::as_str).collect();
        let ctx = RequestContext::web_identity(
            &issuer,
            Some(&p.role.account),
            Some(&subject),
            &aud,
            &amr,
        );
        let evaluation = policy.evaluate(&ctx);
        if !evaluation.allowed() {
            tracing::warn!(
                role_arn = %p.role,
                sub = %subject,
                iss = %issuer,
                "trust policy denies AssumeRoleWithWebIdentity: {}",
                evaluation.summary()
            );
            return Err(StsFault::access_denied(
                "Not authorized to perform sts:AssumeRoleWithWebIdentity",
            ));
        }
    }

    let lifetime = faults.lifetime(
        p.duration.min(state.settings.credential_ttl),
        rand::random(),
        rand::random(),
    );
    let creds = issue(
        state,
        &p.role,
        p.session_name,
        now,
        lifetime,
        super::store::SessionAttributes {
            session_policy: session_policy.clone(),
            ..Default::default()
        },
        Default::default(),
    );
    let (expiration, assumed_role_id, assumed_role_arn) = (
        creds.expiration,
        creds.assumed_role_id.clone(),
        creds.assumed_role_arn.clone(),
    );
    let provider = format!(
        "arn:{}:iam::{}:oidc-provider/{}",
        p.role.partition,
        p.role.account,
        issuer_host_path(&issuer)
    );
    let mut result = vec![
        Element::Nested(
            "Credentials",
            vec![
                Element::Text("AccessKeyId", creds.access_key_id.clone()),
                Element::Text("SecretAccessKey", creds.secret_access_key.clone()),
                Element::Text("SessionToken", creds.session_token.clone()),
                Element::Text("Expiration", format_timestamp(expiration)),
            ],
        ),
        Element::Text("SubjectFromWebIdentityToken", subject.clone()),
        Element::Nested(
            "AssumedRoleUser",
            vec![
                Element::Text("AssumedRoleId", assumed_role_id),
                Element::Text("Arn", assumed_role_arn.clone()),
            ],
        ),
        Element::Text("Audience", state.settings.audience.clone()),
        Element::Text("Provider", provider),
    ];
    if let Some(sp) = &session_policy {
        result.push(Element::Text(
            "PackedPolicySize",
            sp.packed_percent.to_string(),
        ));
    }
    let xml = result_document("AssumeRoleWithWebIdentity", &result, request_id);
    Ok(Answer {
        xml,
        log: format!(
            "issued {} for {assumed_role_arn} (sub {subject}{}) until {}",
            creds.access_key_id,
            session_policy
                .as_ref()
                .map(|sp| format!(", session policy {}", sp.describe()))
                .unwrap_or_default(),
            format_timestamp(expiration)
        ),
    })
}

/// Issues a fresh credential set for `role` and `session_name`, remembers it
/// for signature checks and records it in the ledger. `session` is what a
/// chained `AssumeRole` inherits; `session_tags` are the tags set at issue
/// (Pod Identity's six).
pub(super) fn issue(
    state: &State,
    role: &RoleArn,
    session_name: &str,
    now: SystemTime,
    lifetime: Duration,
    session: super::store::SessionAttributes,
    session_tags: std::collections::BTreeMap<String, String>,
) -> IssuedCredentials {
    // Expire on a whole second: that is all the XML can say.
    let expiration = from_unix_seconds(unix_seconds(now + lifetime));
    let session_bytes: [u8; 96] = {
        let mut b = [0u8; 96];
        rand::rng().fill(&mut b[..]);
        b
    };
    let creds = IssuedCredentials {
        access_key_id: format!("ASIA{}", random_upper_alnum(16)),
        secret_access_key: random_secret(),
        session_token: format!("IRSAEMU{}", STANDARD.encode(session_bytes)),
        expiration,
        assumed_role_arn: format!(
            "arn:{}:sts::{}:assumed-role/{}/{session_name}",
            role.partition, role.account, role.name
        ),
        assumed_role_id: format!("{}:{session_name}", role_id(&role.arn)),
        account: role.account.clone(),
        session,
        session_tags,
    };
    state.store.insert(creds.clone(), now);
    state.settings.ledger.issued(&creds, now);
    creds
}

fn get_caller_identity(
    state: &State,
    parts: &Parts,
    query: &[(String, String)],
    body: &[u8],
    request_id: &str,
) -> Result<Answer, StsFault> {
    let now: SystemTime = state.settings.clock.now();
    let creds = sigv4::verify(
        parts,
        query,
        sigv4::Payload::Bytes(body),
        &state.store,
        &state.settings.ledger,
        sigv4::Service::Sts,
        now,
    )
    .map_err(|r| r.fault)?;
    let xml = result_document(
        "GetCallerIdentity",
        &[
            Element::Text("Arn", creds.assumed_role_arn.clone()),
            Element::Text("UserId", creds.assumed_role_id.clone()),
            Element::Text("Account", creds.account.clone()),
        ],
        request_id,
    );
    Ok(Answer {
        xml,
        log: format!("{} is {}", creds.access_key_id, creds.assumed_role_arn),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn assume_parameters_should_be_validated_like_sts() {
        let ok = [
            ("RoleArn", "arn:aws:iam::111122223333:role/demo"),
            ("RoleSessionName", "app@demo"),
            ("WebIdentityToken", "a.b.c"),
        ];
        assert!(validate_assume(&params(&ok)).is_ok());
        let mut bad = params(&ok);
        bad.insert("RoleSessionName".into(), "has space".into());
        let e = validate_assume(&bad).err().unwrap();
        assert_eq!(e.code, "ValidationError");
        assert!(e.message.contains("roleSessionName"));
        bad.insert("RoleSessionName".into(), "x".into());
        assert!(validate_assume(&bad).is_err());
        let mut bad = params(&ok);
        bad.insert("DurationSeconds".into(), "899".into());
        assert!(validate_assume(&bad)
            .err()
            .unwrap()
            .message
            .contains("900 and 43200"));
        bad.insert("DurationSeconds".into(), "43201".into());
        assert!(validate_assume(&bad).is_err());
        let mut bad = params(&ok);
        bad.insert("WebIdentityToken".into(), "SECRET-abc".repeat(2001));
        let e = validate_assume(&bad).err().unwrap();
        assert!(!e.message.contains("SECRET"));
        let mut bad = params(&ok);
        bad.insert("RoleArn".into(), "arn:aws:iam::1:role/x-and-more".into());
        assert!(validate_assume(&bad).is_err());
    }

    #[test]
    fn ids_should_have_aws_shapes() {
        let id = random_upper_alnum(16);
        assert_eq!(id.len(), 16);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        assert_eq!(random_secret().len(), 40);
        let r = role_id("arn:aws:iam::111122223333:role/demo");
        assert_eq!(r.len(), 21);
        assert_eq!(r, role_id("arn:aws:iam::111122223333:role/demo"));
    }
}
