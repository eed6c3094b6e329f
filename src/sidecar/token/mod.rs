//! The projected web-identity token: reading it safely and decoding its claims.
//!
//! The token is a bearer secret: [`Token`] never formats its value (its `Debug`
//! prints the length only), and nothing in this crate logs it. Its claims (`iss`,
//! `sub`, `aud`, `exp`, ...) are not secret and are what an operator needs when STS
//! refuses a token, so [`Claims::decode`] reads them without verifying the
//! signature (STS verifies; we only explain).

pub mod projected;
pub mod watch;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

/// STS refuses web-identity tokens longer than this many characters; reading more
/// than that from a file can only waste memory.
pub(crate) const MAX_TOKEN_BYTES: usize = 20_000;

/// A web-identity token read from disk. Its value is never formatted.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token value (already trimmed and validated by [`read_token`]).
    pub fn new(value: impl Into<String>) -> Self {
        Token(value.into())
    }

    /// The token itself, for the one place that sends it: the STS request.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// The token's claims, if it is a JWT.
    pub fn claims(&self) -> Result<Claims, ClaimsError> {
        Claims::decode(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<{} bytes redacted>)", self.0.len())
    }
}

/// Why the token file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("token file {path}: cannot read it: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path}: is a directory, expected a file holding a JWT")]
    IsDirectory { path: PathBuf },
    #[error("token file {path}: is not a regular file (a FIFO, socket or device), expected a file holding a JWT")]
    NotRegularFile { path: PathBuf },
    #[error("token file {path}: is empty, expected a JWT")]
    Empty { path: PathBuf },
    #[error("token file {path}: is larger than {MAX_TOKEN_BYTES} bytes, expected a JWT")]
    TooLarge { path: PathBuf },
    #[error("token file {path}: is not UTF-8 text, expected a JWT")]
    NotText { path: PathBuf },
    #[error(
        "token file {path}: holds more than one line or control characters, expected a single JWT"
    )]
    NotOneLine { path: PathBuf },
}

impl TokenError {
    /// A short code for metrics and JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Io { .. }
            | TokenError::IsDirectory { .. }
            | TokenError::NotRegularFile { .. } => "TokenFileUnreadable",
            TokenError::Empty { .. }
            | TokenError::TooLarge { .. }
            | TokenError::NotText { .. }
            | TokenError::NotOneLine { .. } => "TokenFileInvalid",
        }
    }
}

/// Reads the token file: bounded in size, trimmed, refused when empty, binary or
/// not a regular file.
///
/// The file is opened non-blocking and checked with `fstat` on the open handle:
/// a FIFO put in the token's place would otherwise block `open` (and the thread
/// calling it) until a writer appears, and a device could be read without end.
/// Checking the handle rather than the path leaves no window for a swap between
/// the check and the read.
pub(crate) fn read_token(path: &Path) -> Result<Token, TokenError> {
    let io = |source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(TokenError::IsDirectory {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_file() {
        return Err(TokenError::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    let mut buf = Vec::with_capacity(2048);
    file.take(MAX_TOKEN_BYTES as u64 + 64)
        .read_to_end(&mut buf)
        .map_err(io)?;
    let text = String::from_utf8(buf).map_err(|_| TokenError::NotText {
        path: path.to_path_buf(),
    })?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_path_buf(),
        });
    }
    if trimmed.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    if trimmed.chars().any(|c| c.is_control()) {
        return Err(TokenError::NotOneLine {
            path: path.to_path_buf(),
        });
    }
    Ok(Token(trimmed.to_string()))
}

/// The claims of a JWT that matter for assuming a role. Unverified.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Audience,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub amr: Audience,
    /// Kubernetes' own claim: the namespace, and the pod and service account
    /// the token is bound to (the session name and session tags of a chain).
    #[serde(default, rename = "kubernetes.io")]
    pub kubernetes: Option<KubernetesClaims>,
}

/// The `kubernetes.io` claim of a projected service-account token.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct KubernetesClaims {
    #[serde(default)]
    pub namespace: Option<String>,
    /// Absent from a token not bound to a pod (`kubectl create token`).
    #[serde(default)]
    pub pod: Option<ObjectRef>,
    #[serde(default)]
    pub serviceaccount: Option<ObjectRef>,
}

/// A name and uid, as the `kubernetes.io` claim names a pod or service account.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ObjectRef {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
}

/// A claim that JWTs carry either as one string or as an array of strings
/// (`aud`, `amr`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// The values as a list.
    pub fn values(&self) -> Vec<&str> {
        match self {
            Audience::None => Vec::new(),
            Audience::One(s) => vec![s.as_str()],
            Audience::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.values().join(","))
    }
}

/// Why a token's claims could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("not a JWT: expected three base64url parts separated by dots, found {0}")]
    NotThreeParts(usize),
    #[error("not a JWT: the payload is not base64url")]
    NotBase64,
    #[error("not a JWT: the payload is not a JSON object of claims ({0})")]
    NotJson(String),
}

impl Claims {
    /// Decodes the payload of a compact JWT without verifying its signature.
    pub fn decode(jwt: &str) -> Result<Claims, ClaimsError> {
        let parts: Vec<&str> = jwt.trim().split('.').collect();
        if parts.len() != 3 {
            return Err(ClaimsError::NotThreeParts(parts.len()));
        }
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1].trim_end_matches('='))
            .map_err(|_| ClaimsError::NotBase64)?;
        serde_json::from_slice(&payload).map_err(|e| {
            // serde's message may quote part of the payload; keep only the category.
            ClaimsError::NotJson(format!("{:?}", e.classify()).to_lowercase())
        })
    }

    /// One line for logs: `iss=... sub=... aud=... exp=...` (claims only, never the token).
    pub fn summary(&self) -> String {
        format!(
            "iss={} sub={} aud={} exp={}",
            self.iss.as_deref().unwrap_or("-"),
            self.sub.as_deref().unwrap_or("-"),
            if self.aud.values().is_empty() {
                "-".to_string()
            } else {
                self.aud.to_string()
            },
            self.exp
                .map(|e| crate::clock::format_timestamp(crate::clock::from_unix_seconds(e)))
                .unwrap_or_else(|| "-".to_string()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            b.encode(r#"{"alg":"RS256"}"#),
            b.encode(payload)
        )
    }

    #[test]
    fn claims_should_decode_string_and_array_audiences() {
        let c = Claims::decode(&jwt(
            r#"{"iss":"https://oidc.example/id/X","sub":"system:serviceaccount:ns:sa","aud":["sts.amazonaws.com"],"exp":1700000000}"#,
        ))
        .unwrap();
        assert_eq!(c.sub.as_deref(), Some("system:serviceaccount:ns:sa"));
        assert_eq!(c.aud.values(), vec!["sts.amazonaws.com"]);
        let c = Claims::decode(&jwt(r#"{"aud":"a"}"#)).unwrap();
        assert_eq!(c.aud.values(), vec!["a"]);
        assert!(c.summary().contains("aud=a"));
    }

    #[test]
    fn garbage_should_not_decode() {
        assert_eq!(Claims::decode("abc"), Err(ClaimsError::NotThreeParts(1)));
        assert_eq!(Claims::decode("a.!!!.c"), Err(ClaimsError::NotBase64));
        assert!(matches!(
            Claims::decode(&jwt("SECRET-not-json")),
            Err(ClaimsError::NotJson(m)) if !m.contains("SECRET")
        ));
    }

    #[test]
    fn debug_should_not_show_the_token() {
        let t = Token::new("SECRET-MARKER-DO-NOT-LOG");
        assert!(!format!("{t:?}").contains("SECRET"));
    }

    #[test]
    fn reading_should_refuse_empty_binary_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "  \n").unwrap();
        assert!(matches!(read_token(&p), Err(TokenError::Empty { .. })));
        std::fs::write(&p, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(read_token(&p), Err(TokenError::NotText { .. })));
        std::fs::write(&p, vec![b'a'; MAX_TOKEN_BYTES + 10]).unwrap();
        assert!(matches!(read_token(&p), Err(TokenError::TooLarge { .. })));
        assert!(matches!(
            read_token(dir.path()),
            Err(TokenError::IsDirectory { .. })
        ));
        assert!(matches!(
            read_token(&dir.path().join("missing")),
            Err(TokenError::Io { .. })
        ));
        std::fs::write(&p, "a\nb").unwrap();
        assert!(matches!(read_token(&p), Err(TokenError::NotOneLine { .. })));
        std::fs::write(&p, "abc.def.ghi\n").unwrap();
        assert_eq!(read_token(&p).unwrap().expose(), "abc.def.ghi");
    }

    /// Regression: a FIFO in the token's place used to block `open` forever, and
    /// with it a runtime worker thread of the refresher or the watcher.
    #[test]
    fn reading_should_refuse_a_fifo_or_a_device_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("token");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = tx.send(read_token(&path).map(|_| ()).map_err(|e| e.to_string()));
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("read_token blocked on a FIFO");
        let e = r.unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(matches!(
            read_token(Path::new("/dev/zero")),
            Err(TokenError::NotRegularFile { .. })
        ));
    }
}
