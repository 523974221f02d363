//! Workload access tokens: what `GetWorkloadAccessToken*` hand out and every later data-plane
//! call presents as `workloadIdentityToken`.
//!
//! A compact JWS (RFC 7515) signed ES256 by a key persisted at
//! `<data_dir>/workload-token.p8` (the same key handling as the dev issuer), or, when replicas
//! share a PostgreSQL vault, sealed in the vault so that each verifies the others' tokens
//! (DESIGN 2.9; the gateway assembly picks, `lib.rs`), `typ`
//! `wat+jwt` so it can never be mistaken for another JWT (RFC 8725 section 3.11). Claims:
//! `iss` `<public_url>/identities`, `aud` `portcullis-workload`, `workload`, the user
//! (`sub` = the vault user key, `user` = how it was established), `iat`/`nbf`/`exp` (15
//! minutes) and a `jti`. Bound to one workload and one user: every operation acts for
//! exactly the workload and user in the token, so it is useless for any other.

use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use crate::identity::UserRef;
use crate::identity::consent::now;
use crate::inbound::es256::{Es256Key, KeyFileError};

/// The key's file in `server.data_dir`, and its name in a shared store (DESIGN 2.9).
pub const KEY_FILE: &str = "workload-token.p8";
const AUDIENCE: &str = "portcullis-workload";
const TYP: &str = "wat+jwt";
/// Lifetime of a workload access token.
pub const TTL_SECONDS: u64 = 15 * 60;
/// Clock skew tolerated on `exp` / `nbf` (the tokens are ours, so only a little).
const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum WorkloadTokenError {
    #[error("workloadIdentityToken: {0}")]
    Invalid(&'static str),
    #[error("cannot sign a workload access token: {0}")]
    Sign(String),
}

/// How the token's user was established.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum UserClaim {
    /// `GetWorkloadAccessTokenForJWT`: verified by the inbound IdP.
    Jwt { iss: String, sub: String },
    /// `GetWorkloadAccessTokenForUserId`: asserted by the agent.
    UserId { id: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    workload: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserClaim>,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
}

/// A verified token: whom it lets act for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadToken {
    pub workload: String,
    /// `None` for `GetWorkloadAccessToken` (no user: M2M and API keys only).
    pub user: Option<UserRef>,
}

pub struct WorkloadTokens {
    key: Es256Key,
    decoding: jsonwebtoken::DecodingKey,
    issuer: String,
}

impl WorkloadTokens {
    /// Tokens signed with `key` (every replica's, when they share a store).
    pub fn new(key: Es256Key, public_url: &str) -> Result<WorkloadTokens, KeyFileError> {
        Ok(WorkloadTokens {
            decoding: key.decoding_key()?,
            key,
            issuer: format!("{public_url}/identities"),
        })
    }

    pub fn mint(
        &self,
        workload: &str,
        user: Option<&UserRef>,
    ) -> Result<String, WorkloadTokenError> {
        let now = now();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.to_string(),
            sub: user.map(UserRef::key),
            workload: workload.to_string(),
            user: user.map(|u| match u {
                UserRef::Federated { issuer, subject } => UserClaim::Jwt {
                    iss: issuer.clone(),
                    sub: subject.clone(),
                },
                UserRef::UserId(id) => UserClaim::UserId { id: id.clone() },
            }),
            iat: now,
            nbf: now,
            exp: now + TTL_SECONDS,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&self.key.header(TYP), &claims, self.key.encoding_key())
            .map_err(|e| WorkloadTokenError::Sign(e.to_string()))
    }

    /// Signature (ES256 only), `typ`, `iss`, `aud`, `exp`/`nbf`, and a consistent user.
    pub fn verify(&self, token: &str) -> Result<WorkloadToken, WorkloadTokenError> {
        let invalid = WorkloadTokenError::Invalid;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("not a workload access token"))?;
        if header.alg != Algorithm::ES256
            || header.typ.as_deref() != Some(TYP)
            || header.kid.as_deref() != Some(self.key.kid())
        {
            return Err(invalid(
                "not a workload access token issued by this gateway",
            ));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    invalid("the workload access token has expired; get a new one")
                }
                _ => invalid("not a valid workload access token issued by this gateway"),
            })?
            .claims;
        let user = claims.user.map(|u| match u {
            UserClaim::Jwt { iss, sub } => UserRef::Federated {
                issuer: iss,
                subject: sub,
            },
            UserClaim::UserId { id } => UserRef::UserId(id),
        });
        if claims.sub != user.as_ref().map(UserRef::key) {
            return Err(invalid("inconsistent workload access token"));
        }
        Ok(WorkloadToken {
            workload: claims.workload,
            user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(dir: &std::path::Path) -> WorkloadTokens {
        let key = Es256Key::load_or_create(&dir.join(KEY_FILE)).unwrap();
        WorkloadTokens::new(key, "http://127.0.0.1:1").unwrap()
    }

    #[test]
    fn tokens_carry_workload_and_user_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let alice = UserRef::Federated {
            issuer: "https://idp.example".into(),
            subject: "alice".into(),
        };
        let token = tokens(dir.path()).mint("agent-a", Some(&alice)).unwrap();
        let verified = tokens(dir.path()).verify(&token).unwrap();
        assert_eq!(verified.workload, "agent-a");
        assert_eq!(verified.user, Some(alice));
        let bob = tokens(dir.path())
            .mint("agent-a", Some(&UserRef::UserId("bob".into())))
            .unwrap();
        assert_eq!(
            tokens(dir.path()).verify(&bob).unwrap().user.unwrap().key(),
            "userid:bob"
        );
    }

    #[test]
    fn another_gateways_key_or_a_tampered_token_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let token = tokens(a.path()).mint("agent-a", None).unwrap();
        assert!(tokens(b.path()).verify(&token).is_err());
        // Swap the payload for one naming another workload, keeping the signature.
        let other = tokens(a.path()).mint("agent-b", None).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let other_parts: Vec<&str> = other.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
        assert!(tokens(a.path()).verify(&forged).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = tokens(dir.path());
        let claims = Claims {
            iss: issuer.issuer.clone(),
            aud: AUDIENCE.into(),
            sub: None,
            workload: "agent-a".into(),
            user: None,
            iat: 1,
            nbf: 1,
            exp: now() - 120,
            jti: "x".into(),
        };
        let token =
            jsonwebtoken::encode(&issuer.key.header(TYP), &claims, issuer.key.encoding_key())
                .unwrap();
        let err = issuer.verify(&token).unwrap_err().to_string();
        assert!(err.contains("expired"), "{err}");
    }
}
