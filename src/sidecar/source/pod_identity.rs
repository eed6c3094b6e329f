//! The EKS Pod Identity source: the node agent's container-credentials
//! endpoint, as the EKS webhook gives it to a container.
//!
//! # Wire contract (github.com/aws/eks-pod-identity-agent)
//!
//! - `GET <AWS_CONTAINER_CREDENTIALS_FULL_URI>` (on EKS
//!   `http://169.254.170.23/v1/credentials` or `http://[fd00:ec2::23]/v1/credentials`)
//!   with `Authorization: <the token in AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE>`,
//!   the file re-read before every call (kubelet rotates it). The agent checks
//!   the `Host` it was called by, so the request carries the URI's authority.
//! - `200`: `{"AccessKeyId","SecretAccessKey","Token","AccountId","Expiration"}`,
//!   the expiration in RFC 3339 (UTC, any fraction of a second). The answer names
//!   no role; `AccountId` is passed on in our ECS body.
//! - Errors are plain text (Go's `http.Error`): `400` for a token the agent
//!   cannot parse or whose claims fail (an expired one), or that EKS Auth calls
//!   invalid or expired; `403` for EKS Auth's `AccessDeniedException` or a call
//!   through the wrong address; `404` when no association names the pod's
//!   service account (`ResourceNotFoundException`); `429` when the agent or EKS
//!   Auth throttles; `5xx` otherwise. EKS Auth's errors read
//!   `[<request id>]: (<code>): <message>, fault: client`: the code in brackets
//!   becomes the code of our 503 body.
//!
//! Classification, as for STS: 429, 5xx, a broken answer and an agent that
//! cannot be reached are retried with back-off; 400 is a token problem; 403
//! and 404 need an operator. The cache keeps serving the last good credentials
//! through all of them until the safety margin.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use serde::Deserialize;

use super::{CredentialSource, SourceError, SourceKind};
use crate::flags::Refusal;
use crate::sidecar::cache::RefreshSettings;
use crate::sidecar::credentials::Credentials;
use crate::sidecar::sts::{log_safe, ErrorClass, StsError};
use crate::sidecar::token::read_token;

/// The IMDS role name when no `--role-arn` names the role: the agent's answer
/// does not say which role it assumed.
pub const UNNAMED_ROLE: &str = "eks-pod-identity";

/// The agent's addresses, as the EKS webhook writes them.
pub const AGENT_URI_V4: &str = "http://169.254.170.23/v1/credentials";
pub const AGENT_URI_V6: &str = "http://[fd00:ec2::23]/v1/credentials";

/// The whole call, connection to last byte. The agent answers from its cache
/// or after one EKS Auth call; longer means it is in trouble.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// An answer is five short fields; anything much larger is not the agent.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The agent at one URI.
#[derive(Debug, Clone)]
pub struct PodIdentity {
    uri: Uri,
    /// `host:port` to connect to.
    connect: String,
}

impl PodIdentity {
    /// A client for a URI that [`agent_uri`] accepted.
    pub fn new(uri: Uri) -> PodIdentity {
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(80);
        let connect = if host.starts_with('[') || !host.contains(':') {
            format!("{host}:{port}")
        } else {
            format!("[{host}]:{port}")
        };
        tracing::debug!(%authority, %connect, "Pod Identity agent");
        PodIdentity { uri, connect }
    }

    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    async fn call(&self, token: &str) -> Result<(StatusCode, Bytes), AgentCallError> {
        let stream = tokio::net::TcpStream::connect(&self.connect)
            .await
            .map_err(AgentCallError::Connect)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(AgentCallError::Handshake)?;
        let connection = tokio::spawn(connection);
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::get(path)
            .header(
                header::HOST,
                self.uri.authority().map(|a| a.as_str()).unwrap_or_default(),
            )
            .header(header::AUTHORIZATION, token)
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|_| AgentCallError::TokenNotAHeader)?;
        let answer = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(AgentCallError::NoAnswer)?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| AgentCallError::Body(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        connection.abort();
        answer
    }
}

/// Why a call to the agent brought no answer to classify.
#[derive(Debug, thiserror::Error)]
enum AgentCallError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("HTTP handshake failed: {0}")]
    Handshake(hyper::Error),
    #[error("the token is not a valid header value")]
    TokenNotAHeader,
    #[error("no answer: {0}")]
    NoAnswer(hyper::Error),
    #[error("cannot read the answer: {0}")]
    Body(String),
}

/// The agent's 200 body.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: String,
    #[serde(default)]
    account_id: Option<String>,
    expiration: String,
}

/// Turns the agent's answer into credentials or a classified error.
pub(crate) fn classify(
    uri: &Uri,
    status: StatusCode,
    body: &[u8],
) -> Result<Credentials, StsError> {
    let text = String::from_utf8_lossy(body);
    if status == StatusCode::OK {
        let parsed: AgentCredentials = serde_json::from_slice(body).map_err(|e| StsError {
            code: "PodIdentityAgentBadAnswer".into(),
            message: format!("the EKS Pod Identity agent at {uri} answered 200 with a body that is not its credentials JSON ({e})"),
            class: ErrorClass::Retryable,
        })?;
        let expiration = parse_expiration(&parsed.expiration).ok_or_else(|| StsError {
            code: "PodIdentityAgentBadAnswer".into(),
            message: format!(
                "the EKS Pod Identity agent at {uri} answered an Expiration that is not an RFC 3339 UTC time: {:?}",
                log_safe(&parsed.expiration)
            ),
            class: ErrorClass::Retryable,
        })?;
        let creds = Credentials::new(
            parsed.access_key_id,
            parsed.secret_access_key,
            parsed.token,
            expiration,
            None,
        );
        return Ok(match parsed.account_id.filter(|a| !a.is_empty()) {
            Some(a) => creds.with_account_id(a),
            None => creds,
        });
    }
    let said = log_safe(text.trim());
    let (fallback, class) = match status.as_u16() {
        429 => ("Throttling", ErrorClass::Retryable),
        400 => ("PodIdentityTokenRefused", ErrorClass::Token),
        403 => ("AccessDenied", ErrorClass::Configuration),
        404 => ("ResourceNotFoundException", ErrorClass::Configuration),
        408 => ("PodIdentityAgentTimeout", ErrorClass::Retryable),
        s if s >= 500 => ("PodIdentityAgentError", ErrorClass::Retryable),
        _ => ("PodIdentityAgentRefused", ErrorClass::Configuration),
    };
    let code = eks_auth_code(&said).unwrap_or(fallback);
    let class = match code {
        "ThrottlingException" => ErrorClass::Retryable,
        _ => class,
    };
    let hint = match status.as_u16() {
        404 => " (hint: create a Pod Identity association for this namespace and service account: `aws eks create-pod-identity-association`)",
        400 => " (hint: the token file must hold the projected token with audience pods.eks.amazonaws.com that the EKS webhook mounts)",
        _ => "",
    };
    Err(StsError {
        code: code.to_string(),
        message: format!(
            "the EKS Pod Identity agent at {uri} answered {}: {said}{hint}",
            status.as_u16()
        ),
        class,
    })
}

/// The code EKS Auth put in brackets: `[id]: (ResourceNotFoundException): ...`.
fn eks_auth_code(said: &str) -> Option<&str> {
    let start = said.find('(')? + 1;
    let len = said[start..].find(')')?;
    let code = &said[start..start + len];
    (!code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(code)
}

/// RFC 3339 in UTC with any fraction of a second, as Go's `RFC3339Nano` writes it.
fn parse_expiration(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s.trim()).ok()
}

/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` for this source: plain HTTP to the
/// agent's link-local addresses or to loopback (where tests and `dev` run an
/// agent), as the SDKs allow for this variable.
pub(crate) fn agent_uri(v: &str) -> Result<Uri, Refusal> {
    const ALLOWED: &str =
        "http://169.254.170.23/v1/credentials, http://[fd00:ec2::23]/v1/credentials or an http:// URL on loopback";
    let uri: Uri = v
        .trim()
        .parse()
        .map_err(|_| Refusal::new("is not a URL", ALLOWED))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(Refusal::new("is not an http:// URL", ALLOWED));
    }
    let host = uri.host().unwrap_or_default();
    let ip: Option<std::net::IpAddr> = host.trim_matches(|c| c == '[' || c == ']').parse().ok();
    let agent = ["169.254.170.23", "fd00:ec2::23"]
        .iter()
        .any(|a| a.parse().ok() == ip);
    if agent || ip.is_some_and(|ip| ip.is_loopback()) || host == "localhost" {
        Ok(uri)
    } else {
        Err(Refusal::new(
            "is not the Pod Identity agent's address or loopback",
            ALLOWED,
        ))
    }
}

impl CredentialSource for PodIdentity {
    fn kind(&self) -> SourceKind {
        SourceKind::PodIdentity
    }

    fn fetch(
        &self,
        settings: &RefreshSettings,
    ) -> impl Future<Output = Result<Credentials, SourceError>> + Send {
        let token_file: PathBuf = settings.token_file.clone();
        async move {
            let token = read_token(&token_file)?;
            let summary = token.claims().ok().map(|c| c.summary());
            let refused = |error| SourceError::Refused {
                error,
                token: summary.clone(),
            };
            let answer = tokio::time::timeout(CALL_TIMEOUT, self.call(token.expose())).await;
            let (status, body) = match answer {
                Ok(Ok(a)) => a,
                Ok(Err(why)) => {
                    return Err(refused(StsError {
                        code: "PodIdentityAgentUnreachable".into(),
                        message: format!("the EKS Pod Identity agent at {}: {why}", self.uri),
                        class: ErrorClass::Retryable,
                    }))
                }
                Err(_) => {
                    return Err(refused(StsError {
                        code: "PodIdentityAgentUnreachable".into(),
                        message: format!(
                            "the EKS Pod Identity agent at {} did not answer within {}s",
                            self.uri,
                            CALL_TIMEOUT.as_secs()
                        ),
                        class: ErrorClass::Retryable,
                    }))
                }
            };
            classify(&self.uri, status, &body).map_err(refused)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri() -> Uri {
        AGENT_URI_V4.parse().unwrap()
    }

    #[test]
    fn agent_uris_should_be_the_agent_or_loopback_over_http() {
        for ok in [
            AGENT_URI_V4,
            AGENT_URI_V6,
            "http://127.0.0.1:2703/v1/credentials",
            "http://[::1]:80/v1/credentials",
            "http://localhost:8080/x",
        ] {
            assert!(agent_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://169.254.170.23/v1/credentials",
            "http://10.0.0.1/v1/credentials",
            "http://169.254.169.254/latest",
            "169.254.170.23/v1/credentials",
            "",
        ] {
            assert!(agent_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_200_should_give_credentials_with_the_account() {
        let body = br#"{"AccessKeyId":"ASIAPODID","SecretAccessKey":"s","Token":"t","AccountId":"123456789012","Expiration":"2030-01-02T03:04:05.123456789Z"}"#;
        let c = classify(&uri(), StatusCode::OK, body).unwrap();
        assert_eq!(c.access_key_id, "ASIAPODID");
        assert_eq!(c.account_id.as_deref(), Some("123456789012"));
        assert_eq!(
            crate::clock::format_timestamp(c.expiration),
            "2030-01-02T03:04:05Z"
        );
    }

    #[test]
    fn the_agents_errors_should_be_classified_and_named() {
        // (status, body as the agent writes it, code, class)
        let cases: &[(u16, &str, &str, ErrorClass)] = &[
            (429, "Too Many Requests\n", "Throttling", ErrorClass::Retryable),
            (500, "internal error\n", "PodIdentityAgentError", ErrorClass::Retryable),
            (503, "", "PodIdentityAgentError", ErrorClass::Retryable),
            (
                400,
                "Service account token failed basic claim validations: token has invalid claims: token is expired\n",
                "PodIdentityTokenRefused",
                ErrorClass::Token,
            ),
            (
                400,
                "[1a2b]: (InvalidTokenException): audience is not pods.eks.amazonaws.com, fault: client\n",
                "InvalidTokenException",
                ErrorClass::Token,
            ),
            (
                404,
                "[1a2b]: (ResourceNotFoundException): no association, fault: client\n",
                "ResourceNotFoundException",
                ErrorClass::Configuration,
            ),
            (
                403,
                "Access Denied. Called agent through invalid address\n",
                "AccessDenied",
                ErrorClass::Configuration,
            ),
            (
                429,
                "[1a2b]: (ThrottlingException): slow down, fault: client\n",
                "ThrottlingException",
                ErrorClass::Retryable,
            ),
        ];
        for (status, body, code, class) in cases {
            let e = classify(
                &uri(),
                StatusCode::from_u16(*status).unwrap(),
                body.as_bytes(),
            )
            .unwrap_err();
            assert_eq!(
                (e.code.as_str(), e.class),
                (*code, *class),
                "{status} {body}"
            );
            assert!(
                e.message.contains(&format!("answered {status}")),
                "{}",
                e.message
            );
            assert!(!e.message.contains('\n'));
        }
    }

    #[test]
    fn a_broken_200_should_be_retried() {
        for body in [
            &b"<html>"[..],
            br#"{"AccessKeyId":"a","SecretAccessKey":"s","Token":"t","Expiration":"tomorrow"}"#,
        ] {
            let e = classify(&uri(), StatusCode::OK, body).unwrap_err();
            assert_eq!(
                (e.code.as_str(), e.class),
                ("PodIdentityAgentBadAnswer", ErrorClass::Retryable)
            );
        }
    }
}
