//! One persisted ES256 (ECDSA P-256, RFC 7518 section 3.4) signing key: generated once with
//! aws-lc-rs, kept as PKCS#8 in a file readable by the owner only, loaded on every start.
//!
//! Used by the development issuer (`dev-issuer.p8`) and by the identity API's workload access
//! tokens (`workload-token.p8`); both need a key that survives restarts so that tokens already
//! handed out stay verifiable.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Value, json};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a P-256 PKCS#8 key; delete it to generate a new one", path.display())]
    BadKey { path: PathBuf },
    /// The shared store's copy (several replicas, DESIGN 2.9) is not a key.
    #[error("the vault's shared signing key {name:?} is not a P-256 PKCS#8 key")]
    BadStoredKey { name: String },
    #[error("cannot generate a key: {0}")]
    Generate(String),
    #[error("the public key cannot be used for verification: {0}")]
    Verify(String),
}

/// A loaded key. `Debug` shows the key id only.
pub struct Es256Key {
    kid: String,
    encoding: EncodingKey,
    x: String,
    y: String,
}

impl std::fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es256Key")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Es256Key {
    /// Loads the key at `path`, generating and persisting one (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Es256Key, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let pkcs8 = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let document = Self::generate_pkcs8()?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(path, &document).map_err(io)?;
                document
            }
            Err(e) => return Err(io(e)),
        };
        Self::from_pkcs8(&pkcs8).ok_or_else(|| KeyFileError::BadKey {
            path: path.to_path_buf(),
        })
    }

    /// A fresh P-256 key as PKCS#8 DER, for a store to keep ([`Es256Key::from_pkcs8`] reads it).
    pub fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
        let document =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|e| KeyFileError::Generate(e.to_string()))?;
        Ok(Zeroizing::new(document.as_ref().to_vec()))
    }

    /// The key in `pkcs8` (P-256 PKCS#8 DER); `None` if it is not one (the caller names
    /// where it came from).
    pub fn from_pkcs8(pkcs8: &[u8]) -> Option<Es256Key> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).ok()?;
        // SEC 1 uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes).
        let point = pair.public_key().as_ref();
        if point.len() != 65 {
            return None;
        }
        // RFC 7638-style stable id: a digest of the public point, never of the private key.
        let kid = URL_SAFE_NO_PAD.encode(&digest::digest(&digest::SHA256, point).as_ref()[..12]);
        Some(Es256Key {
            kid,
            encoding: EncodingKey::from_ec_der(pkcs8),
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    /// The public half, for `jsonwebtoken::decode`.
    pub fn decoding_key(&self) -> Result<DecodingKey, KeyFileError> {
        DecodingKey::from_ec_components(&self.x, &self.y)
            .map_err(|e| KeyFileError::Verify(e.to_string()))
    }

    /// RFC 7517 JWK of the public key.
    pub fn public_jwk(&self) -> Value {
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
            "kid": self.kid, "x": self.x, "y": self.y,
        })
    }

    /// A JWS header for this key: `alg` ES256, `kid`, and the given `typ` (RFC 8725 section 3.11).
    pub fn header(&self, typ: &str) -> jsonwebtoken::Header {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some(typ.to_string());
        header
    }
}

/// Writes a private key readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_with_owner_only_mode_and_reloads_with_the_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("k.p8");
        let first = Es256Key::load_or_create(&path).unwrap();
        let again = Es256Key::load_or_create(&path).unwrap();
        assert_eq!(first.kid(), again.kid());
        assert!(!format!("{first:?}").contains(&first.x));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn garbage_key_file_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.p8");
        std::fs::write(&path, b"not a key").unwrap();
        assert!(matches!(
            Es256Key::load_or_create(&path),
            Err(KeyFileError::BadKey { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key");
    }
}
