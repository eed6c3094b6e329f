//! The wall-clock seam: whether cached credentials are still servable is judged
//! against a [`Clock`], so tests can move wall time without sleeping. (The
//! refresher's waits are tokio timers, not this clock.)

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current wall-clock time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
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

/// Seconds since the Unix epoch (0 for times before it).
pub fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `9999-12-31T23:59:59Z`: the latest time with a four-digit year, the last one
/// RFC 3339 timestamps (and `humantime`, which panics beyond it) can show.
pub const LATEST_TIMESTAMP: u64 = 253_402_300_799;

fn latest() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(LATEST_TIMESTAMP)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the only timestamp form every SDK accepts. Total:
/// times after [`LATEST_TIMESTAMP`] (a token's `exp` or an STS `Expiration` can
/// say anything) are shown as that.
pub fn format_timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t.min(latest())).to_string()
}

/// A `SystemTime` from Unix seconds, clamped to the epoch and to
/// [`LATEST_TIMESTAMP`], so that no claim value can overflow time arithmetic.
pub fn from_unix_seconds(secs: i64) -> SystemTime {
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
}
