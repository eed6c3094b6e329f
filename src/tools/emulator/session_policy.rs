//! Session policies: `Policy` and `PolicyArns` on `AssumeRoleWithWebIdentity`
//! and `AssumeRole`, checked with STS's limits and errors, kept on the session
//! they issue, and enforced on every verified call made with it.
//!
//! - `Policy`: 1 to 2048 characters of tab, line feed, carriage return and
//!   `\u0020`..`\u00FF` (`ValidationError`); an IAM policy with no `Principal`
//!   and a `Resource` or `NotResource` in every statement
//!   (`MalformedPolicyDocument`; [`crate::policy::Policy::parse_session`]).
//! - `PolicyArns.member.N.arn`: at most 10 (`ValidationError`), each 20 to 2048
//!   characters and a managed policy ARN (`ValidationError`), and known to the
//!   emulator (`--managed-policy ARN=FILE`), else `MalformedPolicyDocument`
//!   "Policy ARN does not exist or is not attachable.".
//! - The packed size: STS compresses the policy, the ARNs and the session tags
//!   into a packed form with its own limit. The emulator models it as their
//!   characters against a budget of [`PACKED_BUDGET`] (a 2048-character policy
//!   alone takes half), answers `PackedPolicyTooLarge` above 100%, and
//!   `PackedPolicySize` (the percentage) with the credentials.
//!
//! A session with a session policy may do what the role allows (the emulator
//! gives every role everything: it has no identity policies) and the session
//! policy allows: an `Allow` in the inline policy or one of the managed ones,
//! and no `Deny` in any. Only the session policy of the call that issued the
//! credentials applies; a chained session does not inherit its caller's.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::service::validation_error;
use super::xml::StsFault;
use crate::policy::{Decision, Policy, RequestContext};

/// The most characters of `Policy`.
const MAX_POLICY_CHARS: usize = 2048;
/// The most `PolicyArns`.
const MAX_ARNS: usize = 10;
/// The packed-size budget, in characters of policy, ARNs and tags.
pub(crate) const PACKED_BUDGET: usize = 4096;

/// The session policy a session was issued with.
#[derive(Debug)]
pub struct SessionPolicy {
    /// `Policy` as sent, when it was.
    text: Option<String>,
    /// `PolicyArns`, in order.
    arns: Vec<String>,
    /// The documents: the inline one (named `the inline session policy`) and
    /// each managed one (named by its ARN).
    documents: Vec<(String, Policy)>,
    /// What `PackedPolicySize` says.
    pub packed_percent: u32,
}

impl PartialEq for SessionPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.arns == other.arns
    }
}

impl Eq for SessionPolicy {}

/// Why a call made with a session is refused by its session policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// AWS's words: `... because no session policy allows the s3:GetObject
    /// action` or `... with an explicit deny in a session policy`.
    pub because: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.because)
    }
}

impl SessionPolicy {
    /// Whether the session may do `action` on `resource`.
    pub fn check(&self, action: &str, resource: &str) -> Result<(), Denied> {
        let ctx = RequestContext::identity(action, resource, []);
        let mut allowed = false;
        for (name, policy) in &self.documents {
            let evaluation = policy.evaluate(&ctx);
            match evaluation.decision {
                Decision::ExplicitDeny { statement } => {
                    tracing::debug!(
                        action,
                        resource,
                        "session policy {name} denies it (statement {statement})"
                    );
                    return Err(Denied {
                        because: "with an explicit deny in a session policy".into(),
                    });
                }
                Decision::Allowed { .. } => allowed = true,
                Decision::ImplicitDeny => {}
            }
        }
        if allowed {
            Ok(())
        } else {
            Err(Denied {
                because: format!("because no session policy allows the {action} action"),
            })
        }
    }

    /// What the session was given, for logs: never the document itself.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &self.text {
            parts.push(format!(
                "an inline policy of {} characters",
                t.chars().count()
            ));
        }
        if !self.arns.is_empty() {
            parts.push(self.arns.join(", "));
        }
        parts.join(" and ")
    }
}

/// `--managed-policy POLICY_ARN=FILE` (the emulator's and `dev`'s): the ARN
/// and the policy, read now.
pub(crate) fn managed_policy(v: &str) -> Result<(String, Policy), crate::flags::Refusal> {
    use crate::flags::Refusal;
    let (arn, file) = v.split_once('=').ok_or_else(|| {
        Refusal::new(
            "is not ARN=FILE",
            "a managed policy ARN, =, and the policy's file",
        )
    })?;
    let arn = crate::sidecar::sts::policy::policy_arn(arn)?;
    let policy = Policy::parse_session(&String::from_utf8_lossy(&super::read_file(file)?))
        .map_err(|e| {
            Refusal::new(
                format!("is not usable: {e}"),
                "an IAM policy (JSON) with a Resource in every statement and no Principal",
            )
        })?;
    Ok((arn, policy))
}

/// `PolicyArns.member.N.arn`, N from 1 until the first gap.
fn policy_arns(params: &HashMap<String, String>) -> Vec<&String> {
    (1..)
        .map_while(|i| params.get(&format!("PolicyArns.member.{i}.arn")))
        .collect()
}

/// The session policy of a request, checked as STS checks it; `None` when it
/// has neither `Policy` nor `PolicyArns`. `tag_chars` are the characters of
/// the session tags that share the packed budget.
pub(crate) fn from_params(
    params: &HashMap<String, String>,
    managed: &HashMap<String, Policy>,
    tag_chars: usize,
) -> Result<Option<Arc<SessionPolicy>>, StsFault> {
    let text = params.get("Policy");
    let arns = policy_arns(params);
    if text.is_none() && arns.is_empty() {
        return Ok(None);
    }
    let mut documents = Vec::new();
    let mut packed = tag_chars;
    if let Some(text) = text {
        let chars = text.chars().count();
        if !(1..=MAX_POLICY_CHARS).contains(&chars) {
            return Err(StsFault::validation(format!(
                "1 validation error detected: Value at 'policy' failed to satisfy constraint: \
                 Member must have length between 1 and {MAX_POLICY_CHARS} (it has {chars})"
            )));
        }
        if !text
            .chars()
            .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}'))
        {
            return Err(StsFault::validation(
                "1 validation error detected: Value at 'policy' failed to satisfy constraint: \
                 Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+",
            ));
        }
        let policy = Policy::parse_session(text).map_err(|e| {
            StsFault::malformed_policy_document(format!("The session policy is not valid: {e}"))
        })?;
        // What is packed has no insignificant whitespace.
        packed += serde_json::from_str::<serde_json::Value>(text)
            .map(|v| v.to_string().chars().count())
            .unwrap_or(chars);
        documents.push(("the inline session policy".to_string(), policy));
    }
    if arns.len() > MAX_ARNS {
        return Err(validation_error(
            Some(&format!("{} ARNs", arns.len())),
            "policyArns",
            &format!("Member must have length less than or equal to {MAX_ARNS}"),
        ));
    }
    for (i, arn) in arns.iter().enumerate() {
        let member = format!("policyArns.{}.member.arn", i + 1);
        if !(20..=2048).contains(&arn.len()) {
            return Err(validation_error(
                Some(arn),
                &member,
                "Member must have length between 20 and 2048",
            ));
        }
        if crate::sidecar::sts::policy::policy_arn(arn).is_err() {
            return Err(StsFault::validation(format!(
                "1 validation error detected: Value '{arn}' at '{member}' is not a managed policy ARN: expected {}",
                crate::sidecar::sts::policy::ARN_FORM
            )));
        }
        let Some(policy) = managed.get(arn.as_str()) else {
            return Err(StsFault::malformed_policy_document(format!(
                "Policy {arn} does not exist or is not attachable."
            )));
        };
        packed += arn.len();
        documents.push((arn.to_string(), policy.clone()));
    }
    let percent = (packed * 100).div_ceil(PACKED_BUDGET) as u32;
    if percent > 100 {
        return Err(StsFault::packed_policy_too_large(format!(
            "Packed size of the session policy, managed policy ARNs and session tags consumes {percent}% of allotted space."
        )));
    }
    Ok(Some(Arc::new(SessionPolicy {
        text: text.cloned(),
        arns: arns.into_iter().cloned().collect(),
        documents,
        packed_percent: percent,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ_ONE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::one/*"}]}"#;
    const MANAGED: &str = "arn:aws:iam::111122223333:policy/put-scratch";

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn managed() -> HashMap<String, Policy> {
        let doc = r#"{"Statement":[{"Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::scratch/*"},
                     {"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::one/private/*"}]}"#;
        [(MANAGED.to_string(), Policy::parse_session(doc).unwrap())]
            .into_iter()
            .collect()
    }

    #[test]
    fn no_policy_should_mean_no_session_policy() {
        assert!(from_params(&params(&[]), &managed(), 0).unwrap().is_none());
    }

    #[test]
    fn inline_and_managed_policies_should_be_one_session_policy() {
        let p = from_params(
            &params(&[("Policy", READ_ONE), ("PolicyArns.member.1.arn", MANAGED)]),
            &managed(),
            0,
        )
        .unwrap()
        .unwrap();
        assert!(p.check("s3:GetObject", "arn:aws:s3:::one/a").is_ok());
        assert!(p.check("s3:PutObject", "arn:aws:s3:::scratch/a").is_ok());
        assert_eq!(
            p.check("s3:PutObject", "arn:aws:s3:::one/a")
                .unwrap_err()
                .because,
            "because no session policy allows the s3:PutObject action"
        );
        assert_eq!(
            p.check("s3:GetObject", "arn:aws:s3:::one/private/a")
                .unwrap_err()
                .because,
            "with an explicit deny in a session policy"
        );
        assert!(p.packed_percent > 0 && p.packed_percent <= 100);
        assert!(!p.describe().contains("s3:GetObject"));
    }

    #[test]
    fn bad_policies_should_get_the_errors_sts_gives() {
        let code =
            |pairs: &[(&str, &str)]| from_params(&params(pairs), &managed(), 0).unwrap_err().code;
        assert_eq!(code(&[("Policy", "{not json")]), "MalformedPolicyDocument");
        assert_eq!(
            code(&[(
                "Policy",
                r#"{"Statement":{"Effect":"Allow","Action":"s3:*"}}"#
            )]),
            "MalformedPolicyDocument"
        );
        assert_eq!(code(&[("Policy", "")]), "ValidationError");
        let long = format!(
            r#"{{"Statement":{{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::{}"}}}}"#,
            "b".repeat(2100)
        );
        assert_eq!(code(&[("Policy", &long)]), "ValidationError");
        assert_eq!(
            code(&[("Policy", "{\"Sid\":\"\u{263a}\"}")]),
            "ValidationError"
        );
        let unknown = "arn:aws:iam::aws:policy/ReadOnlyAccess";
        let e = from_params(
            &params(&[("PolicyArns.member.1.arn", unknown)]),
            &managed(),
            0,
        )
        .unwrap_err();
        assert_eq!(e.code, "MalformedPolicyDocument");
        assert_eq!(
            e.message,
            format!("Policy {unknown} does not exist or is not attachable.")
        );
        let arn_params: Vec<(String, String)> = (1..=11)
            .map(|i| (format!("PolicyArns.member.{i}.arn"), MANAGED.to_string()))
            .collect();
        let refs: Vec<(&str, &str)> = arn_params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let e = from_params(&params(&refs), &managed(), 0).unwrap_err();
        assert_eq!(e.code, "ValidationError");
        assert!(
            e.message.contains("less than or equal to 10"),
            "{}",
            e.message
        );
        assert_eq!(
            code(&[(
                "PolicyArns.member.1.arn",
                "arn:aws:iam::111122223333:role/x"
            )]),
            "ValidationError"
        );
        // Policy, ARNs and tags share the packed budget.
        let e = from_params(
            &params(&[("Policy", READ_ONE), ("PolicyArns.member.1.arn", MANAGED)]),
            &managed(),
            PACKED_BUDGET,
        )
        .unwrap_err();
        assert_eq!(e.code, "PackedPolicyTooLarge");
        assert!(e.message.contains("% of allotted space"), "{}", e.message);
    }
}
