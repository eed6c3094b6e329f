//! The credentials the emulator has issued, so `GetCallerIdentity` can verify
//! signatures made with them. Bounded: expired entries are dropped some time after
//! they expire (kept a while so a late caller hears `ExpiredToken`, not
//! `InvalidClientTokenId`), and when full the entry closest to expiry goes first.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Most entries kept; one entry is a few hundred bytes.
pub(crate) const MAX_ENTRIES: usize = 10_000;

/// How long an expired entry is kept to answer `ExpiredToken`.
pub(crate) const KEEP_EXPIRED: Duration = Duration::from_secs(3600);

/// One set of issued credentials. `Debug` redacts the secret and the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expiration: SystemTime,
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub assumed_role_arn: String,
    /// `AROA...:<session>`, GetCallerIdentity's `UserId`.
    pub assumed_role_id: String,
    pub account: String,
    /// What a chained `AssumeRole` with these credentials inherits.
    pub session: SessionAttributes,
    /// The tags the session carries (Pod Identity's six, a chained session's
    /// own and inherited ones), for later calls and the ledger to see.
    pub session_tags: std::collections::BTreeMap<String, String>,
}

/// A session's tags and SourceIdentity (`AssumeRole` in `assume_role.rs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionAttributes {
    /// Every tag of the session: inherited transitive ones and its own.
    pub tags: Vec<(String, String)>,
    /// The keys passed on to the next session of a chain.
    pub transitive_tag_keys: Vec<String>,
    /// Set once in a chain, and kept.
    pub source_identity: Option<String>,
    /// The session policy of the call that issued the credentials: every
    /// verified call made with them must be inside it. Not inherited: a
    /// chained session has its own call's (`session_policy.rs`).
    pub session_policy: Option<std::sync::Arc<super::session_policy::SessionPolicy>>,
}

impl fmt::Debug for IssuedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"...")
            .field("session_token", &"...")
            .field("expiration", &self.expiration)
            .field("assumed_role_arn", &self.assumed_role_arn)
            .field("session", &self.session)
            .field("session_tags", &self.session_tags)
            .finish()
    }
}

/// Access key id to issued credentials.
#[derive(Debug)]
pub(crate) struct IssuedStore {
    /// A std `Mutex`: no `.await` happens while it is held.
    entries: Mutex<HashMap<String, IssuedCredentials>>,
    /// The bound on entries ([`MAX_ENTRIES`] outside tests).
    limit: usize,
}

impl Default for IssuedStore {
    fn default() -> Self {
        Self::with_limit(MAX_ENTRIES)
    }
}

impl IssuedStore {
    pub(crate) fn with_limit(limit: usize) -> Self {
        IssuedStore {
            entries: Mutex::new(HashMap::new()),
            limit: limit.max(1),
        }
    }

    pub fn insert(&self, creds: IssuedCredentials, now: SystemTime) {
        let mut entries = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries.retain(|_, c| c.expiration + KEEP_EXPIRED > now);
        while entries.len() >= self.limit {
            let Some(oldest) = entries
                .values()
                .min_by_key(|c| c.expiration)
                .map(|c| c.access_key_id.clone())
            else {
                break;
            };
            entries.remove(&oldest);
        }
        entries.insert(creds.access_key_id.clone(), creds);
    }

    pub fn get(&self, access_key_id: &str) -> Option<IssuedCredentials> {
        let entries = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        entries.get(access_key_id).cloned()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        match self.entries.lock() {
            Ok(g) => g.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(id: &str, expiration: SystemTime) -> IssuedCredentials {
        IssuedCredentials {
            access_key_id: id.into(),
            secret_access_key: "SECRET".into(),
            session_token: "TOKEN".into(),
            expiration,
            assumed_role_arn: "arn".into(),
            assumed_role_id: "id".into(),
            account: "111122223333".into(),
            session: Default::default(),
            session_tags: Default::default(),
        }
    }

    #[test]
    fn long_expired_entries_should_be_evicted_and_the_store_bounded() {
        let store = IssuedStore::with_limit(100);
        let now = SystemTime::now();
        store.insert(
            creds("OLD", now - KEEP_EXPIRED - Duration::from_secs(1)),
            now,
        );
        assert!(store.get("OLD").is_some());
        store.insert(creds("RECENT", now - Duration::from_secs(1)), now);
        store.insert(creds("NEW", now + Duration::from_secs(60)), now);
        assert!(store.get("OLD").is_none());
        assert!(store.get("RECENT").is_some());
        for i in 0..105 {
            store.insert(
                creds(&format!("K{i}"), now + Duration::from_secs(i as u64)),
                now,
            );
        }
        assert_eq!(store.len(), 100);
        assert!(store.get("K104").is_some() && store.get("K0").is_none());
        assert!(!format!("{:?}", creds("X", now)).contains("SECRET"));
    }
}
