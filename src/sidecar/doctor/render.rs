//! The text report: the token's claims, the policy's verdict, and each finding
//! with its hint. (The JSON report is the `Serialize` of [`super::Report`].)

use super::*;

fn or_dash(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

/// The report for people.
pub(crate) fn render_text(r: &Report) -> String {
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
    for h in &r.chain {
        let verdict = match (&h.trust_policy, h.actions.iter().all(|(_, ok)| *ok)) {
            (None, _) => "trust policy not given (--chain-trust-policy)".to_string(),
            (Some(file), allowed) => {
                let actions: Vec<String> = h
                    .actions
                    .iter()
                    .map(|(a, ok)| format!("{a} {}", if *ok { "allowed" } else { "DENIED" }))
                    .collect();
                format!(
                    "{}: {} ({})",
                    file.display(),
                    if allowed { "ALLOWS" } else { "DENIES" },
                    actions.join(", ")
                )
            }
        };
        out.push_str(&format!(
            "Hop {}        AssumeRole {} by {}\n  trust policy {verdict}\n",
            h.hop, h.role_arn, h.caller_role
        ));
    }
    if let Some(p) = &r.session_policy {
        out.push_str(&format!(
            "Session policy {} on {}: the credentials get only what both the role and it allow\n",
            p.summary, p.sent_on
        ));
    }
    if let Some(i) = &r.issuer {
        out.push_str(&format!("Issuer       {} (fetched as STS would)\n", i.url));
        let discovery = match (&i.discovery_url, &i.discovery_issuer) {
            (None, _) => "- (not fetched)".to_string(),
            (Some(u), Some(s)) if *s == i.url => format!("{u}: issuer matches"),
            (Some(u), Some(s)) => format!("{u}: issuer {s:?} DIFFERS"),
            (Some(u), None) => format!("{u}: not read (see the findings)"),
        };
        out.push_str(&format!("  discovery  {discovery}\n"));
        let kid = i.token_kid.as_deref().unwrap_or("(none)");
        let jwks = match (&i.jwks_uri, i.kid_found) {
            (None, _) => "- (not fetched)".to_string(),
            (Some(u), Some(true)) => format!("{u}: key {kid:?} found"),
            (Some(u), Some(false)) => format!("{u}: key {kid:?} NOT FOUND among {:?}", i.jwks_kids),
            (Some(u), None) if i.jwks_kids.is_empty() => {
                format!("{u}: not read (see the findings)")
            }
            (Some(u), None) => format!("{u}: keys {:?}", i.jwks_kids),
        };
        out.push_str(&format!("  jwks       {jwks}\n"));
        out.push_str(&format!("  proxy      {}\n", i.proxy));
        out.push_str(&format!("  trust      {}\n", i.trust));
        for a in &i.resolved {
            let addrs: Vec<String> = a.addresses.iter().map(|a| a.to_string()).collect();
            out.push_str(&format!(
                "  resolved   {} -> {} ({})\n",
                a.host,
                addrs.join(", "),
                a.from
            ));
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
    out.push_str(&format!(
        "\nResult: {} (exit {})\n",
        r.verdict.sentence(),
        r.exit_code()
    ));
    out
}
