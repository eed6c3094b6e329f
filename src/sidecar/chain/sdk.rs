//! `AssumeRole` through `aws-sdk-sts`, signed (SigV4) with the previous role's
//! credentials: the same client, endpoint, proxy and trust roots as the
//! web-identity call, with a credentials provider for this one call.

use aws_sdk_sts::config::{Credentials as SdkCredentials, SharedCredentialsProvider};
use aws_sdk_sts::types::Tag;

use super::{AssumeHop, HopRequest};
use crate::sidecar::credentials::Credentials;
use crate::sidecar::sts::{credentials_from, policy_arns, ErrorClass, SdkSts, StsError};

impl AssumeHop for SdkSts {
    async fn assume_hop(
        &self,
        caller: &Credentials,
        request: HopRequest,
    ) -> Result<Credentials, StsError> {
        let signer = SdkCredentials::new(
            caller.access_key_id.clone(),
            caller.secret_access_key().to_string(),
            Some(caller.session_token().to_string()),
            Some(caller.expiration),
            "irsa-proxy-chain",
        );
        let mut tags = Vec::with_capacity(request.tags.len());
        for (key, value) in &request.tags {
            let tag = Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| StsError {
                    code: "InvalidParameterValue".into(),
                    message: format!("session tag {key:?}: {e}"),
                    class: ErrorClass::Configuration,
                })?;
            tags.push(tag);
        }
        let out = self
            .client()
            .assume_role()
            .role_arn(&request.role_arn)
            .role_session_name(&request.session_name)
            .duration_seconds(request.duration.as_secs().min(i32::MAX as u64) as i32)
            .set_external_id(request.external_id)
            .set_tags((!tags.is_empty()).then_some(tags))
            .set_transitive_tag_keys(
                (!request.transitive_tag_keys.is_empty()).then_some(request.transitive_tag_keys),
            )
            .set_source_identity(request.source_identity)
            .set_policy(request.policy.document)
            .set_policy_arns(policy_arns(request.policy.arns))
            .customize()
            .config_override(
                aws_sdk_sts::config::Builder::default()
                    .credentials_provider(SharedCredentialsProvider::new(signer)),
            )
            .send()
            .await;
        match out {
            Ok(out) => credentials_from(out.credentials(), out.assumed_role_user()),
            Err(e) => Err(self.failure(e).await),
        }
    }
}
