//! The time seam, as aws-config has one (its `TimeSource` and `AsyncSleep`):
//! a [`Clock`] is the one source of "now" and of sleeping for the credential
//! cache and its refresher. Every expiry decision (is a generation still served,
//! when is the next refresh due) reads [`Clock::now`], and every wait those
//! decisions schedule (the refresh, the back-off, the cold-start wait) goes
//! through [`Clock::sleep`]. A test gives them a clock that follows tokio's
//! paused time, so hours of refreshes run in milliseconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The future of [`Clock::sleep`]; boxed so that `Clock` can be a trait object.
pub(crate) type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A source of the current wall-clock time, and of waits measured in it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;

    /// Completes after `duration` has passed on this clock. The default is
    /// tokio's timer of the runtime that polls it: real time in production,
    /// and under `tokio::time::pause()` a wait that the runtime skips.
    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that runs with real time plus an offset tests can move forward.
/// Its sleeps are real: moving the offset does not end them.
#[derive(Debug, Clone, Default)]
pub struct OffsetClock {
    /// Offset in milliseconds, shared between clones so a test can keep a handle.
    offset_ms: Arc<AtomicI64>,
}

impl OffsetClock {
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> SystemTime {
        let off = self.offset_ms.load(Ordering::SeqCst);
        let now = SystemTime::now();
        if off >= 0 {
            now + Duration::from_millis(off as u64)
        } else {
            now - Duration::from_millis(off.unsigned_abs())
        }
    }
}

/// Wall time that follows the tokio runtime's clock: `now` is a fixed start plus
/// the time the runtime has seen pass, and sleeps are tokio's. Under
/// `tokio::time::pause()` it stands still while anything can run and jumps
/// exactly to the next timer when nothing can, so "now" and every sleep agree
/// to the nanosecond and the outcome does not depend on the machine's load.
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct RuntimeClock {
    /// The wall time at `start`.
    wall: SystemTime,
    /// When the clock was made, on the runtime's clock.
    start: tokio::time::Instant,
}

#[cfg(test)]
impl RuntimeClock {
    /// A clock that reads `wall` now. Must be called inside a runtime.
    pub(crate) fn starting_at(wall: SystemTime) -> RuntimeClock {
        RuntimeClock {
            wall,
            start: tokio::time::Instant::now(),
        }
    }
}

#[cfg(test)]
impl Clock for RuntimeClock {
    fn now(&self) -> SystemTime {
        self.wall + self.start.elapsed()
    }
}

/// Seconds since the Unix epoch (0 for times before it).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `9999-12-31T23:59:59Z`: the latest time with a four-digit year, the last one
/// RFC 3339 timestamps (and `humantime`, which panics beyond it) can show.
pub(crate) const LATEST_TIMESTAMP: u64 = 253_402_300_799;

fn latest() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(LATEST_TIMESTAMP)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the only timestamp form every SDK accepts. Total:
/// times after [`LATEST_TIMESTAMP`] (a token's `exp` or an STS `Expiration` can
/// say anything) are shown as that.
pub(crate) fn format_timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t.min(latest())).to_string()
}

/// A `SystemTime` from Unix seconds, clamped to the epoch and to
/// [`LATEST_TIMESTAMP`], so that no claim value can overflow time arithmetic.
pub(crate) fn from_unix_seconds(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((secs.max(0) as u64).min(LATEST_TIMESTAMP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_should_have_no_fraction_and_a_z() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(format_timestamp(t), "2023-11-14T22:13:20Z");
    }

    /// Regression: a token whose `exp` was past the year 9999 made the claim
    /// summary (logged on every rotation) panic, and `i64::MAX` overflowed
    /// `SystemTime`; found by `tests/properties.rs`.
    #[test]
    fn far_future_times_should_format_without_panicking() {
        for secs in [LATEST_TIMESTAMP as i64 + 1, 10_i64.pow(15), i64::MAX] {
            assert_eq!(
                format_timestamp(from_unix_seconds(secs)),
                "9999-12-31T23:59:59Z"
            );
        }
        assert_eq!(
            format_timestamp(UNIX_EPOCH + Duration::from_secs(u64::MAX / 2)),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            format_timestamp(from_unix_seconds(i64::MIN)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn offset_clock_should_move_forward() {
        let c = OffsetClock::default();
        let before = c.now();
        c.advance(Duration::from_secs(3600));
        assert!(c.now().duration_since(before).unwrap() >= Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn runtime_clock_should_move_only_with_the_runtime() {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let c = RuntimeClock::starting_at(start);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now(), start, "real time passing moved a paused clock");
        c.sleep(Duration::from_secs(3600)).await;
        assert_eq!(c.now(), start + Duration::from_secs(3600));
    }
}
