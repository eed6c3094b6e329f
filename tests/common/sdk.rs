//! The AWS SDK for Rust's STS client against a local STS (the emulator): the
//! region fixed, no retries, so a refusal shows as it was answered.

use aws_sdk_sts::config::retry::RetryConfig;
use aws_sdk_sts::config::{BehaviorVersion, Credentials, Region};

/// A client for `endpoint`, signing with `creds` (none: unsigned calls such as
/// AssumeRoleWithWebIdentity).
pub fn sts_client(endpoint: &str, creds: Option<Credentials>) -> aws_sdk_sts::Client {
    let mut b = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::disabled());
    if let Some(c) = creds {
        b = b.credentials_provider(c);
    }
    aws_sdk_sts::Client::from_conf(b.build())
}

/// The credentials of an ECS-style JSON document (`AccessKeyId`,
/// `SecretAccessKey`, `Token`), for the SDK.
pub fn credentials_from_json(doc: &serde_json::Value) -> Credentials {
    let field = |k: &str| doc[k].as_str().unwrap_or_else(|| panic!("no {k} in {doc}"));
    Credentials::new(
        field("AccessKeyId"),
        field("SecretAccessKey"),
        Some(field("Token").to_string()),
        None,
        "test",
    )
}
