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
//! systems where events do not arrive, and re-arms the watch if the directory
//! itself was replaced.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, Notify};

use super::read_token;
use crate::metrics::Metrics;

/// After the first event of a burst, wait this long for the rest of it (kubelet's
/// swap is several operations) before reading.
const SETTLE: Duration = Duration::from_millis(50);

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
pub struct TokenWatcher {
    pub path: PathBuf,
    pub metrics: Arc<Metrics>,
    pub rotated: Arc<Notify>,
    pub poll_interval: Duration,
}

impl TokenWatcher {
    /// Runs until aborted.
    pub async fn run(self) {
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let mut watcher = arm(&dir, tx.clone());
        let mut last = digest(&self.path);
        let mut poll = tokio::time::interval(self.poll_interval);
        poll.tick().await;
        loop {
            tokio::select! {
                Some(()) = rx.recv() => {
                    tokio::time::sleep(SETTLE).await;
                    // Drain what arrived while settling.
                    while rx.try_recv().is_ok() {}
                }
                _ = poll.tick() => {
                    // Re-arm when the watch failed or the directory was replaced.
                    if watcher.is_none() || !dir.exists() {
                        watcher = arm(&dir, tx.clone());
                    } else if let Some(w) = watcher.as_mut() {
                        // Watching again is cheap and recovers from a directory
                        // that was deleted and recreated under the same name.
                        let _ = w.unwatch(&dir);
                        if w.watch(&dir, RecursiveMode::NonRecursive).is_err() {
                            watcher = None;
                        }
                    }
                }
            }
            let now = digest(&self.path);
            if now.is_some() && now != last {
                if last.is_some() {
                    self.metrics.token_rotated();
                    let claims = read_token(&self.path)
                        .ok()
                        .and_then(|t| t.claims().ok())
                        .map(|c| c.summary())
                        .unwrap_or_else(|| "not a JWT".into());
                    tracing::info!(token = %claims, "web-identity token rotated");
                }
                last = now;
                self.rotated.notify_one();
            }
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
