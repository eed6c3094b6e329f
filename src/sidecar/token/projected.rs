//! Writing a token the way kubelet's atomic writer does, for `dev` and tests:
//!
//! ```text
//! dir/..2026_11_28_20_31_00.123456789/token
//! dir/..data -> ..2026_11_28_20_31_00.123456789
//! dir/token  -> ..data/token
//! ```
//!
//! A rotation writes a new timestamped directory, points `..data_tmp` at it,
//! renames `..data_tmp` over `..data` (atomic) and deletes the old directory, so a
//! reader of `dir/token` sees the old token or the new one, never a mix.

use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A projected-token directory that this process writes.
#[derive(Debug)]
pub struct ProjectedTokenDir {
    root: PathBuf,
    /// The timestamped directory `..data` points at now.
    current: Option<String>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl ProjectedTokenDir {
    /// Lays out `root` (which must exist) with `token` as its first content.
    pub fn create(root: &Path, token: &str) -> io::Result<ProjectedTokenDir> {
        let mut dir = ProjectedTokenDir {
            root: root.to_path_buf(),
            current: None,
        };
        dir.write(token)?;
        let link = root.join("token");
        if std::fs::symlink_metadata(&link).is_err() {
            symlink("..data/token", &link)?;
        }
        Ok(dir)
    }

    /// The path readers are given: `root/token`.
    #[cfg_attr(not(feature = "tools"), allow(dead_code))]
    pub(crate) fn token_path(&self) -> PathBuf {
        self.root.join("token")
    }

    /// kubelet's swap: new directory, `..data_tmp`, rename over `..data`, delete
    /// the old directory.
    pub fn write(&mut self, token: &str) -> io::Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "..{}_{:09}.{}",
            now.as_secs(),
            now.subsec_nanos(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let new_dir = self.root.join(&name);
        std::fs::create_dir(&new_dir)?;
        std::fs::write(new_dir.join("token"), token)?;
        let tmp = self.root.join("..data_tmp");
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        symlink(&name, &tmp)?;
        std::fs::rename(&tmp, self.root.join("..data"))?;
        if let Some(old) = self.current.replace(name) {
            std::fs::remove_dir_all(self.root.join(old))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_should_swap_data_and_remove_the_old_directory() {
        let root = tempfile::tempdir().unwrap();
        let mut d = ProjectedTokenDir::create(root.path(), "one").unwrap();
        assert_eq!(std::fs::read_to_string(d.token_path()).unwrap(), "one");
        d.write("two").unwrap();
        assert_eq!(std::fs::read_to_string(d.token_path()).unwrap(), "two");
        let dirs: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != "..data")
            .collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        assert!(std::fs::symlink_metadata(d.token_path())
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
