//! The one task that calls the credential source (STS or the Pod Identity agent). Being the only caller is what makes the refresh
//! single-flight: requests read the cache and never call STS themselves.
//!
//! Policy (docs/contract.md §4, "Refresh and failure"): refresh when the remaining lifetime falls
//! below `min(--refresh-before, lifetime / 2)`, moved earlier by a random 0-10 %
//! of that window; on failure retry with exponential back-off and jitter from 1 s
//! to 60 s; a token rotation cuts the wait short when the last call failed, the
//! cache is empty or a refresh is due.
//!
//! Time comes from one place, the store's [`Clock`](crate::clock::Clock): "now"
//! for every decision and the sleeps until the next attempt. So the refresher
//! runs the same on its own thread and runtime in production (`serve.rs`) and
//! under a test's paused tokio clock, where `tests.rs` drives hours of refreshes,
//! outages and back-off against a scripted
//! [`AssumeRole`](crate::sidecar::sts::AssumeRole) in milliseconds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::Notify;

use super::{safety_margin, CredentialStore, Unavailable};
use crate::clock::{format_timestamp, unix_seconds};
use crate::sidecar::metrics::Metrics;
use crate::sidecar::source::{CredentialSource, SourceError};
use crate::sidecar::sts::{ErrorClass, StsError};

/// How long before expiry to refresh, before jitter:
/// `min(refresh_before, lifetime / 2)`, but never less than twice the safety
/// margin, so a refresh always starts while the credentials are still served.
pub(crate) fn refresh_window(refresh_before: Duration, lifetime: Duration) -> Duration {
    refresh_before
        .min(lifetime / 2)
        .max(safety_margin(lifetime) * 2)
}

/// Exponential back-off with jitter: 1 s, 2 s, 4 s ... 60 s, each drawn from
/// the upper half of its step so retries from a fleet spread out.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    attempt: u32,
    base: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            attempt: 0,
            base,
            max,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }
}

/// Inputs of the refresher that do not change while it runs.
#[derive(Debug, Clone)]
pub(crate) struct RefreshSettings {
    /// The role's name (`default` with one role): the metrics' `role` label.
    pub role: String,
    pub role_arn: String,
    pub session_name: String,
    pub duration: Duration,
    pub refresh_before: Duration,
    pub token_file: PathBuf,
}

/// The refresher task.
pub(crate) struct Refresher<S> {
    pub store: Arc<CredentialStore>,
    /// The source of base credentials (STS for web identity, or the Pod
    /// Identity agent): `crate::source`.
    pub sts: S,
    pub settings: RefreshSettings,
    pub metrics: Arc<Metrics>,
    /// Signalled by the token watcher on every rotation.
    pub rotated: Arc<Notify>,
    /// Signalled to call STS at once, whatever the cache holds (`dev`'s
    /// "expire now": the emulator has revoked what is cached).
    pub refresh_now: Arc<Notify>,
}

/// Everything a refresher needs but its source: `serve` builds one per role,
/// and the tests one per scripted source.
pub(crate) struct RefresherParts {
    pub store: Arc<CredentialStore>,
    pub settings: RefreshSettings,
    pub metrics: Arc<Metrics>,
    pub rotated: Arc<Notify>,
    pub refresh_now: Arc<Notify>,
}

impl RefresherParts {
    /// The refresher over `source`.
    pub fn with<S: CredentialSource>(self, source: S) -> Refresher<S> {
        Refresher {
            store: self.store,
            sts: source,
            settings: self.settings,
            metrics: self.metrics,
            rotated: self.rotated,
            refresh_now: self.refresh_now,
        }
    }
}

/// What the last attempt left behind, for deciding whether a rotation should cut
/// the wait short.
enum Outcome {
    /// Credentials obtained; refresh at this time.
    Fresh {
        refresh_at: SystemTime,
    },
    Failed,
}

impl<S: CredentialSource> Refresher<S> {
    /// Runs until the task is aborted.
    pub async fn run(self) {
        let mut backoff = Backoff::default();
        loop {
            let (outcome, wait) = match self.attempt().await {
                Ok(refresh_at) => {
                    backoff.reset();
                    let wait = refresh_at
                        .duration_since(self.store.clock().now())
                        .unwrap_or_default();
                    (Outcome::Fresh { refresh_at }, wait)
                }
                Err(()) => (Outcome::Failed, backoff.next_delay()),
            };
            // The store's clock decides when a refresh is due, so it also
            // measures the wait: a test that pauses time pauses both.
            let mut sleep = self.store.clock().sleep(wait);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    _ = self.rotated.notified() => {
                        let due = match &outcome {
                            Outcome::Failed => true,
                            Outcome::Fresh { refresh_at } => {
                                self.store.cached().is_none()
                                    || self.store.clock().now() >= *refresh_at
                            }
                        };
                        if due {
                            tracing::info!("token rotated while a refresh was due or failing; calling STS now");
                            break;
                        }
                    }
                    _ = self.refresh_now.notified() => {
                        tracing::info!("a refresh was asked for; calling STS now");
                        break;
                    }
                }
            }
        }
    }

    /// One call to the source with a freshly read token. On success returns
    /// when to refresh next; on failure the store and metrics have recorded why.
    async fn attempt(&self) -> Result<SystemTime, ()> {
        let s = &self.settings;
        let started = self.store.clock().now();
        let creds = match self.sts.fetch(s).await {
            Ok(creds) => creds,
            Err(SourceError::Token(e)) => {
                // Say "keeping" only when there is something servable to keep.
                let cache = if self.store.current().is_some() {
                    "keeping the cached credentials"
                } else {
                    "no valid credentials are cached"
                };
                tracing::error!(
                    error = %e,
                    "cannot read the {}; {cache}",
                    self.sts.kind().token_name()
                );
                self.metrics.sts_error(&s.role, e.code());
                self.store.record_failure(Unavailable {
                    code: e.code().to_string(),
                    message: e.to_string(),
                    terminal: false,
                });
                return Err(());
            }
            Err(SourceError::Refused { error, token }) => {
                self.fail(&error, token.as_deref());
                return Err(());
            }
        };
        let called = self.sts.kind().called();
        let now = self.store.clock().now();
        let lifetime = creds.expiration.duration_since(now).unwrap_or_default();
        if lifetime <= safety_margin(creds.expiration.duration_since(started).unwrap_or_default())
            || lifetime.is_zero()
        {
            let e = StsError {
                code: "CredentialsAlreadyExpired".into(),
                message: format!(
                    "{called} returned credentials expiring at {}, which is not in the future of this machine's clock; check the clock",
                    format_timestamp(creds.expiration)
                ),
                class: ErrorClass::Retryable,
            };
            self.fail(&e, None);
            return Err(());
        }
        let window = refresh_window(s.refresh_before, lifetime);
        let jittered = window + window.mul_f64(rand::rng().random_range(0.0..0.1));
        let refresh_at = creds.expiration - jittered.min(lifetime);
        self.metrics
            .sts_success(&s.role, unix_seconds(creds.expiration));
        tracing::info!(
            access_key_id = %creds.access_key_id,
            expiration = %format_timestamp(creds.expiration),
            refresh_in_s = refresh_at.duration_since(now).unwrap_or_default().as_secs(),
            "obtained credentials from {called}"
        );
        self.store.install(creds, now);
        Ok(refresh_at)
    }

    fn fail(&self, e: &StsError, token: Option<&str>) {
        let called = self.sts.kind().called();
        self.metrics.sts_error(&self.settings.role, &e.code);
        let still_serving = self
            .store
            .current()
            .map(|g| format_timestamp(g.serve_until()));
        match e.class {
            ErrorClass::Retryable => tracing::warn!(
                code = %e.code, error = %e.message,
                serving_cached_until = still_serving.as_deref().unwrap_or("-"),
                "{called}: the call failed; retrying with back-off"
            ),
            ErrorClass::Token => tracing::error!(
                code = %e.code, error = %e.message,
                token = token.unwrap_or("not a JWT"),
                serving_cached_until = still_serving.as_deref().unwrap_or("-"),
                "{called} refused the token: a token or configuration problem"
            ),
            ErrorClass::Configuration => tracing::error!(
                code = %e.code, error = %e.message,
                token = token.unwrap_or("not a JWT"),
                serving_cached_until = still_serving.as_deref().unwrap_or("-"),
                "{called} refused the request: a configuration problem"
            ),
        }
        self.store.record_failure(Unavailable {
            code: e.code.clone(),
            message: e.message.clone(),
            terminal: e.class != ErrorClass::Retryable,
        });
    }
}

#[cfg(test)]
mod tests;
