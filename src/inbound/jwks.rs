//! The issuer's signing keys: OIDC discovery, JWKS fetch, and a cache that keeps serving.
//!
//! Policy (what a gateway in front of production traffic needs):
//! - keys are fetched at start and refreshed in the background every [`REFRESH_EVERY`];
//! - a token with an unknown `kid` triggers one immediate refetch (key rotation, OIDC Core
//!   section 10.1.1), debounced to one fetch per [`UNKNOWN_KID_DEBOUNCE`] so that a flood of
//!   forged `kid`s cannot turn the gateway into a JWKS hammer;
//! - a failed fetch never drops the last good keys: an IdP outage must not log everyone out.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use url::Url;

use super::KeySourceConfig;

pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
pub const UNKNOWN_KID_DEBOUNCE: Duration = Duration::from_secs(10);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A JWKS or discovery document larger than this is refused rather than parsed.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("fetching {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("discovery document at {url}: {reason}")]
    Discovery { url: String, reason: String },
    #[error("JWKS at {url} holds no usable signing key")]
    NoKeys { url: String },
}

/// A verification key and the algorithms it may be used with.
pub struct VerifyKey {
    pub key: DecodingKey,
    /// The JWK's own `alg`, if it pins one (RFC 7517 section 4.4).
    pub alg: Option<Algorithm>,
}

/// One consistent view of the issuer and its keys.
#[derive(Default)]
pub struct KeySnapshot {
    pub issuer: Option<String>,
    pub by_kid: HashMap<String, Arc<VerifyKey>>,
    /// Keys published without a `kid`; tried only for tokens without one.
    pub anonymous: Vec<Arc<VerifyKey>>,
}

impl KeySnapshot {
    pub fn is_loaded(&self) -> bool {
        self.issuer.is_some() && !(self.by_kid.is_empty() && self.anonymous.is_empty())
    }
}

enum Source {
    Remote {
        discovery_url: Option<Url>,
        issuer: Option<String>,
        jwks_url: Option<Url>,
    },
    Static,
}

pub struct KeyStore {
    source: Source,
    http: reqwest::Client,
    snapshot: ArcSwap<KeySnapshot>,
    /// Single-flight for fetches; holds when the last fetch was attempted.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

impl KeyStore {
    /// A store fed from the network. Nothing is fetched until [`KeyStore::refresh`].
    pub fn remote(config: &KeySourceConfig, http: reqwest::Client) -> KeyStore {
        let source = match config {
            KeySourceConfig::Discovery {
                discovery_url,
                issuer,
                jwks_url,
            } => Source::Remote {
                discovery_url: Some(discovery_url.clone()),
                issuer: issuer.clone(),
                jwks_url: jwks_url.clone(),
            },
            KeySourceConfig::Explicit { issuer, jwks_url } => Source::Remote {
                discovery_url: None,
                issuer: Some(issuer.clone()),
                jwks_url: Some(jwks_url.clone()),
            },
            KeySourceConfig::DevIssuer => Source::Static,
        };
        KeyStore {
            source,
            http,
            snapshot: ArcSwap::from_pointee(KeySnapshot::default()),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// A store with fixed keys (the embedded dev issuer).
    pub fn fixed(issuer: String, kid: String, key: VerifyKey) -> KeyStore {
        let mut by_kid = HashMap::new();
        by_kid.insert(kid, Arc::new(key));
        KeyStore {
            source: Source::Static,
            http: reqwest::Client::new(),
            snapshot: ArcSwap::from_pointee(KeySnapshot {
                issuer: Some(issuer),
                by_kid,
                anonymous: vec![],
            }),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    /// A store with exactly the keys of `snapshot`, for tests of the key-selection rules.
    #[cfg(test)]
    pub fn from_snapshot(snapshot: KeySnapshot) -> KeyStore {
        KeyStore {
            source: Source::Static,
            http: reqwest::Client::new(),
            snapshot: ArcSwap::from_pointee(snapshot),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    pub fn snapshot(&self) -> Arc<KeySnapshot> {
        self.snapshot.load_full()
    }

    pub fn is_loaded(&self) -> bool {
        self.snapshot.load().is_loaded()
    }

    /// Fetches discovery and JWKS now; on failure the previous keys stay in place.
    pub async fn refresh(&self) -> Result<(), KeyStoreError> {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch_and_swap().await
    }

    /// Called when a token names a `kid` we do not know: refetch unless one ran recently.
    /// Returns the (possibly new) snapshot.
    pub async fn refresh_for_unknown_kid(&self, kid: &str) -> Arc<KeySnapshot> {
        if matches!(self.source, Source::Static) {
            return self.snapshot();
        }
        let mut last = self.last_fetch.lock().await;
        // Another task may have fetched while we waited for the lock.
        let current = self.snapshot();
        if current.by_kid.contains_key(kid) {
            return current;
        }
        if last.is_some_and(|at| at.elapsed() < UNKNOWN_KID_DEBOUNCE) {
            return current;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.fetch_and_swap().await {
            tracing::warn!(%error, "JWKS refetch for an unknown kid failed; keeping the last good keys");
        }
        self.snapshot()
    }

    /// Keeps the keys fresh until the process ends; retries sooner while nothing is loaded.
    pub async fn run_refresh_loop(self: Arc<Self>) {
        if matches!(self.source, Source::Static) {
            return;
        }
        loop {
            let wait = match self.refresh().await {
                Ok(()) => REFRESH_EVERY,
                Err(error) => {
                    tracing::warn!(%error, "inbound JWKS refresh failed; keeping the last good keys");
                    if self.is_loaded() {
                        Duration::from_secs(30)
                    } else {
                        Duration::from_secs(2)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn fetch_and_swap(&self) -> Result<(), KeyStoreError> {
        let Source::Remote {
            discovery_url,
            issuer,
            jwks_url,
        } = &self.source
        else {
            return Ok(());
        };
        let (issuer, jwks_url) = match discovery_url {
            Some(discovery_url) => {
                let doc: DiscoveryDocument = self.fetch_json(discovery_url.as_str()).await?;
                // OIDC Discovery 1.0 section 4.3: the document's issuer must be the one the
                // discovery URL was derived from, or a man in the middle could substitute keys.
                let expected = issuer.clone().unwrap_or_else(|| {
                    discovery_url
                        .as_str()
                        .trim_end_matches("/.well-known/openid-configuration")
                        .trim_end_matches("/.well-known/oauth-authorization-server")
                        .to_string()
                });
                if doc.issuer.trim_end_matches('/') != expected.trim_end_matches('/') {
                    return Err(KeyStoreError::Discovery {
                        url: discovery_url.to_string(),
                        reason: format!(
                            "issuer {:?} does not match the expected {:?}",
                            doc.issuer, expected
                        ),
                    });
                }
                let jwks = match jwks_url {
                    Some(url) => url.to_string(),
                    None => doc.jwks_uri,
                };
                (doc.issuer, jwks)
            }
            None => (
                issuer.clone().unwrap_or_default(),
                jwks_url
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
        };
        let set: JwkSet = self.fetch_json(&jwks_url).await?;
        let snapshot = snapshot_from_jwks(issuer, &set);
        if !snapshot.is_loaded() {
            return Err(KeyStoreError::NoKeys { url: jwks_url });
        }
        tracing::info!(keys = snapshot.by_kid.len() + snapshot.anonymous.len(), jwks = %jwks_url, "inbound signing keys loaded");
        self.snapshot.store(Arc::new(snapshot));
        Ok(())
    }

    async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, KeyStoreError> {
        let fail = |reason: String| KeyStoreError::Fetch {
            url: url.to_string(),
            reason,
        };
        let response = self
            .http
            .get(url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let body = crate::body::read_limited(response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| fail(e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| fail(format!("invalid JSON: {e}")))
    }
}

/// Keeps signature keys only (RFC 7517 section 4.2 `use`), skipping symmetric and unknown kinds.
pub fn snapshot_from_jwks(issuer: String, set: &JwkSet) -> KeySnapshot {
    let mut snapshot = KeySnapshot {
        issuer: Some(issuer),
        ..KeySnapshot::default()
    };
    for jwk in &set.keys {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        if !matches!(
            jwk.algorithm,
            AlgorithmParameters::RSA(_)
                | AlgorithmParameters::EllipticCurve(_)
                | AlgorithmParameters::OctetKeyPair(_)
        ) {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&a.to_string()).ok());
        let key = Arc::new(VerifyKey { key, alg });
        match &jwk.common.key_id {
            Some(kid) => {
                snapshot.by_kid.insert(kid.clone(), key);
            }
            None => snapshot.anonymous.push(key),
        }
    }
    snapshot
}
