//! The service-account token `dev` writes, as kubelet would: signed by the
//! run's issuer, swapped in through `..data`, rotated at 80 % of its lifetime,
//! replaced by an expired one inside each `--expired-token` window (the
//! [`Schedule`]), and rotated at once on demand ([`Bench::rotate`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Bench;
use crate::sidecar::source::SourceKind;
use crate::sidecar::token::projected::ProjectedTokenDir;
use crate::tools::emulator::pod_identity;
use crate::tools::emulator::{Issuer, IssuerError, ServiceAccountToken, Window};

pub(super) const NAMESPACE: &str = "default";
pub(super) const SERVICE_ACCOUNT: &str = "dev";
const AUDIENCE: &str = crate::flags::DEFAULT_AUDIENCE;

/// The token file's schedule: fresh tokens every `rotate_every`, and an
/// expired token inside each `--expired-token` window. Pure, so that its
/// tests need no clock.
#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    pub expired_tokens: Vec<Window>,
}

impl Schedule {
    /// Whether the token file should hold an expired token at `elapsed`.
    pub(crate) fn expired_at(&self, elapsed: Duration) -> bool {
        self.expired_tokens.iter().any(|w| w.contains(elapsed))
    }

    /// The next time after `elapsed` at which a window opens or closes.
    pub(crate) fn next_edge(&self, elapsed: Duration) -> Option<Duration> {
        self.expired_tokens
            .iter()
            .flat_map(|w| [w.start, w.end()])
            .filter(|t| *t > elapsed)
            .min()
    }
}

/// Why the token writer woke.
enum Wake {
    Tick,
    Demand,
    Edge,
}

/// The pod every token of this run is bound to (`kubernetes.io` claims): a
/// name `app-<5 hex>` and a uid, the same for the whole run, as a pod's are
/// (the session name keeps the suffix; Pod Identity's session tags show both).
fn pod() -> &'static (String, String) {
    static POD: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    POD.get_or_init(|| {
        let hex = crate::sidecar::endpoints::random_token();
        let uid = format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        );
        (format!("app-{}", &hex[32..37]), uid)
    })
}

/// Signs a token for `dev`'s service account and pod, valid `ttl`, for
/// `source`'s audience. An expired one was issued a lifetime and a minute ago.
pub(super) fn mint(
    issuer: &Issuer,
    ttl: Duration,
    expired: bool,
    source: SourceKind,
) -> Result<String, IssuerError> {
    let now = SystemTime::now();
    let (pod, pod_uid) = pod();
    let token = ServiceAccountToken {
        namespace: NAMESPACE,
        service_account: SERVICE_ACCOUNT,
        audience: match source {
            SourceKind::WebIdentity => AUDIENCE,
            SourceKind::PodIdentity => pod_identity::AUDIENCE,
        },
        issued_at: if expired {
            now.checked_sub(ttl + Duration::from_secs(60))
                .unwrap_or(SystemTime::UNIX_EPOCH)
        } else {
            now
        },
        ttl,
    };
    issuer.mint_for_pod(&token, Some((pod, pod_uid)))
}

/// Rotates the token at 80 % of its lifetime, as kubelet does; writes an
/// expired token inside each window of `schedule`, and a fresh one on demand.
/// Runs until aborted.
pub(super) fn spawn(
    issuer: Issuer,
    mut projected: ProjectedTokenDir,
    ttl: Duration,
    schedule: Schedule,
    bench: Arc<Bench>,
    source: SourceKind,
) -> tokio::task::JoinHandle<()> {
    let rotate_every = ttl.mul_f64(0.8);
    let started = bench.started;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(rotate_every);
        tick.tick().await;
        loop {
            let edge = schedule.next_edge(started.elapsed());
            let wake = tokio::select! {
                _ = tick.tick() => Wake::Tick,
                _ = bench.rotate_now.notified() => Wake::Demand,
                _ = tokio::time::sleep_until(started + edge.unwrap_or_default()), if edge.is_some() => Wake::Edge,
            };
            let in_window = schedule.expired_at(started.elapsed());
            let expired = match wake {
                Wake::Demand => false,
                // kubelet's rotation does not end an --expired-token window.
                Wake::Tick if in_window => continue,
                Wake::Tick => false,
                Wake::Edge => in_window,
            };
            match mint(&issuer, ttl, expired, source).map(|t| projected.write(&t)) {
                Ok(Ok(())) if expired => {
                    bench.expired_tokens_written.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("dev: wrote an EXPIRED web-identity token (--expired-token)");
                }
                Ok(Ok(())) => {
                    bench.rotations.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        next_in_s = rotate_every.as_secs(),
                        "dev: wrote a new web-identity token (kubelet ..data swap)"
                    );
                }
                Ok(Err(e)) => tracing::error!(error = %e, "dev: cannot write the new token"),
                Err(e) => tracing::error!(error = %e, "dev: cannot sign a new token"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_schedule_should_open_and_close_expired_windows() {
        let s = Schedule {
            expired_tokens: vec![
                Window {
                    start: Duration::from_secs(10),
                    length: Duration::from_secs(5),
                },
                Window {
                    start: Duration::from_secs(30),
                    length: Duration::from_secs(1),
                },
            ],
        };
        let secs = Duration::from_secs;
        assert!(!s.expired_at(secs(9)));
        assert!(s.expired_at(secs(10)));
        assert!(s.expired_at(secs(14)));
        assert!(!s.expired_at(secs(15)));
        assert_eq!(s.next_edge(secs(0)), Some(secs(10)));
        assert_eq!(s.next_edge(secs(10)), Some(secs(15)));
        assert_eq!(s.next_edge(secs(15)), Some(secs(30)));
        assert_eq!(s.next_edge(secs(31)), None);
    }
}
