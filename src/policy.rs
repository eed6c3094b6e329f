//! IAM trust-policy evaluation for `sts:AssumeRoleWithWebIdentity`, and for the
//! `sts:AssumeRole`, `sts:TagSession` and `sts:SetSourceIdentity` of a chained
//! hop, shared by the emulator (which enforces it) and `doctor` (which explains
//! it).
//!
//! What is evaluated, as IAM does for a web-identity request:
//!
//! - `Statement` as one object or an array; `Effect` `Allow` or `Deny`;
//!   `Action`/`NotAction` as a string or array (`*` and `?` wildcards,
//!   case-insensitive) against `sts:AssumeRoleWithWebIdentity`;
//! - `Principal` `"*"` or `{"Federated": ARN | [ARN]}`, where the ARN must be
//!   `arn:<partition>:iam::<account>:oidc-provider/<issuer host and path>` for the
//!   token's issuer (without `https://`); for a chained hop `{"AWS": ...}` naming
//!   the calling role's ARN, its account (`123456789012` or
//!   `arn:aws:iam::123456789012:root`) or its session's ARN;
//! - `Condition` with `StringEquals`, `StringNotEquals`, `StringLike`,
//!   `StringNotLike`, `StringEqualsIgnoreCase`, `StringNotEqualsIgnoreCase`, their
//!   `ForAnyValue:`/`ForAllValues:` set forms and their `IfExists` forms. Condition
//!   keys are matched case-insensitively (as IAM does); values case-sensitively
//!   except for the `IgnoreCase` operators. Several values for one key: any may
//!   match. Several keys, several operators: all must hold.
//! - An applicable `Deny` wins over any `Allow`; without an applicable `Allow` the
//!   request is denied by default.
//!
//! A session policy (an identity policy passed to `AssumeRole*`, parsed with
//! [`Policy::parse_session`]) is evaluated the same way for an action on a
//! resource ([`RequestContext::identity`]): its statements name no
//! `Principal`, and each has a `Resource` or `NotResource` (patterns with `*`
//! and `?`, case-sensitive, as IAM matches ARNs).
//!
//! The result, [`Evaluation`], keeps every statement's outcome with the reasons it
//! did not apply, so `doctor` can say which statement and which condition failed.
//! Operators outside the list above are refused when the policy is parsed, rather
//! than silently evaluated wrong.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// The action every statement is evaluated for.
pub(crate) const WEB_IDENTITY_ACTION: &str = "sts:AssumeRoleWithWebIdentity";

/// Why a policy document could not be read. Each variant says where and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error("expected a JSON object with a \"Statement\" member")]
    NoStatement,
    #[error("{at}: {what}")]
    Invalid { at: String, what: String },
}

fn invalid(at: &str, what: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        at: at.to_string(),
        what: what.into(),
    }
}

/// A parsed trust policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub statements: Vec<Statement>,
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Position in the document, from 1, as people count them in `doctor` output.
    pub number: usize,
    pub sid: Option<String>,
    pub effect: Effect,
    /// The `Action` patterns, or the `NotAction` patterns when `not_action`.
    pub actions: Vec<String>,
    pub not_action: bool,
    pub principal: Principal,
    pub conditions: Vec<Condition>,
    /// The `Resource` patterns, or the `NotResource` patterns when
    /// `not_resource`; `None` when the statement has neither (a trust policy).
    pub resources: Option<Vec<String>>,
    pub not_resource: bool,
}

/// What [`Principal::Other`] holds for a statement without a `Principal`.
const NO_PRINCIPAL: &str = "no Principal";

/// Who a statement is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// `"Principal": "*"` (or `{"AWS": "*"}`): anyone.
    Anyone,
    /// `{"Federated": [...]}`: identity providers.
    Federated(Vec<String>),
    /// `{"AWS": [...]}`: roles, accounts and sessions (a chained hop's caller).
    Aws(Vec<String>),
    /// A principal that is never a web identity (`AWS`, `Service`, ...) or none at all.
    Other(String),
}

/// The comparison a condition operator makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Comparison {
    Equals,
    EqualsIgnoreCase,
    Like,
}

/// How a condition treats a key with several values (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SetOperator {
    /// Plain operator: the key's value (any of them, for a multi-valued key).
    Single,
    ForAnyValue,
    ForAllValues,
}

/// A parsed condition operator such as `ForAnyValue:StringNotLikeIfExists`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Operator {
    pub set: SetOperator,
    pub comparison: Comparison,
    pub negated: bool,
    pub if_exists: bool,
}

/// One key of one operator block: `"StringLike": {"<key>": [values]}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The operator as written in the policy.
    pub operator_name: String,
    pub operator: Operator,
    /// The key as written in the policy (compared case-insensitively).
    pub key: String,
    pub values: Vec<String>,
}

impl Operator {
    /// Parses an operator name; `None` for operators this evaluator does not know.
    pub fn parse(name: &str) -> Option<Operator> {
        let lower = name.to_ascii_lowercase();
        let (set, rest) = if let Some(r) = lower.strip_prefix("foranyvalue:") {
            (SetOperator::ForAnyValue, r)
        } else if let Some(r) = lower.strip_prefix("forallvalues:") {
            (SetOperator::ForAllValues, r)
        } else {
            (SetOperator::Single, lower.as_str())
        };
        let (rest, if_exists) = match rest.strip_suffix("ifexists") {
            Some(r) => (r, true),
            None => (rest, false),
        };
        let (comparison, negated) = match rest {
            "stringequals" => (Comparison::Equals, false),
            "stringnotequals" => (Comparison::Equals, true),
            "stringequalsignorecase" => (Comparison::EqualsIgnoreCase, false),
            "stringnotequalsignorecase" => (Comparison::EqualsIgnoreCase, true),
            "stringlike" => (Comparison::Like, false),
            "stringnotlike" => (Comparison::Like, true),
            _ => return None,
        };
        Some(Operator {
            set,
            comparison,
            negated,
            if_exists,
        })
    }

    /// Whether one request value matches one policy value (before negation).
    fn matches(&self, pattern: &str, value: &str) -> bool {
        match self.comparison {
            Comparison::Equals => pattern == value,
            Comparison::EqualsIgnoreCase => pattern.eq_ignore_ascii_case(value),
            Comparison::Like => glob_match(pattern, value),
        }
    }

    /// Evaluates the operator for a key whose request values are `actual`
    /// (`None` when the request does not carry the key).
    pub fn evaluate(&self, patterns: &[String], actual: Option<&[String]>) -> bool {
        let values = match actual {
            Some(v) if !v.is_empty() => v,
            _ => {
                // A missing key: IfExists passes, ForAllValues passes (vacuous truth),
                // negated plain operators pass, everything else fails.
                return self.if_exists
                    || self.set == SetOperator::ForAllValues
                    || (self.set == SetOperator::Single && self.negated);
            }
        };
        // "This value satisfies the operator": matches one of the patterns, or none
        // of them for negated operators.
        let satisfies = |v: &String| {
            let any = patterns.iter().any(|p| self.matches(p, v));
            any != self.negated
        };
        match self.set {
            SetOperator::ForAllValues => values.iter().all(satisfies),
            SetOperator::ForAnyValue => values.iter().any(satisfies),
            // A plain operator on a multi-valued key: positive operators need one
            // matching value, negated ones need no value to match.
            SetOperator::Single if self.negated => values.iter().all(satisfies),
            SetOperator::Single => values.iter().any(satisfies),
        }
    }
}

/// IAM's `StringLike` matching: `*` is any run of characters (also none), `?` is
/// exactly one character; everything else is literal and case-sensitive.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0usize, 0usize);
    // Where the last `*` was, and which value position it currently swallows up to.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == v[vi])) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn glob_match_ignore_case(pattern: &str, value: &str) -> bool {
    glob_match(&pattern.to_ascii_lowercase(), &value.to_ascii_lowercase())
}

/// The issuer as IAM writes it in provider ARNs and condition keys: no scheme, no
/// trailing slash (`oidc.eks.us-east-1.amazonaws.com/id/ABC`).
pub(crate) fn issuer_host_path(issuer: &str) -> &str {
    let s = issuer.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    s.trim_end_matches('/')
}

// ---------------------------------------------------------------------------
// Parsing

impl Policy {
    /// Parses a policy document.
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| PolicyError::Json(e.to_string()))?;
        let statement = doc
            .as_object()
            .and_then(|o| o.get("Statement"))
            .ok_or(PolicyError::NoStatement)?;
        let raw: Vec<&Value> = match statement {
            Value::Array(a) => a.iter().collect(),
            Value::Object(_) => vec![statement],
            _ => {
                return Err(invalid(
                    "Statement",
                    "expected an object or an array of objects",
                ))
            }
        };
        if raw.is_empty() {
            return Err(invalid("Statement", "is empty; a trust policy needs one"));
        }
        let statements = raw
            .into_iter()
            .enumerate()
            .map(|(i, v)| Statement::parse(i + 1, v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { statements })
    }
}

impl Policy {
    /// Parses a session policy (an identity policy): no statement names a
    /// `Principal`, and every one has a `Resource` or `NotResource`, as IAM
    /// requires of a policy attached to a role or passed to `AssumeRole*`.
    pub fn parse_session(json: &str) -> Result<Policy, PolicyError> {
        let policy = Policy::parse(json)?;
        for st in &policy.statements {
            let at = format!("Statement {}", st.number);
            if !matches!(&st.principal, Principal::Other(k) if k == NO_PRINCIPAL) {
                return Err(invalid(
                    &at,
                    "has a \"Principal\"; a session policy names none (it applies to the session)",
                ));
            }
            if st.resources.is_none() {
                return Err(invalid(
                    &at,
                    "has no \"Resource\" or \"NotResource\"; a session policy statement needs one",
                ));
            }
        }
        Ok(policy)
    }
}

fn string_or_array(v: &Value, at: &str) -> Result<Vec<String>, PolicyError> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| scalar(x).ok_or_else(|| invalid(at, "expected strings")))
            .collect(),
        other => scalar(other)
            .map(|s| vec![s])
            .ok_or_else(|| invalid(at, "expected a string or an array of strings")),
    }
}

impl Statement {
    fn parse(number: usize, v: &Value) -> Result<Statement, PolicyError> {
        let at = format!("Statement {number}");
        let obj = v
            .as_object()
            .ok_or_else(|| invalid(&at, "expected a JSON object"))?;
        let sid = obj.get("Sid").and_then(Value::as_str).map(str::to_string);
        let effect = match obj.get("Effect").and_then(Value::as_str) {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            Some(other) => {
                return Err(invalid(
                    &format!("{at} Effect"),
                    format!("is {other:?}, expected \"Allow\" or \"Deny\""),
                ))
            }
            None => return Err(invalid(&at, "has no \"Effect\" (\"Allow\" or \"Deny\")")),
        };
        let (actions, not_action) = match (obj.get("Action"), obj.get("NotAction")) {
            (Some(a), None) => (string_or_array(a, &format!("{at} Action"))?, false),
            (None, Some(a)) => (string_or_array(a, &format!("{at} NotAction"))?, true),
            _ => {
                return Err(invalid(
                    &at,
                    "needs exactly one of \"Action\" or \"NotAction\"",
                ))
            }
        };
        let principal = match obj.get("Principal") {
            None => Principal::Other(NO_PRINCIPAL.into()),
            Some(Value::String(s)) if s == "*" => Principal::Anyone,
            Some(Value::Object(p)) => {
                if let Some(f) = p.get("Federated") {
                    Principal::Federated(string_or_array(f, &format!("{at} Principal.Federated"))?)
                } else if p.get("AWS").is_some_and(|a| a.as_str() == Some("*")) {
                    Principal::Anyone
                } else if let Some(a) = p.get("AWS") {
                    Principal::Aws(string_or_array(a, &format!("{at} Principal.AWS"))?)
                } else {
                    let kinds: Vec<&str> = p.keys().map(String::as_str).collect();
                    Principal::Other(kinds.join(","))
                }
            }
            Some(_) => {
                return Err(invalid(
                    &format!("{at} Principal"),
                    "expected \"*\" or an object such as {\"Federated\": \"arn:...\"}",
                ))
            }
        };
        let (resources, not_resource) = match (obj.get("Resource"), obj.get("NotResource")) {
            (None, None) => (None, false),
            (Some(r), None) => (Some(string_or_array(r, &format!("{at} Resource"))?), false),
            (None, Some(r)) => (
                Some(string_or_array(r, &format!("{at} NotResource"))?),
                true,
            ),
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &at,
                    "has both \"Resource\" and \"NotResource\"; give one",
                ))
            }
        };
        let mut conditions = Vec::new();
        if let Some(c) = obj.get("Condition") {
            let blocks = c
                .as_object()
                .ok_or_else(|| invalid(&format!("{at} Condition"), "expected a JSON object"))?;
            for (op_name, keys) in blocks {
                let operator = Operator::parse(op_name).ok_or_else(|| {
                    invalid(
                        &format!("{at} Condition"),
                        format!(
                            "operator {op_name:?} is not supported; supported: StringEquals, \
                             StringNotEquals, StringLike, StringNotLike, StringEqualsIgnoreCase, \
                             StringNotEqualsIgnoreCase, with ForAnyValue:/ForAllValues: and IfExists"
                        ),
                    )
                })?;
                let keys = keys.as_object().ok_or_else(|| {
                    invalid(
                        &format!("{at} Condition {op_name}"),
                        "expected an object of condition keys",
                    )
                })?;
                for (key, values) in keys {
                    conditions.push(Condition {
                        operator_name: op_name.clone(),
                        operator,
                        key: key.clone(),
                        values: string_or_array(
                            values,
                            &format!("{at} Condition {op_name} {key}"),
                        )?,
                    });
                }
            }
        }
        Ok(Statement {
            number,
            sid,
            effect,
            actions,
            not_action,
            principal,
            conditions,
            resources,
            not_resource,
        })
    }
}

// ---------------------------------------------------------------------------
// Evaluation

/// What the request looks like to IAM.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestContext {
    /// The token's `iss`, with or without `https://`.
    pub issuer: String,
    /// The role's account, when known: the `Federated` ARN must name it.
    pub account: Option<String>,
    /// Condition keys, lower-cased, to their values (`<issuer>:sub`, `:aud`, `:amr`).
    pub keys: BTreeMap<String, Vec<String>>,
    /// The action evaluated; empty for `sts:AssumeRoleWithWebIdentity`.
    pub action: String,
    /// A chained hop's caller: the calling role's ARN
    /// (`arn:aws:iam::<account>:role/<name>`); `None` for a web identity.
    pub caller_role: Option<String>,
    /// The caller's session ARN (`arn:aws:sts::<account>:assumed-role/...`).
    pub caller_session: Option<String>,
    /// The resource acted on, for an identity (session) policy: its
    /// statements are matched on it, and name no principal. `None` for a
    /// trust policy.
    pub resource: Option<String>,
}

impl RequestContext {
    /// The context of a web-identity request: keys `<issuer host/path>:sub`, `:aud`
    /// and `:amr` from the token's claims.
    pub fn web_identity(
        issuer: &str,
        account: Option<&str>,
        sub: Option<&str>,
        aud: &[&str],
        amr: &[&str],
    ) -> RequestContext {
        let prefix = issuer_host_path(issuer).to_ascii_lowercase();
        let mut keys = BTreeMap::new();
        if let Some(sub) = sub {
            keys.insert(format!("{prefix}:sub"), vec![sub.to_string()]);
        }
        if !aud.is_empty() {
            keys.insert(
                format!("{prefix}:aud"),
                aud.iter().map(|s| s.to_string()).collect(),
            );
        }
        if !amr.is_empty() {
            keys.insert(
                format!("{prefix}:amr"),
                amr.iter().map(|s| s.to_string()).collect(),
            );
        }
        RequestContext {
            issuer: issuer.to_string(),
            account: account.map(str::to_string),
            keys,
            ..RequestContext::default()
        }
    }

    /// The context of a chained `AssumeRole` by the role session
    /// `caller_session` (`arn:<p>:sts::<account>:assumed-role/<role>/<session>`),
    /// evaluated for `action`, with these condition keys (names as IAM writes
    /// them, such as `sts:ExternalId` or `aws:RequestTag/team`).
    pub fn assume_role(
        caller_session: &str,
        action: &str,
        keys: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> RequestContext {
        let parts: Vec<&str> = caller_session.splitn(6, ':').collect();
        let (partition, account, resource) = match parts.as_slice() {
            [_, p, _, _, a, r] => (*p, *a, *r),
            _ => ("aws", "", ""),
        };
        let role = resource
            .strip_prefix("assumed-role/")
            .and_then(|r| r.split('/').next())
            .unwrap_or_default();
        let caller_role = format!("arn:{partition}:iam::{account}:role/{role}");
        let mut keys: BTreeMap<String, Vec<String>> = keys
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        keys.insert("aws:principalarn".into(), vec![caller_role.clone()]);
        keys.insert("aws:principalaccount".into(), vec![account.to_string()]);
        RequestContext {
            issuer: String::new(),
            account: Some(account.to_string()),
            keys,
            action: action.to_string(),
            caller_role: Some(caller_role),
            caller_session: Some(caller_session.to_string()),
            resource: None,
        }
    }

    /// The context of a call made with a session, for its session policy:
    /// `action` (`s3:GetObject`) on `resource` (`arn:aws:s3:::bucket/key`),
    /// with these condition keys.
    pub fn identity(
        action: &str,
        resource: &str,
        keys: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> RequestContext {
        RequestContext {
            keys: keys
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            action: action.to_string(),
            resource: Some(resource.to_string()),
            ..RequestContext::default()
        }
    }

    /// The action evaluated.
    pub fn action(&self) -> &str {
        if self.action.is_empty() {
            WEB_IDENTITY_ACTION
        } else {
            &self.action
        }
    }

    /// The principal a statement must name, for messages.
    pub(crate) fn expected_principal(&self) -> String {
        match &self.caller_role {
            Some(role) => role.clone(),
            None => self.provider_arn(),
        }
    }

    /// The values of a condition key (case-insensitive), if the request has it.
    pub fn values(&self, key: &str) -> Option<&[String]> {
        self.keys.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// The `Federated` principal ARN this request comes from, for messages.
    pub(crate) fn provider_arn(&self) -> String {
        format!(
            "arn:aws:iam::{}:oidc-provider/{}",
            self.account.as_deref().unwrap_or("<account>"),
            issuer_host_path(&self.issuer)
        )
    }
}

/// Why a statement does not apply to the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mismatch {
    /// The statement's actions do not cover the action asked
    /// (`sts:AssumeRoleWithWebIdentity`, or a chained hop's).
    Action {
        actions: Vec<String>,
        not_action: bool,
        action: String,
    },
    /// The statement's principal is not the token's identity provider.
    Principal {
        expected: String,
        found: Vec<String>,
    },
    /// The statement's resources do not cover the resource acted on (an
    /// identity policy).
    Resource {
        resources: Vec<String>,
        not_resource: bool,
        resource: String,
    },
    /// A condition does not hold.
    Condition {
        operator: String,
        key: String,
        expected: Vec<String>,
        /// The request's values for the key; empty when the request lacks it.
        actual: Vec<String>,
        key_present: bool,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Action {
                actions,
                not_action,
                action,
            } => write!(
                f,
                "{} {:?} does not cover {action}",
                if *not_action { "NotAction" } else { "Action" },
                actions
            ),
            Mismatch::Resource {
                resources,
                not_resource,
                resource,
            } => write!(
                f,
                "{} {:?} does not cover {resource}",
                if *not_resource {
                    "NotResource"
                } else {
                    "Resource"
                },
                resources
            ),
            Mismatch::Principal { expected, found } if expected.contains(":role/") => write!(
                f,
                "Principal {found:?} is not the calling role {expected:?} or its account"
            ),
            Mismatch::Principal { expected, found } => write!(
                f,
                "Principal {:?} is not the token's identity provider {expected:?}",
                found
            ),
            Mismatch::Condition {
                operator,
                key,
                expected,
                actual,
                key_present,
            } => {
                if *key_present {
                    write!(
                        f,
                        "{operator} {key:?} expects {expected:?}, the token has {actual:?}"
                    )
                } else {
                    write!(
                        f,
                        "{operator} {key:?} expects {expected:?}, but the request has no such key"
                    )
                }
            }
        }
    }
}

/// One statement's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatementOutcome {
    pub number: usize,
    pub sid: Option<String>,
    pub effect: Effect,
    /// Empty when the statement applies to the request.
    pub mismatches: Vec<Mismatch>,
}

impl StatementOutcome {
    pub fn applies(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// An `Allow` statement applies and no `Deny` does.
    Allowed { statement: usize },
    /// A `Deny` statement applies.
    ExplicitDeny { statement: usize },
    /// No statement allows the request.
    ImplicitDeny,
}

/// The verdict and every statement's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub decision: Decision,
    pub statements: Vec<StatementOutcome>,
}

impl Evaluation {
    pub fn allowed(&self) -> bool {
        matches!(self.decision, Decision::Allowed { .. })
    }

    /// The outcomes of the Allow statements, in the policy's order: what doctor
    /// searches for the one closest to applying.
    pub fn allows(&self) -> Vec<&StatementOutcome> {
        self.statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .collect()
    }

    /// One line for logs and error messages.
    pub fn summary(&self) -> String {
        match self.decision {
            Decision::Allowed { statement } => format!("allowed by statement {statement}"),
            Decision::ExplicitDeny { statement } => {
                format!("explicitly denied by statement {statement}")
            }
            Decision::ImplicitDeny => {
                let reasons: Vec<String> = self
                    .statements
                    .iter()
                    .filter(|s| s.effect == Effect::Allow)
                    .map(|s| {
                        let first = s
                            .mismatches
                            .first()
                            .map(ToString::to_string)
                            .unwrap_or_default();
                        format!("statement {}: {first}", s.number)
                    })
                    .collect();
                if reasons.is_empty() {
                    "no Allow statement".to_string()
                } else {
                    format!("no statement allows it ({})", reasons.join("; "))
                }
            }
        }
    }
}

impl Policy {
    /// Evaluates the policy for `sts:AssumeRoleWithWebIdentity` as IAM would.
    pub fn evaluate(&self, ctx: &RequestContext) -> Evaluation {
        let statements: Vec<StatementOutcome> = self
            .statements
            .iter()
            .map(|s| StatementOutcome {
                number: s.number,
                sid: s.sid.clone(),
                effect: s.effect,
                mismatches: s.mismatches(ctx),
            })
            .collect();
        let first = |effect: Effect| {
            statements
                .iter()
                .find(|s| s.effect == effect && s.applies())
                .map(|s| s.number)
        };
        let decision = match (first(Effect::Deny), first(Effect::Allow)) {
            (Some(statement), _) => Decision::ExplicitDeny { statement },
            (None, Some(statement)) => Decision::Allowed { statement },
            (None, None) => Decision::ImplicitDeny,
        };
        Evaluation {
            decision,
            statements,
        }
    }
}

impl Statement {
    fn mismatches(&self, ctx: &RequestContext) -> Vec<Mismatch> {
        let mut out = Vec::new();
        let action = ctx.action();
        let covered = self
            .actions
            .iter()
            .any(|a| glob_match_ignore_case(a, action));
        if covered == self.not_action {
            out.push(Mismatch::Action {
                actions: self.actions.clone(),
                not_action: self.not_action,
                action: action.to_string(),
            });
        }
        if let Some(resource) = &ctx.resource {
            // An identity policy: no principal to match, the resource instead.
            let patterns = self.resources.as_deref().unwrap_or_default();
            let covered = patterns.iter().any(|p| glob_match(p, resource));
            if covered == self.not_resource {
                out.push(Mismatch::Resource {
                    resources: patterns.to_vec(),
                    not_resource: self.not_resource,
                    resource: resource.clone(),
                });
            }
        }
        let named = match &self.principal {
            _ if ctx.resource.is_some() => None,
            Principal::Anyone => None,
            Principal::Federated(arns) => (ctx.caller_role.is_some()
                || !arns.iter().any(|a| federated_matches(a, ctx)))
            .then(|| arns.clone()),
            Principal::Aws(arns) => {
                (!arns.iter().any(|a| aws_principal_matches(a, ctx))).then(|| arns.clone())
            }
            Principal::Other(kind) => Some(vec![kind.clone()]),
        };
        if let Some(found) = named {
            out.push(Mismatch::Principal {
                expected: ctx.expected_principal(),
                found,
            });
        }
        for c in &self.conditions {
            let actual = ctx.values(&c.key);
            if !c.operator.evaluate(&c.values, actual) {
                out.push(Mismatch::Condition {
                    operator: c.operator_name.clone(),
                    key: c.key.clone(),
                    expected: c.values.clone(),
                    actual: actual.map(<[String]>::to_vec).unwrap_or_default(),
                    key_present: actual.is_some(),
                });
            }
        }
        out
    }
}

/// Whether a `Federated` ARN names the request's OIDC provider (and, when the role's
/// account is known, lives in that account).
fn federated_matches(arn: &str, ctx: &RequestContext) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, _, service, _, account, resource] = parts.as_slice() else {
        return false;
    };
    if *service != "iam" {
        return false;
    }
    if let Some(want) = &ctx.account {
        if account != want {
            return false;
        }
    }
    let Some(provider) = resource.strip_prefix("oidc-provider/") else {
        return false;
    };
    let (want_host, want_path) = split_host(issuer_host_path(&ctx.issuer));
    let (host, path) = split_host(provider);
    // Host names are case-insensitive; the path (EKS's cluster id) is not.
    host.eq_ignore_ascii_case(want_host) && path == want_path
}

/// Whether an `AWS` principal names a chained hop's caller: its role's ARN, its
/// session's ARN, or its account (as the 12 digits or `...:root`).
fn aws_principal_matches(principal: &str, ctx: &RequestContext) -> bool {
    let (Some(role), Some(account)) = (&ctx.caller_role, &ctx.account) else {
        return false;
    };
    let p = principal.trim();
    p == role
        || Some(p) == ctx.caller_session.as_deref()
        || p == account
        || (p.starts_with("arn:") && p.ends_with(&format!(":iam::{account}:root")))
}

fn split_host(s: &str) -> (&str, &str) {
    match s.find('/') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://oidc.eks.us-east-2.amazonaws.com/id/ABC123";
    const PROVIDER: &str =
        "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-2.amazonaws.com/id/ABC123";

    fn ctx(sub: &str) -> RequestContext {
        RequestContext::web_identity(
            ISS,
            Some("111122223333"),
            Some(sub),
            &["sts.amazonaws.com"],
            &[],
        )
    }

    fn policy(condition: &str) -> Policy {
        Policy::parse(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow",
            "Principal":{{"Federated":"{PROVIDER}"}},
            "Action":"sts:AssumeRoleWithWebIdentity","Condition":{condition}}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn glob_should_follow_iam_wildcards() {
        assert!(glob_match(
            "system:serviceaccount:demo:*",
            "system:serviceaccount:demo:app"
        ));
        assert!(glob_match("a*", "a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbx"));
        assert!(!glob_match("abc", "ABC"));
        assert!(glob_match("a**b", "ab"));
    }

    #[test]
    fn string_equals_on_sub_should_allow_the_matching_service_account() {
        let p = policy(
            r#"{"StringEquals":{"oidc.eks.us-east-2.amazonaws.com/id/ABC123:sub":"system:serviceaccount:demo:app",
               "oidc.eks.us-east-2.amazonaws.com/id/ABC123:aud":"sts.amazonaws.com"}}"#,
        );
        assert_eq!(
            p.evaluate(&ctx("system:serviceaccount:demo:app")).decision,
            Decision::Allowed { statement: 1 }
        );
        let e = p.evaluate(&ctx("system:serviceaccount:other:app"));
        assert_eq!(e.decision, Decision::ImplicitDeny);
        assert!(matches!(
            &e.statements[0].mismatches[0],
            Mismatch::Condition { key, .. } if key.ends_with(":sub")
        ));
    }

    #[test]
    fn condition_keys_should_be_case_insensitive() {
        let p = policy(
            r#"{"StringEquals":{"OIDC.EKS.US-EAST-2.AMAZONAWS.COM/id/ABC123:SUB":"system:serviceaccount:demo:app"}}"#,
        );
        assert!(p.evaluate(&ctx("system:serviceaccount:demo:app")).allowed());
    }

    #[test]
    fn service_account_pattern_on_aud_should_deny() {
        let p = policy(
            r#"{"StringLike":{"oidc.eks.us-east-2.amazonaws.com/id/ABC123:aud":"system:serviceaccount:demo:*"}}"#,
        );
        let e = p.evaluate(&ctx("system:serviceaccount:demo:app"));
        assert!(!e.allowed());
        assert!(e.summary().contains(":aud"));
    }

    #[test]
    fn wildcard_under_string_equals_should_be_literal() {
        let p = policy(
            r#"{"StringEquals":{"oidc.eks.us-east-2.amazonaws.com/id/ABC123:sub":"system:serviceaccount:demo:*"}}"#,
        );
        assert!(!p.evaluate(&ctx("system:serviceaccount:demo:app")).allowed());
        let p = policy(
            r#"{"StringLike":{"oidc.eks.us-east-2.amazonaws.com/id/ABC123:sub":["x","system:serviceaccount:demo:*"]}}"#,
        );
        assert!(p.evaluate(&ctx("system:serviceaccount:demo:app")).allowed());
    }

    #[test]
    fn https_in_a_condition_key_should_never_match() {
        let p = policy(
            r#"{"StringEquals":{"https://oidc.eks.us-east-2.amazonaws.com/id/ABC123:sub":"system:serviceaccount:demo:app"}}"#,
        );
        let e = p.evaluate(&ctx("system:serviceaccount:demo:app"));
        assert!(matches!(
            &e.statements[0].mismatches[0],
            Mismatch::Condition {
                key_present: false,
                ..
            }
        ));
    }

    #[test]
    fn principal_should_name_the_issuer_and_the_account() {
        let p = Policy::parse(
            r#"{"Statement":{"Effect":"Allow","Principal":{"Federated":["arn:aws:iam::111122223333:oidc-provider/other.example/id/X"]},"Action":["sts:AssumeRoleWithWebIdentity"]}}"#,
        )
        .unwrap();
        let e = p.evaluate(&ctx("s"));
        assert!(matches!(
            &e.statements[0].mismatches[0],
            Mismatch::Principal { .. }
        ));
        let p = Policy::parse(&format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":{{"Federated":"{}"}},"Action":"sts:*"}}}}"#,
            PROVIDER.replace("111122223333", "999999999999")
        ))
        .unwrap();
        assert!(!p.evaluate(&ctx("s")).allowed());
        let p = Policy::parse(&format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":{{"Federated":"{PROVIDER}"}},"Action":"sts:*"}}}}"#
        ))
        .unwrap();
        assert!(p.evaluate(&ctx("s")).allowed());
    }

    #[test]
    fn action_should_cover_web_identity() {
        let p = Policy::parse(&format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":{{"Federated":"{PROVIDER}"}},"Action":"sts:AssumeRole"}}}}"#
        ))
        .unwrap();
        let e = p.evaluate(&ctx("s"));
        assert!(matches!(
            &e.statements[0].mismatches[0],
            Mismatch::Action { .. }
        ));
    }

    #[test]
    fn explicit_deny_should_win() {
        let p = Policy::parse(&format!(
            r#"{{"Statement":[
              {{"Effect":"Allow","Principal":{{"Federated":"{PROVIDER}"}},"Action":"sts:AssumeRoleWithWebIdentity"}},
              {{"Sid":"NoDefault","Effect":"Deny","Principal":"*","Action":"sts:*",
                "Condition":{{"StringLike":{{"oidc.eks.us-east-2.amazonaws.com/id/ABC123:sub":"system:serviceaccount:default:*"}}}}}}]}}"#
        ))
        .unwrap();
        assert_eq!(
            p.evaluate(&ctx("system:serviceaccount:default:x")).decision,
            Decision::ExplicitDeny { statement: 2 }
        );
        assert_eq!(
            p.evaluate(&ctx("system:serviceaccount:demo:x")).decision,
            Decision::Allowed { statement: 1 }
        );
    }

    #[test]
    fn negated_and_set_operators_should_follow_iam() {
        let op = |s: &str| Operator::parse(s).unwrap();
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let pats = v(&["a", "b"]);
        // Missing keys.
        assert!(!op("StringEquals").evaluate(&pats, None));
        assert!(op("StringNotEquals").evaluate(&pats, None));
        assert!(op("StringEqualsIfExists").evaluate(&pats, None));
        assert!(op("ForAllValues:StringEquals").evaluate(&pats, None));
        assert!(!op("ForAnyValue:StringEquals").evaluate(&pats, None));
        // Present keys.
        assert!(op("ForAnyValue:StringEquals").evaluate(&pats, Some(&v(&["x", "b"]))));
        assert!(!op("ForAllValues:StringEquals").evaluate(&pats, Some(&v(&["x", "b"]))));
        assert!(op("ForAllValues:StringEquals").evaluate(&pats, Some(&v(&["a", "b"]))));
        assert!(!op("StringNotEquals").evaluate(&pats, Some(&v(&["a"]))));
        assert!(op("StringNotLike").evaluate(&v(&["a*"]), Some(&v(&["ba"]))));
        assert!(op("ForAnyValue:StringNotLike").evaluate(&v(&["a*"]), Some(&v(&["ab", "c"]))));
        assert!(!op("ForAllValues:StringNotLike").evaluate(&v(&["a*"]), Some(&v(&["ab", "c"]))));
        assert!(op("StringEqualsIgnoreCase").evaluate(&pats, Some(&v(&["A"]))));
        assert!(Operator::parse("NumericLessThan").is_none());
    }

    #[test]
    fn amr_should_work_with_for_any_value() {
        let p = policy(
            r#"{"ForAnyValue:StringLike":{"oidc.eks.us-east-2.amazonaws.com/id/ABC123:amr":"authenticated"}}"#,
        );
        let mut c = ctx("s");
        assert!(!p.evaluate(&c).allowed());
        c = RequestContext::web_identity(ISS, None, Some("s"), &[], &["x", "authenticated"]);
        assert!(p.evaluate(&c).allowed());
    }

    #[test]
    fn bad_documents_should_be_refused_with_the_place() {
        assert!(matches!(Policy::parse("{"), Err(PolicyError::Json(_))));
        assert_eq!(Policy::parse("{}"), Err(PolicyError::NoStatement));
        let e = Policy::parse(r#"{"Statement":[{"Effect":"Maybe","Action":"*"}]}"#).unwrap_err();
        assert!(e.to_string().contains("Statement 1 Effect"), "{e}");
        let e = Policy::parse(
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Condition":{"NumericLessThan":{"a":"1"}}}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("NumericLessThan"), "{e}");
    }

    #[test]
    fn a_session_policy_should_allow_only_its_actions_on_its_resources() {
        let p = Policy::parse_session(
            r#"{"Version":"2012-10-17","Statement":[
              {"Sid":"read","Effect":"Allow","Action":["s3:GetObject","s3:ListBucket"],
               "Resource":["arn:aws:s3:::reports","arn:aws:s3:::reports/*"]},
              {"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::reports/secret/*"},
              {"Effect":"Allow","Action":"s3:PutObject","NotResource":"arn:aws:s3:::reports/*"}]}"#,
        )
        .unwrap();
        let decide = |action: &str, resource: &str| {
            p.evaluate(&RequestContext::identity(action, resource, []))
                .decision
        };
        assert_eq!(
            decide("s3:GetObject", "arn:aws:s3:::reports/2024/q1.csv"),
            Decision::Allowed { statement: 1 }
        );
        assert_eq!(
            decide("S3:getobject", "arn:aws:s3:::reports/x"),
            Decision::Allowed { statement: 1 },
            "actions ignore case"
        );
        assert_eq!(
            decide("s3:GetObject", "arn:aws:s3:::Reports/x"),
            Decision::ImplicitDeny,
            "resources do not"
        );
        assert_eq!(
            decide("s3:GetObject", "arn:aws:s3:::reports/secret/k"),
            Decision::ExplicitDeny { statement: 2 },
            "an explicit Deny wins"
        );
        assert_eq!(
            decide("s3:DeleteObject", "arn:aws:s3:::reports/x"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide("s3:PutObject", "arn:aws:s3:::scratch/x"),
            Decision::Allowed { statement: 3 }
        );
        let e = p.evaluate(&RequestContext::identity(
            "s3:PutObject",
            "arn:aws:s3:::reports/x",
            [],
        ));
        assert!(
            e.summary().contains(
                "NotResource [\"arn:aws:s3:::reports/*\"] does not cover arn:aws:s3:::reports/x"
            ),
            "{}",
            e.summary()
        );
    }

    #[test]
    fn a_session_policy_should_name_no_principal_and_have_resources() {
        let e = Policy::parse_session(
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("Statement 1: has a \"Principal\""),
            "{e}"
        );
        let e = Policy::parse_session(r#"{"Statement":{"Effect":"Allow","Action":"s3:*"}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("has no \"Resource\""), "{e}");
        let e = Policy::parse_session(
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","NotResource":"x"}}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
        // A trust policy keeps ignoring resources.
        let trust = Policy::parse(&format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":{{"Federated":"{PROVIDER}"}},"Action":"sts:AssumeRoleWithWebIdentity","Resource":"arn:nothing"}}}}"#
        ))
        .unwrap();
        assert!(trust.evaluate(&ctx("system:serviceaccount:a:b")).allowed());
    }
}
