//! Role chaining: after `AssumeRoleWithWebIdentity`, one `AssumeRole` per hop,
//! each signed with the previous role's credentials; only the last role's
//! credentials are returned, so only they are ever cached and served.
//!
//! The contract (docs/contract.md §11, "Role chaining"):
//!
//! - The whole chain is run from the token at every refresh: a hop's
//!   credentials are never kept, so no intermediate role can be served, and the
//!   refresh is scheduled on the lifetime the last hop returned.
//! - A failing hop fails the refresh: the refresher keeps serving the last good
//!   final credentials until the safety margin, then the 503 body is the failing
//!   call's STS code with a message naming the hop (`hop 2 of 2 (AssumeRole
//!   arn:...)`). The code is also the metric's `error` label, so `Throttling`
//!   and `AccessDenied` stay apart, and its class decides the back-off as for
//!   the web-identity call.
//! - Session tags, their transitive keys and SourceIdentity go on the first hop
//!   (AssumeRoleWithWebIdentity takes none; AWS carries transitive tags and the
//!   SourceIdentity down the rest of the chain). The ExternalId goes on the last
//!   hop. AWS caps a chained session at one hour; `--duration` is refused above
//!   that at start-up ([`plan`]).
//! - The session policy ([`SessionPolicy`]: `Policy`, `PolicyArns`) goes on the
//!   role's last call: the web-identity call without a chain, else the last
//!   hop. (The credentials of an earlier call are never served, so narrowing
//!   them would only make the next hop fail.)
//! - The session name template and the tag values are rendered from the first
//!   token that has the claims, and kept: the same name for the pod's life.
//!
//! [`Chained`] wraps any STS client that can do both calls; the refresher sees
//! it as one [`AssumeRole`]. On another source (EKS Pod Identity),
//! [`ChainedSource`] takes that source's credentials as the first role and runs
//! the same hops.

mod plan;
mod sdk;
pub mod session;
pub mod tags;
#[cfg(test)]
mod tests;

pub use crate::sidecar::sts::SessionPolicy;
pub use plan::{ExternalId, ExternalIdError, Hop, Plan, RenderError, Rendered};

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::sidecar::cache::RefreshSettings;
use crate::sidecar::credentials::Credentials;
use crate::sidecar::source::{CredentialSource, SourceError, SourceKind};
use crate::sidecar::sts::{AssumeRequest, AssumeRole, ErrorClass, StsError};
use crate::sidecar::token::read_token;

/// What one chained `AssumeRole` call sends. `Debug` does not show the
/// ExternalId.
#[derive(Clone, PartialEq, Eq)]
pub struct HopRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration: Duration,
    /// A secret in some organisations.
    pub external_id: Option<String>,
    pub tags: Vec<(String, String)>,
    pub transitive_tag_keys: Vec<String>,
    pub source_identity: Option<String>,
    /// Only on the last hop: the role's session policy.
    pub policy: SessionPolicy,
}

impl std::fmt::Debug for HopRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HopRequest")
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .field("duration", &self.duration)
            .field("external_id", &self.external_id.as_ref().map(|_| "..."))
            .field("tags", &self.tags)
            .field("transitive_tag_keys", &self.transitive_tag_keys)
            .field("source_identity", &self.source_identity)
            .field("policy", &self.policy)
            .finish()
    }
}

/// Something that calls `AssumeRole` signed with `caller`'s credentials.
pub trait AssumeHop: Send + Sync + 'static {
    fn assume_hop(
        &self,
        caller: &Credentials,
        request: HopRequest,
    ) -> impl Future<Output = Result<Credentials, StsError>> + Send;
}

/// The hint STS errors of a hop get when the trust policy refused it.
const HOP_DENIED_HINT: &str = " (hint: this role's trust policy must allow sts:AssumeRole for Principal {\"AWS\": \"<the previous role's ARN>\"} (or its account), plus sts:TagSession when session tags are sent and sts:SetSourceIdentity with --source-identity, and any sts:ExternalId condition must match --chain-external-id; `irsa-proxy doctor --chain-role-arn ... --chain-trust-policy FILE` explains)";

/// An STS client run as a chain: the web-identity call, then every hop.
pub struct Chained<S> {
    sts: S,
    plan: Arc<Plan>,
    /// The templates rendered from the first token with the claims, kept for
    /// the life of the process so that names never change at a refresh.
    rendered: OnceLock<Rendered>,
}

impl<S> Chained<S> {
    pub fn new(sts: S, plan: Arc<Plan>) -> Chained<S> {
        Chained {
            sts,
            plan,
            rendered: OnceLock::new(),
        }
    }

    /// The rendered templates, from the first token that has the claims.
    fn rendered(&self, token: &crate::sidecar::token::Token) -> Result<&Rendered, StsError> {
        if let Some(r) = self.rendered.get() {
            return Ok(r);
        }
        let claims = token.claims().unwrap_or_default();
        let r = self.plan.render(&claims).map_err(|e| StsError {
            code: "MissingClaim".into(),
            message: e.to_string(),
            class: ErrorClass::Token,
        })?;
        Ok(self.rendered.get_or_init(|| r))
    }
}

/// `e` with the hop it happened at in front of its message.
fn at_hop(e: StsError, number: usize, of: usize, action: &str, role: &str) -> StsError {
    let mut message = e.message;
    if number > 1 && e.code == "AccessDenied" {
        if let Some(i) = message.find(crate::sidecar::sts::WEB_IDENTITY_DENIED_HINT) {
            message.truncate(i);
        }
        message.push_str(HOP_DENIED_HINT);
    }
    StsError {
        code: e.code,
        message: format!("hop {number} of {of} ({action} {role}): {message}"),
        class: e.class,
    }
}

impl<S: AssumeRole + AssumeHop> AssumeRole for Chained<S> {
    async fn assume(&self, mut request: AssumeRequest) -> Result<Credentials, StsError> {
        let rendered = if self.plan.needs_claims() || self.plan.is_chained() {
            Some(self.rendered(&request.token)?.clone())
        } else {
            None
        };
        if let Some(name) = rendered.as_ref().and_then(|r| r.session_name.clone()) {
            request.session_name = name;
        }
        let session_name = request.session_name.clone();
        let duration = request.duration;
        let web_role = request.role_arn.clone();
        if !self.plan.is_chained() {
            request.policy = self.plan.session_policy.clone();
            return self.sts.assume(request).await;
        }
        let of = self.plan.hops.len() + 1;
        let credentials = self
            .sts
            .assume(request)
            .await
            .map_err(|e| at_hop(e, 1, of, "AssumeRoleWithWebIdentity", &web_role))?;
        self.hops(credentials, rendered, &session_name, duration)
            .await
    }
}

impl<S: AssumeHop> Chained<S> {
    /// Every hop after the first role, signed in turn with the previous
    /// role's `credentials`; the last role's credentials.
    async fn hops(
        &self,
        mut credentials: Credentials,
        rendered: Option<Rendered>,
        session_name: &str,
        duration: Duration,
    ) -> Result<Credentials, StsError> {
        let of = self.plan.hops.len() + 1;
        let session_name = session_name.to_string();
        let rendered = rendered.unwrap_or_else(|| Rendered {
            session_name: None,
            tags: Vec::new(),
            source_identity: None,
        });
        for (i, hop) in self.plan.hops.iter().enumerate() {
            let number = i + 2;
            let external_id = match &hop.external_id {
                Some(id) => Some(id.read().map_err(|e| StsError {
                    code: e.code().into(),
                    message: format!("hop {number} of {of} (AssumeRole {}): {e}", hop.role),
                    class: ErrorClass::Retryable,
                })?),
                None => None,
            };
            let first = i == 0;
            let last = number == of;
            let hop_request = HopRequest {
                role_arn: hop.role.arn.clone(),
                session_name: session_name.clone(),
                duration,
                external_id,
                tags: if first {
                    rendered.tags.clone()
                } else {
                    Vec::new()
                },
                transitive_tag_keys: if first {
                    self.plan.transitive_tag_keys.clone()
                } else {
                    Vec::new()
                },
                source_identity: if first {
                    rendered.source_identity.clone()
                } else {
                    None
                },
                policy: if last {
                    self.plan.session_policy.clone()
                } else {
                    SessionPolicy::default()
                },
            };
            credentials = self
                .sts
                .assume_hop(&credentials, hop_request)
                .await
                .map_err(|e| at_hop(e, number, of, "AssumeRole", &hop.role.arn))?;
        }
        Ok(credentials)
    }
}

/// A chain on another source than web identity (EKS Pod Identity): the
/// source's credentials are the first role, every hop is an `AssumeRole`
/// through `S`. The templates are rendered from the source's token (a projected
/// service-account token too), the hops named after `--session-name`.
pub struct ChainedSource<B, S> {
    base: B,
    chain: Chained<S>,
}

impl<B, S> ChainedSource<B, S> {
    pub fn new(base: B, chain: Chained<S>) -> ChainedSource<B, S> {
        ChainedSource { base, chain }
    }
}

impl<B: CredentialSource, S: AssumeHop> CredentialSource for ChainedSource<B, S> {
    fn kind(&self) -> SourceKind {
        self.base.kind()
    }

    async fn fetch(&self, settings: &RefreshSettings) -> Result<Credentials, SourceError> {
        if !self.chain.plan.is_chained() {
            return self.base.fetch(settings).await;
        }
        let token = read_token(&settings.token_file)?;
        let summary = token.claims().ok().map(|c| c.summary());
        let refused = |error| SourceError::Refused {
            error,
            token: summary.clone(),
        };
        let rendered = self.chain.rendered(&token).map_err(refused)?.clone();
        let session_name = rendered
            .session_name
            .clone()
            .unwrap_or_else(|| settings.session_name.clone());
        let of = self.chain.plan.hops.len() + 1;
        let kind = self.base.kind();
        let first = self.base.fetch(settings).await.map_err(|e| match e {
            SourceError::Refused { error, token } => SourceError::Refused {
                error: at_hop(error, 1, of, kind.called(), "for the first role"),
                token,
            },
            e => e,
        })?;
        self.chain
            .hops(first, Some(rendered), &session_name, settings.duration)
            .await
            .map_err(refused)
    }
}
