//! The bound on open connections, and what happens at it.
//!
//! At most `--max-connections` connections are open at once. When a new one
//! arrives at the limit, the connection that has been idle longest — no request
//! being answered, ordered by when its last answer was handed to hyper, or when it
//! opened if it never sent a complete request — is closed to make room. So a
//! client that holds connections open without using them (a leak in the app, a
//! slowloris, a hostile process in the pod) cannot stop new requests from being
//! answered: it only loses its own oldest idle connections. Only when every open
//! connection is busy answering does a new one wait for one to finish.
//!
//! The header-read timeout (`--header-timeout`) still closes idle connections on
//! its own; eviction only makes room before that timeout when room is needed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How often, at most, reaching the limit is logged at `warn`.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// How long an admission waits for a freed slot before choosing again.
const RETRY: Duration = Duration::from_millis(50);

/// The open connections, shared by the accept loops.
#[derive(Debug)]
pub(crate) struct Connections {
    /// One permit per connection that may be open.
    permits: Arc<Semaphore>,
    /// A std `Mutex`: held for a map operation or a scan, never across an `.await`.
    registry: Mutex<Registry>,
    /// The zero of every entry's `idle_since`.
    epoch: Instant,
    max: usize,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Arc<Entry>>,
    /// When reaching the limit was last logged at `warn`.
    warned: Option<Instant>,
}

/// One open connection, as the limit sees it.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Requests being answered on this connection (0 or 1 for HTTP/1.1).
    busy: AtomicUsize,
    /// Nanoseconds after `Connections::epoch` since which it has been idle.
    idle_since: AtomicU64,
    /// Set once it was chosen to be closed, so it is not chosen twice.
    evicted: AtomicBool,
    /// Wakes the connection's task to close it.
    close: Notify,
}

impl Entry {
    /// Marks a request as being answered until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>, epoch: Instant) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy {
            entry: self.clone(),
            epoch,
        }
    }

    /// Completes when this connection was chosen to be closed.
    pub async fn evicted(&self) {
        self.close.notified().await
    }
}

/// A request in progress on a connection; idle again when dropped.
#[derive(Debug)]
pub(crate) struct Busy {
    entry: Arc<Entry>,
    epoch: Instant,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.entry
            .idle_since
            .store(nanos_since(self.epoch), Ordering::Release);
        self.entry.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An admitted connection: holds its permit and its registry entry until dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    pub entry: Arc<Entry>,
    pub epoch: Instant,
    connections: Arc<Connections>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .open
            .remove(&self.id);
    }
}

fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl Connections {
    pub fn new(max: usize) -> Arc<Connections> {
        let max = max.max(1);
        Arc::new(Connections {
            permits: Arc::new(Semaphore::new(max)),
            registry: Mutex::new(Registry::default()),
            epoch: Instant::now(),
            max,
        })
    }

    /// Admits a connection that was just accepted: at once below the limit; at
    /// the limit, after closing the longest-idle connection, or, when every
    /// connection is busy, once one finishes. `None` only if the server is
    /// stopping.
    pub(crate) async fn admit(self: &Arc<Self>) -> Option<Slot> {
        let permit = loop {
            match self.permits.clone().try_acquire_owned() {
                Ok(p) => break p,
                Err(tokio::sync::TryAcquireError::Closed) => return None,
                Err(tokio::sync::TryAcquireError::NoPermits) => {}
            }
            // When every connection is busy nobody is asked to close; look again
            // shortly, as a busy one becomes idle once it has answered.
            self.evict_longest_idle();
            match tokio::time::timeout(RETRY, self.permits.clone().acquire_owned()).await {
                Ok(Ok(p)) => break p,
                Ok(Err(_)) => return None,
                Err(_) => continue,
            }
        };
        let entry = Arc::new(Entry {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(nanos_since(self.epoch)),
            evicted: AtomicBool::new(false),
            close: Notify::new(),
        });
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let id = r.next_id;
        r.next_id += 1;
        r.open.insert(id, entry.clone());
        drop(r);
        Some(Slot {
            id,
            entry,
            epoch: self.epoch,
            connections: self.clone(),
            _permit: permit,
        })
    }

    /// Asks the longest-idle connection to close, if there is one: when every
    /// open connection is busy (or already closing), nobody is asked.
    fn evict_longest_idle(&self) {
        let mut r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if r.warned.is_none_or(|w| now.duration_since(w) >= WARN_EVERY) {
            r.warned = Some(now);
            tracing::warn!(
                max_connections = self.max,
                "reached the connection limit; closing the longest-idle connections to admit new ones (logged once a minute)"
            );
        }
        let victim = r
            .open
            .values()
            .filter(|e| e.busy.load(Ordering::Acquire) == 0 && !e.evicted.load(Ordering::Acquire))
            .min_by_key(|e| e.idle_since.load(Ordering::Acquire))
            .cloned();
        drop(r);
        if let Some(v) = victim {
            v.evicted.store(true, Ordering::Release);
            // `notify_one` keeps a permit if the task is not waiting yet.
            v.close.notify_one();
        }
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .open
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_longest_idle_connection_should_make_room_at_the_limit() {
        let c = Connections::new(2);
        let a = c.admit().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let b = c.admit().await.unwrap();
        // `a` answered a request after `b` opened: now `b` is the longest idle.
        drop(a.entry.begin(a.epoch));
        let (a_entry, b_entry) = (a.entry.clone(), b.entry.clone());
        let admitting = tokio::spawn({
            let c = c.clone();
            async move { c.admit().await }
        });
        tokio::time::timeout(Duration::from_secs(2), b_entry.evicted())
            .await
            .expect("b was not asked to close");
        assert!(!a_entry.evicted.load(Ordering::Acquire));
        drop(b);
        let admitted = admitting.await.unwrap();
        assert!(admitted.is_some());
        assert_eq!(c.open(), 2);
        drop(a);
        drop(admitted);
        assert_eq!(c.open(), 0);
    }

    // Time is paused: the admission below goes round its choose-again loop a
    // hundred times in no wall time, and every wait ends on an event (the
    // admission finishing, the connection being asked to close), not on a sleep.
    #[tokio::test(start_paused = true)]
    async fn busy_connections_should_not_be_closed() {
        let c = Connections::new(1);
        let a = c.admit().await.unwrap();
        let busy = a.entry.begin(a.epoch);
        let mut admitting = tokio::spawn({
            let c = c.clone();
            async move { c.admit().await.is_some() }
        });
        let early = tokio::time::timeout(RETRY * 100, &mut admitting).await;
        assert!(early.is_err(), "admitted beyond the limit");
        assert!(
            !a.entry.evicted.load(Ordering::Acquire),
            "asked a busy connection to close"
        );
        // Once its answer is handed over, `a` is idle and makes room.
        drop(busy);
        tokio::time::timeout(RETRY * 2, a.entry.evicted())
            .await
            .expect("the idle connection was not asked to close");
        drop(a);
        assert!(admitting.await.unwrap());
    }
}
