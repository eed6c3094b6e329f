//! Session policies: an inline policy document and/or managed policy ARNs sent
//! as `Policy` / `PolicyArns` on a role's last call (`AssumeRoleWithWebIdentity`
//! without a chain, else the last hop's `AssumeRole`), so the credentials can do
//! only what both the role and the session policy allow.
//!
//! AWS's limits are checked at start-up, so a policy STS would refuse is exit
//! 2 rather than a 503 at every refresh:
//!
//! - the document is a JSON object of characters STS accepts (tab, line feed,
//!   carriage return and `\u0020`..`\u00FF`); it is sent packed (no
//!   insignificant whitespace), and the packed text must be at most 2048
//!   characters;
//! - at most 10 managed policy ARNs, each
//!   `arn:<partition>:iam::<12-digit account or aws>:policy/<optional/path/>name`.
//!
//! STS also compresses the policy, the ARNs and any session tags into a packed
//! binary form with a limit of its own (`PackedPolicyTooLarge`); that one cannot
//! be computed here, and is reported from the call like any STS refusal.

use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::arn::{IamArn, IamArnPart};
use crate::flags::Refusal;

/// The most characters STS takes in `Policy`.
pub const MAX_DOCUMENT_CHARS: usize = 2048;
/// The most ARNs STS takes in `PolicyArns`.
pub const MAX_ARNS: usize = 10;
/// What a managed policy ARN looks like, for refusals.
pub const ARN_FORM: &str =
    "arn:<partition>:iam::<12-digit account or aws>:policy/<optional/path/>name";
/// What a document may be, for refusals.
pub const DOCUMENT_FORM: &str =
    "a JSON policy object of at most 2048 characters once packed (whitespace removed)";

/// The session policy of one role: sent on its last call. Empty (the default)
/// sends neither parameter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPolicy {
    /// The inline policy, packed: JSON without insignificant whitespace.
    pub document: Option<String>,
    /// Managed policy ARNs, checked, in the order given.
    pub arns: Vec<String>,
}

impl SessionPolicy {
    /// A session policy from an already packed document (see [`pack`],
    /// [`read_document`], [`pack_value`]) and ARNs, which are checked here.
    pub fn new(document: Option<String>, arns: Vec<String>) -> Result<SessionPolicy, Refusal> {
        if arns.len() > MAX_ARNS {
            return Err(Refusal::new(
                format!("names {} managed policies", arns.len()),
                format!("at most {MAX_ARNS} policy ARNs (STS's limit)"),
            ));
        }
        let arns = arns
            .iter()
            .map(|a| policy_arn(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SessionPolicy { document, arns })
    }

    /// True when there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.document.is_none() && self.arns.is_empty()
    }
}

impl fmt::Display for SessionPolicy {
    /// What is sent, without the document itself: for logs and `doctor`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(d) = &self.document {
            parts.push(format!(
                "an inline policy of {} characters",
                d.chars().count()
            ));
        }
        match self.arns.len() {
            0 => {}
            1 => parts.push(format!("the managed policy {}", self.arns[0])),
            n => parts.push(format!("{n} managed policies ({})", self.arns.join(", "))),
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(" and "))
        }
    }
}

/// `text` as the document STS gets: a JSON object, packed, within the limits.
pub fn pack(text: &str) -> Result<String, Refusal> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        Refusal::new(
            format!("is not JSON ({})", first_line(&e.to_string())),
            DOCUMENT_FORM,
        )
    })?;
    pack_value(&value)
}

/// A JSON value (an inline `session_policy` in a roles file) as the document
/// STS gets.
pub fn pack_value(value: &Value) -> Result<String, Refusal> {
    if !value.is_object() {
        return Err(Refusal::new(
            "is not a JSON object (a policy is {\"Version\": ..., \"Statement\": [...]})",
            DOCUMENT_FORM,
        ));
    }
    let packed = value.to_string();
    if let Some(c) = packed
        .chars()
        .find(|c| !matches!(*c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}'))
    {
        return Err(Refusal::new(
            format!("has the character {c:?}, which STS does not accept in a policy"),
            "tab, line feed, carriage return and \\u0020 to \\u00FF only",
        ));
    }
    let chars = packed.chars().count();
    if chars > MAX_DOCUMENT_CHARS {
        return Err(Refusal::new(
            format!("is {chars} characters once packed"),
            DOCUMENT_FORM,
        ));
    }
    Ok(packed)
}

/// The file at `path`, read now and packed.
pub fn read_document(path: &Path) -> Result<String, Refusal> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Refusal::new(
            format!("cannot be read ({})", e.kind().to_string().to_lowercase()),
            format!("a readable file holding {DOCUMENT_FORM}"),
        )
    })?;
    pack(&text)
}

/// A managed policy ARN as STS takes it.
pub fn policy_arn(s: &str) -> Result<String, Refusal> {
    let s = s.trim();
    let refused = |why: &str| Refusal::new(format!("is not a managed policy ARN{why}"), ARN_FORM);
    let why = match IamArn::split(s, "policy", 128, true) {
        Ok(_) if s.len() > 2048 => " (the name is 1-128 of [A-Za-z0-9+=,.@_-])",
        Ok(_) => return Ok(s.to_string()),
        Err(IamArnPart::Form) => "",
        Err(IamArnPart::Partition) => " (the partition is aws, aws-cn, aws-us-gov, ...)",
        Err(IamArnPart::Account) => " (the account is 12 digits, or aws for AWS managed policies)",
        Err(IamArnPart::Name) => " (the name is 1-128 of [A-Za-z0-9+=,.@_-])",
    };
    Err(refused(why))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_document_should_be_packed() {
        let text = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {\"Effect\": \"Allow\", \"Action\": \"s3:GetObject\", \"Resource\": \"arn:aws:s3:::b/*\"}\n  ]\n}\n";
        let packed = pack(text).unwrap();
        assert!(!packed.contains(' ') && !packed.contains('\n'), "{packed}");
        let back: Value = serde_json::from_str(&packed).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn bad_documents_should_be_refused_in_one_line() {
        let e = pack("{\"Statement\": [").unwrap_err();
        assert!(e.problem.starts_with("is not JSON ("), "{e}");
        assert_eq!(e.allowed, DOCUMENT_FORM);
        let e = pack("[1, 2]").unwrap_err();
        assert!(e.problem.starts_with("is not a JSON object"), "{e}");
        let e = pack(r#"{"Sid": "\u0100"}"#).unwrap_err();
        assert!(e.problem.contains("'Ā'"), "{e}");
        let long = format!(
            r#"{{"Statement": [{{"Effect": "Allow", "Action": "s3:*", "Resource": "{}"}}]}}"#,
            "a".repeat(2100)
        );
        let e = pack(&long).unwrap_err();
        assert!(e.problem.ends_with("characters once packed"), "{e}");
        for e in [
            pack("{").unwrap_err(),
            pack(&long).unwrap_err(),
            read_document(Path::new("/nonexistent/policy.json")).unwrap_err(),
        ] {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn whitespace_should_not_count_toward_the_limit() {
        let statement = format!(
            r#"{{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::{}/*"}}"#,
            "b".repeat(1900)
        );
        let padded = format!("{{\n{}\"Statement\": {statement}\n}}", " ".repeat(500));
        assert!(padded.len() > MAX_DOCUMENT_CHARS);
        assert!(pack(&padded).unwrap().len() <= MAX_DOCUMENT_CHARS);
    }

    #[test]
    fn policy_arns_should_be_checked() {
        for ok in [
            "arn:aws:iam::aws:policy/ReadOnlyAccess",
            "arn:aws:iam::aws:policy/service-role/AmazonS3ObjectLambdaExecutionRolePolicy",
            "arn:aws-cn:iam::111122223333:policy/team/s3-one-bucket",
        ] {
            assert_eq!(policy_arn(ok).unwrap(), ok);
        }
        for bad in [
            "ReadOnlyAccess",
            "arn:aws:iam::111122223333:role/app",
            "arn:aws:iam::1234:policy/x",
            "arn:aws:s3:::bucket",
            "arn:AWS:iam::aws:policy/x",
            "arn:aws:iam::aws:policy/",
            "arn:aws:iam::aws:policy/bad name",
        ] {
            let e = policy_arn(bad).unwrap_err();
            assert!(
                e.problem.starts_with("is not a managed policy ARN"),
                "{bad}"
            );
            assert_eq!(e.allowed, ARN_FORM);
        }
    }

    #[test]
    fn at_most_ten_arns_should_be_taken() {
        let arns: Vec<String> = (0..11)
            .map(|i| format!("arn:aws:iam::111122223333:policy/p{i}"))
            .collect();
        assert_eq!(
            SessionPolicy::new(None, arns[..10].to_vec())
                .unwrap()
                .arns
                .len(),
            10
        );
        let e = SessionPolicy::new(None, arns).unwrap_err();
        assert_eq!(
            e.to_string(),
            "names 11 managed policies; expected at most 10 policy ARNs (STS's limit)"
        );
    }

    #[test]
    fn display_should_never_show_the_document() {
        let p = SessionPolicy::new(
            Some(
                pack(r#"{"Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}}"#)
                    .unwrap(),
            ),
            vec!["arn:aws:iam::aws:policy/ReadOnlyAccess".into()],
        )
        .unwrap();
        let shown = p.to_string();
        assert!(shown.starts_with("an inline policy of "), "{shown}");
        assert!(shown.ends_with("the managed policy arn:aws:iam::aws:policy/ReadOnlyAccess"));
        assert!(!shown.contains("Deny"));
        assert_eq!(SessionPolicy::default().to_string(), "none");
    }

    proptest! {
        /// Any JSON object of printable ASCII packs to the same value, and the
        /// packed text is never longer than STS's limit.
        #[test]
        fn packing_should_keep_the_value(
            keys in prop::collection::vec("[A-Za-z]{1,12}", 0..8),
            values in prop::collection::vec("[ -~]{0,40}", 0..8),
        ) {
            let mut obj = serde_json::Map::new();
            for (k, v) in keys.iter().zip(values.iter()) {
                obj.insert(k.clone(), Value::String(v.clone()));
            }
            let value = Value::Object(obj);
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            let packed = pack(&pretty).unwrap();
            prop_assert!(packed.chars().count() <= MAX_DOCUMENT_CHARS);
            prop_assert_eq!(serde_json::from_str::<Value>(&packed).unwrap(), value);
        }
    }
}
