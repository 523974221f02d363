//! JWT verification and the admin's acceptance rules (a CUSTOM_JWT authorizer), for access
//! tokens and, with the same header and key rules, for the ID tokens of the gateway's own
//! sign-in (issue 9 item 6: two copies of those rules had drifted apart).

use std::collections::HashSet;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::cache::VerifiedCache;
use super::jwks::{KeyStore, VerifyKey};
use super::{AuthError, Caller};
use super::{ClaimCheck, ClaimRule, InboundConfig};

/// Upper bound on what we are willing to base64-decode and parse for one request.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

pub struct Verifier {
    keys: Arc<KeyStore>,
    algorithms: Vec<Algorithm>,
    audiences: HashSet<String>,
    clients: Vec<String>,
    scopes: Vec<String>,
    claims: Vec<ClaimRule>,
    leeway: u64,
    verified: VerifiedCache,
}

impl Verifier {
    pub fn new(config: &InboundConfig, keys: Arc<KeyStore>) -> Verifier {
        Verifier {
            keys,
            algorithms: config.algorithms.clone(),
            audiences: config.allowed_audiences.iter().cloned().collect(),
            clients: config.allowed_clients.clone(),
            scopes: config.allowed_scopes.clone(),
            claims: config.claims.clone(),
            leeway: config.leeway_seconds,
            verified: VerifiedCache::default(),
        }
    }

    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// The scopes advertised in RFC 9728 metadata and demanded in `insufficient_scope`.
    pub fn required_scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Verifies a compact JWS access token and applies every rule; `Ok` means the caller may
    /// proceed.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let snapshot = self.keys.snapshot();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if let Some(caller) = self.verified.get(token, &snapshot, now, self.leeway) {
            return Ok(caller);
        }
        let claims = self
            .signed_claims(token, |aud| self.audiences.contains(aud))
            .await?;
        let caller = self.caller_from(claims)?;
        // Only if no refetch replaced the key set meanwhile: an entry must never outlive the
        // keys it was checked against.
        if Arc::ptr_eq(&snapshot, &self.keys.snapshot()) {
            self.verified.insert(token, &snapshot, &caller);
        }
        Ok(caller)
    }

    /// Verifies an OIDC ID token for the gateway's own sign-in (OIDC Core 1.0 section
    /// 3.1.3.7) with the same header, key and signature rules as access tokens: the algorithm
    /// allow-list, exactly one key, `iss`, `exp`/`nbf`; `aud` must contain `client_id`, and an
    /// `azp`, if present, must be `client_id` (items 3-5). The caller checks the `nonce`.
    /// Scope, client and claim rules are for access tokens and do not apply.
    pub async fn verify_id_token(
        &self,
        token: &str,
        client_id: &str,
    ) -> Result<Map<String, Value>, AuthError> {
        let claims = self.signed_claims(token, |aud| aud == client_id).await?;
        match claims.get("azp") {
            None => Ok(claims),
            Some(Value::String(azp)) if azp == client_id => Ok(claims),
            Some(_) => Err(invalid("authorized party (azp) is not this client")),
        }
    }

    /// The one place where a token's header picks its key, so the access-token and ID-token
    /// paths cannot drift apart: size, algorithm allow-list (RFC 8725 section 3.1; `none` never
    /// parses), exactly one key (the `kid`'s, or the only key published without one), the
    /// JWK's own `alg` if it pins one (RFC 7517 section 4.4), then signature, `iss`,
    /// `exp`/`nbf` with leeway, and an `aud` that `audience_allowed` accepts.
    async fn signed_claims(
        &self,
        token: &str,
        audience_allowed: impl Fn(&str) -> bool,
    ) -> Result<Map<String, Value>, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid("token is too large"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            invalid("malformed JWT or unsupported algorithm (\"none\" is never accepted)")
        })?;
        if !self.algorithms.contains(&header.alg) {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = self.key_for(header.kid.as_deref()).await?;
        if key.alg.is_some_and(|pinned| pinned != header.alg) {
            return Err(invalid(format!(
                "algorithm {:?} does not match the signing key",
                header.alg
            )));
        }
        let issuer = self
            .keys
            .snapshot()
            .issuer
            .clone()
            .ok_or(AuthError::KeysUnavailable)?;
        let claims = self.decode(token, header.alg, &key, &issuer)?;
        check_audience(&claims, audience_allowed)?;
        Ok(claims)
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<Arc<VerifyKey>, AuthError> {
        let snapshot = self.keys.snapshot();
        if !snapshot.is_loaded() {
            return Err(AuthError::KeysUnavailable);
        }
        match kid {
            Some(kid) => {
                if let Some(key) = snapshot.by_kid.get(kid) {
                    return Ok(key.clone());
                }
                let snapshot = self.keys.refresh_for_unknown_kid(kid).await;
                snapshot
                    .by_kid
                    .get(kid)
                    .cloned()
                    .ok_or_else(|| invalid("signed with an unknown key (kid)"))
            }
            None => match snapshot.anonymous.as_slice() {
                [only] => Ok(only.clone()),
                _ => Err(invalid(
                    "token has no kid and the issuer publishes no single key without one",
                )),
            },
        }
    }

    /// Signature and the registered claims jsonwebtoken checks well. `aud` is left to
    /// [`check_audience`]: jsonwebtoken skips it when the claim is absent or not a string /
    /// array of strings.
    fn decode(
        &self,
        token: &str,
        alg: Algorithm,
        key: &VerifyKey,
        issuer: &str,
    ) -> Result<Map<String, Value>, AuthError> {
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.validate_aud = false;
        jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                invalid(match e.kind() {
                    ErrorKind::ExpiredSignature => "token has expired".to_string(),
                    ErrorKind::ImmatureSignature => "token is not valid yet (nbf)".to_string(),
                    ErrorKind::InvalidIssuer => "issuer is not accepted".to_string(),
                    ErrorKind::InvalidSignature => "signature does not verify".to_string(),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("required claim {claim:?} is missing")
                    }
                    ErrorKind::InvalidAlgorithm => {
                        "algorithm does not match the signing key".to_string()
                    }
                    _ => "malformed token".to_string(),
                })
            })
    }

    fn caller_from(&self, claims: Map<String, Value>) -> Result<Caller, AuthError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        let (Some(issuer), Some(subject)) = (text("iss"), text("sub")) else {
            return Err(invalid("iss and sub must be strings"));
        };
        if subject.is_empty() {
            return Err(invalid("sub is empty"));
        }
        // RFC 9068 section 2.2 names the claim client_id; many IdPs only send azp (OIDC Core 2).
        let client_id = text("client_id").or_else(|| text("azp"));
        if !self.clients.is_empty()
            && !client_id.is_some_and(|c| self.clients.iter().any(|a| a == c))
        {
            return Err(invalid("client is not accepted"));
        }
        for rule in &self.claims {
            if !rule_holds(rule, claims.get(&rule.name)) {
                return Err(invalid(format!(
                    "claim rule on {:?} is not satisfied",
                    rule.name
                )));
            }
        }
        let scopes = scopes_of(&claims);
        if !self.scopes.is_empty() && !scopes.iter().any(|s| self.scopes.contains(s)) {
            return Err(AuthError::InsufficientScope(self.scopes.clone()));
        }
        Ok(Caller {
            issuer: issuer.into(),
            subject: subject.into(),
            client_id: client_id.map(Into::into),
            scopes: scopes.into(),
            expires_at: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
            claims: std::sync::Arc::new(claims.clone()),
        })
    }
}

/// RFC 7519 section 4.1.3: `aud` is a string or an array of strings; RFC 9068 section 4 and
/// OIDC Core 1.0 section 3.1.3.7 item 3: it must be present and name us. Anything else, an
/// array with a single non-string member included, is refused as a whole rather than
/// half-read. The reasons name the problem, never the values.
fn check_audience(
    claims: &Map<String, Value>,
    audience_allowed: impl Fn(&str) -> bool,
) -> Result<(), AuthError> {
    let shape = || invalid("audience claim must be a string or an array of strings");
    let allowed = match claims.get("aud") {
        None => return Err(invalid("audience claim is missing")),
        Some(Value::String(aud)) => audience_allowed(aud),
        Some(Value::Array(items)) => {
            let mut allowed = false;
            for item in items {
                allowed |= audience_allowed(item.as_str().ok_or_else(shape)?);
            }
            allowed
        }
        Some(_) => return Err(shape()),
    };
    if allowed {
        Ok(())
    } else {
        Err(invalid("audience is not accepted"))
    }
}

fn invalid(reason: impl Into<String>) -> AuthError {
    AuthError::InvalidToken(reason.into())
}

/// `scope` is a space-separated string (RFC 9068 section 2.2.3, RFC 8693 section 4.2);
/// Microsoft and Okta send `scp`, as a string or an array.
fn scopes_of(claims: &Map<String, Value>) -> Vec<String> {
    let mut scopes = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => scopes.extend(s.split_ascii_whitespace().map(str::to_string)),
            Some(Value::Array(items)) => {
                scopes.extend(items.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => {}
        }
    }
    scopes
}

fn rule_holds(rule: &ClaimRule, value: Option<&Value>) -> bool {
    let Some(value) = value else { return false };
    match &rule.check {
        ClaimCheck::Equals(expected) => value == expected,
        ClaimCheck::ContainsAny(wanted) => match value {
            Value::Array(items) => items.iter().any(|item| wanted.contains(item)),
            Value::String(s) => s
                .split_ascii_whitespace()
                .any(|part| wanted.iter().any(|w| w.as_str() == Some(part))),
            other => wanted.contains(other),
        },
    }
}

#[cfg(test)]
mod tests;
