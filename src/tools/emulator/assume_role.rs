//! `AssumeRole`, the hop of a role chain: signed (SigV4) with credentials the
//! emulator issued, evaluated against the target role's trust policy, and
//! capped at one hour, as AWS caps every session obtained by role chaining.
//!
//! What is checked, in AWS's order and with its error codes:
//!
//! - the signature, as `GetCallerIdentity` checks it (`MissingAuthenticationToken`,
//!   `InvalidClientTokenId`, `ExpiredToken`, `SignatureDoesNotMatch`, 403);
//! - the parameters (`ValidationError`, 400): `RoleArn`, `RoleSessionName`,
//!   `DurationSeconds` 900 to 43200 and, every caller being a role session here,
//!   at most 3600 ("The requested DurationSeconds exceeds the 1 hour session
//!   limit for roles assumed by role chaining."); `ExternalId` 2 to 1224 of
//!   `[\w+=,.@:/-]`; `SourceIdentity` 2 to 64 of `[\w+=,.@-]`, not `aws:`;
//!   `Tags.member.N.Key/Value` (at most 50, keys 1-128, values 0-256);
//!   `TransitiveTagKeys.member.N` among the tags;
//! - the session's inheritance (`InvalidParameterValue`, 400): a tag may not
//!   replace a transitive tag the caller's session passes on, and a
//!   SourceIdentity, once set in a chain, may not change;
//! - the target role's trust policy, when one is configured (`AccessDenied`,
//!   403, worded as AWS words it: `User: <caller> is not authorized to perform:
//!   <action> on resource: <role>`): `sts:AssumeRole` for the caller (Principal
//!   `AWS`: its role, its account or its session), then `sts:TagSession` when
//!   tags are sent, then `sts:SetSourceIdentity` when a SourceIdentity is sent.
//!   Condition keys: `sts:ExternalId`, `sts:RoleSessionName`,
//!   `sts:SourceIdentity`, `aws:RequestTag/<key>`, `aws:TagKeys`,
//!   `sts:TransitiveTagKeys`, `aws:PrincipalTag/<key>` (the caller's tags),
//!   `aws:PrincipalArn`, `aws:PrincipalAccount`.
//!
//! - the caller's session policy, when it was issued with one
//!   (`session_policy.rs`; `AccessDenied`, 403, `User: <caller> is not
//!   authorized to perform: <action> on resource: <role> because no session
//!   policy allows the <action> action`): the same three actions on the
//!   target role's ARN;
//! - this call's own `Policy` / `PolicyArns` (`ValidationError`,
//!   `MalformedPolicyDocument`, `PackedPolicyTooLarge`, 400): the new
//!   session's session policy, sharing the packed budget with its tags.
//!
//! The new session keeps the caller's transitive tags and SourceIdentity, so
//! the next hop inherits them; `GetCallerIdentity` with its credentials answers
//! the target role's assumed-role ARN.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use http::request::Parts;

use super::service::{is_session_name_char, issue, role_and_session, validation_error, Answer};
use super::store::{IssuedCredentials, SessionAttributes};
use super::xml::{result_document, Element, StsFault};
use super::{sigv4, State};
use crate::arn::RoleArn;
use crate::clock::format_timestamp;
use crate::policy::RequestContext;

/// AWS's cap on a session obtained by role chaining.
const CHAINED_CAP: Duration = Duration::from_secs(3600);
const MAX_TAGS: usize = 50;

/// The parameters of one `AssumeRole`.
#[derive(Debug)]
struct Request {
    role: RoleArn,
    session_name: String,
    duration: Duration,
    external_id: Option<String>,
    tags: Vec<(String, String)>,
    transitive_tag_keys: Vec<String>,
    source_identity: Option<String>,
}

fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c)
}

/// `Prefix.member.1`, `Prefix.member.2`, ... until the first gap.
fn members<'a>(params: &'a HashMap<String, String>, prefix: &str) -> Vec<(usize, &'a String)> {
    (1..)
        .map_while(|i| params.get(&format!("{prefix}.member.{i}")).map(|v| (i, v)))
        .collect()
}

fn parse(params: &HashMap<String, String>) -> Result<Request, StsFault> {
    let (role, session_name) = role_and_session(params)?;
    let duration = match params.get("DurationSeconds") {
        None => CHAINED_CAP,
        Some(d) => match d.parse::<u64>() {
            Ok(secs) if (900..=43_200).contains(&secs) => Duration::from_secs(secs),
            _ => {
                return Err(validation_error(
                    Some(d),
                    "durationSeconds",
                    "Member must have value between 900 and 43200",
                ))
            }
        },
    };
    let external_id = params.get("ExternalId").cloned();
    if let Some(id) = &external_id {
        let ok = (2..=1224).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@:/-".contains(&b));
        if !ok {
            return Err(validation_error(
                Some(id),
                "externalId",
                "Member must have length between 2 and 1224 and satisfy regular expression pattern: [\\w+=,.@:\\/-]*",
            ));
        }
    }
    let source_identity = params.get("SourceIdentity").cloned();
    if let Some(si) = &source_identity {
        if !(2..=64).contains(&si.chars().count()) || !si.chars().all(is_session_name_char) {
            return Err(validation_error(
                Some(si),
                "sourceIdentity",
                "Member must have length between 2 and 64 and satisfy regular expression pattern: [\\w+=,.@-]*",
            ));
        }
        if si.to_ascii_lowercase().starts_with("aws:") {
            return Err(StsFault::validation(
                "SourceIdentity may not begin with the prefix aws:",
            ));
        }
    }
    // A tag is flattened into `Tags.member.N.Key` and `Tags.member.N.Value`.
    let mut tags = Vec::new();
    for i in 1.. {
        let Some(key) = params.get(&format!("Tags.member.{i}.Key")) else {
            break;
        };
        let value = params
            .get(&format!("Tags.member.{i}.Value"))
            .cloned()
            .unwrap_or_default();
        tags.push((key.clone(), value));
    }
    if tags.len() > MAX_TAGS {
        return Err(validation_error(
            Some(&format!("{} tags", tags.len())),
            "tags",
            "Member must have length less than or equal to 50",
        ));
    }
    for (key, value) in &tags {
        if !(1..=128).contains(&key.chars().count()) || !key.chars().all(is_tag_char) {
            return Err(validation_error(
                Some(key),
                "tags.member.key",
                "Member must have length between 1 and 128 and satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+",
            ));
        }
        if value.chars().count() > 256 || !value.chars().all(is_tag_char) {
            return Err(validation_error(
                Some(value),
                "tags.member.value",
                "Member must have length less than or equal to 256 and satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
            ));
        }
    }
    let lower: Vec<String> = tags.iter().map(|(k, _)| k.to_lowercase()).collect();
    if (1..lower.len()).any(|i| lower[..i].contains(&lower[i])) {
        return Err(StsFault::invalid_parameter_value(
            "Duplicate tag keys found. Please note that Tag keys are case insensitive.",
        ));
    }
    let transitive_tag_keys: Vec<String> = members(params, "TransitiveTagKeys")
        .into_iter()
        .map(|(_, k)| k.clone())
        .collect();
    for k in &transitive_tag_keys {
        if !lower.contains(&k.to_lowercase()) {
            return Err(StsFault::invalid_parameter_value(format!(
                "The specified transitive tag key must be included in the requested tags: {k}"
            )));
        }
    }
    Ok(Request {
        role,
        session_name: session_name.to_string(),
        duration,
        external_id,
        tags,
        transitive_tag_keys,
        source_identity,
    })
}

/// The condition keys of the request, as IAM names them.
fn condition_keys(r: &Request, caller: &IssuedCredentials) -> Vec<(String, Vec<String>)> {
    let mut keys = vec![(
        "sts:RoleSessionName".to_string(),
        vec![r.session_name.clone()],
    )];
    if let Some(id) = &r.external_id {
        keys.push(("sts:ExternalId".into(), vec![id.clone()]));
    }
    if let Some(si) = r
        .source_identity
        .as_ref()
        .or(caller.session.source_identity.as_ref())
    {
        keys.push(("sts:SourceIdentity".into(), vec![si.clone()]));
    }
    if let Some(si) = &caller.session.source_identity {
        keys.push(("aws:SourceIdentity".into(), vec![si.clone()]));
    }
    for (k, v) in &r.tags {
        keys.push((format!("aws:RequestTag/{k}"), vec![v.clone()]));
    }
    if !r.tags.is_empty() {
        keys.push((
            "aws:TagKeys".into(),
            r.tags.iter().map(|(k, _)| k.clone()).collect(),
        ));
    }
    if !r.transitive_tag_keys.is_empty() {
        keys.push((
            "sts:TransitiveTagKeys".into(),
            r.transitive_tag_keys.clone(),
        ));
    }
    for (k, v) in &caller.session.tags {
        keys.push((format!("aws:PrincipalTag/{k}"), vec![v.clone()]));
    }
    keys
}

pub(super) fn assume_role(
    state: &State,
    params: &HashMap<String, String>,
    parts: &Parts,
    query: &[(String, String)],
    body: &[u8],
    request_id: &str,
) -> Result<Answer, StsFault> {
    let now: SystemTime = state.settings.clock.now();
    let caller = sigv4::verify_hop(
        parts,
        query,
        sigv4::Payload::Bytes(body),
        &state.store,
        &state.settings.ledger,
        now,
    )
    .map_err(|r| r.fault)?;
    let faults = &state.settings.faults;
    if let Some(fault) = faults.assume_fault(tokio::time::Instant::now(), rand::random()) {
        return Err(fault);
    }
    let r = parse(params)?;
    // Every caller here is a role session: this is role chaining.
    if r.duration > CHAINED_CAP {
        return Err(StsFault::validation(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        ));
    }
    let inherited = &caller.session;
    if let Some((k, _)) = r.tags.iter().find(|(k, _)| {
        inherited
            .transitive_tag_keys
            .iter()
            .any(|t| t.eq_ignore_ascii_case(k))
    }) {
        return Err(StsFault::invalid_parameter_value(format!(
            "The tag key {k} is a transitive tag of the calling session and cannot be set again in the role chain"
        )));
    }
    if let (Some(set), Some(asked)) = (&inherited.source_identity, &r.source_identity) {
        if set != asked {
            return Err(StsFault::invalid_parameter_value(format!(
                "The source identity of the calling session is {set}; a source identity cannot be changed once set in a role chain"
            )));
        }
    }

    let mut actions = vec!["sts:AssumeRole"];
    if !r.tags.is_empty() {
        actions.push("sts:TagSession");
    }
    if r.source_identity.is_some() {
        actions.push("sts:SetSourceIdentity");
    }
    // The caller's own permissions: its session policy, when it has one.
    if let Some(sp) = &inherited.session_policy {
        for action in &actions {
            if let Err(denied) = sp.check(action, &r.role.arn) {
                tracing::warn!(
                    role_arn = %r.role,
                    caller = %caller.assumed_role_arn,
                    "the caller's session policy ({}) denies {action}",
                    sp.describe()
                );
                return Err(StsFault::access_denied(format!(
                    "User: {} is not authorized to perform: {action} on resource: {} {denied}",
                    caller.assumed_role_arn, r.role
                )));
            }
        }
    }
    // This call's session policy, for the new session. Inherited transitive
    // tags share its packed budget.
    let tag_chars: usize = r
        .tags
        .iter()
        .chain(inherited.tags.iter().filter(|(k, _)| {
            inherited
                .transitive_tag_keys
                .iter()
                .any(|t| t.eq_ignore_ascii_case(k))
        }))
        .map(|(k, v)| k.chars().count() + v.chars().count())
        .sum();
    let session_policy =
        super::session_policy::from_params(params, &state.settings.managed_policies, tag_chars)?;

    if let Some(policy) = state.settings.role_trust_policies.get(&r.role.arn) {
        let keys = condition_keys(&r, &caller);
        for action in actions {
            let ctx = RequestContext::assume_role(&caller.assumed_role_arn, action, keys.clone());
            let evaluation = policy.evaluate(&ctx);
            if !evaluation.allowed() {
                tracing::warn!(
                    role_arn = %r.role,
                    caller = %caller.assumed_role_arn,
                    "trust policy denies {action}: {}",
                    evaluation.summary()
                );
                return Err(StsFault::access_denied(format!(
                    "User: {} is not authorized to perform: {action} on resource: {}",
                    caller.assumed_role_arn, r.role
                )));
            }
        }
    }

    // The new session: the caller's transitive tags and SourceIdentity, and
    // its own.
    let mut session = SessionAttributes {
        tags: inherited
            .tags
            .iter()
            .filter(|(k, _)| {
                inherited
                    .transitive_tag_keys
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(k))
            })
            .cloned()
            .collect(),
        transitive_tag_keys: inherited.transitive_tag_keys.clone(),
        source_identity: inherited
            .source_identity
            .clone()
            .or(r.source_identity.clone()),
        session_policy: session_policy.clone(),
    };
    session.tags.extend(r.tags.iter().cloned());
    session
        .transitive_tag_keys
        .extend(r.transitive_tag_keys.iter().cloned());
    let lifetime = faults.lifetime(
        r.duration.min(state.settings.credential_ttl),
        rand::random(),
        rand::random(),
    );
    // The ledger shows every tag the session carries, inherited ones included.
    let session_tags = session.tags.iter().cloned().collect();
    let creds = issue(
        state,
        &r.role,
        &r.session_name,
        now,
        lifetime,
        session,
        session_tags,
    );
    let mut result = vec![
        Element::Nested(
            "Credentials",
            vec![
                Element::Text("AccessKeyId", creds.access_key_id.clone()),
                Element::Text("SecretAccessKey", creds.secret_access_key.clone()),
                Element::Text("SessionToken", creds.session_token.clone()),
                Element::Text("Expiration", format_timestamp(creds.expiration)),
            ],
        ),
        Element::Nested(
            "AssumedRoleUser",
            vec![
                Element::Text("AssumedRoleId", creds.assumed_role_id.clone()),
                Element::Text("Arn", creds.assumed_role_arn.clone()),
            ],
        ),
    ];
    if let Some(si) = &creds.session.source_identity {
        result.push(Element::Text("SourceIdentity", si.clone()));
    }
    if let Some(sp) = &session_policy {
        result.push(Element::Text(
            "PackedPolicySize",
            sp.packed_percent.to_string(),
        ));
    }
    let xml = result_document("AssumeRole", &result, request_id);
    Ok(Answer {
        xml,
        log: format!(
            "issued {} for {} (by {}, {} tags{}{}) until {}",
            creds.access_key_id,
            creds.assumed_role_arn,
            caller.assumed_role_arn,
            creds.session.tags.len(),
            creds
                .session
                .source_identity
                .as_deref()
                .map(|s| format!(", source identity {s}"))
                .unwrap_or_default(),
            session_policy
                .as_ref()
                .map(|sp| format!(", session policy {}", sp.describe()))
                .unwrap_or_default(),
            format_timestamp(creds.expiration)
        ),
    })
}
