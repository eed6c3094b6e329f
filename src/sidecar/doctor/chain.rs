//! Doctor for a role chain: each `--chain-trust-policy` evaluated as IAM
//! evaluates a chained `AssumeRole` by the previous hop's role, with what
//! `serve` would send (the same flags and `IRSA_PROXY_*` variables: the
//! ExternalId on the last hop, the session tags and SourceIdentity on the
//! first), and the five usual mistakes named:
//!
//! - `chain_tag_session_missing`: tags are sent and the policy does not allow
//!   `sts:TagSession` (STS's AccessDenied names TagSession, not AssumeRole, and
//!   looks intermittent when only some callers send tags);
//! - `chain_set_source_identity_missing`: a SourceIdentity is sent and the
//!   policy does not allow `sts:SetSourceIdentity`;
//! - `chain_external_id_mismatch`: an `sts:ExternalId` condition that what is
//!   configured cannot match (none set, another value, or a hop that is not the
//!   last);
//! - `chain_principal_not_previous_role`: the policy's principal is not the
//!   previous hop's role or its account;
//! - `chain_duration_over_cap`: `--duration` over the one hour AWS allows a
//!   chained session.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::flags::serve as sf;
use crate::sidecar::chain::{ExternalId, Plan, Rendered};

/// One hop as doctor saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct HopReport {
    /// 2 for the first `AssumeRole` (the web-identity call is hop 1).
    pub hop: usize,
    pub role_arn: String,
    /// The previous hop's role, which signs the call.
    pub caller_role: String,
    pub trust_policy: Option<PathBuf>,
    /// The actions evaluated and whether each was allowed.
    pub actions: Vec<(String, bool)>,
}

/// The session ARN of `role` as the next hop's caller.
fn session_arn(role: &RoleArn, session_name: &str) -> String {
    format!(
        "arn:{}:sts::{}:assumed-role/{}/{session_name}",
        role.partition, role.account, role.name
    )
}

/// Diagnoses the chain of `plan` after `first` (the web-identity role).
pub(super) fn diagnose_chain(
    plan: &Plan,
    first: Option<&RoleArn>,
    policies: &[(PathBuf, Policy)],
    claims: Option<&Claims>,
    duration: Option<(Duration, String)>,
    findings: &mut Vec<Finding>,
) -> Vec<HopReport> {
    if !plan.is_chained() {
        if !policies.is_empty() {
            findings.push(Finding::warning(
                "chain_policy_without_chain",
                "--chain-trust-policy given without --chain-role-arn (IRSA_PROXY_CHAIN_ROLE_ARN): nothing to evaluate it for".into(),
                None,
            ));
        }
        return Vec::new();
    }
    if let Some((d, shown)) = duration {
        if d > sf::CHAINED_DURATION_CAP {
            findings.push(Finding::error(
                "chain_duration_over_cap",
                format!(
                    "--duration {shown} is longer than the 1h AWS allows a session obtained by role chaining: STS answers ValidationError (\"The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.\"), and serve refuses to start"
                ),
                Some("set --duration (IRSA_PROXY_DURATION) to 1h or less".into()),
            ));
        }
    }
    let rendered = claims
        .and_then(|c| plan.render(c).ok())
        .unwrap_or_else(|| Rendered {
            session_name: None,
            tags: plan
                .tags
                .iter()
                .map(|t| (t.key.clone(), t.value.to_string()))
                .collect(),
            source_identity: plan.source_identity.as_ref().map(ToString::to_string),
        });
    let session_name = rendered
        .session_name
        .clone()
        .unwrap_or_else(|| "irsa-proxy".to_string());
    let last = plan.hops.len() - 1;
    let mut reports = Vec::new();
    let mut caller = first.cloned();
    for (i, hop) in plan.hops.iter().enumerate() {
        let number = i + 2;
        let previous = caller.replace(hop.role.clone());
        let Some(previous) = previous else {
            continue;
        };
        let Some((file, policy)) = policies.get(i) else {
            reports.push(HopReport {
                hop: number,
                role_arn: hop.role.arn.clone(),
                caller_role: previous.arn.clone(),
                trust_policy: None,
                actions: Vec::new(),
            });
            continue;
        };
        let first_hop = i == 0;
        let external_id = hop.external_id.as_ref().and_then(|e| e.read().ok());
        let mut keys = vec![(
            "sts:RoleSessionName".to_string(),
            vec![session_name.clone()],
        )];
        if let Some(id) = &external_id {
            keys.push(("sts:ExternalId".into(), vec![id.clone()]));
        }
        let tags = if first_hop {
            rendered.tags.clone()
        } else {
            Vec::new()
        };
        for (k, v) in &tags {
            keys.push((format!("aws:RequestTag/{k}"), vec![v.clone()]));
        }
        if !tags.is_empty() {
            keys.push((
                "aws:TagKeys".into(),
                tags.iter().map(|(k, _)| k.clone()).collect(),
            ));
        }
        let source_identity = rendered.source_identity.clone().filter(|_| first_hop);
        if let Some(si) = &source_identity {
            keys.push(("sts:SourceIdentity".into(), vec![si.clone()]));
        }
        let mut actions = vec!["sts:AssumeRole"];
        if !tags.is_empty() {
            actions.push("sts:TagSession");
        }
        if source_identity.is_some() {
            actions.push("sts:SetSourceIdentity");
        }
        let caller_session = session_arn(&previous, &session_name);
        let mut evaluated = Vec::new();
        for action in actions {
            let ctx = RequestContext::assume_role(&caller_session, action, keys.clone());
            let evaluation = policy.evaluate(&ctx);
            evaluated.push((action.to_string(), evaluation.allowed()));
            if evaluation.allowed() {
                continue;
            }
            explain_hop(
                &evaluation,
                HopContext {
                    number,
                    role: &hop.role,
                    previous: &previous,
                    file,
                    action,
                    external_id: hop.external_id.as_ref(),
                    is_last: i == last,
                },
                findings,
            );
        }
        reports.push(HopReport {
            hop: number,
            role_arn: hop.role.arn.clone(),
            caller_role: previous.arn.clone(),
            trust_policy: Some(file.clone()),
            actions: evaluated,
        });
    }
    reports
}

struct HopContext<'a> {
    number: usize,
    role: &'a RoleArn,
    previous: &'a RoleArn,
    file: &'a std::path::Path,
    action: &'a str,
    external_id: Option<&'a ExternalId>,
    is_last: bool,
}

/// Findings for one denied action of one hop: the statements that trust the
/// previous role are the ones whose mismatches matter.
fn explain_hop(evaluation: &Evaluation, h: HopContext<'_>, findings: &mut Vec<Finding>) {
    let at = format!(
        "hop {} (AssumeRole {} by {}), trust policy {}",
        h.number,
        h.role,
        h.previous,
        h.file.display()
    );
    if let Decision::ExplicitDeny { statement } = evaluation.decision {
        findings.push(Finding::error(
            "chain_explicit_deny",
            format!("{at}: statement {statement} denies {}", h.action),
            None,
        ));
        return;
    }
    let allows = evaluation.allows();
    if allows.is_empty() {
        findings.push(Finding::error(
            "chain_no_allow",
            format!("{at}: no Allow statement; STS answers AccessDenied"),
            None,
        ));
        return;
    }
    // The statement closest to applying: the fewest mismatches.
    let Some(closest) = allows.iter().min_by_key(|s| s.mismatches.len()) else {
        return;
    };
    for m in &closest.mismatches {
        let finding = match m {
            Mismatch::Action { .. } if h.action == "sts:TagSession" => Finding::error(
                "chain_tag_session_missing",
                format!(
                    "{at}: session tags are sent (--session-tags) and statement {} does not allow sts:TagSession: STS answers \"AccessDenied: User: ... is not authorized to perform: sts:TagSession\", which names TagSession, not AssumeRole, and looks intermittent when only some callers send tags",
                    closest.number
                ),
                Some(format!(
                    "add \"sts:TagSession\" to the Action of the statement that trusts {}",
                    h.previous
                )),
            ),
            Mismatch::Action { .. } if h.action == "sts:SetSourceIdentity" => Finding::error(
                "chain_set_source_identity_missing",
                format!(
                    "{at}: a SourceIdentity is sent (--source-identity) and statement {} does not allow sts:SetSourceIdentity: STS answers AccessDenied naming sts:SetSourceIdentity",
                    closest.number
                ),
                Some(format!(
                    "add \"sts:SetSourceIdentity\" to the Action of the statement that trusts {}",
                    h.previous
                )),
            ),
            Mismatch::Action { actions, .. } => Finding::error(
                "chain_action_not_assume_role",
                format!("{at}: statement {} allows {actions:?}, not {}", closest.number, h.action),
                Some(format!("use \"Action\": \"{}\"", h.action)),
            ),
            Mismatch::Principal { found, .. } => Finding::error(
                "chain_principal_not_previous_role",
                format!(
                    "{at}: statement {} trusts {found:?}, which is not the previous hop's role {} or its account {}",
                    closest.number, h.previous, h.previous.account
                ),
                Some(format!(
                    "use \"Principal\": {{\"AWS\": \"{}\"}}: the role that signs this hop is the one before it in --chain-role-arn (or --role-arn for the first)",
                    h.previous
                )),
            ),
            Mismatch::Condition { key, expected, .. }
                if key.eq_ignore_ascii_case("sts:ExternalId") =>
            {
                let why = match (h.external_id, h.is_last) {
                    (_, false) => "irsa-proxy sends the ExternalId only with the last hop".to_string(),
                    (None, true) => {
                        "no ExternalId is configured (--chain-external-id, --chain-external-id-file)".to_string()
                    }
                    (Some(_), true) => format!(
                        "the configured ExternalId is none of the {} value(s) the condition expects",
                        expected.len()
                    ),
                };
                Finding::error(
                    "chain_external_id_mismatch",
                    format!(
                        "{at}: statement {} has an sts:ExternalId condition that cannot match: {why}",
                        closest.number
                    ),
                    Some(
                        "give the ExternalId the role's owner set (--chain-external-id-file for a mounted Secret) and put the role that requires it last"
                            .into(),
                    ),
                )
            }
            other => Finding::error(
                "chain_condition",
                format!("{at}: statement {} does not apply: {other}", closest.number),
                None,
            ),
        };
        // Each action is evaluated alone; a condition they share fails each.
        if !findings.contains(&finding) {
            findings.push(finding);
        }
    }
}
