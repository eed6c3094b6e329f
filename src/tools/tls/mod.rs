//! HTTPS for the servers that need it, the webhook and the STS emulator (the
//! sidecar speaks plain HTTP inside the pod): the serving certificate, reloaded
//! when its files change, a throwaway CA to issue one ([`ca`]), and the TLS
//! [`Handshake`](crate::sidecar::http_server::Handshake) of
//! [`serve_with`](crate::sidecar::http_server::serve_with).
//!
//! cert-manager renews the certificate into a Secret, and kubelet updates the
//! Secret volume by writing a new timestamped directory and swapping the
//! `..data` symlink, so both files change at once. A timer re-reads the files'
//! identity (device, inode, size, mtime, through the symlinks) every
//! [`RELOAD_EVERY`]: cheap, and right for every way the files can change
//! (symlink swap, rename, write in place) without a watcher to keep alive. On a
//! change the pair is parsed and checked (the key must match the certificate);
//! only then is it swapped in, atomically, for the next handshake. Handshakes in
//! flight and open connections keep the certificate they started with, so no
//! request fails across a rotation. A pair that does not load (the key written
//! before the certificate, by a writer that does not swap) keeps the old one
//! and is tried again at the next tick.

pub mod ca;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate and key pair cannot be served. Each is one line naming the
/// flag, the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert-file: {}: cannot read: {source}", .path.display())]
    ReadCert {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--tls-cert-file: {}: not PEM certificates: {why}", .path.display())]
    CertNotPem { path: PathBuf, why: String },
    #[error("--tls-cert-file: {}: no CERTIFICATE block; expected a PEM certificate chain", .path.display())]
    NoCertificate { path: PathBuf },
    #[error("--tls-key-file: {}: cannot read: {source}", .path.display())]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--tls-key-file: {}: no usable private key ({why}); expected PEM PKCS#8, PKCS#1 or SEC1", .path.display())]
    NoKey { path: PathBuf, why: String },
    #[error("--tls-key-file: {}: does not fit --tls-cert-file {}: {why}", .key.display(), .cert.display())]
    KeyMismatch {
        key: PathBuf,
        cert: PathBuf,
        why: String,
    },
    /// rustls refused the protocol versions of the provider.
    #[error("TLS: {0}")]
    Config(String),
    /// A reload panicked while holding the reload state.
    #[error("certificate reload state poisoned")]
    Poisoned,
}

/// How often the files are checked for a change.
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// What identifies the content of one file without reading it.
type Stamp = Option<(u64, u64, u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    // metadata() follows symlinks: a `..data` swap changes the inode seen here.
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.len(), m.modified().ok()?))
}

/// The certificate and key files, and the pair last loaded from them.
pub(crate) struct Reloading {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// The files' stamps when `current` was loaded. A std Mutex: only the
    /// reload timer takes it, never across an `.await`.
    loaded: Mutex<(Stamp, Stamp)>,
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl Reloading {
    /// Loads the pair once; an error names the file and what is wrong.
    pub fn load(
        cert_file: PathBuf,
        key_file: PathBuf,
        provider: Arc<CryptoProvider>,
    ) -> Result<Reloading, TlsError> {
        let stamps = (stamp(&cert_file), stamp(&key_file));
        let pair = load_pair(&cert_file, &key_file, &provider)?;
        Ok(Reloading {
            cert_file,
            key_file,
            provider,
            current: ArcSwap::from_pointee(pair),
            loaded: Mutex::new(stamps),
        })
    }

    /// Reloads when either file changed: `Ok(true)` when a new pair was swapped
    /// in, `Err` (with the old pair kept) when the new files do not load.
    pub(crate) fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = (stamp(&self.cert_file), stamp(&self.key_file));
        let mut loaded = self.loaded.lock().map_err(|_| TlsError::Poisoned)?;
        if *loaded == now {
            return Ok(false);
        }
        let pair = load_pair(&self.cert_file, &self.key_file, &self.provider)?;
        self.current.store(Arc::new(pair));
        *loaded = now;
        Ok(true)
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn load_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert_file).map_err(|source| TlsError::ReadCert {
        path: cert_file.into(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::CertNotPem {
            path: cert_file.into(),
            why: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_file.into(),
        });
    }
    let key_pem = std::fs::read(key_file).map_err(|source| TlsError::ReadKey {
        path: key_file.into(),
        source,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        path: key_file.into(),
        why: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| TlsError::KeyMismatch {
        key: key_file.into(),
        cert: cert_file.into(),
        why: e.to_string(),
    })
}

/// The rustls server configuration: TLS 1.2 and 1.3 from aws-lc-rs, HTTP/1.1
/// (the API server falls back to it), certificates from `resolver`.
pub(crate) fn server_config(
    resolver: Arc<Reloading>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Loads `--tls-cert-file` and `--tls-key-file`, and reloads them every
/// [`RELOAD_EVERY`] when they change, calling `on_reload` with each outcome
/// (`Ok(())` for a new pair, `Err` when the changed files did not load and the
/// old pair is kept). The reload task ends when the runtime does.
pub fn reloading_config(
    cert_file: PathBuf,
    key_file: PathBuf,
    on_reload: impl Fn(Result<(), TlsError>) + Send + 'static,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = Arc::new(Reloading::load(cert_file, key_file, provider.clone())?);
    let config = server_config(resolver.clone(), provider)?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match resolver.reload_if_changed() {
                Ok(false) => {}
                Ok(true) => on_reload(Ok(())),
                Err(e) => on_reload(Err(e)),
            }
        }
    });
    Ok(Arc::new(config))
}

/// The TLS handshake, for [`crate::sidecar::http_server::serve_with`].
#[derive(Clone)]
pub(crate) struct Tls(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    pub fn new(config: Arc<rustls::ServerConfig>) -> Tls {
        Tls(tokio_rustls::TlsAcceptor::from(config))
    }
}

impl crate::sidecar::http_server::Handshake for Tls {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    async fn handshake(
        &self,
        stream: tokio::net::TcpStream,
        within: Duration,
    ) -> std::io::Result<Self::Io> {
        match tokio::time::timeout(within, self.0.accept(stream)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}
