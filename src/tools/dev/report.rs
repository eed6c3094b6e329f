//! `dev`'s verdict: did the app live through credential and token refresh?
//!
//! Built from the emulator's [`LedgerSnapshot`] (what was issued, and every
//! signed call classified) and what `dev` itself saw (token rotations, how the
//! command ended). Rendered as text for people, JSON, or a JUnit test suite for
//! CI ([`super::junit`]); all carry access key ids only, never a secret or a
//! session token.
//!
//! Beside the verdict, the report says what the app went through, check by
//! check ([`Check`]): a refresh or rotation the run never reached is
//! `not_tested` (PASSED then says so and names the scenario that reaches it),
//! and the time the proxy had nothing to serve is shown with the 503s it
//! answered then ([`super::availability`]). Only expired credentials, a
//! changed principal and the command's failure fail the verdict.
//!
//! Exit codes (docs/contract.md):
//!
//! | code | verdict |
//! | --- | --- |
//! | 0 | passed: the command exited 0 (or ran until `--for`), no expired credentials |
//! | 3 | `expired_credentials`: the app presented credentials after their `Expiration` (whatever the command's own exit) |
//! | 4 | `command_failed`: the command exited non-zero or was killed, with no expired credentials |
//! | 130 | `interrupted`: dev was stopped by SIGINT/SIGTERM before the verdict |

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::availability::ProxyUnavailable;
use crate::clock::format_timestamp;
use crate::duration::format_duration;
use crate::tools::emulator::ledger::{CallCounts, Denial, LedgerSnapshot, SetRecord};

pub(crate) const EXIT_PASSED: u8 = 0;
pub(crate) const EXIT_EXPIRED: u8 = 3;
pub(crate) const EXIT_COMMAND_FAILED: u8 = 4;
pub(crate) const EXIT_INTERRUPTED: u8 = 130;
/// The served role's assumed-role ARN changed between refreshes: a client that
/// re-authenticates with it (Kafka on MSK) is dropped.
pub(crate) const EXIT_PRINCIPAL_CHANGED: u8 = 5;

/// How the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The command exited with this code.
    Exited(i32),
    /// The command was killed by this signal (not by dev).
    Signaled(i32),
    /// `--for` ran out and dev stopped the command; or, without a command,
    /// `--for` ran out or dev got Ctrl-C.
    TimeUp,
    /// dev got SIGINT or SIGTERM while the command ran.
    Interrupted,
}

/// The command, as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CommandOutcome {
    /// The program (arguments are left out: they may carry anything).
    pub program: Option<String>,
    /// `exited`, `killed`, `stopped_at_time_limit`, `interrupted`, or `none`.
    pub ended: &'static str,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
}

/// One command of `--run NAME=COMMAND`: its role and how it ended.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoleCommand {
    pub role: String,
    /// The program (arguments are left out: they may carry anything).
    pub program: String,
    /// `exited`, `killed`, `stopped_at_time_limit` or `interrupted`.
    pub ended: &'static str,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
}

impl RoleCommand {
    pub(crate) fn new(role: &str, argv: &[String], ending: &Ending) -> RoleCommand {
        let program = argv
            .first()
            .map(|p| {
                std::path::Path::new(p)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.clone())
            })
            .unwrap_or_default();
        let (ended, exit_code, signal) = match ending {
            Ending::Exited(c) => ("exited", Some(*c), None),
            Ending::Signaled(s) => ("killed", None, Some(*s)),
            Ending::TimeUp => ("stopped_at_time_limit", None, None),
            Ending::Interrupted => ("interrupted", None, None),
        };
        RoleCommand {
            role: role.to_string(),
            program,
            ended,
            exit_code,
            signal,
        }
    }
}

/// How several commands ended, as one: interrupted if any was, else the first
/// that failed, else time up if every one ran until `--for`, else exit 0.
pub(crate) fn combined(endings: &[Ending]) -> Ending {
    if endings.contains(&Ending::Interrupted) {
        return Ending::Interrupted;
    }
    if let Some(failed) = endings
        .iter()
        .find(|e| matches!(e, Ending::Exited(c) if *c != 0) || matches!(e, Ending::Signaled(_)))
    {
        return failed.clone();
    }
    if !endings.is_empty() && endings.iter().all(|e| *e == Ending::TimeUp) {
        return Ending::TimeUp;
    }
    Ending::Exited(0)
}

/// Faults that were set for the run.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct FaultSummary {
    pub scenario: Option<String>,
    pub sts_fail_percent: u8,
    pub sts_outages: Vec<String>,
    pub expired_tokens: Vec<String>,
    pub early_expiry_percent: u8,
    /// Rotations asked through SIGUSR1 or the control endpoint.
    pub rotations_on_demand: u64,
    /// "Expire now" asked through SIGUSR2 or the control endpoint.
    pub expiries_on_demand: u64,
}

/// What dev itself counted during the run.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunFacts {
    pub program: Option<String>,
    pub token_rotations: u64,
    pub expired_tokens_written: u64,
    pub elapsed: Duration,
    pub faults: FaultSummary,
    /// The role whose credentials the proxy served (the last of a chain).
    pub served_role: Option<crate::arn::RoleArn>,
    /// The lifetimes the run gave, for what a run too short did not test.
    pub credential_ttl: Duration,
    pub token_ttl: Duration,
    /// The time the proxy had nothing to serve while the app ran.
    pub unavailable: ProxyUnavailable,
}

/// One thing the report checked, as a JUnit test case sees it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    /// `expired_credentials`, `credential_refreshes`, `token_rotations`,
    /// `proxy_unavailable`, `served_principal`, `command`.
    pub name: &'static str,
    /// `passed`, `failed`, or `not_tested` (the run never went through it).
    pub result: &'static str,
    /// What was seen, in one line.
    pub message: String,
}

impl Check {
    fn new(name: &'static str, result: &'static str, message: String) -> Check {
        Check {
            name,
            result,
            message,
        }
    }

    /// The name a person reads (the JUnit test case's).
    pub(crate) fn title(&self) -> &'static str {
        match self.name {
            "expired_credentials" => "no expired credentials presented",
            "credential_refreshes" => "credential refreshes lived through",
            "token_rotations" => "token rotations lived through",
            "proxy_unavailable" => "time the proxy had nothing to serve",
            "served_principal" => "the served principal stayed the same",
            "command" => "the command succeeded",
            other => other,
        }
    }
}

/// The scenario that goes through what a short run did not.
pub(crate) const SCENARIO_HINT: &str = "--scenario hour-in-production";

/// One credential set the app presented after its expiry.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ExpiredUse {
    pub access_key_id: String,
    pub expired_at: String,
    pub calls: u64,
    pub first_use: Option<String>,
    pub last_use: Option<String>,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// `passed`, `expired_credentials`, `command_failed` or `interrupted`.
    pub verdict: &'static str,
    pub exit_code: u8,
    pub command: CommandOutcome,
    /// With `--run`: every command, its role and how it ended (the verdict
    /// takes the first that failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<RoleCommand>,
    pub duration_seconds: u64,
    pub credential_sets_issued: u64,
    /// Fresh web-identity tokens written after the first.
    pub token_rotations: u64,
    /// Expired tokens written by `--expired-token`.
    pub expired_tokens_written: u64,
    /// Distinct credential sets with at least one accepted call.
    pub credential_sets_used: usize,
    /// `credential_sets_used - 1`: moves to a newer set the app made and kept working.
    pub credential_refreshes: usize,
    /// `AssumeRoleWithWebIdentity` refusals by code (the proxy's calls).
    pub sts_refusals: BTreeMap<String, u64>,
    pub signed_calls: CallCounts,
    pub signed_calls_total: u64,
    pub signed_calls_by_service: BTreeMap<String, u64>,
    /// The sets presented after their `Expiration`: what made the verdict fail.
    pub expired_credentials: Vec<ExpiredUse>,
    /// Access key ids presented that the emulator never issued.
    pub never_issued_keys: BTreeMap<String, u64>,
    /// Calls a session policy refused (AccessDenied): by session, action and
    /// resource. Information, not a failure: the command decides.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denied_by_session_policy: Vec<Denial>,
    pub faults: FaultSummary,
    /// The role the app was served (the last role of a chain).
    pub served_role: Option<String>,
    /// The distinct assumed-role ARNs issued for it, oldest first: one when the
    /// principal stayed the same across every refresh.
    pub served_principals: Vec<String>,
    pub principal_stable: bool,
    /// The time the proxy had nothing to serve, and the 503s it answered then.
    pub proxy_unavailable: ProxyUnavailable,
    /// Each check, with what was seen: the JUnit test cases.
    pub checks: Vec<Check>,
    /// Every set: issued, expires, superseded and revoked at, calls by class
    /// (JSON only; the text shows the expired ones).
    pub credential_sets: Vec<SetRecord>,
}

fn ts(t: Option<SystemTime>) -> Option<String> {
    t.map(format_timestamp)
}

pub(crate) fn build(snapshot: &LedgerSnapshot, facts: &RunFacts, ending: &Ending) -> Report {
    let expired: Vec<ExpiredUse> = snapshot
        .expired_sets()
        .map(|s| ExpiredUse {
            access_key_id: s.access_key_id.clone(),
            expired_at: format_timestamp(s.expires_at),
            calls: s.calls.expired,
            first_use: ts(s.first_expired_use),
            last_use: ts(s.last_expired_use),
        })
        .collect();
    let command = match (ending, &facts.program) {
        (Ending::Exited(code), Some(_)) => ("exited", Some(*code), None),
        (Ending::Signaled(sig), _) => ("killed", None, Some(*sig)),
        (Ending::TimeUp, Some(_)) => ("stopped_at_time_limit", None, None),
        (Ending::Interrupted, Some(_)) => ("interrupted", None, None),
        _ => ("none", None, None),
    };
    let failed = match ending {
        Ending::Exited(code) => *code != 0,
        Ending::Signaled(_) => true,
        Ending::TimeUp | Ending::Interrupted => false,
    };
    let served_role = facts.served_role.as_ref();
    let mut principals: Vec<String> = Vec::new();
    if let Some(role) = served_role {
        let prefix = format!(
            "arn:{}:sts::{}:assumed-role/{}/",
            role.partition, role.account, role.name
        );
        for s in snapshot
            .sets
            .iter()
            .filter(|s| s.session.starts_with(&prefix))
        {
            if !principals.contains(&s.session) {
                principals.push(s.session.clone());
            }
        }
    }
    let principal_stable = principals.len() <= 1;
    let (verdict, exit_code) = if snapshot.calls.expired > 0 {
        ("expired_credentials", EXIT_EXPIRED)
    } else if !principal_stable {
        ("principal_changed", EXIT_PRINCIPAL_CHANGED)
    } else if *ending == Ending::Interrupted {
        ("interrupted", EXIT_INTERRUPTED)
    } else if failed {
        ("command_failed", EXIT_COMMAND_FAILED)
    } else {
        ("passed", EXIT_PASSED)
    };
    let used = snapshot.sets_used();
    let mut report = Report {
        verdict,
        exit_code,
        command: CommandOutcome {
            program: facts.program.clone(),
            ended: command.0,
            exit_code: command.1,
            signal: command.2,
        },
        commands: Vec::new(),
        duration_seconds: facts.elapsed.as_secs(),
        credential_sets_issued: snapshot.sets_issued,
        token_rotations: facts.token_rotations,
        expired_tokens_written: facts.expired_tokens_written,
        credential_sets_used: used,
        credential_refreshes: used.saturating_sub(1),
        sts_refusals: snapshot.assume_errors.clone(),
        signed_calls: snapshot.calls,
        signed_calls_total: snapshot.calls.total(),
        signed_calls_by_service: snapshot.calls_by_service.clone(),
        expired_credentials: expired,
        never_issued_keys: snapshot.never_issued_keys.clone(),
        denied_by_session_policy: snapshot.session_policy_denials.clone(),
        faults: facts.faults.clone(),
        served_role: served_role.map(|r| r.arn.clone()),
        served_principals: principals,
        principal_stable,
        proxy_unavailable: facts.unavailable.clone(),
        checks: Vec::new(),
        credential_sets: snapshot.sets.clone(),
    };
    report.checks = checks(&report, facts);
    report
}

/// What the run went through, check by check. Only expired credentials, a
/// changed principal and the command fail; a refresh or rotation that never
/// happened is `not_tested`, naming what would test it.
fn checks(r: &Report, facts: &RunFacts) -> Vec<Check> {
    let ran = format!("in {}s", r.duration_seconds);
    let expired = if r.expired_credentials.is_empty() {
        Check::new(
            "expired_credentials",
            "passed",
            format!(
                "none: every one of {} signed calls used credentials before their expiry",
                r.signed_calls_total
            ),
        )
    } else {
        let keys: Vec<String> = r
            .expired_credentials
            .iter()
            .map(|e| format!("{} {} times", e.access_key_id, e.calls))
            .collect();
        Check::new(
            "expired_credentials",
            "failed",
            format!("presented after their expiry: {}", keys.join(", ")),
        )
    };
    let refreshes = if r.credential_refreshes > 0 {
        Check::new(
            "credential_refreshes",
            "passed",
            format!(
                "{} lived through: the app used {} credential sets",
                r.credential_refreshes, r.credential_sets_used
            ),
        )
    } else {
        Check::new(
            "credential_refreshes",
            "not_tested",
            format!(
                "no credential refresh {ran}: credentials live {} (--credential-ttl); {SCENARIO_HINT} refreshes them several times",
                format_duration(facts.credential_ttl)
            ),
        )
    };
    let rotations = if r.token_rotations > 0 {
        Check::new(
            "token_rotations",
            "passed",
            format!("{} web-identity token rotations", r.token_rotations),
        )
    } else {
        Check::new(
            "token_rotations",
            "not_tested",
            format!(
                "no token rotation {ran}: the token lives {} (--token-ttl) and is rotated at 80 %; {SCENARIO_HINT} rotates it",
                format_duration(facts.token_ttl)
            ),
        )
    };
    let unavailable = Check::new("proxy_unavailable", "passed", r.proxy_unavailable.summary());
    let principal = if r.principal_stable {
        Check::new(
            "served_principal",
            "passed",
            match r.served_principals.first() {
                Some(p) => format!("{p} at every refresh"),
                None => "no credentials issued for the served role".into(),
            },
        )
    } else {
        Check::new(
            "served_principal",
            "failed",
            format!("changed: {}", r.served_principals.join(", then ")),
        )
    };
    let program = r.command.program.as_deref().unwrap_or("the command");
    let command = match (r.command.ended, r.command.exit_code, r.command.signal) {
        ("exited", Some(0), _) => {
            Check::new("command", "passed", format!("{program} exited with 0"))
        }
        ("exited", Some(c), _) => {
            Check::new("command", "failed", format!("{program} exited with {c}"))
        }
        ("killed", _, Some(s)) => Check::new(
            "command",
            "failed",
            format!("{program} was killed by signal {s}"),
        ),
        ("interrupted", _, _) => {
            Check::new("command", "failed", format!("{program} was interrupted"))
        }
        ("stopped_at_time_limit", _, _) => Check::new(
            "command",
            "passed",
            format!("{program} ran until the --for time limit"),
        ),
        _ => Check::new(
            "command",
            "passed",
            "no command: the app ran outside dev".into(),
        ),
    };
    vec![
        expired,
        refreshes,
        rotations,
        unavailable,
        principal,
        command,
    ]
}

impl Report {
    /// After PASSED, what the run never went through and the scenario that
    /// would: a one-second run is not a test of refresh.
    fn untested_note(&self) -> String {
        if self.verdict != "passed" {
            return String::new();
        }
        let untested: Vec<&str> = self
            .checks
            .iter()
            .filter(|c| c.result == "not_tested")
            .map(|c| match c.name {
                "credential_refreshes" => "no credential refresh",
                "token_rotations" => "no token rotation",
                other => other,
            })
            .collect();
        match untested.as_slice() {
            [] => String::new(),
            [one] => format!(", but the app went through {one}: {SCENARIO_HINT} tests it"),
            several => format!(
                ", but the app went through {}: {SCENARIO_HINT} tests them",
                several.join(" and ")
            ),
        }
    }

    pub(crate) fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        let verdict = match self.verdict {
            "passed" => "PASSED".to_string(),
            "expired_credentials" => "FAILED: the app presented expired credentials".to_string(),
            "command_failed" => "FAILED: the command failed".to_string(),
            "principal_changed" => {
                "FAILED: the served role's assumed-role ARN changed between refreshes".to_string()
            }
            other => other.to_uppercase(),
        };
        line(format!(
            "irsa-proxy dev report: {verdict} (exit {}){}",
            self.exit_code,
            self.untested_note()
        ));
        let program = self.command.program.as_deref().unwrap_or("-");
        let ended = match (
            self.command.ended,
            self.command.exit_code,
            self.command.signal,
        ) {
            ("exited", Some(c), _) => format!("{program} exited with {c}"),
            ("killed", _, Some(s)) => format!("{program} was killed by signal {s}"),
            ("stopped_at_time_limit", _, _) => {
                format!("{program} was stopped at the --for time limit")
            }
            ("interrupted", _, _) => format!("{program} was interrupted"),
            _ => "no command".to_string(),
        };
        if self.commands.is_empty() {
            line(format!(
                "  command:                 {ended}, after {}s",
                self.duration_seconds
            ));
        } else {
            line(format!(
                "  commands:                {} (one per role), after {}s",
                self.commands.len(),
                self.duration_seconds
            ));
            for c in &self.commands {
                let how = match (c.ended, c.exit_code, c.signal) {
                    ("exited", Some(code), _) => format!("exited with {code}"),
                    ("killed", _, Some(s)) => format!("was killed by signal {s}"),
                    ("stopped_at_time_limit", _, _) => {
                        "was stopped at the --for time limit".to_string()
                    }
                    (other, _, _) => other.to_string(),
                };
                line(format!("    role {}: {} {how}", c.role, c.program));
            }
        }
        let refusals = if self.sts_refusals.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self
                .sts_refusals
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            format!("; STS refused {}", list.join(", "))
        };
        if let Some(role) = &self.served_role {
            line(format!(
                "  served role:             {role} as {}{}",
                self.served_principals.join(", then "),
                if self.principal_stable {
                    " (the same at every refresh)"
                } else {
                    " (CHANGED: Kafka on MSK and others drop such a client)"
                }
            ));
        }
        line(format!(
            "  credential sets issued:  {}{refusals}",
            self.credential_sets_issued
        ));
        let expired_tokens = if self.expired_tokens_written > 0 {
            format!(
                " (and {} expired tokens written)",
                self.expired_tokens_written
            )
        } else {
            String::new()
        };
        line(format!(
            "  token rotations:         {}{expired_tokens}",
            self.token_rotations
        ));
        line(format!(
            "  credential refreshes:    {} lived through (the app used {} sets)",
            self.credential_refreshes, self.credential_sets_used
        ));
        line(format!(
            "  availability:            {}",
            self.proxy_unavailable.summary()
        ));
        let services: Vec<String> = self
            .signed_calls_by_service
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        line(format!(
            "  signed calls:            {}{}",
            self.signed_calls_total,
            if services.is_empty() {
                String::new()
            } else {
                format!(" ({})", services.join(", "))
            }
        ));
        let c = &self.signed_calls;
        line(format!(
            "    live {}, superseded {} (valid; a newer set existed), expired {}, revoked {}, never issued {}, rejected {}",
            c.live, c.superseded, c.expired, c.revoked, c.never_issued, c.rejected
        ));
        for e in &self.expired_credentials {
            line(format!(
                "  EXPIRED: {} (expired {}) presented {} times after its expiry, {} to {}",
                e.access_key_id,
                e.expired_at,
                e.calls,
                e.first_use.as_deref().unwrap_or("?"),
                e.last_use.as_deref().unwrap_or("?")
            ));
        }
        for (k, n) in &self.never_issued_keys {
            line(format!("  never issued: {k} presented {n} times"));
        }
        for d in &self.denied_by_session_policy {
            line(format!(
                "  denied by a session policy: {} on {} ({} {}, by {})",
                d.action,
                d.resource,
                d.calls,
                if d.calls == 1 { "call" } else { "calls" },
                d.session
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::emulator::ledger::{CallClass, Ledger};
    use crate::tools::emulator::IssuedCredentials;

    fn ledger_with_expired_use() -> Ledger {
        let ledger = Ledger::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for (i, key) in ["ASIAONE", "ASIATWO", "ASIATHREE"].iter().enumerate() {
            let issued = t0 + Duration::from_secs(15 * i as u64);
            ledger.issued(
                &IssuedCredentials {
                    access_key_id: key.to_string(),
                    secret_access_key: "SECRET-MARKER".into(),
                    session_token: "TOKEN-MARKER".into(),
                    expiration: issued + Duration::from_secs(30),
                    assumed_role_arn: "arn:aws:sts::111122223333:assumed-role/r/s".into(),
                    assumed_role_id: "AROA:s".into(),
                    account: "111122223333".into(),
                    session: Default::default(),
                    session_tags: Default::default(),
                },
                issued,
            );
            ledger.call(
                "s3",
                Some(key),
                CallClass::Live,
                issued + Duration::from_secs(1),
            );
        }
        ledger
    }

    #[test]
    fn the_verdict_and_exit_code_should_follow_the_calls_and_the_command() {
        let ledger = ledger_with_expired_use();
        let facts = RunFacts {
            program: Some("app".into()),
            ..RunFacts::default()
        };
        let r = build(&ledger.snapshot(), &facts, &Ending::Exited(0));
        assert_eq!((r.verdict, r.exit_code), ("passed", 0));
        assert_eq!((r.credential_sets_used, r.credential_refreshes), (3, 2));
        let r = build(&ledger.snapshot(), &facts, &Ending::Exited(7));
        assert_eq!((r.verdict, r.exit_code), ("command_failed", 4));
        assert!(r.text().contains("app exited with 7"), "{}", r.text());
        let r = build(&ledger.snapshot(), &facts, &Ending::TimeUp);
        assert_eq!(r.exit_code, 0);

        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100);
        ledger.call("sts", Some("ASIAONE"), CallClass::Expired, t);
        let r = build(&ledger.snapshot(), &facts, &Ending::Exited(0));
        assert_eq!((r.verdict, r.exit_code), ("expired_credentials", 3));
        let text = r.text();
        assert!(text.contains("EXPIRED: ASIAONE"), "{text}");
        let json = r.json();
        assert!(json.contains("\"access_key_id\": \"ASIAONE\""), "{json}");
        assert!(!json.contains("MARKER") && !text.contains("MARKER"));
        let r = build(&ledger.snapshot(), &facts, &Ending::Interrupted);
        assert_eq!(r.exit_code, 3);
    }

    /// A run that went through no refresh and no rotation passes, and says
    /// so, naming the scenario that would; the checks say it one by one.
    #[test]
    fn a_pass_without_refresh_or_rotation_should_say_what_was_not_tested() {
        let ledger = Ledger::default();
        let facts = RunFacts {
            program: Some("aws".into()),
            credential_ttl: Duration::from_secs(300),
            token_ttl: Duration::from_secs(600),
            ..RunFacts::default()
        };
        let r = build(&ledger.snapshot(), &facts, &Ending::Exited(0));
        assert_eq!(r.verdict, "passed");
        let first = r.text().lines().next().unwrap_or_default().to_string();
        assert_eq!(
            first,
            "irsa-proxy dev report: PASSED (exit 0), but the app went through no credential refresh and no token rotation: --scenario hour-in-production tests them"
        );
        let results: Vec<(&str, &str)> = r.checks.iter().map(|c| (c.name, c.result)).collect();
        assert_eq!(
            results,
            [
                ("expired_credentials", "passed"),
                ("credential_refreshes", "not_tested"),
                ("token_rotations", "not_tested"),
                ("proxy_unavailable", "passed"),
                ("served_principal", "passed"),
                ("command", "passed"),
            ]
        );
        assert!(
            r.checks[1].message.contains("5m (--credential-ttl)"),
            "{:?}",
            r.checks[1]
        );

        // Refreshes and rotations lived through: nothing to add to PASSED.
        let ledger = ledger_with_expired_use();
        let facts = RunFacts {
            token_rotations: 2,
            ..facts
        };
        let r = build(&ledger.snapshot(), &facts, &Ending::Exited(0));
        assert!(
            r.text()
                .starts_with("irsa-proxy dev report: PASSED (exit 0)\n"),
            "{}",
            r.text()
        );
        assert!(
            r.checks.iter().all(|c| c.result == "passed"),
            "{:?}",
            r.checks
        );
        // A failure is in the checks too, as the JUnit suite shows it.
        let r = build(&ledger.snapshot(), &facts, &Ending::Exited(7));
        let command = r.checks.iter().find(|c| c.name == "command");
        assert_eq!(
            command.map(|c| (c.result, c.message.as_str())),
            Some(("failed", "aws exited with 7"))
        );
        assert!(!r.text().contains(", but"), "{}", r.text());
    }

    /// The served role issued under two session names: the principal changed
    /// between refreshes, which fails the verdict with exit 5 and names both.
    #[test]
    fn a_changed_principal_should_fail_the_verdict() {
        let ledger = ledger_with_expired_use();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_050);
        let mut facts = RunFacts {
            program: Some("app".into()),
            served_role: Some(
                crate::arn::RoleArn::parse("arn:aws:iam::111122223333:role/r").unwrap(),
            ),
            ..RunFacts::default()
        };
        let r = build(&ledger.snapshot(), &facts, &Ending::Exited(0));
        assert_eq!(
            (r.verdict, r.exit_code, r.principal_stable),
            ("passed", 0, true)
        );
        assert!(r.text().contains("served role:             arn:aws:iam::111122223333:role/r as arn:aws:sts::111122223333:assumed-role/r/s (the same at every refresh)"), "{}", r.text());
        ledger.issued(
            &IssuedCredentials {
                access_key_id: "ASIAFOUR".into(),
                secret_access_key: "s".into(),
                session_token: "t".into(),
                expiration: t + Duration::from_secs(30),
                assumed_role_arn: "arn:aws:sts::111122223333:assumed-role/r/other".into(),
                assumed_role_id: "AROA:other".into(),
                account: "111122223333".into(),
                session: Default::default(),
                session_tags: Default::default(),
            },
            t,
        );
        let r = build(&ledger.snapshot(), &facts, &Ending::Exited(0));
        assert_eq!((r.verdict, r.exit_code), ("principal_changed", 5));
        assert_eq!(r.served_principals.len(), 2);
        assert!(r.text().contains("CHANGED"), "{}", r.text());
        // Another role's sessions (the first hop of a chain) do not count.
        facts.served_role =
            Some(crate::arn::RoleArn::parse("arn:aws:iam::111122223333:role/x").unwrap());
        let r = build(&ledger.snapshot(), &facts, &Ending::Exited(0));
        assert_eq!((r.verdict, r.principal_stable), ("passed", true));
    }
}
