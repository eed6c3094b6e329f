//! `irsa-proxy doctor`: explain why a role cannot be assumed with a token
//! (docs/contract.md §1).
//!
//! It decodes the token without verifying it (STS verifies; doctor explains),
//! checks its times and audience, checks the role ARN, and, given the role's trust
//! policy, evaluates it as IAM would ([`crate::policy`]) and turns each failing
//! statement and condition into a finding with a hint for the usual mistakes.
//!
//! Exit codes: 0 when the role would be assumed (as far as doctor can tell), 1 when
//! it would not (a denied policy, an expired or unusable token, a wrong audience, a
//! malformed role ARN), 2 when doctor could not do its job (no token file, a file
//! that cannot be read, a policy that is not valid JSON, a bad flag).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::arn::RoleArn;
use crate::cli::DoctorArgs;
use crate::clock::{format_timestamp, from_unix_seconds, unix_seconds};
use crate::flags::{
    self, doctor as f, Environment, FlagError, Flags, NoEnvironment, ProcessEnv, Refusal,
};
use crate::logging::LogFormat;
use crate::policy::{
    issuer_host_path, Comparison, Decision, Effect, Evaluation, Mismatch, Policy, RequestContext,
};
use crate::token::{read_token, Claims, TokenError};
use crate::Fatal;

/// How bad a finding is. Any `Error` makes the exit code 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One thing doctor found, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable identifier for scripts, e.g. `token_expired`, `sa_pattern_on_aud`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Finding {
    fn error(code: &'static str, message: String, hint: Option<String>) -> Self {
        Finding {
            severity: Severity::Error,
            code,
            message,
            hint,
        }
    }

    fn warning(code: &'static str, message: String, hint: Option<String>) -> Self {
        Finding {
            severity: Severity::Warning,
            code,
            message,
            hint,
        }
    }
}

/// What the token says (claims only; the token itself is never printed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenReport {
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub audience: Vec<String>,
    pub issued_at: Option<String>,
    pub not_before: Option<String>,
    pub expires_at: Option<String>,
    /// Seconds until `exp`; negative once expired.
    pub seconds_left: Option<i64>,
}

/// The trust policy's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyReport {
    pub file: PathBuf,
    pub allowed: bool,
    pub evaluation: Evaluation,
}

/// Everything doctor found; printed as text or JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub token_file: PathBuf,
    pub token: Option<TokenReport>,
    pub role_arn: Option<String>,
    pub audience: String,
    pub trust_policy: Option<PolicyReport>,
    pub findings: Vec<Finding>,
    /// `allowed`, `denied`, or `ok` (no policy given and nothing wrong).
    pub verdict: &'static str,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        if self.findings.iter().any(|f| f.severity == Severity::Error) {
            1
        } else {
            0
        }
    }
}

const SA_PREFIX: &str = "system:serviceaccount:";

/// Runs the diagnosis. `Err` holds the bad-input lines (exit 2).
pub fn diagnose(
    args: &DoctorArgs,
    env: &dyn Environment,
    now: SystemTime,
) -> Result<Report, Vec<FlagError>> {
    let mut flags = Flags::new(env);
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let mut findings = Vec::new();
    let token_file = flags.raw(&f::TOKEN_FILE, path(&args.token_file).as_deref());
    if token_file.is_none() {
        flags.refuse(FlagError::missing(
            &f::TOKEN_FILE,
            "the path of the projected token file",
        ));
    }
    let role_arn = flags
        .raw(&f::ROLE_ARN, args.role_arn.as_deref())
        .map(|(v, _)| v);
    let policy = flags.parse(&f::TRUST_POLICY, path(&args.trust_policy).as_deref(), |p| {
        let bytes = std::fs::read(p)
            .map_err(|e| Refusal::new(format!("cannot be read ({e})"), "a readable file"))?;
        Policy::parse(&String::from_utf8_lossy(&bytes))
            .map(|policy| (PathBuf::from(p), policy))
            .map_err(|e| Refusal::new(format!("is not usable: {e}"), "an IAM trust policy (JSON)"))
    });
    // A token that cannot be read stops doctor (exit 2); one that is not a JWT is
    // a finding.
    let token = token_file
        .as_ref()
        .and_then(|(v, source)| match read_token(Path::new(v)) {
            Ok(t) => Some(t.claims()),
            Err(
                e @ (TokenError::Io { .. }
                | TokenError::IsDirectory { .. }
                | TokenError::NotRegularFile { .. }),
            ) => {
                flags.refuse(FlagError::refused(
                    f::TOKEN_FILE.name,
                    *source,
                    v,
                    Refusal::new(format!("cannot be used ({e})"), "a readable token file"),
                ));
                None
            }
            Err(e) => {
                findings.push(not_a_jwt(e.to_string()));
                None
            }
        });
    let token_file = flags.finish(|| token_file.map(|(v, _)| PathBuf::from(v)))?;

    let claims = match token {
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            findings.push(not_a_jwt(format!(
                "token file {}: {e}",
                token_file.display()
            )));
            None
        }
        None => None,
    };

    // The role ARN.
    let role = match &role_arn {
        None => {
            findings.push(Finding::warning(
                "role_arn_missing",
                "no role ARN: --role-arn not given and AWS_ROLE_ARN is not set".into(),
                Some("give --role-arn so the policy's provider account can be checked".into()),
            ));
            None
        }
        Some(arn) => match RoleArn::parse(arn) {
            Ok(r) => Some(r),
            Err(allowed) => {
                findings.push(Finding::error(
                    "role_arn_invalid",
                    format!("role ARN {arn:?} is not valid: expected {allowed}"),
                    Some("copy the role's ARN from the IAM console or `aws iam get-role`".into()),
                ));
                None
            }
        },
    };

    let token_report = claims.as_ref().map(|c| token_report(c, now));
    if let Some(c) = &claims {
        check_token(c, &args.audience, now, &mut findings);
    }

    // The trust policy.
    let mut policy_report = None;
    if let (Some((file, policy)), Some(c)) = (&policy, &claims) {
        let issuer = c.iss.clone().unwrap_or_default();
        let aud = c.aud.values();
        let amr = c.amr.values();
        let ctx = RequestContext::web_identity(
            &issuer,
            role.as_ref().map(|r| r.account.as_str()),
            c.sub.as_deref(),
            &aud,
            &amr,
        );
        let evaluation = policy.evaluate(&ctx);
        explain(&evaluation, c, &issuer, &mut findings);
        policy_report = Some(PolicyReport {
            file: file.clone(),
            allowed: evaluation.allowed(),
            evaluation,
        });
    }

    let has_error = findings.iter().any(|f| f.severity == Severity::Error);
    let verdict = match (&policy_report, has_error) {
        (_, true) => "denied",
        (Some(_), false) => "allowed",
        (None, false) => "ok",
    };
    Ok(Report {
        token_file,
        token: token_report,
        role_arn,
        audience: args.audience.clone(),
        trust_policy: policy_report,
        findings,
        verdict,
    })
}

fn not_a_jwt(message: String) -> Finding {
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

fn time(secs: Option<i64>) -> Option<String> {
    secs.map(|s| format_timestamp(from_unix_seconds(s)))
}

fn token_report(c: &Claims, now: SystemTime) -> TokenReport {
    TokenReport {
        issuer: c.iss.clone(),
        subject: c.sub.clone(),
        audience: c.aud.values().iter().map(|s| s.to_string()).collect(),
        issued_at: time(c.iat),
        not_before: time(c.nbf),
        expires_at: time(c.exp),
        seconds_left: c.exp.map(|e| e - unix_seconds(now)),
    }
}

fn human(secs: i64) -> String {
    humantime::format_duration(Duration::from_secs(secs.unsigned_abs())).to_string()
}

fn check_token(c: &Claims, audience: &str, now: SystemTime, findings: &mut Vec<Finding>) {
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
fn split_sa(s: &str) -> Option<(&str, &str)> {
    s.strip_prefix(SA_PREFIX)?.split_once(':')
}

fn explain(evaluation: &Evaluation, c: &Claims, issuer: &str, findings: &mut Vec<Finding>) {
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
    let allows: Vec<_> = evaluation
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow)
        .collect();
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

fn hints(m: &Mismatch, c: &Claims, issuer_key: &str, findings: &mut Vec<Finding>) {
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

fn or_dash(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

/// The report for people.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!("Token file   {}\n", r.token_file.display()));
    match &r.token {
        Some(t) => {
            out.push_str(&format!("  issuer     {}\n", or_dash(&t.issuer)));
            out.push_str(&format!("  subject    {}\n", or_dash(&t.subject)));
            let aud = if t.audience.is_empty() {
                "-".to_string()
            } else {
                t.audience.join(", ")
            };
            out.push_str(&format!("  audience   {aud}\n"));
            out.push_str(&format!("  issued     {}\n", or_dash(&t.issued_at)));
            let left = match t.seconds_left {
                Some(s) if s > 0 => format!(" ({} left)", human(s)),
                Some(s) => format!(" (expired {} ago)", human(-s)),
                None => String::new(),
            };
            out.push_str(&format!("  expires    {}{left}\n", or_dash(&t.expires_at)));
        }
        None => out.push_str("  (not decodable)\n"),
    }
    out.push_str(&format!(
        "Role         {}\n",
        r.role_arn.as_deref().unwrap_or("- (not given)")
    ));
    out.push_str(&format!("Audience     {} (what STS expects)\n", r.audience));
    match &r.trust_policy {
        Some(p) => {
            out.push_str(&format!(
                "Trust policy {}: {}\n",
                p.file.display(),
                if p.allowed {
                    "ALLOWS this token"
                } else {
                    "DENIES this token"
                }
            ));
            for s in &p.evaluation.statements {
                let sid = s
                    .sid
                    .as_deref()
                    .map(|x| format!(" ({x:?})"))
                    .unwrap_or_default();
                let effect = match s.effect {
                    Effect::Allow => "Allow",
                    Effect::Deny => "Deny",
                };
                if s.applies() {
                    out.push_str(&format!(
                        "  statement {}{sid} {effect}: applies\n",
                        s.number
                    ));
                } else {
                    out.push_str(&format!(
                        "  statement {}{sid} {effect}: does not apply\n",
                        s.number
                    ));
                    for m in &s.mismatches {
                        out.push_str(&format!("    - {m}\n"));
                    }
                }
            }
        }
        None => {
            out.push_str("Trust policy - (not given: only the token and the role were checked)\n")
        }
    }
    if !r.findings.is_empty() {
        out.push_str("\nFindings\n");
        for f in &r.findings {
            let tag = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            out.push_str(&format!("  {tag} [{}] {}\n", f.code, f.message));
            if let Some(h) = &f.hint {
                out.push_str(&format!("      hint: {h}\n"));
            }
        }
    }
    let verdict = match r.verdict {
        "allowed" => "the trust policy allows this token to assume the role",
        "ok" => "no problem found",
        _ => "this token cannot assume the role",
    };
    out.push_str(&format!("\nResult: {verdict} (exit {})\n", r.exit_code()));
    out
}

/// `irsa-proxy doctor`.
pub async fn run(args: DoctorArgs) -> Result<ExitCode, Fatal> {
    let mut flags = Flags::new(&NoEnvironment);
    let output = flags.parse(&f::OUTPUT, Some(&args.output), flags::text_or_json);
    let output = flags.finish(|| output);
    // Every refused flag at once, `--output` with the others.
    let (output, report) = match (output, diagnose(&args, &ProcessEnv, SystemTime::now())) {
        (Ok(output), Ok(report)) => (output, report),
        (output, report) => {
            let errors = output.err().into_iter().chain(report.err()).flatten();
            return Err(Fatal::Flags(errors.collect()));
        }
    };
    match output {
        LogFormat::Text => print!("{}", render_text(&report)),
        LogFormat::Json => {
            let json = serde_json::to_string_pretty(&report)
                .map_err(|e| Fatal::Runtime(format!("cannot encode the report as JSON: {e}")))?;
            println!("{json}");
        }
    }
    Ok(ExitCode::from(report.exit_code()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn service_account_subjects_should_split() {
        assert_eq!(
            split_sa("system:serviceaccount:demo:app"),
            Some(("demo", "app"))
        );
        assert_eq!(split_sa("user"), None);
    }

    #[test]
    fn missing_token_file_should_be_bad_input() {
        let args = DoctorArgs {
            token_file: None,
            role_arn: None,
            trust_policy: None,
            audience: "sts.amazonaws.com".into(),
            output: "text".into(),
        };
        let env: HashMap<String, String> = HashMap::new();
        let e = diagnose(&args, &env, SystemTime::now()).unwrap_err();
        assert_eq!(e[0].source, Some("AWS_WEB_IDENTITY_TOKEN_FILE"));
    }
}
