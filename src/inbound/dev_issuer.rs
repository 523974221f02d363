//! The embedded development issuer used by `--dev` and `portcullis token`.
//!
//! An ES256 key is generated once and kept in `<data_dir>/dev-issuer.p8` (PKCS#8, mode 0600),
//! so tokens minted by `portcullis token` keep working across restarts. Its issuer is
//! `<public_url>/dev`, with an OIDC discovery document and JWKS served there, so that ordinary
//! clients can treat it like any IdP. It exists for local use only: `--dev` refuses
//! non-loopback addresses (see `config::validate`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};

use super::jwks::VerifyKey;

const KEY_FILE: &str = "dev-issuer.p8";
/// Lifetime of tokens minted by `portcullis token`.
pub const DEV_TOKEN_TTL_SECONDS: u64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a P-256 PKCS#8 key; delete it to generate a new one", path.display())]
    BadKey { path: PathBuf },
    #[error("cannot generate a key: {0}")]
    Generate(String),
    #[error("cannot sign a token: {0}")]
    Sign(String),
}

pub struct DevIssuer {
    issuer: String,
    kid: String,
    encoding: EncodingKey,
    x: String,
    y: String,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// The issuer identifier for a gateway reachable at `public_url`.
    pub fn issuer_for(public_url: &str) -> String {
        format!("{public_url}/dev")
    }

    /// Loads the key from `data_dir`, generating and persisting one on first use.
    pub fn load_or_create(data_dir: &Path, public_url: &str) -> Result<DevIssuer, DevIssuerError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| DevIssuerError::Io {
            path: path.clone(),
            source,
        };
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let document = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|e| DevIssuerError::Generate(e.to_string()))?;
                std::fs::create_dir_all(data_dir).map_err(io)?;
                write_private(&path, document.as_ref()).map_err(io)?;
                document.as_ref().to_vec()
            }
            Err(e) => return Err(io(e)),
        };
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .map_err(|_| DevIssuerError::BadKey { path: path.clone() })?;
        // SEC 1 uncompressed point: 0x04 || X (32 bytes) || Y (32 bytes).
        let point = pair.public_key().as_ref();
        if point.len() != 65 {
            return Err(DevIssuerError::BadKey { path });
        }
        let kid = URL_SAFE_NO_PAD.encode(&digest::digest(&digest::SHA256, point).as_ref()[..12]);
        Ok(DevIssuer {
            issuer: Self::issuer_for(public_url),
            kid,
            encoding: EncodingKey::from_ec_der(&pkcs8),
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn verify_key(&self) -> Result<VerifyKey, DevIssuerError> {
        let key = DecodingKey::from_ec_components(&self.x, &self.y)
            .map_err(|e| DevIssuerError::Sign(e.to_string()))?;
        Ok(VerifyKey {
            key,
            alg: Some(Algorithm::ES256),
        })
    }

    /// RFC 7517 JWK Set with the one public key.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
            "kid": self.kid, "x": self.x, "y": self.y,
        }]})
    }

    /// OpenID Connect Discovery 1.0 section 3, limited to what a resource server needs.
    pub fn discovery_document(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/jwks.json", self.issuer),
            "id_token_signing_alg_values_supported": ["ES256"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
        })
    }

    /// Mints an RFC 9068 access token for `subject`.
    pub fn mint(
        &self,
        subject: &str,
        scopes: &[String],
        audience: &str,
    ) -> Result<String, DevIssuerError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".to_string());
        let claims = json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "client_id": "portcullis-dev",
            "scope": scopes.join(" "),
            "iat": now,
            "nbf": now,
            "exp": now + DEV_TOKEN_TTL_SECONDS,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| DevIssuerError::Sign(e.to_string()))
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
    fn key_persists_and_minted_tokens_verify() {
        let dir = tempfile::tempdir().unwrap();
        let first = DevIssuer::load_or_create(dir.path(), "http://127.0.0.1:1").unwrap();
        let again = DevIssuer::load_or_create(dir.path(), "http://127.0.0.1:1").unwrap();
        assert_eq!(first.kid(), again.kid());
        let token = first.mint("alice", &["mcp".into()], "portcullis").unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.set_audience(&["portcullis"]);
        let data =
            jsonwebtoken::decode::<Value>(&token, &again.verify_key().unwrap().key, &validation)
                .unwrap();
        assert_eq!(data.claims["sub"], "alice");
        assert_eq!(data.claims["iss"], "http://127.0.0.1:1/dev");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
