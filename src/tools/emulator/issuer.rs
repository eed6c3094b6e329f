//! A token issuer for `dev` and tests: a fresh key pair (RSA-2048 for RS256, like
//! kubelet's service-account tokens, or P-256 for ES256) that mints signed JWTs and
//! hands out its public key as [`VerifyingKeys`], PEM or JWKS.

use std::fmt;
use std::time::{Duration, SystemTime};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Map, Value};

use super::keys::VerifyingKeys;
use crate::clock::unix_seconds;

/// Why a key could not be made or a token signed (the crypto library's failures).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerError {
    #[error("cannot generate the issuer's {0} key")]
    Generate(&'static str),
    #[error("cannot sign the token with the issuer's key")]
    Sign,
    #[error("cannot encode the issuer's public key")]
    PublicKey,
    #[error("token claims must be a JSON object")]
    ClaimsNotObject,
    #[error("{0}")]
    PrivateKey(&'static str),
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A signing key with its issuer URL and key id. `Debug` shows no key material.
pub struct Issuer {
    /// The `iss` claim of every token, e.g. `https://oidc.irsa-proxy.local/id/dev`.
    url: String,
    /// The `kid` header of every token and the `kid` of the JWKS entry, so a
    /// verifier holding several keys picks the right one.
    kid: String,
    signer: Signer,
    /// SubjectPublicKeyInfo DER of the public key, kept for PEM and JWKS output.
    public_der: Vec<u8>,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("url", &self.url)
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .field("key", &"...")
            .finish()
    }
}

/// What a Kubernetes service-account token says, for [`Issuer::mint_service_account`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountToken<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub audience: &'a str,
    pub issued_at: SystemTime,
    pub ttl: Duration,
}

fn random_kid() -> String {
    let bytes: [u8; 12] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Issuer {
    /// A new RS256 issuer with a fresh RSA-2048 key.
    pub fn generate_rsa(url: impl Into<String>) -> Result<Issuer, IssuerError> {
        let pair =
            RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| IssuerError::Generate("RSA"))?;
        let public_der = pair
            .public_key()
            .as_der()
            .map_err(|_| IssuerError::PublicKey)?
            .as_ref()
            .to_vec();
        Ok(Issuer {
            url: url.into(),
            kid: random_kid(),
            signer: Signer::Rsa(pair),
            public_der,
        })
    }

    /// A new ES256 issuer with a fresh P-256 key.
    pub fn generate_ec(url: impl Into<String>) -> Result<Issuer, IssuerError> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| IssuerError::Generate("EC P-256"))?;
        let public_der = pair
            .public_key()
            .as_der()
            .map_err(|_| IssuerError::PublicKey)?
            .as_ref()
            .to_vec();
        Ok(Issuer {
            url: url.into(),
            kid: random_kid(),
            signer: Signer::Ec(pair),
            public_der,
        })
    }

    /// An issuer that signs with an existing private key: a PEM `PRIVATE KEY`
    /// (PKCS#8, what `openssl genrsa` and `openssl genpkey` write), `RSA PRIVATE
    /// KEY` (PKCS#1) or `EC PRIVATE KEY` (P-256). Its `kid` is random, as the
    /// emulator's `--issuer-key` verifies without one.
    pub fn from_private_key_pem(url: impl Into<String>, pem: &[u8]) -> Result<Issuer, IssuerError> {
        let text = std::str::from_utf8(pem)
            .map_err(|_| IssuerError::PrivateKey("not a PEM file (not text)"))?;
        let block = |label: &str| -> Option<Vec<u8>> {
            let begin = format!("-----BEGIN {label}-----");
            let end = format!("-----END {label}-----");
            let body = text.split_once(&begin)?.1.split_once(&end)?.0;
            let b64: String = body.split_whitespace().collect();
            STANDARD.decode(b64).ok()
        };
        let (signer, der) = if let Some(der) = block("PRIVATE KEY") {
            match RsaKeyPair::from_pkcs8(&der) {
                Ok(pair) => {
                    let public = pair.public_key().as_der().map(|d| d.as_ref().to_vec());
                    (
                        Signer::Rsa(pair),
                        public.map_err(|_| IssuerError::PublicKey),
                    )
                }
                Err(_) => {
                    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                        .map_err(|_| {
                            IssuerError::PrivateKey("PRIVATE KEY is neither RSA nor EC P-256")
                        })?;
                    let public = pair.public_key().as_der().map(|d| d.as_ref().to_vec());
                    (Signer::Ec(pair), public.map_err(|_| IssuerError::PublicKey))
                }
            }
        } else if let Some(der) = block("RSA PRIVATE KEY") {
            let pair = RsaKeyPair::from_der(&der)
                .map_err(|_| IssuerError::PrivateKey("RSA PRIVATE KEY cannot be read"))?;
            let public = pair.public_key().as_der().map(|d| d.as_ref().to_vec());
            (
                Signer::Rsa(pair),
                public.map_err(|_| IssuerError::PublicKey),
            )
        } else if let Some(der) = block("EC PRIVATE KEY") {
            let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                .map_err(|_| IssuerError::PrivateKey("EC PRIVATE KEY is not a P-256 key"))?;
            let public = pair.public_key().as_der().map(|d| d.as_ref().to_vec());
            (Signer::Ec(pair), public.map_err(|_| IssuerError::PublicKey))
        } else {
            return Err(IssuerError::PrivateKey(
                "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block",
            ));
        };
        Ok(Issuer {
            url: url.into(),
            kid: random_kid(),
            signer,
            public_der: der?,
        })
    }

    /// The issuer URL, the `iss` of the tokens [`Issuer::mint_service_account`] makes.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `kid` in every token's header and in the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `RS256` or `ES256`.
    pub fn alg(&self) -> &'static str {
        match self.signer {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
        }
    }

    /// Signs the given claims as they are (add `iss` yourself, or use
    /// [`Issuer::mint_service_account`]). The header carries `alg`, `typ` and `kid`.
    pub fn mint(&self, claims: &Value) -> Result<String, IssuerError> {
        if !claims.is_object() {
            return Err(IssuerError::ClaimsNotObject);
        }
        let header = json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match &self.signer {
            Signer::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, signing_input.as_bytes(), &mut sig)
                    .map_err(|_| IssuerError::Sign)?;
                sig
            }
            Signer::Ec(pair) => pair
                .sign(&rng, signing_input.as_bytes())
                .map_err(|_| IssuerError::Sign)?
                .as_ref()
                .to_vec(),
        };
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// A token shaped like kubelet's projected service-account token: `iss`,
    /// `sub` = `system:serviceaccount:<ns>:<sa>`, `aud` as an array, `iat`, `nbf`,
    /// `exp` and the `kubernetes.io` claim.
    pub fn mint_service_account(&self, t: &ServiceAccountToken<'_>) -> Result<String, IssuerError> {
        self.mint_for_pod(t, None)
    }

    /// [`Issuer::mint_service_account`] for a pod: with `Some((name, uid))`
    /// the `kubernetes.io` claim names the pod too, as kubelet writes it for a
    /// projected token (Pod Identity's session tags come from it).
    pub fn mint_for_pod(
        &self,
        t: &ServiceAccountToken<'_>,
        pod: Option<(&str, &str)>,
    ) -> Result<String, IssuerError> {
        let iat = unix_seconds(t.issued_at);
        let exp = iat.saturating_add(i64::try_from(t.ttl.as_secs()).unwrap_or(i64::MAX / 2));
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.url));
        claims.insert(
            "sub".into(),
            json!(format!(
                "system:serviceaccount:{}:{}",
                t.namespace, t.service_account
            )),
        );
        claims.insert("aud".into(), json!([t.audience]));
        claims.insert("iat".into(), json!(iat));
        claims.insert("nbf".into(), json!(iat));
        claims.insert("exp".into(), json!(exp));
        let mut k8s =
            json!({"namespace": t.namespace, "serviceaccount": {"name": t.service_account}});
        if let Some((name, uid)) = pod {
            k8s["pod"] = json!({"name": name, "uid": uid});
        }
        claims.insert("kubernetes.io".into(), k8s);
        self.mint(&Value::Object(claims))
    }

    /// The public key as a `-----BEGIN PUBLIC KEY-----` PEM (what `--issuer-key` reads).
    pub fn public_key_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.public_der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// The public key as a JWKS document (what `--jwks` reads).
    pub fn jwks_json(&self) -> String {
        let jwk = match &self.signer {
            Signer::Rsa(pair) => {
                let pk = pair.public_key();
                json!({
                    "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                    "n": URL_SAFE_NO_PAD.encode(pk.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(pk.exponent().big_endian_without_leading_zero()),
                })
            }
            Signer::Ec(pair) => {
                // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
                let point = pair.public_key().as_ref();
                let (x, y) = if point.len() == 65 {
                    (&point[1..33], &point[33..65])
                } else {
                    (&point[..0], &point[..0])
                };
                json!({
                    "kty": "EC", "alg": "ES256", "use": "sig", "kid": self.kid, "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
                })
            }
        };
        json!({ "keys": [jwk] }).to_string()
    }

    /// The public key, ready for [`super::EmulatorSettings::keys`].
    pub fn verifying_keys(&self) -> Result<VerifyingKeys, IssuerError> {
        VerifyingKeys::from_pem_with_kid(self.public_key_pem().as_bytes(), Some(&self.kid))
            .map_err(|_| IssuerError::PublicKey)
    }
}

/// An issuer's public documents, as the emulator serves them on its own port
/// (over TLS when it has a certificate): `<issuer path>/.well-known/openid-configuration`
/// and the JWKS at the path of `jwks_uri`, the two GETs STS makes before it
/// trusts a token (and `doctor --issuer` makes in its place). The fields are
/// plain so a test can serve a wrong document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcDocuments {
    /// The issuer URL: where the discovery document is served, under its path.
    pub issuer_url: String,
    /// The `issuer` the discovery document states (the issuer URL, unless a
    /// test makes them differ).
    pub discovery_issuer: String,
    /// The discovery document's `jwks_uri`; its path serves [`Self::jwks`].
    pub jwks_uri: String,
    /// The JSON Web Key Set.
    pub jwks: String,
    /// `RS256` or `ES256`.
    pub alg: String,
}

impl OidcDocuments {
    /// The documents of `issuer`: its URL, its key, the JWKS at
    /// `<url>/.well-known/jwks.json`.
    pub fn for_issuer(issuer: &Issuer) -> OidcDocuments {
        let url = issuer.url.trim_end_matches('/').to_string();
        OidcDocuments {
            jwks_uri: format!("{url}/.well-known/jwks.json"),
            discovery_issuer: issuer.url.clone(),
            issuer_url: issuer.url.clone(),
            jwks: issuer.jwks_json(),
            alg: issuer.alg().to_string(),
        }
    }

    fn path_of(url: &str) -> Option<String> {
        let uri: http::Uri = url.parse().ok()?;
        Some(uri.path().trim_end_matches('/').to_string())
    }

    /// The document for a GET of `path`, if it is one of the two.
    pub(crate) fn serve(&self, path: &str) -> Option<String> {
        let discovery = Self::path_of(&self.issuer_url)
            .map(|p| format!("{p}/.well-known/openid-configuration"));
        if discovery.as_deref() == Some(path) {
            return Some(
                json!({
                    "issuer": self.discovery_issuer,
                    "jwks_uri": self.jwks_uri,
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": [self.alg],
                })
                .to_string(),
            );
        }
        if Self::path_of(&self.jwks_uri).as_deref() == Some(path) {
            return Some(self.jwks.clone());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_should_verify_with_pem_and_jwks() {
        for issuer in [
            Issuer::generate_rsa("https://issuer.test").unwrap(),
            Issuer::generate_ec("https://issuer.test").unwrap(),
        ] {
            let token = issuer
                .mint_service_account(&ServiceAccountToken {
                    namespace: "demo",
                    service_account: "app",
                    audience: "sts.amazonaws.com",
                    issued_at: SystemTime::now(),
                    ttl: Duration::from_secs(600),
                })
                .unwrap();
            let claims = issuer.verifying_keys().unwrap().verify(&token).unwrap();
            assert_eq!(claims["sub"], "system:serviceaccount:demo:app");
            let jwks = VerifyingKeys::from_jwks(&issuer.jwks_json()).unwrap();
            assert!(jwks.verify(&token).is_ok(), "{}", issuer.alg());
            let other = Issuer::generate_rsa("https://issuer.test").unwrap();
            assert!(other.verifying_keys().unwrap().verify(&token).is_err());
            assert!(!format!("{issuer:?}").contains("BEGIN"));
        }
    }

    #[test]
    fn unsigned_and_symmetric_tokens_should_be_refused() {
        let issuer = Issuer::generate_rsa("https://issuer.test").unwrap();
        let keys = issuer.verifying_keys().unwrap();
        let body = URL_SAFE_NO_PAD.encode(r#"{"sub":"x"}"#);
        let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert!(keys.verify(&none).is_err());
        let hs = format!(
            "{}.{body}.abc",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#)
        );
        assert!(keys.verify(&hs).unwrap_err().to_string().contains("HS256"));
        assert!(keys.verify("garbage").is_err());
    }
}
