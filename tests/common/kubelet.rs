//! A projected-token directory in a temporary directory, written and rotated
//! exactly as kubelet does it (see `irsa_proxy::sidecar::token::projected`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use irsa_proxy::sidecar::token::projected::ProjectedTokenDir;

pub struct TokenDir {
    pub dir: tempfile::TempDir,
    writer: Mutex<ProjectedTokenDir>,
}

impl TokenDir {
    pub fn new(token: &str) -> TokenDir {
        let dir = tempfile::tempdir().unwrap();
        let writer = ProjectedTokenDir::create(dir.path(), token).unwrap();
        TokenDir {
            dir,
            writer: Mutex::new(writer),
        }
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
        self.writer.lock().unwrap().write(token).unwrap();
    }
}
