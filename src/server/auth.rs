//! The `Authorization` token of `/v1/credentials` (`--auth-token-file`).
//!
//! If the file exists its trimmed content is the token; if not, it is created
//! with 256 random bits as hex, no trailing newline (SDKs send the file's bytes
//! as they are and refuse CR/LF), mode 0644 so the app container can read it from
//! a shared `emptyDir`. Requests must present it exactly; the comparison is
//! constant-time, and the presented value is never logged.

use std::fmt;
use std::io::Write;
use std::path::Path;

use subtle::ConstantTimeEq;

/// The expected `Authorization` value. `Debug` does not show it.
#[derive(Clone)]
pub struct AuthToken(Vec<u8>);

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(...)")
    }
}

/// Longest token accepted from an existing file.
const MAX_LEN: usize = 4096;

impl AuthToken {
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        AuthToken(value.into())
    }

    /// Reads the token file, creating it if it does not exist. Errors are one line
    /// naming the file.
    pub fn load_or_create(path: &Path) -> Result<AuthToken, String> {
        let name = path.display();
        match std::fs::read(path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| {
                    format!("--auth-token-file: {name} is not text; expected a token of printable characters")
                })?;
                let token = text.trim();
                if token.is_empty()
                    || token.len() > MAX_LEN
                    || token.chars().any(|c| c.is_control())
                {
                    return Err(format!(
                        "--auth-token-file: {name} must hold one token of 1 to {MAX_LEN} printable characters"
                    ));
                }
                Ok(AuthToken(token.as_bytes().to_vec()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let bytes: [u8; 32] = rand::random();
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                create_file(path, hex.as_bytes())
                    .map_err(|e| format!("--auth-token-file: cannot create {name}: {e}"))?;
                tracing::info!(path = %name, "created the authorization token file");
                Ok(AuthToken(hex.into_bytes()))
            }
            Err(e) => Err(format!("--auth-token-file: cannot read {name}: {e}")),
        }
    }

    /// Constant-time comparison with a presented header value.
    pub fn matches(&self, presented: &[u8]) -> bool {
        // `ct_eq` on slices of different lengths is false without comparing bytes;
        // the length of the expected token is not a secret worth hiding.
        self.0.as_slice().ct_eq(presented).into()
    }
}

/// Writes the file atomically-enough (create-new, then mode 0644), so a racing
/// second proxy does not truncate a token the app already read.
fn create_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o644);
    }
    let mut f = opts.open(path)?;
    f.write_all(content)?;
    f.sync_all()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // The umask may have removed read bits; the app container needs them.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_should_be_created_with_64_hex_chars_and_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth-token");
        let t = AuthToken::load_or_create(&p).unwrap();
        let content = std::fs::read_to_string(&p).unwrap();
        assert_eq!(content.len(), 64);
        assert!(!content.ends_with('\n'));
        assert!(t.matches(content.as_bytes()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
        // A second load reads the same token.
        assert!(AuthToken::load_or_create(&p)
            .unwrap()
            .matches(content.as_bytes()));
    }

    #[test]
    fn existing_file_should_be_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth-token");
        std::fs::write(&p, "abc\n").unwrap();
        let t = AuthToken::load_or_create(&p).unwrap();
        assert!(t.matches(b"abc"));
        assert!(!t.matches(b"abc\n"));
        assert!(!t.matches(b"ab"));
        assert!(!format!("{t:?}").contains("abc"));
        std::fs::write(&p, "\n").unwrap();
        assert!(AuthToken::load_or_create(&p).is_err());
    }
}
