//! Temporary role credentials: the secret-bearing value that STS returns and the
//! cache serves. Its own module because both need it, and the STS client must not
//! depend on the cache (`credentials` re-exports it under its usual name).

use std::fmt;
use std::time::SystemTime;

use crate::clock::format_timestamp;

/// Temporary role credentials. `Debug` shows the access key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    secret_access_key: String,
    session_token: String,
    /// When STS says they stop working.
    pub expiration: SystemTime,
    /// `AssumedRoleUser.Arn` from STS (`arn:aws:sts::<account>:assumed-role/<role>/<session>`).
    pub assumed_role_arn: Option<String>,
    /// The account, when the source names it without an ARN (the Pod Identity
    /// agent's `AccountId`).
    pub account_id: Option<String>,
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: impl Into<String>,
        expiration: SystemTime,
        assumed_role_arn: Option<String>,
    ) -> Self {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: session_token.into(),
            expiration,
            assumed_role_arn,
            account_id: None,
        }
    }

    /// The same credentials, with the account their source named.
    pub fn with_account_id(mut self, account_id: impl Into<String>) -> Self {
        self.account_id = Some(account_id.into());
        self
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub fn session_token(&self) -> &str {
        &self.session_token
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"...")
            .field("session_token", &"...")
            .field("expiration", &format_timestamp(self.expiration))
            .field("assumed_role_arn", &self.assumed_role_arn)
            .field("account_id", &self.account_id)
            .finish()
    }
}
