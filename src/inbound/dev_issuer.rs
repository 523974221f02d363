//! The embedded development issuer used by `--dev` and `portcullis token`.
//!
//! An ES256 key ([`Es256Key`]) is generated once and kept in `<data_dir>/dev-issuer.p8` (PKCS#8, mode 0600),
//! so tokens minted by `portcullis token` keep working across restarts. Its issuer is
//! `<public_url>/dev`, with an OIDC discovery document and JWKS served there, so that ordinary
//! clients can treat it like any IdP. It exists for local use only: `--dev` refuses
//! non-loopback addresses (see `config::validate`).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::es256::{Es256Key, KeyFileError};
use super::jwks::VerifyKey;

const KEY_FILE: &str = "dev-issuer.p8";
/// Lifetime of tokens minted by `portcullis token`.
pub const DEV_TOKEN_TTL_SECONDS: u64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("cannot sign a token: {0}")]
    Sign(String),
    /// `portcullis token` never makes a key of its own: a token signed with a fresh key would be
    /// refused by the running gateway ("unknown kid").
    #[error(
        "no development issuer key at {}: start `portcullis serve --dev` with this config first (it creates the key there), or pass the --config of the running dev gateway",
        path.display()
    )]
    NoKey { path: std::path::PathBuf },
}

#[derive(Debug)]
pub struct DevIssuer {
    issuer: String,
    key: Es256Key,
}

impl DevIssuer {
    /// The issuer identifier for a gateway reachable at `public_url`.
    pub fn issuer_for(public_url: &str) -> String {
        format!("{public_url}/dev")
    }

    /// Loads the key from `data_dir`, generating and persisting one on first use.
    pub fn load_or_create(data_dir: &Path, public_url: &str) -> Result<DevIssuer, DevIssuerError> {
        Ok(DevIssuer {
            issuer: Self::issuer_for(public_url),
            key: Es256Key::load_or_create(&data_dir.join(KEY_FILE))?,
        })
    }

    /// Loads the key `serve --dev` created in `data_dir`; never creates one.
    pub fn load_existing(data_dir: &Path, public_url: &str) -> Result<DevIssuer, DevIssuerError> {
        let path = data_dir.join(KEY_FILE);
        if !path.exists() {
            return Err(DevIssuerError::NoKey { path });
        }
        Self::load_or_create(data_dir, public_url)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn kid(&self) -> &str {
        self.key.kid()
    }

    pub fn verify_key(&self) -> Result<VerifyKey, DevIssuerError> {
        Ok(VerifyKey {
            key: self.key.decoding_key()?,
            alg: Some(Algorithm::ES256),
        })
    }

    /// RFC 7517 JWK Set with the one public key.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.key.public_jwk()]})
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
        jsonwebtoken::encode(&self.key.header("at+jwt"), &claims, self.key.encoding_key())
            .map_err(|e| DevIssuerError::Sign(e.to_string()))
    }
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
