//! Where the refresher gets its base credentials: the seam between "get
//! credentials" and everything the cache does with them (refresh-ahead, jitter,
//! back-off, static stability).
//!
//! Two sources exist (`serve --source`, docs/contract.md §12):
//!
//! - **web identity** (IRSA): read the projected token, call STS
//!   `AssumeRoleWithWebIdentity`. Every [`AssumeRole`] is this source, through the
//!   blanket implementation below, so the STS client and the refresher's scripted
//!   test STS plug in unchanged.
//! - **pod identity** (EKS Pod Identity): read the token the EKS webhook mounts,
//!   ask the node agent's container-credentials endpoint ([`pod_identity`]).
//!
//! A source only fetches. It never caches, retries or decides when to call: the
//! refresher does that, identically for both, and anything that builds on the
//! base credentials runs after [`CredentialSource::fetch`]: role chaining
//! (`crate::sidecar::chain`: `Chained` for web identity, `ChainedSource` on
//! top of any other source).

pub mod pod_identity;

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use crate::sidecar::cache::RefreshSettings;
use crate::sidecar::credentials::Credentials;
use crate::sidecar::sts::{AssumeRequest, AssumeRole, StsError};
use crate::sidecar::token::{read_token, TokenError};

/// Which source `serve` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    WebIdentity,
    PodIdentity,
}

impl SourceKind {
    /// The flag's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::WebIdentity => "web-identity",
            SourceKind::PodIdentity => "pod-identity",
        }
    }

    /// The token this source reads, as the logs name it.
    pub fn token_name(self) -> &'static str {
        match self {
            SourceKind::WebIdentity => "web-identity token",
            SourceKind::PodIdentity => "Pod Identity token",
        }
    }

    /// Who the logs and 503 bodies say was asked.
    pub fn called(self) -> &'static str {
        match self {
            SourceKind::WebIdentity => "STS",
            SourceKind::PodIdentity => "the EKS Pod Identity agent",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--source`: one of the sources, or `auto` (decided from the environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChoice {
    Auto,
    Given(SourceKind),
}

impl FromStr for SourceChoice {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(SourceChoice::Auto),
            "web-identity" => Ok(SourceChoice::Given(SourceKind::WebIdentity)),
            "pod-identity" => Ok(SourceChoice::Given(SourceKind::PodIdentity)),
            _ => Err("web-identity, pod-identity or auto"),
        }
    }
}

/// Why a fetch gave nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    /// The token file could not be read: nothing was sent.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// The source was asked and said no, or could not be reached. `token` is a
    /// summary of the token's claims (never the token), for the log.
    #[error("{error}")]
    Refused {
        error: StsError,
        token: Option<String>,
    },
}

/// Something that turns a token file into base credentials.
pub(crate) trait CredentialSource: Send + Sync + 'static {
    fn kind(&self) -> SourceKind;

    /// One call, with the token read afresh.
    fn fetch(
        &self,
        settings: &RefreshSettings,
    ) -> impl Future<Output = Result<Credentials, SourceError>> + Send;
}

/// Web identity: every STS client is a source.
impl<A: AssumeRole> CredentialSource for A {
    fn kind(&self) -> SourceKind {
        SourceKind::WebIdentity
    }

    fn fetch(
        &self,
        settings: &RefreshSettings,
    ) -> impl Future<Output = Result<Credentials, SourceError>> + Send {
        let token = read_token(&settings.token_file);
        let role_arn = settings.role_arn.clone();
        let session_name = settings.session_name.clone();
        let duration = settings.duration;
        async move {
            let token = token?;
            let summary = token.claims().ok().map(|c| c.summary());
            let request = AssumeRequest {
                role_arn,
                session_name,
                duration,
                token,
                policy: Default::default(),
            };
            self.assume(request)
                .await
                .map_err(|error| SourceError::Refused {
                    error,
                    token: summary,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_choices_should_parse_and_name_the_allowed_values() {
        assert_eq!("auto".parse(), Ok(SourceChoice::Auto));
        assert_eq!(
            " pod-identity ".parse(),
            Ok(SourceChoice::Given(SourceKind::PodIdentity))
        );
        assert_eq!(
            "web-identity".parse(),
            Ok(SourceChoice::Given(SourceKind::WebIdentity))
        );
        assert_eq!(
            "irsa".parse::<SourceChoice>(),
            Err("web-identity, pod-identity or auto")
        );
    }
}
