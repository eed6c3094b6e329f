//! The emulator's memory of what it issued and what it was shown: the ground
//! truth behind `dev`'s verdict (docs/contract.md, "dev as a test bench").
//!
//! # What is recorded
//!
//! - Per credential set: the access key id, the session (assumed-role ARN), when
//!   it was issued, when it expires, when it was **superseded** (the emulator
//!   issued a newer set for the same role and session name) and when it was
//!   **revoked** (a fault expired it before its `Expiration`).
//! - Per signed call (`GetCallerIdentity`, S3), one class:
//!   - `live`: accepted, and the newest set of its session;
//!   - `superseded`: accepted, but a newer set had been issued. Real AWS accepts
//!     these until they expire, so this is information, not a fault: an SDK
//!     keeps using credentials until its own refresh window;
//!   - `expired`: refused because the set was past the `Expiration` it was
//!     issued with — the app kept credentials it had been told were over;
//!   - `revoked`: refused because a fault (`expire now`) ended the set early;
//!     not the app's fault, shown apart from `expired`;
//!   - `never_issued`: an access key id the emulator never issued, or a session
//!     token that is not the one issued with it;
//!   - `rejected`: any other refusal (bad signature, malformed or unsigned).
//! - `AssumeRoleWithWebIdentity` outcomes by error code, injected faults included.
//! - Calls refused `AccessDenied` by the session policy of the credentials
//!   that signed them (accepted as signed calls above: the credentials were
//!   good), by session, action and resource, with counts.
//!
//! Never recorded: secrets and session tokens. Bounded: at most [`MAX_SETS`]
//! sets are kept in detail (oldest dropped; the totals keep counting).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use super::store::IssuedCredentials;
use crate::clock::format_timestamp;

/// Sets kept in detail.
pub(crate) const MAX_SETS: usize = 10_000;
/// Distinct never-issued key ids kept by name.
const MAX_UNKNOWN_KEYS: usize = 100;
/// Distinct denied (session, action, resource) kept.
const MAX_DENIALS: usize = 100;

/// Calls a session policy refused: one session, one action, one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    /// The assumed-role ARN that made the calls.
    pub session: String,
    /// `s3:GetObject`, `sts:AssumeRole`, ...
    pub action: String,
    /// `arn:aws:s3:::bucket/key`, a role ARN, ...
    pub resource: String,
    pub calls: u64,
}

/// The class of one signed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallClass {
    Live,
    Superseded,
    Expired,
    Revoked,
    NeverIssued,
    Rejected,
}

/// Calls counted by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    pub live: u64,
    pub superseded: u64,
    pub expired: u64,
    pub revoked: u64,
    pub never_issued: u64,
    pub rejected: u64,
}

impl CallCounts {
    fn add(&mut self, class: CallClass) {
        let n = match class {
            CallClass::Live => &mut self.live,
            CallClass::Superseded => &mut self.superseded,
            CallClass::Expired => &mut self.expired,
            CallClass::Revoked => &mut self.revoked,
            CallClass::NeverIssued => &mut self.never_issued,
            CallClass::Rejected => &mut self.rejected,
        };
        *n += 1;
    }

    /// Every call seen.
    pub fn total(&self) -> u64 {
        self.live
            + self.superseded
            + self.expired
            + self.revoked
            + self.never_issued
            + self.rejected
    }

    /// Calls the emulator accepted.
    pub fn accepted(&self) -> u64 {
        self.live + self.superseded
    }
}

/// One issued credential set, as the report shows it (no secret, no token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetRecord {
    pub access_key_id: String,
    /// The assumed-role ARN: role and session name.
    pub session: String,
    #[serde(serialize_with = "timestamp")]
    pub issued_at: SystemTime,
    #[serde(serialize_with = "timestamp")]
    pub expires_at: SystemTime,
    #[serde(serialize_with = "optional_timestamp")]
    pub superseded_at: Option<SystemTime>,
    #[serde(serialize_with = "optional_timestamp")]
    pub revoked_at: Option<SystemTime>,
    pub calls: CallCounts,
    /// The first and last call refused as expired.
    #[serde(serialize_with = "optional_timestamp")]
    pub first_expired_use: Option<SystemTime>,
    #[serde(serialize_with = "optional_timestamp")]
    pub last_expired_use: Option<SystemTime>,
    /// The session tags it carries: Pod Identity's six, or a chained
    /// session's own and inherited transitive ones.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub session_tags: BTreeMap<String, String>,
    /// The session policy it was issued with, described (never the document).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_policy: Option<String>,
}

fn timestamp<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_timestamp(*t))
}

fn optional_timestamp<S: serde::Serializer>(
    t: &Option<SystemTime>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_timestamp(*t)),
        None => s.serialize_none(),
    }
}

/// Everything recorded so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LedgerSnapshot {
    /// Credential sets issued (all of them, even those no longer kept in detail).
    pub sets_issued: u64,
    /// `AssumeRoleWithWebIdentity` refusals by error code.
    pub assume_errors: BTreeMap<String, u64>,
    /// Signed calls by class.
    pub calls: CallCounts,
    /// Signed calls by service (`sts`, `s3`).
    pub calls_by_service: BTreeMap<String, u64>,
    /// The sets, oldest first.
    pub sets: Vec<SetRecord>,
    /// Access key ids presented that the emulator never issued, with counts.
    pub never_issued_keys: BTreeMap<String, u64>,
    /// Calls refused by a session policy, first seen first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub session_policy_denials: Vec<Denial>,
}

impl LedgerSnapshot {
    /// Distinct sets with at least one accepted call.
    pub fn sets_used(&self) -> usize {
        self.sets.iter().filter(|s| s.calls.accepted() > 0).count()
    }

    /// Sets the app presented after their `Expiration`.
    pub fn expired_sets(&self) -> impl Iterator<Item = &SetRecord> {
        self.sets.iter().filter(|s| s.calls.expired > 0)
    }
}

#[derive(Debug, Default)]
struct Inner {
    snapshot: LedgerSnapshot,
    /// Access key id to its position in `sets` (adjusted by `dropped`).
    index: HashMap<String, u64>,
    /// Sets dropped from the front of `sets`.
    dropped: u64,
    /// The newest set of each session.
    latest: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Inner {
    fn set_mut(&mut self, access_key_id: &str) -> Option<&mut SetRecord> {
        let pos = *self.index.get(access_key_id)?;
        let at = usize::try_from(pos.checked_sub(self.dropped)?).ok()?;
        self.snapshot.sets.get_mut(at)
    }
}

/// The record; shared by the emulator (which writes) and `dev` (which reads).
#[derive(Debug, Default)]
pub struct Ledger {
    /// A std `Mutex`: no `.await` happens while it is held.
    inner: Mutex<Inner>,
}

impl Ledger {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A set was issued at `now`; the session's previous set is superseded.
    pub(crate) fn issued(&self, creds: &IssuedCredentials, now: SystemTime) {
        let mut inner = self.lock();
        let session = creds.assumed_role_arn.clone();
        if let Some(previous) = inner
            .latest
            .insert(session.clone(), creds.access_key_id.clone())
        {
            if let Some(set) = inner.set_mut(&previous) {
                set.superseded_at.get_or_insert(now);
            }
        }
        if inner.snapshot.sets.len() >= MAX_SETS {
            inner.snapshot.sets.remove(0);
            if let Some(old) = inner.order.pop_front() {
                inner.index.remove(&old);
            }
            inner.dropped += 1;
        }
        let pos = inner.dropped + inner.snapshot.sets.len() as u64;
        inner.index.insert(creds.access_key_id.clone(), pos);
        inner.order.push_back(creds.access_key_id.clone());
        inner.snapshot.sets_issued += 1;
        inner.snapshot.sets.push(SetRecord {
            access_key_id: creds.access_key_id.clone(),
            session,
            issued_at: now,
            expires_at: creds.expiration,
            superseded_at: None,
            revoked_at: None,
            calls: CallCounts::default(),
            first_expired_use: None,
            last_expired_use: None,
            session_tags: creds.session_tags.clone(),
            session_policy: creds.session.session_policy.as_ref().map(|p| p.describe()),
        });
    }

    /// `AssumeRoleWithWebIdentity` was refused with `code`.
    pub(crate) fn assume_refused(&self, code: &str) {
        *self
            .lock()
            .snapshot
            .assume_errors
            .entry(code.to_string())
            .or_default() += 1;
    }

    /// Every set still live at `now` expires at `now`. Returns how many.
    pub fn revoke_all(&self, now: SystemTime) -> usize {
        let mut inner = self.lock();
        let mut n = 0;
        for set in &mut inner.snapshot.sets {
            if set.expires_at > now && set.revoked_at.is_none() {
                set.revoked_at = Some(now);
                n += 1;
            }
        }
        n
    }

    /// When the set really ends: its `Expiration`, or earlier if revoked.
    pub(crate) fn effective_expiration(
        &self,
        access_key_id: &str,
        issued: SystemTime,
    ) -> SystemTime {
        let mut inner = self.lock();
        match inner.set_mut(access_key_id).and_then(|s| s.revoked_at) {
            Some(r) => r.min(issued),
            None => issued,
        }
    }

    /// A signed call for `service`, presenting `access_key_id` (when one could be
    /// read), ended in `class` at `now`.
    pub(crate) fn call(
        &self,
        service: &str,
        access_key_id: Option<&str>,
        class: CallClass,
        now: SystemTime,
    ) -> CallClass {
        let mut inner = self.lock();
        *inner
            .snapshot
            .calls_by_service
            .entry(service.to_string())
            .or_default() += 1;
        let mut class = class;
        match access_key_id.and_then(|k| inner.set_mut(k)) {
            Some(set) => {
                if class == CallClass::Live && set.superseded_at.is_some_and(|t| now >= t) {
                    class = CallClass::Superseded;
                }
                if class == CallClass::Expired && set.revoked_at.is_some() && now < set.expires_at {
                    class = CallClass::Revoked;
                }
                if class == CallClass::Expired {
                    set.first_expired_use.get_or_insert(now);
                    set.last_expired_use = Some(now);
                }
                set.calls.add(class);
            }
            None => {
                if let (CallClass::NeverIssued, Some(k)) = (class, access_key_id) {
                    let keys = &mut inner.snapshot.never_issued_keys;
                    if keys.contains_key(k) || keys.len() < MAX_UNKNOWN_KEYS {
                        *keys.entry(k.to_string()).or_default() += 1;
                    }
                }
            }
        }
        inner.snapshot.calls.add(class);
        class
    }

    /// A call by `session` for `action` on `resource` was refused by the
    /// session policy of its credentials.
    pub(crate) fn denied(&self, session: &str, action: &str, resource: &str) {
        let mut inner = self.lock();
        let denials = &mut inner.snapshot.session_policy_denials;
        if let Some(d) = denials
            .iter_mut()
            .find(|d| d.session == session && d.action == action && d.resource == resource)
        {
            d.calls += 1;
        } else if denials.len() < MAX_DENIALS {
            denials.push(Denial {
                session: session.to_string(),
                action: action.to_string(),
                resource: resource.to_string(),
                calls: 1,
            });
        }
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> LedgerSnapshot {
        self.lock().snapshot.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn creds(id: &str, session: &str, expiration: SystemTime) -> IssuedCredentials {
        IssuedCredentials {
            access_key_id: id.into(),
            secret_access_key: "SECRET-MARKER".into(),
            session_token: "TOKEN-MARKER".into(),
            expiration,
            assumed_role_arn: session.into(),
            assumed_role_id: "AROA:s".into(),
            account: "111122223333".into(),
            session: Default::default(),
            session_tags: Default::default(),
        }
    }

    #[test]
    fn calls_should_be_classified_against_issue_supersession_and_revocation() {
        let ledger = Ledger::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Duration::from_secs;
        ledger.issued(&creds("A", "arn/s1", t0 + s(30)), t0);
        assert_eq!(
            ledger.call("sts", Some("A"), CallClass::Live, t0 + s(1)),
            CallClass::Live
        );
        ledger.issued(&creds("B", "arn/s1", t0 + s(45)), t0 + s(15));
        // Another session does not supersede s1's set.
        ledger.issued(&creds("C", "arn/s2", t0 + s(45)), t0 + s(16));
        assert_eq!(
            ledger.call("s3", Some("A"), CallClass::Live, t0 + s(20)),
            CallClass::Superseded
        );
        ledger.call("s3", Some("A"), CallClass::Expired, t0 + s(31));
        ledger.call("s3", Some("A"), CallClass::Expired, t0 + s(40));
        assert_eq!(ledger.revoke_all(t0 + s(41)), 2);
        assert_eq!(ledger.effective_expiration("B", t0 + s(45)), t0 + s(41));
        assert_eq!(
            ledger.call("sts", Some("B"), CallClass::Expired, t0 + s(42)),
            CallClass::Revoked
        );
        ledger.call("sts", Some("NOPE"), CallClass::NeverIssued, t0 + s(42));
        ledger.assume_refused("ServiceUnavailable");

        let snap = ledger.snapshot();
        assert_eq!(snap.sets_issued, 3);
        assert_eq!(snap.calls.total(), 6);
        assert_eq!(snap.calls.expired, 2);
        assert_eq!(snap.calls.revoked, 1);
        assert_eq!(snap.sets_used(), 1);
        let expired: Vec<_> = snap
            .expired_sets()
            .map(|s| s.access_key_id.as_str())
            .collect();
        assert_eq!(expired, ["A"]);
        assert_eq!(snap.sets[0].superseded_at, Some(t0 + s(15)));
        assert_eq!(snap.sets[0].last_expired_use, Some(t0 + s(40)));
        assert_eq!(snap.never_issued_keys["NOPE"], 1);
        assert_eq!(snap.calls_by_service["s3"], 3);
        let json = serde_json::to_string(&snap).unwrap();
        assert!(!json.contains("MARKER"), "{json}");
    }

    #[test]
    fn the_ledger_should_stay_bounded() {
        let ledger = Ledger::default();
        let t0 = SystemTime::UNIX_EPOCH;
        for i in 0..(MAX_SETS + 5) {
            ledger.issued(&creds(&format!("K{i}"), "arn/s", t0), t0);
        }
        let snap = ledger.snapshot();
        assert_eq!(snap.sets.len(), MAX_SETS);
        assert_eq!(snap.sets_issued, (MAX_SETS + 5) as u64);
        assert_eq!(snap.sets[0].access_key_id, "K5");
        assert_eq!(
            ledger.call("sts", Some("K6"), CallClass::Live, t0),
            CallClass::Superseded
        );
    }
}
