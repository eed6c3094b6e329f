//! A projected-token directory laid out and rotated exactly as kubelet's atomic
//! writer does it:
//!
//! ```text
//! dir/..2026_11_28_20_31_00.123456789/token
//! dir/..data -> ..2026_11_28_20_31_00.123456789
//! dir/token  -> ..data/token
//! ```
//!
//! A rotation writes a new timestamped directory, points `..data_tmp` at it,
//! renames `..data_tmp` over `..data` and deletes the old directory.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct TokenDir {
    pub dir: tempfile::TempDir,
    current: std::sync::Mutex<Option<String>>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn timestamp_dir() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!(
        "..{}_{:09}.{}",
        now.as_secs(),
        now.subsec_nanos(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

impl TokenDir {
    pub fn new(token: &str) -> TokenDir {
        let t = TokenDir {
            dir: tempfile::tempdir().unwrap(),
            current: std::sync::Mutex::new(None),
        };
        t.rotate(token);
        symlink("..data/token", t.path()).unwrap();
        t
    }

    /// The path the proxy is given: `dir/token`.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// kubelet's swap.
    pub fn rotate(&self, token: &str) {
        let root = self.dir.path();
        let name = timestamp_dir();
        let new_dir = root.join(&name);
        std::fs::create_dir(&new_dir).unwrap();
        std::fs::write(new_dir.join("token"), token).unwrap();
        let tmp = root.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, root.join("..data")).unwrap();
        let mut cur = self.current.lock().unwrap();
        if let Some(old) = cur.replace(name) {
            std::fs::remove_dir_all(root.join(old)).unwrap();
        }
    }
}
