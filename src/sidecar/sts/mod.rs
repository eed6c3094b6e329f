//! `AssumeRoleWithWebIdentity`, behind a small trait so the refresher can be tested
//! without HTTP, and the classification of what STS answers when it says no.
//!
//! - this module: the seam ([`AssumeRole`], [`AssumeRequest`]) and the error
//!   every caller sees ([`StsError`], classified by [`ErrorClass`]);
//! - [`client`]: the real implementation over `aws-sdk-sts` ([`SdkSts`]) and
//!   what can stop it from being built ([`ClientError`]);
//! - [`policy`]: the session policy a role's last call carries
//!   ([`SessionPolicy`]) and AWS's limits on it;
//! - [`diagnose`]: turns an SDK failure (a refused tunnel, a certificate that
//!   does not verify, a name that does not resolve) into one [`StsError`] line
//!   that says what to do.

mod client;
mod diagnose;
pub mod policy;

use std::future::Future;
use std::time::Duration;

pub(crate) use client::{credentials_from, policy_arns};
pub use client::{ClientError, ClientSettings, SdkSts};
pub(crate) use diagnose::error_chain;
pub use policy::SessionPolicy;

use crate::sidecar::credentials::Credentials;
use crate::sidecar::token::Token;

/// What one `AssumeRoleWithWebIdentity` call needs.
#[derive(Debug, Clone)]
pub struct AssumeRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration: Duration,
    pub token: Token,
    /// Sent as `Policy` / `PolicyArns` (empty: neither). Set by
    /// `crate::sidecar::chain` when this call is the role's last.
    pub policy: SessionPolicy,
}

/// Something that exchanges a web-identity token for role credentials.
pub trait AssumeRole: Send + Sync + 'static {
    fn assume(
        &self,
        request: AssumeRequest,
    ) -> impl Future<Output = Result<Credentials, StsError>> + Send;
}

/// How an STS failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Throttling, IdP trouble, 5xx, network, timeouts: back off and retry.
    Retryable,
    /// The token is invalid, expired or not trusted: log its claims; a rotation
    /// may fix it.
    Token,
    /// The role, the trust policy or a parameter is wrong: an operator must act.
    Configuration,
}

/// An STS failure: its code (`InvalidIdentityToken`, `Throttling`, ...), a message
/// safe to log and to return in a 503 body, and its class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct StsError {
    pub code: String,
    pub message: String,
    pub class: ErrorClass,
}

impl StsError {
    /// Classifies an STS error code, adding hints for the common mistakes.
    pub(crate) fn from_code(code: &str, message: &str, http_status: Option<u16>) -> StsError {
        let class = match code {
            "InvalidIdentityToken"
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "IDPRejectedClaim" => ErrorClass::Token,
            "AccessDenied"
            | "ValidationError"
            | "MalformedPolicyDocument"
            | "PackedPolicyTooLarge"
            | "RegionDisabledException"
            | "InvalidParameterValue"
            | "InvalidAction"
            | "MissingParameter" => ErrorClass::Configuration,
            _ => match http_status {
                Some(s) if (400..500).contains(&s) && s != 429 && !is_throttling(code) => {
                    if code.is_empty() || code == "IDPCommunicationError" {
                        ErrorClass::Retryable
                    } else {
                        ErrorClass::Configuration
                    }
                }
                _ => ErrorClass::Retryable,
            },
        };
        let mut message = log_safe(message);
        if code == "ValidationError" && message.contains("DurationSeconds") {
            message.push_str(
                " (hint: lower --duration to at most the role's maximum session duration)",
            );
        }
        if code == "AccessDenied" {
            message.push_str(WEB_IDENTITY_DENIED_HINT);
        }
        StsError {
            code: if code.is_empty() {
                "UnknownError".into()
            } else {
                code.to_string()
            },
            message,
            class,
        }
    }
}

/// What an `AccessDenied` from the web-identity call is told to check (a
/// chained hop replaces it with its own, `crate::sidecar::chain`).
pub(crate) const WEB_IDENTITY_DENIED_HINT: &str = " (hint: check the role's trust policy: Federated principal = the cluster's OIDC provider, condition on <issuer>:sub = system:serviceaccount:<namespace>:<name> and <issuer>:aud = sts.amazonaws.com; `irsa-proxy doctor` explains)";

fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException"
    )
}

/// Error text on one line, bounded, so a hostile endpoint cannot flood the logs.
pub(super) fn log_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect();
    if s.chars().count() > 512 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_problems_should_be_classified_as_token() {
        for code in [
            "InvalidIdentityToken",
            "ExpiredTokenException",
            "IDPRejectedClaim",
        ] {
            assert_eq!(
                StsError::from_code(code, "x", Some(400)).class,
                ErrorClass::Token
            );
        }
    }

    #[test]
    fn throttling_and_5xx_should_be_retryable() {
        assert_eq!(
            StsError::from_code("Throttling", "Rate exceeded", Some(400)).class,
            ErrorClass::Retryable
        );
        assert_eq!(
            StsError::from_code("IDPCommunicationError", "x", Some(400)).class,
            ErrorClass::Retryable
        );
        assert_eq!(
            StsError::from_code("InternalFailure", "x", Some(500)).class,
            ErrorClass::Retryable
        );
    }

    #[test]
    fn duration_too_long_should_get_a_hint() {
        let e = StsError::from_code(
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
            Some(400),
        );
        assert_eq!(e.class, ErrorClass::Configuration);
        assert!(e.message.contains("lower --duration"));
    }

    #[test]
    fn messages_should_be_one_bounded_line() {
        let e = StsError::from_code("X", &format!("a\nb{}", "c".repeat(2000)), Some(500));
        assert!(!e.message.contains('\n'));
        assert!(e.message.len() < 600);
    }
}
