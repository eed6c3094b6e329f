//! The pod's authorization token: the `Authorization` value of
//! `/v1/credentials` and the path secret of `/v2/credentials/<token>`.
//!
//! Given as a value (`IRSA_PROXY_AUTH_TOKEN`, from a Secret shared with the app
//! containers), it is also written to `--auth-token-file` when that is set. Else,
//! if the file exists its trimmed content is the token; if not, it is created
//! with 256 random bits as hex, no trailing newline (SDKs send the file's bytes
//! as they are and refuse CR/LF), mode 0644 so the app container can read it from
//! a shared `emptyDir`. Requests must present it exactly; the comparison is
//! constant-time, and the presented value is never logged.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

/// The expected `Authorization` value. `Debug` does not show it.
#[derive(Clone)]
pub struct AuthToken(Vec<u8>);

impl fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthToken(...)")
    }
}

/// Longest token accepted.
const MAX_LEN: usize = 4096;
/// Shortest token accepted as a value: 128 bits of hex. (A file may hold a
/// shorter one: it was there before us, and refusing it would break a pod.)
const MIN_VALUE_LEN: usize = 32;

/// Why `--auth-token-file` cannot be used: one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("--auth-token-file: {} is not text; expected a token of printable characters", .0.display())]
    NotText(PathBuf),
    #[error("--auth-token-file: {} must hold one token of 1 to {} printable characters", .0.display(), MAX_LEN)]
    NotOneToken(PathBuf),
    #[error("--auth-token-file: cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--auth-token-file: cannot create {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--auth-token-file: cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AuthToken {
    /// Reads the token file, creating it if it does not exist. Errors are one line
    /// naming the file.
    pub(crate) fn load_or_create(path: &Path) -> Result<AuthToken, AuthFileError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let text =
                    String::from_utf8(bytes).map_err(|_| AuthFileError::NotText(path.into()))?;
                let token = text.trim();
                if token.is_empty()
                    || token.len() > MAX_LEN
                    || token.chars().any(|c| c.is_control())
                {
                    return Err(AuthFileError::NotOneToken(path.into()));
                }
                Ok(AuthToken(token.as_bytes().to_vec()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let hex = random_token();
                create_file(path, hex.as_bytes()).map_err(|source| AuthFileError::Create {
                    path: path.into(),
                    source,
                })?;
                tracing::info!(path = %path.display(), "created the authorization token file");
                Ok(AuthToken(hex.into_bytes()))
            }
            Err(source) => Err(AuthFileError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    /// The token given as a value (`IRSA_PROXY_AUTH_TOKEN`, from a Secret). It
    /// must fit both places it is presented in: a header and a URL path segment.
    /// The value itself is a secret: a refusal must name only its length
    /// ([`crate::flags::Given::Secret`]).
    pub fn from_value(value: &str) -> Result<AuthToken, crate::flags::Refusal> {
        let v = value.trim();
        let ok = (MIN_VALUE_LEN..=MAX_LEN).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !ok {
            return Err(crate::flags::Refusal::new(
                "is not allowed",
                format!("{MIN_VALUE_LEN} to {MAX_LEN} of [A-Za-z0-9._~-] (e.g. 64 hex digits)"),
            ));
        }
        Ok(AuthToken(v.as_bytes().to_vec()))
    }

    /// Writes the token to `path` (replacing what is there, atomically, mode
    /// 0644), so that apps reading `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` and
    /// apps given `AWS_CONTAINER_AUTHORIZATION_TOKEN` present the same bytes.
    pub(crate) fn write_file(&self, path: &Path) -> Result<(), AuthFileError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = dir.join(format!(".auth-token-{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        create_file(&tmp, &self.0)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| {
                let _ = std::fs::remove_file(&tmp);
                AuthFileError::Write {
                    path: path.into(),
                    source,
                }
            })
    }

    /// True when both are the same token (constant-time).
    pub(crate) fn same_as(&self, other: &AuthToken) -> bool {
        self.matches(&other.0)
    }

    /// Constant-time comparison with a presented header value.
    pub fn matches(&self, presented: &[u8]) -> bool {
        // `ct_eq` on slices of different lengths is false without comparing bytes;
        // the length of the expected token is not a secret worth hiding.
        self.0.as_slice().ct_eq(presented).into()
    }
}

/// Which role a presented token is for: with several roles every role has its
/// own token, and the token alone decides the role (docs/contract.md §13).
///
/// Every token is compared with the presented bytes, in constant time, and the
/// index of the match is picked without a branch: how long a lookup takes
/// says nothing of which token, or how much of one, matched. Tokens are
/// distinct (refused at start-up otherwise), so at most one matches.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    /// Index = the role's index.
    tokens: Vec<AuthToken>,
}

impl TokenTable {
    pub fn new(tokens: Vec<AuthToken>) -> TokenTable {
        TokenTable { tokens }
    }

    /// No token at all: a single role served without one.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The index of the role whose token is `presented`; `None` for any other
    /// value.
    pub fn lookup(&self, presented: &[u8]) -> Option<usize> {
        use subtle::ConditionallySelectable;
        let mut found = u32::MAX;
        for (i, t) in self.tokens.iter().enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            found.conditional_assign(&i, t.0.as_slice().ct_eq(presented));
        }
        (found != u32::MAX).then_some(found as usize)
    }
}

/// A new token: 256 random bits as 64 lowercase hex digits, which fit a
/// header, a URL path segment and a Secret alike.
pub(crate) fn random_token() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes: [u8; 32] = rand::random();
    let mut token = String::with_capacity(64);
    for b in bytes {
        token.push(char::from(HEX[usize::from(b >> 4)]));
        token.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    token
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
    fn random_tokens_should_be_256_bits_as_lowercase_hex() {
        let (a, b) = (random_token(), random_token());
        for t in [&a, &b] {
            assert_eq!(t.len(), 64, "{t}");
            assert!(t
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        }
        assert_ne!(a, b);
    }

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
    fn a_value_should_be_path_safe_and_written_over_the_file() {
        assert!(AuthToken::from_value("short").is_err());
        assert!(AuthToken::from_value(&"a b".repeat(20)).is_err());
        let err = AuthToken::from_value(&"x/".repeat(20))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("x/x/"), "the value leaked: {err}");
        let value = "0123456789abcdef".repeat(4);
        let t = AuthToken::from_value(&value).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth-token");
        std::fs::write(&p, "an older token").unwrap();
        t.write_file(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), value);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn token(s: &str) -> AuthToken {
        AuthToken(s.as_bytes().to_vec())
    }

    #[test]
    fn a_token_should_map_to_its_own_role_only() {
        let table = TokenTable::new(vec![token("alpha-token"), token("beta-token"), token("b")]);
        assert_eq!(table.lookup(b"alpha-token"), Some(0));
        assert_eq!(table.lookup(b"beta-token"), Some(1));
        assert_eq!(table.lookup(b"b"), Some(2));
        for other in [
            &b""[..],
            b"alpha",
            b"alpha-token ",
            b"ALPHA-TOKEN",
            b"beta-tokenx",
        ] {
            assert_eq!(table.lookup(other), None, "{other:?}");
        }
        assert_eq!(TokenTable::default().lookup(b""), None);
        assert!(TokenTable::default().is_empty());
    }

    proptest::proptest! {
        /// Distinct tokens: each finds exactly its own index, and any other
        /// value (a prefix, an extension, a one-byte change) finds none.
        #[test]
        fn lookup_should_never_give_another_role(
            tokens in proptest::collection::btree_set("[A-Za-z0-9._~-]{1,40}", 1..8),
            probe in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..48),
            cut in 0usize..40,
        ) {
            let tokens: Vec<String> = tokens.into_iter().collect();
            let table = TokenTable::new(tokens.iter().map(|t| token(t)).collect());
            for (i, t) in tokens.iter().enumerate() {
                proptest::prop_assert_eq!(table.lookup(t.as_bytes()), Some(i));
                let mut longer = t.clone().into_bytes();
                longer.push(b'x');
                let shorter = &t.as_bytes()[..cut.min(t.len())];
                let mut changed = t.clone().into_bytes();
                changed[cut % t.len()] ^= 0x01;
                for v in [longer.as_slice(), shorter, changed.as_slice()] {
                    let owner = tokens.iter().position(|o| o.as_bytes() == v);
                    proptest::prop_assert_eq!(table.lookup(v), owner);
                }
            }
            let owner = tokens.iter().position(|o| o.as_bytes() == probe.as_slice());
            proptest::prop_assert_eq!(table.lookup(&probe), owner);
        }
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
