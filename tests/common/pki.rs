//! A test CA and a server certificate it signs, as files: what the HTTPS
//! emulator serves (`tls.crt`, `tls.key`) and what a client trusts (`ca.pem`).

use std::path::PathBuf;

pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A test CA, and a certificate it signs for `host` and 127.0.0.1.
    pub fn new(host: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let issued = irsa_proxy::tools::tls::ca::issue(
            "irsa-proxy test CA",
            vec![host.to_string(), "127.0.0.1".to_string()],
            1,
        )
        .unwrap();
        std::fs::write(dir.path().join("ca.pem"), issued.ca_pem).unwrap();
        std::fs::write(dir.path().join("tls.crt"), issued.cert_pem).unwrap();
        std::fs::write(dir.path().join("tls.key"), issued.key_pem).unwrap();
        Pki { dir }
    }

    /// The CA's certificate, for AWS_CA_BUNDLE or --ca-file.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The emulator's TLS configuration: this certificate, reloaded as it changes.
    pub fn server_config(&self) -> std::sync::Arc<rustls::ServerConfig> {
        irsa_proxy::tools::tls::reloading_config(self.path("tls.crt"), self.path("tls.key"), |_| {})
            .unwrap()
    }
}
