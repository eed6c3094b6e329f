//! Following token rotation.
//!
//! kubelet rotates a projected token by writing a new timestamped directory,
//! pointing `..data_tmp` at it, renaming that over `..data` and deleting the old
//! directory; `token` is a symlink to `..data/token` that never changes. A watch
//! on the token path itself would follow the symlink into a directory that is
//! about to be deleted, so we watch the parent directory, non-recursively, and on
//! any event there re-read the token and compare its digest with the last one
//! seen. That one check covers the `..data` swap, an in-place rewrite, a rename
//! over the file and delete-then-create alike, and counts each change once
//! however many events it raised. A poll every `poll_interval` covers file
//! systems where events do not arrive. When the directory itself is replaced
//! (renamed away and another renamed into its place), the watch would stay on
//! the old, deleted directory; so after every wake-up the directory's identity
//! (device and inode) is compared with the one watched and the watch re-armed
//! on a change, and while no watch can be armed it is retried every second.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, Notify};

use super::read_token;
use crate::sidecar::metrics::Metrics;

/// After the first event of a burst, wait this long for the rest of it (kubelet's
/// swap is several operations) before reading.
const SETTLE: Duration = Duration::from_millis(50);

/// While the directory cannot be watched (it is being replaced, or missing),
/// try again this often.
const REARM_RETRY: Duration = Duration::from_secs(1);

/// Device and inode of a directory: what a watch is really attached to.
fn identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// A digest of the token, so the secret itself is not kept around for comparison.
fn digest(path: &Path) -> Option<Vec<u8>> {
    let token = read_token(path).ok()?;
    Some(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.expose().as_bytes())
            .as_ref()
            .to_vec(),
    )
}

/// Watches the token and signals `rotated` on every change of its content.
pub(crate) struct TokenWatcher {
    path: PathBuf,
    dir: PathBuf,
    metrics: Arc<Metrics>,
    rotated: Arc<Notify>,
    poll_interval: Duration,
    /// Digest of the token last seen; `None` while it cannot be read.
    last: Option<Vec<u8>>,
    watcher: Option<notify::RecommendedWatcher>,
    /// The identity of the directory the watch was armed on.
    watched: Option<(u64, u64)>,
    events: mpsc::Receiver<()>,
    events_tx: mpsc::Sender<()>,
}

impl TokenWatcher {
    /// Arms the watch and takes the first digest before returning, so that a
    /// change made right after start-up is not mistaken for the starting state.
    pub fn start(
        path: PathBuf,
        metrics: Arc<Metrics>,
        rotated: Arc<Notify>,
        poll_interval: Duration,
    ) -> TokenWatcher {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (events_tx, events) = mpsc::channel::<()>(1);
        let watched = identity(&dir);
        let watcher = arm(&dir, events_tx.clone());
        let last = digest(&path);
        TokenWatcher {
            path,
            dir,
            metrics,
            rotated,
            poll_interval,
            last,
            watcher,
            watched,
            events,
            events_tx,
        }
    }

    /// Runs until aborted.
    pub async fn run(mut self) {
        let mut poll = tokio::time::interval(self.poll_interval);
        poll.tick().await;
        loop {
            tokio::select! {
                Some(()) = self.events.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    // Drain what arrived while settling; anything later stays
                    // queued and causes another check.
                    while self.events.try_recv().is_ok() {}
                }
                _ = poll.tick() => self.rearm(),
                _ = tokio::time::sleep(REARM_RETRY), if self.watcher.is_none() => self.rearm(),
            }
            let mut now = digest(&self.path);
            // Caught between a truncate and a write, or between kubelet's rename
            // and the new file: look again shortly.
            for _ in 0..5 {
                if now.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                now = digest(&self.path);
            }
            if identity(&self.dir) != self.watched {
                tracing::info!(dir = %self.dir.display(), "the token directory was replaced; watching the new one");
                self.rearm();
            }
            if now.is_some() && now != self.last {
                if self.last.is_some() {
                    self.metrics.token_rotated();
                    let claims = read_token(&self.path)
                        .ok()
                        .and_then(|t| t.claims().ok())
                        .map(|c| c.summary())
                        .unwrap_or_else(|| "not a JWT".into());
                    tracing::info!(token = %claims, "web-identity token rotated");
                }
                self.last = now;
                self.rotated.notify_one();
            }
        }
    }

    /// Re-arms the watch when it failed or the directory was replaced; watching
    /// again is cheap and recovers from a directory deleted and recreated under
    /// the same name.
    fn rearm(&mut self) {
        self.watched = identity(&self.dir);
        match self.watcher.as_mut() {
            Some(w) if self.dir.exists() => {
                let _ = w.unwatch(&self.dir);
                if w.watch(&self.dir, RecursiveMode::NonRecursive).is_err() {
                    self.watcher = None;
                }
            }
            _ => self.watcher = arm(&self.dir, self.events_tx.clone()),
        }
    }
}

/// Starts a `notify` watch on `dir`; `None` (logged) if it cannot, in which case
/// polling alone follows the token.
fn arm(dir: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            // A full channel already holds a wake-up: nothing is lost.
            let _ = tx.try_send(());
        }
    };
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start a file watch; polling the token instead");
            return None;
        }
    };
    match w.watch(dir, RecursiveMode::NonRecursive) {
        Ok(()) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the token directory; polling the token instead");
            None
        }
    }
}
