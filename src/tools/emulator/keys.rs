//! The keys that verify web-identity tokens, and the verification itself.
//!
//! Keys come from a PEM file (an RSA or EC public key, or a certificate) or from a
//! JWKS document. A token is verified with the key its `kid` names when one has
//! that `kid`, else with every key of the algorithm's family in turn. Only
//! asymmetric algorithms are accepted (RS256/384/512, ES256/384): an `alg` of
//! `none` or `HS256` is refused, whatever the keys.

use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Why a key file could not be used. Callers prefix the flag and the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM RSA or EC public key or certificate (expected -----BEGIN PUBLIC KEY----- or -----BEGIN CERTIFICATE-----)")]
    NotPem,
    #[error("not a JWKS document: {0}")]
    NotJwks(String),
    #[error("the JWKS has no RSA or EC signing key")]
    NoSigningKey,
}

/// Which family of algorithms a key verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
}

#[derive(Clone)]
struct VerifyingKey {
    kid: Option<String>,
    family: Family,
    key: DecodingKey,
}

/// The public keys the emulator trusts. Cheap to clone.
#[derive(Clone)]
pub struct VerifyingKeys {
    keys: Vec<VerifyingKey>,
}

impl fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self
            .keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("-"))
            .collect();
        f.debug_struct("VerifyingKeys")
            .field("kids", &kids)
            .finish()
    }
}

/// Why a web-identity token's signature does not verify. `Display` is the
/// message of STS's `InvalidIdentityToken`; it never quotes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("The web identity token is not a well-formed JWT")]
    Malformed,
    #[error("The web identity token's algorithm {0:?} is not supported; use RS256 or ES256")]
    Unsupported(Algorithm),
    #[error("No verification key for the web identity token's algorithm {0:?}")]
    NoKey(Algorithm),
    #[error("The web identity token's signature could not be verified with the configured keys")]
    BadSignature,
}

impl VerifyingKeys {
    /// Reads a PEM public key (SubjectPublicKeyInfo or PKCS#1 RSA) or certificate.
    pub(crate) fn from_pem(pem: &[u8]) -> Result<VerifyingKeys, KeyError> {
        Self::from_pem_with_kid(pem, None)
    }

    /// As [`VerifyingKeys::from_pem`], with a `kid` that tokens may name.
    pub(crate) fn from_pem_with_kid(
        pem: &[u8],
        kid: Option<&str>,
    ) -> Result<VerifyingKeys, KeyError> {
        let (key, family) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            (k, Family::Rsa)
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            (k, Family::Ec)
        } else {
            return Err(KeyError::NotPem);
        };
        Ok(VerifyingKeys {
            keys: vec![VerifyingKey {
                kid: kid.map(str::to_string),
                family,
                key,
            }],
        })
    }

    /// Reads a JWKS document (`{"keys": [...]}`); encryption keys are skipped.
    pub fn from_jwks(json: &str) -> Result<VerifyingKeys, KeyError> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| KeyError::NotJwks(e.to_string()))?;
        let mut keys = Vec::new();
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| {
                KeyError::NotJwks(format!(
                    "key {}: {e}",
                    jwk.common.key_id.as_deref().unwrap_or("without kid")
                ))
            })?;
            keys.push(VerifyingKey {
                kid: jwk.common.key_id.clone(),
                family,
                key,
            });
        }
        if keys.is_empty() {
            return Err(KeyError::NoSigningKey);
        }
        Ok(VerifyingKeys { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies the token's signature and returns its claims (not yet checked for
    /// time or audience).
    pub fn verify(&self, token: &str) -> Result<serde_json::Map<String, Value>, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let family = match header.alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => Family::Rsa,
            Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
            other => return Err(VerifyError::Unsupported(other)),
        };
        let of_family: Vec<&VerifyingKey> =
            self.keys.iter().filter(|k| k.family == family).collect();
        let by_kid: Vec<&VerifyingKey> = match &header.kid {
            Some(kid) => of_family
                .iter()
                .copied()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect(),
            None => Vec::new(),
        };
        let candidates = if by_kid.is_empty() { of_family } else { by_kid };
        if candidates.is_empty() {
            return Err(VerifyError::NoKey(header.alg));
        }
        // Time and audience are checked by the caller, against its clock and with
        // STS's error codes; here only the signature and the shape.
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        for k in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &k.key, &validation)
            {
                Ok(data) => return Ok(data.claims),
                Err(e) => match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature
                    | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat
                    | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
                    | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
                    | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => continue,
                    _ => return Err(VerifyError::Malformed),
                },
            }
        }
        Err(VerifyError::BadSignature)
    }
}
