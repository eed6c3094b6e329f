//! Role credentials: the secret-bearing type, the cache that serves them, and the
//! refresher task that keeps the cache fresh.
//!
//! The cache holds one immutable [`Generation`] at a time: the credentials plus
//! the ECS and IMDS response bodies serialised once when STS answered, so the
//! request path only loads an `Arc` (lock-free, via `arc-swap`) and checks the
//! clock. Whether a generation may still be served is decided in one place,
//! [`CredentialStore::current`]: never inside the safety margin before expiry.

mod refresher;

pub(crate) use refresher::{RefreshSettings, RefresherParts};

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use serde::Serialize;

use crate::clock::{format_timestamp, Clock};

pub use crate::sidecar::credentials::Credentials;

/// What the endpoints need to know about the role, fixed at start-up.
#[derive(Debug, Clone)]
pub struct RoleInfo {
    /// The role ARN that was configured (the ECS body's `RoleArn`); empty when
    /// none was (Pod Identity: the agent does not say which role it assumed).
    pub role_arn: String,
    /// The account of the role (the ECS body's `AccountId` when STS gives no
    /// assumed-role ARN).
    pub account: String,
}

/// One set of credentials as served, with its bodies serialised once.
#[derive(Debug)]
pub struct Generation {
    pub credentials: Credentials,
    /// When STS answered: IMDS `LastUpdated` and the start of the lifetime.
    pub obtained: SystemTime,
    /// `min(60 s, lifetime / 4)`: inside this much of expiry nothing is served.
    pub safety_margin: Duration,
    /// `GET /v1/credentials` body.
    pub ecs_body: Bytes,
    /// IMDS `security-credentials/<role>` body.
    pub imds_body: Bytes,
    /// IMDS `iam/info` body.
    pub iam_info_body: Bytes,
}

/// The safety margin of a lifetime: `min(60 s, lifetime / 4)`.
pub(crate) fn safety_margin(lifetime: Duration) -> Duration {
    Duration::from_secs(60).min(lifetime / 4)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EcsBody<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: &'a str,
    account_id: &'a str,
    /// Left out when no role was configured (Pod Identity names none).
    #[serde(skip_serializing_if = "str::is_empty")]
    role_arn: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImdsBody<'a> {
    code: &'a str,
    last_updated: &'a str,
    #[serde(rename = "Type")]
    kind: &'a str,
    access_key_id: &'a str,
    secret_access_key: &'a str,
    token: &'a str,
    expiration: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct IamInfoBody<'a> {
    code: &'a str,
    last_updated: &'a str,
    instance_profile_arn: &'a str,
    instance_profile_id: &'a str,
}

impl Generation {
    /// Serialises the bodies of a new generation.
    pub fn new(credentials: Credentials, obtained: SystemTime, role: &RoleInfo) -> Generation {
        let lifetime = credentials
            .expiration
            .duration_since(obtained)
            .unwrap_or_default();
        let expiration = format_timestamp(credentials.expiration);
        let last_updated = format_timestamp(obtained);
        // The account comes from the source when it named one (Pod Identity's
        // AccountId), else from the assumed-role ARN when STS sent one
        // (arn:aws:sts::<account>:assumed-role/...), else from the configured role.
        let is_account = |a: &&str| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit());
        let account = credentials
            .account_id
            .as_deref()
            .filter(is_account)
            .or_else(|| {
                credentials
                    .assumed_role_arn
                    .as_deref()
                    .and_then(|arn| arn.split(':').nth(4))
                    .filter(is_account)
            })
            .unwrap_or(&role.account)
            .to_string();
        let ecs = EcsBody {
            access_key_id: &credentials.access_key_id,
            secret_access_key: credentials.secret_access_key(),
            token: credentials.session_token(),
            expiration: &expiration,
            account_id: &account,
            role_arn: &role.role_arn,
        };
        let imds = ImdsBody {
            code: "Success",
            last_updated: &last_updated,
            kind: "AWS-HMAC",
            access_key_id: &credentials.access_key_id,
            secret_access_key: credentials.secret_access_key(),
            token: credentials.session_token(),
            expiration: &expiration,
        };
        // Without a configured role (Pod Identity) the profile is named after
        // the IMDS role name, in the account the source named.
        let role_arn = if role.role_arn.is_empty() {
            format!(
                "arn:aws:iam::{account}:role/{}",
                crate::sidecar::source::pod_identity::UNNAMED_ROLE
            )
        } else {
            role.role_arn.clone()
        };
        let profile_arn = instance_profile_arn(&role_arn);
        let info = IamInfoBody {
            code: "Success",
            last_updated: &last_updated,
            instance_profile_arn: &profile_arn,
            instance_profile_id: &instance_profile_id(&role_arn),
        };
        Generation {
            safety_margin: safety_margin(lifetime),
            ecs_body: json_bytes(&ecs),
            imds_body: json_bytes(&imds),
            iam_info_body: json_bytes(&info),
            credentials,
            obtained,
        }
    }

    /// The moment after which this generation is no longer served.
    pub fn serve_until(&self) -> SystemTime {
        self.credentials.expiration - self.safety_margin
    }
}

/// Serialising plain strings into JSON cannot fail; an empty body would be
/// refused by every SDK, which is the right outcome if it ever did.
fn json_bytes<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// `arn:<partition>:iam::<account>:instance-profile/<role path and name>`: the
/// instance profile an EC2 instance with this role would have.
fn instance_profile_arn(role_arn: &str) -> String {
    role_arn.replacen(":role/", ":instance-profile/", 1)
}

/// A stable, instance-profile-shaped id (`AIPA` + 17 characters) derived from the
/// role ARN, so it does not change between generations.
fn instance_profile_id(role_arn: &str) -> String {
    crate::id::stable_id("AIPA", role_arn)
}

/// Why no credentials can be served right now: the `{"code","message"}` of a 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub code: String,
    pub message: String,
    /// True when waiting will not help (a configuration or token problem).
    pub terminal: bool,
}

/// The cache shared by the refresher (writer) and the request handlers (readers).
/// Its clock is the refresher's too: one source of time for every expiry
/// decision and every wait.
pub struct CredentialStore {
    current: ArcSwapOption<Generation>,
    /// The last refresh failure; cleared by a success. A std `Mutex`: it is held
    /// only to clone or replace the value, never across an `.await`.
    last_error: Mutex<Option<Unavailable>>,
    /// Bumped on every success or failure, to wake requests waiting at cold start.
    version: tokio::sync::watch::Sender<u64>,
    /// Decides expiry and measures the cold-start wait.
    clock: Arc<dyn Clock>,
    /// Fixed at start-up, used to build each generation's bodies.
    pub role: RoleInfo,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl CredentialStore {
    pub fn new(role: RoleInfo, clock: Arc<dyn Clock>) -> Self {
        CredentialStore {
            current: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
            version: tokio::sync::watch::Sender::new(0),
            clock,
            role,
        }
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Installs a new generation and clears the last error.
    pub fn install(&self, credentials: Credentials, obtained: SystemTime) -> Arc<Generation> {
        let generation = Arc::new(Generation::new(credentials, obtained, &self.role));
        self.current.store(Some(generation.clone()));
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.version.send_modify(|v| *v += 1);
        generation
    }

    /// Records a failed refresh. The cached generation, if any, stays.
    pub(crate) fn record_failure(&self, failure: Unavailable) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(failure);
        self.version.send_modify(|v| *v += 1);
    }

    /// Sees every install and every recorded failure: what a watcher of the
    /// store's state (`dev`'s report) waits on.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// The last failure, if the last refresh failed.
    pub(crate) fn last_error(&self) -> Option<Unavailable> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The cached generation, valid or not.
    pub fn cached(&self) -> Option<Arc<Generation>> {
        self.current.load_full()
    }

    /// The generation to serve, if one is outside its safety margin now.
    pub fn current(&self) -> Option<Arc<Generation>> {
        let g = self.current.load_full()?;
        (self.clock.now() < g.serve_until()).then_some(g)
    }

    /// True once valid credentials are cached: readiness.
    pub(crate) fn is_ready(&self) -> bool {
        self.current().is_some()
    }

    /// The generation to serve, or why there is none. At cold start (nothing cached
    /// yet) this waits up to `cold_start_wait` for the refresher, which is already
    /// calling STS: requests never call STS themselves (single flight).
    pub async fn get(&self, cold_start_wait: Duration) -> Result<Arc<Generation>, Unavailable> {
        if let Some(g) = self.current() {
            return Ok(g);
        }
        if self.current.load().is_some() {
            // Cached but inside the safety margin: waiting would only delay the 503.
            return Err(self.unavailable());
        }
        let mut rx = self.version.subscribe();
        // On the store's clock, so a test with paused time decides the wait too.
        let mut timeout = self.clock.sleep(cold_start_wait);
        loop {
            if let Some(g) = self.current() {
                return Ok(g);
            }
            if let Some(e) = self.last_error().filter(|e| e.terminal) {
                return Err(e);
            }
            tokio::select! {
                // `Err` only if the sender is gone, and `self` owns it.
                changed = rx.changed() => if changed.is_ok() { continue },
                () = &mut timeout => {}
            }
            return self.current().ok_or_else(|| self.unavailable());
        }
    }

    /// The body of a 503: the last STS error, or why the cache is empty or stale.
    pub fn unavailable(&self) -> Unavailable {
        if let Some(e) = self.last_error() {
            return e;
        }
        match self.current.load_full() {
            None => Unavailable {
                code: "CredentialsNotYetAvailable".into(),
                message: "no credentials have been obtained from STS yet".into(),
                terminal: false,
            },
            Some(g) => Unavailable {
                code: "CredentialsExpiring".into(),
                message: format!(
                    "the cached credentials expire at {} and the refresh has not completed",
                    format_timestamp(g.credentials.expiration)
                ),
                terminal: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{OffsetClock, RuntimeClock};

    fn role() -> RoleInfo {
        RoleInfo {
            role_arn: "arn:aws:iam::123456789012:role/app".into(),
            account: "123456789012".into(),
        }
    }

    fn creds(expiration: SystemTime) -> Credentials {
        Credentials::new(
            "ASIAEXAMPLE",
            "SECRET-MARKER-DO-NOT-LOG",
            "TOKEN-MARKER",
            expiration,
            Some("arn:aws:sts::210987654321:assumed-role/app/s".into()),
        )
    }

    #[test]
    fn debug_should_redact_secret_and_token() {
        let s = format!("{:?}", creds(SystemTime::now()));
        assert!(s.contains("ASIAEXAMPLE"));
        assert!(!s.contains("SECRET-MARKER") && !s.contains("TOKEN-MARKER"));
    }

    #[test]
    fn bodies_should_have_every_field() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let g = Generation::new(creds(now + Duration::from_secs(3600)), now, &role());
        let ecs: serde_json::Value = serde_json::from_slice(&g.ecs_body).unwrap();
        assert_eq!(ecs["Expiration"], "2023-11-14T23:13:20Z");
        assert_eq!(ecs["AccountId"], "210987654321");
        assert_eq!(ecs["RoleArn"], "arn:aws:iam::123456789012:role/app");
        assert_eq!(ecs["Token"], "TOKEN-MARKER");
        let imds: serde_json::Value = serde_json::from_slice(&g.imds_body).unwrap();
        assert_eq!(imds["Code"], "Success");
        assert_eq!(imds["Type"], "AWS-HMAC");
        assert_eq!(imds["LastUpdated"], "2023-11-14T22:13:20Z");
        let info: serde_json::Value = serde_json::from_slice(&g.iam_info_body).unwrap();
        assert_eq!(
            info["InstanceProfileArn"],
            "arn:aws:iam::123456789012:instance-profile/app"
        );
        assert_eq!(info["InstanceProfileId"].as_str().unwrap().len(), 21);
        assert_eq!(g.safety_margin, Duration::from_secs(60));
    }

    #[test]
    fn safety_margin_should_be_a_quarter_of_short_lifetimes() {
        assert_eq!(
            safety_margin(Duration::from_secs(20)),
            Duration::from_secs(5)
        );
        assert_eq!(
            safety_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
    }

    #[tokio::test]
    async fn credentials_inside_the_margin_should_not_be_served() {
        let clock = OffsetClock::default();
        let store = CredentialStore::new(role(), Arc::new(clock.clone()));
        let now = clock.now();
        store.install(creds(now + Duration::from_secs(3600)), now);
        assert!(store.current().is_some());
        clock.advance(Duration::from_secs(3600 - 61));
        assert!(store.current().is_some());
        clock.advance(Duration::from_secs(2));
        assert!(store.current().is_none());
        let e = store.get(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.code, "CredentialsExpiring");
    }

    /// 20 s credentials are served until 15 s (a quarter of the lifetime
    /// before expiry), to the millisecond of the store's paused clock.
    #[tokio::test(start_paused = true)]
    async fn short_credentials_should_be_served_until_a_quarter_before_expiry() {
        let clock =
            RuntimeClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30));
        let store = CredentialStore::new(role(), Arc::new(clock.clone()));
        let now = clock.now();
        let g = store.install(creds(now + Duration::from_secs(20)), now);
        assert_eq!(g.safety_margin, Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(14_999)).await;
        assert!(store.is_ready());
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(!store.is_ready());
        assert!(store.current().is_none());
        assert!(store.cached().is_some(), "kept, only not served");
    }

    #[tokio::test(start_paused = true)]
    async fn cold_start_should_wait_for_the_first_generation() {
        let clock =
            RuntimeClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30));
        let store = Arc::new(CredentialStore::new(role(), Arc::new(clock.clone())));
        let s2 = store.clone();
        let waiter = tokio::spawn(async move { s2.get(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = clock.now();
        store.install(creds(now + Duration::from_secs(3600)), now);
        assert!(waiter.await.unwrap().is_ok());
        assert_eq!(clock.now(), now, "answered at the install");
    }

    #[tokio::test(start_paused = true)]
    async fn cold_start_should_give_up_after_the_wait() {
        let clock =
            RuntimeClock::starting_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30));
        let start = clock.now();
        let store = CredentialStore::new(role(), Arc::new(clock.clone()));
        let e = store.get(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.code, "CredentialsNotYetAvailable");
        assert_eq!(clock.now(), start + Duration::from_secs(5));
    }
}
