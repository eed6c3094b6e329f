//! `--report junit`: the verdict as a JUnit XML test suite, the format the
//! test reports of CI systems read (Jenkins, GitLab, GitHub Actions through
//! their JUnit report actions).
//!
//! One `<testsuite>` named `irsa-proxy dev`, one `<testcase>` per check of the
//! report ([`Check`](super::report::Check)): a failed check carries a
//! `<failure>`, one the run never went through a `<skipped>` whose message
//! names the scenario that would test it. The suite's properties carry the verdict and exit code, and its
//! `<system-out>` the text report. The shape is the one the Jenkins JUnit
//! schema (jenkinsci/xunit-plugin, `junit-10.xsd`) accepts;
//! `tests/fixtures/junit/junit.xsd` checks it in `tests/dev.rs`.

use super::report::Report;
use crate::tools::emulator::xml::escape;

/// The test suite, as a whole XML document.
pub(crate) fn render(report: &Report) -> String {
    let count = |result: &str| report.checks.iter().filter(|c| c.result == result).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuite name=\"irsa-proxy dev\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{}\">\n",
        report.checks.len(),
        count("failed"),
        count("not_tested"),
        report.duration_seconds
    ));
    out.push_str("  <properties>\n");
    let mut property = |name: &str, value: &str| {
        out.push_str(&format!(
            "    <property name=\"{}\" value=\"{}\"/>\n",
            escape(name),
            escape(value)
        ));
    };
    property("verdict", report.verdict);
    property("exit_code", &report.exit_code.to_string());
    if let Some(scenario) = &report.faults.scenario {
        property("scenario", scenario);
    }
    out.push_str("  </properties>\n");
    for check in &report.checks {
        out.push_str(&format!(
            "  <testcase classname=\"irsa-proxy.dev\" name=\"{}\" time=\"0\"",
            escape(check.title())
        ));
        let message = escape(&check.message);
        match check.result {
            "failed" => out.push_str(&format!(
                ">\n    <failure type=\"{}\" message=\"{message}\">{message}</failure>\n  </testcase>\n",
                check.name
            )),
            "not_tested" => {
                out.push_str(&format!(">\n    <skipped message=\"{message}\"/>\n  </testcase>\n"))
            }
            _ => out.push_str(&format!(
                ">\n    <system-out>{message}</system-out>\n  </testcase>\n"
            )),
        }
    }
    out.push_str(&format!(
        "  <system-out>{}</system-out>\n</testsuite>\n",
        escape(&report.text())
    ));
    out
}
