//! `AssumeRoleWithWebIdentity`, behind a small trait so the refresher can be tested
//! without HTTP, and the classification of what STS answers when it says no.
//!
//! The real implementation uses `aws-sdk-sts`: region and endpoint resolution,
//! retries with back-off inside one attempt, and `AWS_ENDPOINT_URL_STS` come from
//! the SDK. The call is unsigned (the token is the proof), so the client is built
//! with no credentials provider at all.

use std::future::Future;
use std::time::{Duration, SystemTime};

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::config::Region;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};

use crate::role_credentials::Credentials;
use crate::token::Token;

/// What one `AssumeRoleWithWebIdentity` call needs.
#[derive(Debug, Clone)]
pub struct AssumeRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration: Duration,
    pub token: Token,
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
    pub fn from_code(code: &str, message: &str, http_status: Option<u16>) -> StsError {
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
            message.push_str(" (hint: check the role's trust policy: Federated principal = the cluster's OIDC provider, condition on <issuer>:sub = system:serviceaccount:<namespace>:<name> and <issuer>:aud = sts.amazonaws.com; `irsa-proxy doctor` explains)");
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

fn is_throttling(code: &str) -> bool {
    matches!(
        code,
        "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException"
    )
}

/// Error text on one line, bounded, so a hostile endpoint cannot flood the logs.
fn log_safe(s: &str) -> String {
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

/// Settings of the real STS client.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

/// `aws-sdk-sts`, unsigned.
#[derive(Debug, Clone)]
pub struct SdkSts {
    client: aws_sdk_sts::Client,
}

impl SdkSts {
    /// Builds the client. Without a region, the profile's region is used, then
    /// `us-east-1` (the global STS endpoint's region); IMDS is not asked, since on
    /// a laptop or in a pod without a node role it only delays start-up.
    pub async fn new(settings: &ClientSettings) -> SdkSts {
        let region = RegionProviderChain::first_try(settings.region.clone().map(Region::new))
            .or_else(aws_config::profile::ProfileFileRegionProvider::new())
            .or_else(Region::from_static("us-east-1"));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .no_credentials()
            .region(region)
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            );
        if let Some(url) = &settings.endpoint {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        SdkSts {
            client: aws_sdk_sts::Client::new(&config),
        }
    }
}

impl AssumeRole for SdkSts {
    async fn assume(&self, request: AssumeRequest) -> Result<Credentials, StsError> {
        let out = self
            .client
            .assume_role_with_web_identity()
            .role_arn(&request.role_arn)
            .role_session_name(&request.session_name)
            .duration_seconds(request.duration.as_secs().min(i32::MAX as u64) as i32)
            .web_identity_token(request.token.expose())
            .send()
            .await
            .map_err(classify_sdk_error)?;
        let c = out.credentials().ok_or_else(|| StsError {
            code: "InvalidResponse".into(),
            message: "STS answered without Credentials".into(),
            class: ErrorClass::Retryable,
        })?;
        let expiration = SystemTime::try_from(*c.expiration()).map_err(|_| StsError {
            code: "InvalidResponse".into(),
            message: "STS answered an Expiration that is not a valid time".into(),
            class: ErrorClass::Retryable,
        })?;
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            c.session_token(),
            expiration,
            out.assumed_role_user().map(|u| u.arn().to_string()),
        ))
    }
}

fn classify_sdk_error<E>(err: SdkError<E, HttpResponse>) -> StsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let retryable = |code: &str, message: String| StsError {
        code: code.into(),
        message: log_safe(&message),
        class: ErrorClass::Retryable,
    };
    match &err {
        SdkError::ServiceError(se) => StsError::from_code(
            se.err().code().unwrap_or_default(),
            se.err().message().unwrap_or("STS refused the request"),
            Some(se.raw().status().as_u16()),
        ),
        SdkError::TimeoutError(_) => retryable("Timeout", "STS did not answer in time".into()),
        SdkError::DispatchFailure(_) => retryable(
            "NetworkError",
            format!("cannot reach STS: {}", error_chain(&err)),
        ),
        SdkError::ResponseError(_) => retryable(
            "InvalidResponse",
            format!(
                "STS sent a response that cannot be read: {}",
                error_chain(&err)
            ),
        ),
        _ => retryable("UnknownError", error_chain(&err)),
    }
}

/// The `Display` of an error and its sources, joined with `: `, without the
/// `Debug` dump the SDK's own context formatter appends.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
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
