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
//!
//! Here: the diagnosis (inputs, token and policy evaluation, the [`Report`]);
//! `rules.rs`: the findings and their hints; `render.rs`: the text report.

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
use crate::sidecar::token::{read_token, Claims, TokenError};
use crate::Fatal;

mod chain;
mod issuer;
mod render;
mod rules;

pub(crate) use render::render_text;
use rules::{check_token, explain, not_a_jwt};

/// How bad a finding is. Any `Error` makes the exit code 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    Error,
    Warning,
}

/// One thing doctor found, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Finding {
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
pub(crate) struct TokenReport {
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
pub(crate) struct PolicyReport {
    pub file: PathBuf,
    pub allowed: bool,
    pub evaluation: Evaluation,
}

/// The session policy (`--session-policy-file`, `--session-policy-arn`): what
/// is sent, never the document itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct SessionPolicyReport {
    /// `AssumeRoleWithWebIdentity <role>` or `AssumeRole <last hop's role>`.
    pub sent_on: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_chars: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub arns: Vec<String>,
    /// As the text report says it.
    pub summary: String,
}

/// Everything doctor found; printed as text or JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Report {
    pub token_file: PathBuf,
    pub token: Option<TokenReport>,
    pub role_arn: Option<String>,
    pub audience: String,
    pub trust_policy: Option<PolicyReport>,
    /// The chained hops after the role, with what their trust policies allow.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<chain::HopReport>,
    /// The session policy the last call would carry, and which call that is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_policy: Option<SessionPolicyReport>,
    /// `--issuer`: the issuer's documents as STS would fetch them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<issuer::IssuerReport>,
    pub findings: Vec<Finding>,
    pub verdict: Verdict,
}

/// What doctor concludes; JSON shows it as `allowed`, `denied` or `ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Verdict {
    /// The trust policy was given and allows the token; nothing is wrong.
    Allowed,
    /// Something stops the token from assuming the role (an error finding).
    Denied,
    /// No trust policy was given and nothing is wrong.
    Ok,
}

impl Verdict {
    /// The verdict as the text report's last line says it.
    pub fn sentence(self) -> &'static str {
        match self {
            Verdict::Allowed => "the trust policy allows this token to assume the role",
            Verdict::Denied => "this token cannot assume the role",
            Verdict::Ok => "no problem found",
        }
    }
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

/// Runs the diagnosis. `Err` holds the bad-input lines (exit 2).
pub(crate) fn diagnose(
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
    // The chain, read as serve reads it (the same flags and variables).
    let plan = crate::sidecar::chain::Plan::from_args(
        &mut flags,
        &crate::cli::ServeArgs {
            chain: args.chain.clone(),
            chain_external_id: args.chain_external_id.clone(),
            chain_external_id_file: args.chain_external_id_file.clone(),
            session_policy_file: args.session_policy_file.clone(),
            session_policy_arn: args.session_policy_arn.clone(),
            ..Default::default()
        },
        None,
    );
    let shown = flags
        .raw(&flags::serve::DURATION, args.duration.as_deref())
        .map(|(v, _)| v);
    let duration = flags
        .parse(
            &flags::serve::DURATION,
            args.duration.as_deref(),
            flags::duration_in(flags::serve::DURATION_RANGE),
        )
        .zip(shown);
    let mut chain_policies = Vec::new();
    for p in &args.chain_trust_policy {
        let shown = p.display().to_string();
        if let Some(policy) = flags.parse(&f::CHAIN_TRUST_POLICY, Some(&shown), |p| {
            let bytes = std::fs::read(p)
                .map_err(|e| Refusal::new(format!("cannot be read ({e})"), "a readable file"))?;
            Policy::parse(&String::from_utf8_lossy(&bytes)).map_err(|e| {
                Refusal::new(format!("is not usable: {e}"), "an IAM trust policy (JSON)")
            })
        }) {
            chain_policies.push((p.clone(), policy));
        }
    }
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

    let chain = chain::diagnose_chain(
        &plan,
        role.as_ref(),
        &chain_policies,
        claims.as_ref(),
        duration,
        &mut findings,
    );

    let session_policy = (!plan.session_policy.is_empty()).then(|| {
        let p = &plan.session_policy;
        SessionPolicyReport {
            sent_on: match plan.hops.last() {
                Some(h) => format!("AssumeRole {}", h.role.arn),
                None => format!(
                    "AssumeRoleWithWebIdentity {}",
                    role_arn.as_deref().unwrap_or("(the role)")
                ),
            },
            document_chars: p.document.as_ref().map(|d| d.chars().count()),
            arns: p.arns.clone(),
            summary: p.to_string(),
        }
    });

    let verdict = verdict(policy_report.is_some(), &findings);
    Ok(Report {
        token_file,
        token: token_report,
        role_arn,
        audience: args.audience.clone(),
        trust_policy: policy_report,
        chain,
        session_policy,
        issuer: None,
        findings,
        verdict,
    })
}

fn verdict(has_policy: bool, findings: &[Finding]) -> Verdict {
    let has_error = findings.iter().any(|f| f.severity == Severity::Error);
    match (has_policy, has_error) {
        (_, true) => Verdict::Denied,
        (true, false) => Verdict::Allowed,
        (false, false) => Verdict::Ok,
    }
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

/// `irsa-proxy doctor`.
pub async fn run(args: DoctorArgs) -> Result<ExitCode, Fatal> {
    let mut flags = Flags::new(&NoEnvironment);
    let output = flags.parse(&f::OUTPUT, Some(&args.output), flags::text_or_json);
    let output = flags.finish(|| output);
    // Every refused flag at once, `--output` with the others.
    let (output, mut report, plan) = match (
        output,
        diagnose(&args, &ProcessEnv, SystemTime::now()),
        issuer::plan(&args, &ProcessEnv),
    ) {
        (Ok(output), Ok(report), Ok(plan)) => (output, report, plan),
        (output, report, plan) => {
            let errors = output
                .err()
                .into_iter()
                .chain(report.err())
                .chain(plan.err())
                .flatten();
            return Err(Fatal::Flags(errors.collect()));
        }
    };
    if let Some(plan) = plan {
        let mut findings = std::mem::take(&mut report.findings);
        report.issuer = issuer::check(&plan, &report, &mut findings).await;
        report.verdict = verdict(report.trust_policy.is_some(), &findings);
        report.findings = findings;
    }
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
    fn missing_token_file_should_be_bad_input() {
        let args = DoctorArgs {
            token_file: None,
            role_arn: None,
            trust_policy: None,
            audience: "sts.amazonaws.com".into(),
            output: "text".into(),
            chain: Default::default(),
            chain_trust_policy: vec![],
            chain_external_id: None,
            chain_external_id_file: None,
            duration: None,
            session_policy_file: None,
            session_policy_arn: vec![],
            issuer: false,
            ca_file: None,
            resolve: vec![],
        };
        let env: HashMap<String, String> = HashMap::new();
        let e = diagnose(&args, &env, SystemTime::now()).unwrap_err();
        assert_eq!(e[0].source, Some("AWS_WEB_IDENTITY_TOKEN_FILE"));
    }

    #[test]
    fn a_session_policy_should_be_named_with_the_call_it_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "a.b.c").unwrap();
        let policy = dir.path().join("policy.json");
        std::fs::write(
            &policy,
            r#"{"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}"#,
        )
        .unwrap();
        let args = |chain: Vec<String>| DoctorArgs {
            token_file: Some(token.clone()),
            role_arn: Some("arn:aws:iam::111122223333:role/app".into()),
            trust_policy: None,
            audience: "sts.amazonaws.com".into(),
            output: "text".into(),
            chain: crate::cli::ChainArgs {
                chain_role_arn: chain,
                ..Default::default()
            },
            chain_trust_policy: vec![],
            chain_external_id: None,
            chain_external_id_file: None,
            duration: None,
            session_policy_file: Some(policy.display().to_string()),
            session_policy_arn: vec![],
            issuer: false,
            ca_file: None,
            resolve: vec![],
        };
        let env: HashMap<String, String> = [(
            "IRSA_PROXY_SESSION_POLICY_ARNS".to_string(),
            "arn:aws:iam::aws:policy/ReadOnlyAccess".to_string(),
        )]
        .into_iter()
        .collect();
        let r = diagnose(&args(vec![]), &env, SystemTime::now()).unwrap();
        let p = r.session_policy.as_ref().unwrap();
        assert_eq!(
            p.sent_on,
            "AssumeRoleWithWebIdentity arn:aws:iam::111122223333:role/app"
        );
        assert_eq!(p.arns, ["arn:aws:iam::aws:policy/ReadOnlyAccess"]);
        assert!(render_text(&r).contains("Session policy an inline policy of "));
        let r = diagnose(
            &args(vec!["arn:aws:iam::444455556666:role/t".into()]),
            &env,
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(
            r.session_policy.unwrap().sent_on,
            "AssumeRole arn:aws:iam::444455556666:role/t"
        );
        // Not given: no line.
        let mut none = args(vec![]);
        none.session_policy_file = None;
        let r = diagnose(&none, &HashMap::new(), SystemTime::now()).unwrap();
        assert!(r.session_policy.is_none());
        assert!(!render_text(&r).contains("Session policy"));
    }
}
