//! Static stability against the EKS Pod Identity agent: the same refresher, fed
//! the errors [`classify`] makes of the agent's real answers (an outage, a 500,
//! throttling, a refused token), on the paused clock.

use super::*;
use crate::sidecar::source::pod_identity::{classify, AGENT_URI_V4};
use crate::sidecar::source::{CredentialSource, SourceError};
use http::StatusCode;

/// The scripted STS, as the Pod Identity source: same script, the agent's
/// name in logs and errors.
pub(super) struct ScriptedAgent(pub(super) ScriptedSts);

impl CredentialSource for ScriptedAgent {
    fn kind(&self) -> SourceKind {
        SourceKind::PodIdentity
    }

    fn fetch(
        &self,
        settings: &RefreshSettings,
    ) -> impl Future<Output = Result<Credentials, SourceError>> + Send {
        let request = AssumeRequest {
            role_arn: String::new(),
            session_name: String::new(),
            duration: settings.duration,
            token: crate::sidecar::token::Token::new("scripted"),
            policy: Default::default(),
        };
        async move {
            self.0
                .assume(request)
                .await
                .map(|c| c.with_account_id("210987654321"))
                .map_err(|error| SourceError::Refused { error, token: None })
        }
    }
}

/// What the agent says, as [`classify`] turns it into an error.
fn agent_says(status: u16, body: &str) -> StsError {
    classify(
        &AGENT_URI_V4.parse().unwrap(),
        StatusCode::from_u16(status).unwrap(),
        body.as_bytes(),
    )
    .unwrap_err()
}

/// The agent fails after the first answer, in each of its ways: the 20 s
/// credentials are served unchanged until their margin (15 s), with the agent's
/// AccountId; then a request gets the agent's error, named, and the proxy is
/// not ready. Retryable failures are retried with back-off meanwhile; a refused
/// token is retried too (a rotation may fix it), and is terminal for waiters.
#[tokio::test(start_paused = true)]
async fn agent_failures_should_serve_cached_credentials_until_the_margin_then_name_the_error() {
    let unreachable = StsError {
        code: "PodIdentityAgentUnreachable".into(),
        message: format!("the EKS Pod Identity agent at {AGENT_URI_V4}: cannot connect: Connection refused (os error 111)"),
        class: ErrorClass::Retryable,
    };
    let cases = [
        ("outage", unreachable),
        ("500", agent_says(500, "[abc]: (InternalServerException): boom, fault: server\n")),
        ("throttling", agent_says(429, "Too Many Requests\n")),
        (
            "bad token",
            agent_says(400, "Service account token failed basic claim validations: token has invalid claims: token is expired\n"),
        ),
    ];
    for (case, error) in cases {
        let h = start_from(SourceKind::PodIdentity, secs(20), secs(1800), |_| {});
        settle().await;
        let first = h.served().expect("first generation");
        assert!(
            std::str::from_utf8(&first.ecs_body)
                .unwrap()
                .contains(r#""AccountId":"210987654321""#),
            "{case}: the agent's AccountId is passed on"
        );
        h.script().fail_all = Some(error.clone());

        while h.elapsed() < secs(15) - ms(100) {
            let g = h
                .served()
                .unwrap_or_else(|| panic!("{case}: nothing served at {:?}", h.elapsed()));
            assert_eq!(g.credentials, first.credentials, "{case}");
            assert!(h.store.is_ready(), "{case}");
            tokio::time::sleep(ms(100)).await;
        }
        tokio::time::sleep_until(tokio::time::Instant::now() + (secs(15) - h.elapsed())).await;
        assert!(h.served().is_none(), "{case}: served inside the margin");
        assert!(!h.store.is_ready(), "{case}");
        let e = h.store.get(secs(5)).await.unwrap_err();
        assert_eq!(
            h.elapsed(),
            secs(15),
            "{case}: no wait once something was cached"
        );
        assert_eq!(e.code, error.code, "{case}");
        assert!(
            e.message.contains("EKS Pod Identity agent"),
            "{case}: {}",
            e.message
        );
        let calls = h.calls();
        assert_between(calls[1], secs(9), secs(10), &format!("{case}: the refresh"));
        assert!(calls.len() >= 4, "{case}: retried with back-off: {calls:?}");
        let m = h.metrics.encode(h.store.is_ready());
        assert!(
            m.contains(&format!(r#"result="error",error="{}""#, error.code)),
            "{case}: {m}"
        );

        // The agent recovers: the next retry serves again.
        h.script().fail_all = None;
        tokio::time::sleep(secs(61)).await;
        assert!(h.served().is_some(), "{case}: recovered");
    }
}
