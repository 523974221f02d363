//! Who is calling? Bearer JWT -> [`Caller`] (DESIGN 3.2 invariant 1).
//!
//! The pipeline, in order: RFC 6750 header parsing, header decode, algorithm allow-list
//! (RFC 8725 section 3.1), key lookup by `kid` in the issuer's JWKS, signature, registered
//! claims (`iss`, `exp`/`nbf` with leeway, `aud` per RFC 9068 section 4: present, and a string
//! or an array of strings, one of them allowed), then the admin's client, scope and claim rules. The caller's identity is issuer + subject; the raw token is
//! dropped here and never reaches a target (invariant 2).

mod cache;
mod challenge;
mod dev_issuer;
pub mod es256;
mod jwks;
mod layer;
mod metadata;
mod rules;
mod settings;

use std::sync::Arc;

pub use challenge::auth_error_response;
pub use dev_issuer::{DevIssuer, DevIssuerError};
pub use jwks::{KeyStore, KeyStoreError};
pub use layer::{AuthLayerState, require_caller};
pub use metadata::{metadata_path, protected_resource_metadata, www_authenticate};
pub use rules::Verifier;
pub use settings::{ClaimCheck, ClaimRule, InboundConfig, KeySourceConfig};

/// Audience that `portcullis token` puts in dev tokens and `--dev` requires.
pub const DEV_AUDIENCE: &str = "portcullis";
/// Scope that `portcullis token` grants by default and `--dev` requires.
pub const DEV_SCOPE: &str = "mcp";

/// An authenticated caller. Cheap to clone; holds no token material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub issuer: Arc<str>,
    pub subject: Arc<str>,
    /// `client_id` (RFC 9068 section 2.2) or, failing that, `azp`.
    pub client_id: Option<Arc<str>>,
    pub scopes: Arc<[String]>,
    /// `exp` of the inbound token, seconds since the epoch.
    pub expires_at: u64,
    /// The token's claims, for policies (principal tags, DESIGN 2.10). Claims are statements
    /// about the caller, not the token itself: nothing here can be replayed.
    pub claims: Arc<serde_json::Map<String, serde_json::Value>>,
}

impl Caller {
    /// This caller's vault user key, see [`user_key`].
    pub fn user_id(&self) -> String {
        user_key(&self.issuer, &self.subject)
    }
}

/// A caller of `https://idp.example` with these claims, for unit tests of what reads them.
#[cfg(test)]
pub(crate) fn test_caller(subject: &str, claims: serde_json::Value) -> Caller {
    let serde_json::Value::Object(claims) = claims else {
        unreachable!("test claims are a JSON object")
    };
    Caller {
        issuer: Arc::from("https://idp.example"),
        subject: Arc::from(subject),
        client_id: None,
        scopes: Arc::from(Vec::<String>::new()),
        expires_at: 0,
        claims: Arc::new(claims),
    }
}

/// The one spelling of a user's vault key: `issuer#subject`. Stable and unambiguous because an
/// OIDC issuer never contains `#` (OIDC Discovery 1.0 section 3 forbids fragments), so the key
/// splits back at the first `#`.
pub fn user_key(issuer: &str, subject: &str) -> String {
    format!("{issuer}#{subject}")
}

/// Why a request was not authenticated. Descriptions never include token material.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header (RFC 6750 section 3.1: no error code).
    #[error("bearer token required")]
    MissingToken,
    /// The token is malformed, badly signed, expired, or not meant for this gateway.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// Valid token without any of the required scopes (RFC 6750 section 3.1).
    #[error("insufficient scope: one of [{}] is required", .0.join(", "))]
    InsufficientScope(Vec<String>),
    /// The issuer's keys have never been loaded; the request may succeed later.
    #[error("the identity provider's signing keys are not available yet")]
    KeysUnavailable,
}

impl AuthError {
    /// The metrics label: bounded, no token data.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::InsufficientScope(_) => "insufficient_scope",
            AuthError::KeysUnavailable => "keys_unavailable",
        }
    }
}
