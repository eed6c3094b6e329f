//! The rule engine: the token's own problems, and each mismatch of the trust
//! policy's evaluation turned into findings with a hint for the usual mistake.
//! Every independent problem is reported; a finding that only restates another
//! (a literal wildcard seen as a wrong service account) is not.

use super::*;

pub(super) const SA_PREFIX: &str = "system:serviceaccount:";

pub(super) fn not_a_jwt(message: String) -> Finding {
    Finding::error(
        "token_not_jwt",
        message,
        Some(
            "the file must hold the projected service-account token itself (three base64url parts \
             separated by dots): point AWS_WEB_IDENTITY_TOKEN_FILE/--token-file at the token inside \
             the projected volume (for example /var/run/secrets/eks.amazonaws.com/serviceaccount/token)"
                .into(),
        ),
    )
}

pub(super) fn check_token(
    c: &Claims,
    audience: &str,
    now: SystemTime,
    findings: &mut Vec<Finding>,
) {
    let now = unix_seconds(now);
    match c.exp {
        None => findings.push(Finding::error(
            "token_no_exp",
            "the token has no exp claim; STS refuses tokens without an expiry".into(),
            None,
        )),
        Some(exp) if exp <= now => findings.push(Finding::error(
            "token_expired",
            format!(
                "the token expired at {} ({} ago); STS answers ExpiredTokenException",
                format_timestamp(from_unix_seconds(exp)),
                human(now - exp)
            ),
            Some(
                "kubelet rewrites a projected token before it expires: a stale token means the file \
                 is not a projected serviceAccountToken volume, or a copy is being read; check the \
                 volume and that the pod is running"
                    .into(),
            ),
        )),
        Some(_) => {}
    }
    if let Some(nbf) = c.nbf {
        if nbf > now {
            findings.push(Finding::error(
                "token_not_yet_valid",
                format!(
                    "the token is not valid before {} (in {}); STS answers InvalidIdentityToken",
                    format_timestamp(from_unix_seconds(nbf)),
                    human(nbf - now)
                ),
                Some("check this machine's clock and the issuer's".into()),
            ));
        }
    }
    if c.iss.as_deref().unwrap_or("").is_empty() {
        findings.push(Finding::error(
            "token_no_issuer",
            "the token has no iss claim; STS cannot find its identity provider".into(),
            None,
        ));
    }
    if c.sub.as_deref().unwrap_or("").is_empty() {
        findings.push(Finding::error(
            "token_no_subject",
            "the token has no sub claim".into(),
            None,
        ));
    }
    let aud = c.aud.values();
    if !aud.contains(&audience) {
        findings.push(Finding::error(
            "audience_mismatch",
            format!(
                "the token's audience is {:?}, STS expects {audience:?}; STS answers InvalidIdentityToken (Incorrect token audience)",
                aud
            ),
            Some(format!(
                "set `audience: {audience}` on the projected serviceAccountToken volume (the EKS \
                 pod-identity webhook does this), and list {audience} as a client ID of the IAM OIDC provider"
            )),
        ));
    }
}

/// Namespace and service account of `system:serviceaccount:<ns>:<sa>`.
pub(super) fn split_sa(s: &str) -> Option<(&str, &str)> {
    s.strip_prefix(SA_PREFIX)?.split_once(':')
}

pub(super) fn explain(
    evaluation: &Evaluation,
    c: &Claims,
    issuer: &str,
    findings: &mut Vec<Finding>,
) {
    let issuer_key = issuer_host_path(issuer);
    match evaluation.decision {
        Decision::Allowed { .. } => return,
        Decision::ExplicitDeny { statement } => {
            findings.push(Finding::error(
                "policy_explicit_deny",
                format!(
                    "the trust policy denies this token: Deny statement {statement} applies to it"
                ),
                Some("an applicable Deny wins over every Allow; narrow its conditions".into()),
            ));
            return;
        }
        Decision::ImplicitDeny => {}
    }
    let allows = evaluation.allows();
    if allows.is_empty() {
        findings.push(Finding::error(
            "policy_no_allow",
            "the trust policy has no Allow statement; AccessDenied".into(),
            None,
        ));
        return;
    }
    for s in allows {
        let label = match &s.sid {
            Some(sid) if !sid.is_empty() => format!("statement {} ({sid:?})", s.number),
            _ => format!("statement {}", s.number),
        };
        for m in &s.mismatches {
            findings.push(Finding::error(
                "policy_denied",
                format!("trust policy {label} does not apply: {m}"),
                None,
            ));
            hints(m, c, issuer_key, findings);
        }
    }
}

pub(super) fn hints(m: &Mismatch, c: &Claims, issuer_key: &str, findings: &mut Vec<Finding>) {
    let token_sub = c.sub.as_deref().unwrap_or("");
    match m {
        Mismatch::Action { .. } => findings.push(Finding::error(
            "action_not_web_identity",
            "the statement does not allow sts:AssumeRoleWithWebIdentity".into(),
            Some("use \"Action\": \"sts:AssumeRoleWithWebIdentity\"".into()),
        )),
        Mismatch::Principal { expected, found } => {
            let https = found.iter().any(|f| f.contains("https://"));
            findings.push(Finding::error(
                if https { "https_in_issuer" } else { "principal_mismatch" },
                format!("the Federated principal {found:?} is not the token's provider {expected}"),
                Some(if https {
                    format!("provider ARNs name the issuer without https://: oidc-provider/{issuer_key}")
                } else {
                    format!(
                        "use \"Principal\": {{\"Federated\": \"{expected}\"}} (the OIDC provider of the \
                         cluster that issued the token, in the role's account)"
                    )
                }),
            ));
        }
        // Only an identity (session) policy is matched on a resource.
        Mismatch::Resource { .. } => {}
        Mismatch::Condition {
            operator,
            key,
            expected,
            actual,
            key_present,
        } => {
            let lower = key.to_ascii_lowercase();
            let (key_issuer, claim) = lower.rsplit_once(':').unwrap_or(("", lower.as_str()));
            let op = crate::policy::Operator::parse(operator);
            // Every independent problem of the condition is reported: fixing one
            // must not reveal the next on the following run.
            let scheme = lower.starts_with("https://") || lower.starts_with("http://");
            if scheme {
                findings.push(Finding::error(
                    "https_in_condition_key",
                    format!("condition key {key:?} starts with https://, so it never matches"),
                    Some(format!(
                        "write condition keys without the scheme: \"{issuer_key}:{claim}\""
                    )),
                ));
            }
            // A wildcard under an Equals operator is taken literally; when the
            // pattern would match the token as a glob, that is the whole problem,
            // and the namespace and service-account checks below would only
            // repeat it with a wrong hint ("set serviceAccountName: *").
            let literal_wildcard = op.is_some_and(|o| o.comparison != Comparison::Like)
                && expected.iter().any(|e| e.contains('*') || e.contains('?'));
            let wildcard_explains = literal_wildcard
                && expected
                    .iter()
                    .any(|e| crate::policy::glob_match(e, token_sub));
            if !scheme
                && !*key_present
                && matches!(claim, "sub" | "aud" | "amr")
                && !key_issuer.eq_ignore_ascii_case(issuer_key)
            {
                findings.push(Finding::error(
                    "issuer_mismatch",
                    format!(
                        "condition key {key:?} names issuer {key_issuer:?}, the token's issuer is {issuer_key:?}"
                    ),
                    Some(format!(
                        "use the issuer of the cluster that issued the token: \"{issuer_key}:{claim}\" \
                         (see `aws eks describe-cluster --query cluster.identity.oidc.issuer`)"
                    )),
                ));
            }
            if claim == "aud" && expected.iter().any(|e| e.starts_with(SA_PREFIX)) {
                findings.push(Finding::error(
                    "sa_pattern_on_aud",
                    format!(
                        "the service-account pattern {expected:?} is on {key:?}, but the audience is {actual:?}; \
                         service accounts are in the token's sub"
                    ),
                    Some(format!(
                        "move the pattern to \"{issuer_key}:sub\" (StringLike for wildcards) and check \
                         \"{issuer_key}:aud\" with StringEquals \"sts.amazonaws.com\""
                    )),
                ));
            }
            if literal_wildcard {
                findings.push(Finding::error(
                    "wildcard_in_string_equals",
                    format!(
                        "{operator} compares literally, so the wildcard in {expected:?} matches only a literal '*' or '?'"
                    ),
                    Some(format!(
                        "use {} for wildcards",
                        operator.replace("Equals", "Like").replace("IgnoreCase", "")
                    )),
                ));
            }
            if claim == "aud" && !expected.iter().any(|e| e.starts_with(SA_PREFIX)) && *key_present
            {
                findings.push(Finding::error(
                    "audience_condition_mismatch",
                    format!("the policy expects audience {expected:?}, the token carries {actual:?}"),
                    Some("the audience of an EKS projected token is sts.amazonaws.com; make the policy and the token's volume agree".into()),
                ));
            }
            if claim == "sub" && *key_present && !wildcard_explains {
                if let Some((ns, sa)) = split_sa(token_sub) {
                    let wanted: Vec<(&str, &str)> =
                        expected.iter().filter_map(|e| split_sa(e)).collect();
                    let like = op.is_some_and(|o| o.comparison == Comparison::Like);
                    let ns_match = |p: &str| {
                        if like {
                            crate::policy::glob_match(p, ns)
                        } else {
                            p == ns
                        }
                    };
                    if !wanted.is_empty() && !wanted.iter().any(|(pns, _)| ns_match(pns)) {
                        let names: Vec<&str> = wanted.iter().map(|(n, _)| *n).collect();
                        findings.push(Finding::error(
                            "namespace_mismatch",
                            format!(
                                "the policy allows namespace {names:?}, the token is from namespace {ns:?} (service account {sa:?})"
                            ),
                            Some(format!(
                                "run the pod in the namespace the policy names, or allow \"{SA_PREFIX}{ns}:{sa}\" in {key:?}"
                            )),
                        ));
                    } else if !wanted.is_empty() {
                        let names: Vec<&str> = wanted.iter().map(|(_, s)| *s).collect();
                        findings.push(Finding::error(
                            "service_account_mismatch",
                            format!(
                                "the policy allows service account {names:?}, the token is for service account {sa:?} in namespace {ns:?}"
                            ),
                            Some(format!(
                                "set serviceAccountName: {} on the pod, or allow \"{SA_PREFIX}{ns}:{sa}\" in {key:?}",
                                names.first().copied().unwrap_or("<name>")
                            )),
                        ));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Output

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_subjects_should_split() {
        assert_eq!(
            split_sa("system:serviceaccount:demo:app"),
            Some(("demo", "app"))
        );
        assert_eq!(split_sa("user"), None);
    }
}
