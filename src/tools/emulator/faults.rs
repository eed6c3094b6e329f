//! Faults the emulator injects on demand, for `dev` as a test bench:
//!
//! - a share of `AssumeRoleWithWebIdentity` calls fails (`--sts-fail`);
//! - windows in which every `AssumeRoleWithWebIdentity` fails (`--sts-outage`);
//! - a share of credential sets is issued with a shorter lifetime than asked
//!   (`--early-expiry`): STS may always return less than `DurationSeconds`, and
//!   an app that assumes a fixed lifetime instead of reading `Expiration` breaks.
//!
//! Failures answer `503 ServiceUnavailable` (`<Type>Receiver</Type>`), which the
//! SDKs treat as transient. Only credential issue fails: `GetCallerIdentity` and
//! S3 keep answering, so that the verdict measures how the app lives through a
//! refresh, not its retries of its own calls. Times are measured from `start`
//! on tokio's clock, so tests drive the schedule with paused time.

use std::time::Duration;

use tokio::time::Instant;

use super::xml::StsFault;

/// `LENGTH@START`: from `start` after the run began, for `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Duration,
    pub length: Duration,
}

impl Window {
    /// Whether `elapsed` (since the run began) falls inside.
    pub fn contains(&self, elapsed: Duration) -> bool {
        elapsed >= self.start && elapsed < self.start.saturating_add(self.length)
    }

    pub fn end(&self) -> Duration {
        self.start.saturating_add(self.length)
    }
}

/// What the emulator injects. The default injects nothing.
#[derive(Debug, Clone)]
pub struct Faults {
    /// When the run began; windows count from here.
    pub start: Instant,
    /// Share of `AssumeRoleWithWebIdentity` calls that fail, 0..=100.
    pub sts_fail_percent: u8,
    /// Every `AssumeRoleWithWebIdentity` fails inside these.
    pub sts_outages: Vec<Window>,
    /// Share of credential sets issued with 1/4 to 1/2 of the lifetime, 0..=100.
    pub early_expiry_percent: u8,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            start: Instant::now(),
            sts_fail_percent: 0,
            sts_outages: Vec::new(),
            early_expiry_percent: 0,
        }
    }
}

impl Faults {
    /// The injected refusal of an `AssumeRoleWithWebIdentity` at `now`, if any;
    /// `roll` is uniform in `0.0..1.0`.
    pub fn assume_fault(&self, now: Instant, roll: f64) -> Option<StsFault> {
        let elapsed = now.saturating_duration_since(self.start);
        if self.sts_outages.iter().any(|w| w.contains(elapsed)) {
            return Some(StsFault::service_unavailable(
                "Service unavailable (irsa-proxy dev: injected STS outage)",
            ));
        }
        if roll * 100.0 < f64::from(self.sts_fail_percent) {
            return Some(StsFault::service_unavailable(format!(
                "Service unavailable (irsa-proxy dev: injected failure, --sts-fail {}%)",
                self.sts_fail_percent
            )));
        }
        None
    }

    /// The lifetime to issue instead of `lifetime`; `roll` and `fraction` are
    /// uniform in `0.0..1.0`.
    pub fn lifetime(&self, lifetime: Duration, roll: f64, fraction: f64) -> Duration {
        if roll * 100.0 < f64::from(self.early_expiry_percent) {
            lifetime
                .mul_f64(0.25 + 0.25 * fraction.clamp(0.0, 1.0))
                .max(Duration::from_secs(1))
        } else {
            lifetime
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn outages_should_fail_every_call_inside_their_window_only() {
        let faults = Faults {
            sts_outages: vec![Window {
                start: Duration::from_secs(120),
                length: Duration::from_secs(30),
            }],
            ..Faults::default()
        };
        assert!(faults.assume_fault(Instant::now(), 0.0).is_none());
        tokio::time::advance(Duration::from_secs(119)).await;
        assert!(faults.assume_fault(Instant::now(), 0.0).is_none());
        tokio::time::advance(Duration::from_secs(1)).await;
        let f = faults.assume_fault(Instant::now(), 0.99).unwrap();
        assert_eq!((f.code, f.status.as_u16()), ("ServiceUnavailable", 503));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(faults.assume_fault(Instant::now(), 0.99).is_some());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(faults.assume_fault(Instant::now(), 0.99).is_none());
    }

    #[test]
    fn the_failure_rate_and_early_expiry_should_follow_their_percentages() {
        let faults = Faults {
            sts_fail_percent: 20,
            early_expiry_percent: 50,
            ..Faults::default()
        };
        let now = faults.start;
        let failed = (0..1000)
            .filter(|i| faults.assume_fault(now, f64::from(*i) / 1000.0).is_some())
            .count();
        assert_eq!(failed, 200);
        let ttl = Duration::from_secs(60);
        assert_eq!(faults.lifetime(ttl, 0.7, 0.5), ttl);
        assert_eq!(faults.lifetime(ttl, 0.2, 0.0), Duration::from_secs(15));
        assert_eq!(faults.lifetime(ttl, 0.2, 1.0), Duration::from_secs(30));
        assert!(Faults::default().assume_fault(now, 0.0).is_none());
    }
}
