//! How long the proxy had nothing to serve while the app ran, and how many
//! credential requests it answered 503 then: the report's "proxy unavailable".
//!
//! "Nothing to serve" is the store's own test ([`CredentialStore::current`]):
//! no credentials cached, or the cached ones inside their safety margin; with
//! several roles (`--roles-file`), a time when any role had nothing. The
//! watch wakes on every change of the store and at the moment the cached
//! credentials stop being served, so the time is exact to the scheduler, not
//! sampled. The 503s are the proxy's own count (its `http_requests` metric of
//! the ECS and IMDS endpoints): a credential request gets a 503 only when
//! there is nothing to serve.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use crate::sidecar::cache::CredentialStore;
use crate::sidecar::metrics::Metrics;

/// The report's account of the time without credentials.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct ProxyUnavailable {
    /// Total time with nothing to serve, in seconds (tenths).
    pub seconds: f64,
    /// Separate stretches of it.
    pub periods: u32,
    /// Credential requests (ECS and IMDS routes) answered 503 in the run.
    pub requests_answered_503: u64,
}

impl ProxyUnavailable {
    /// `proxy unavailable 14 s, 7 requests answered 503`, or that it never was.
    pub(crate) fn summary(&self) -> String {
        if self.periods == 0 && self.requests_answered_503 == 0 {
            return "the proxy had credentials to serve all along".into();
        }
        format!(
            "proxy unavailable {} s{}, {} answered 503",
            show_seconds(self.seconds),
            if self.periods > 1 {
                format!(" in {} periods", self.periods)
            } else {
                String::new()
            },
            match self.requests_answered_503 {
                1 => "1 request".to_string(),
                n => format!("{n} requests"),
            }
        )
    }
}

/// Whole seconds from 10 s on, tenths below.
fn show_seconds(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.0}")
    } else {
        format!("{s:.1}")
    }
}

/// The time with at least one store empty: a period starts when the first
/// store goes empty and ends when the last one is served again.
#[derive(Default)]
struct Tally {
    total: Duration,
    periods: u32,
    since: Option<Instant>,
    /// Stores with nothing to serve now.
    empty: usize,
}

impl Tally {
    fn begin(&mut self, now: Instant) {
        self.empty += 1;
        if self.since.is_none() {
            self.since = Some(now);
            self.periods += 1;
        }
    }

    fn end(&mut self, now: Instant) {
        self.empty = self.empty.saturating_sub(1);
        if self.empty == 0 {
            self.close(now);
        }
    }

    fn close(&mut self, now: Instant) {
        if let Some(since) = self.since.take() {
            self.total += now.saturating_duration_since(since);
        }
    }
}

/// A watch on the proxy's stores, from [`watch`] until [`Watch::finish`].
pub(crate) struct Watch {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tally: Arc<Mutex<Tally>>,
    metrics: Arc<Metrics>,
    answered_503_before: u64,
}

fn answered_503(metrics: &Metrics) -> u64 {
    metrics.credential_503s()
}

/// Starts watching now (dev starts it when the app starts): one store per
/// role the proxy serves.
pub(crate) fn watch(stores: Vec<Arc<CredentialStore>>, metrics: Arc<Metrics>) -> Watch {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let tasks = stores
        .into_iter()
        .map(|store| tokio::spawn(follow(store, tally.clone())))
        .collect();
    Watch {
        tasks,
        tally,
        answered_503_before: answered_503(&metrics),
        metrics,
    }
}

impl Watch {
    /// Stops the watch; an unavailable stretch still open ends now.
    pub(crate) fn finish(self) -> ProxyUnavailable {
        for task in &self.tasks {
            task.abort();
        }
        let mut tally = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        tally.close(Instant::now());
        ProxyUnavailable {
            seconds: (tally.total.as_secs_f64() * 10.0).round() / 10.0,
            periods: tally.periods,
            requests_answered_503: answered_503(&self.metrics)
                .saturating_sub(self.answered_503_before),
        }
    }
}

async fn follow(store: Arc<CredentialStore>, tally: Arc<Mutex<Tally>>) {
    let mut changes = store.changes();
    let mut empty = false;
    loop {
        let served = store.current();
        if served.is_none() != empty {
            empty = served.is_none();
            let mut tally = tally.lock().unwrap_or_else(|p| p.into_inner());
            match empty {
                true => tally.begin(Instant::now()),
                false => tally.end(Instant::now()),
            }
        }
        // Until the store changes or, with credentials, until they stop
        // being served (at least a millisecond: no busy loop at the edge).
        let until_stale = served.map(|g| {
            g.serve_until()
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .max(Duration::from_millis(1))
        });
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = sleep_for(until_stale) => {}
        }
    }
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_should_say_the_time_and_the_answers() {
        let u = ProxyUnavailable {
            seconds: 14.2,
            periods: 1,
            requests_answered_503: 7,
        };
        assert_eq!(
            u.summary(),
            "proxy unavailable 14 s, 7 requests answered 503"
        );
        let u = ProxyUnavailable {
            seconds: 2.5,
            periods: 2,
            requests_answered_503: 1,
        };
        assert_eq!(
            u.summary(),
            "proxy unavailable 2.5 s in 2 periods, 1 request answered 503"
        );
        assert_eq!(
            ProxyUnavailable::default().summary(),
            "the proxy had credentials to serve all along"
        );
    }

    /// Two roles: a period runs from the first store going empty to the
    /// last one served again.
    #[test]
    fn a_tally_should_add_up_separate_periods() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = Tally::default();
        t.begin(t0);
        t.begin(t0 + s(1));
        t.end(t0 + s(2));
        t.end(t0 + s(3));
        t.begin(t0 + s(5));
        t.end(t0 + s(6));
        t.begin(t0 + s(8));
        t.close(t0 + s(10));
        assert_eq!((t.total, t.periods), (s(6), 3));
    }
}
