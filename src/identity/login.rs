//! The gateway's own sign-in at the inbound IdP (`[inbound.login]`), used by
//! `consent_binding = "login"` and `/connections` to learn which user a browser belongs to:
//! OIDC authorization code flow with PKCE and `nonce` (OIDC Core 1.0 sections 3.1.2 and 3.1.3.7).
//!
//! The sign-in in progress (`state`, `nonce`, PKCE verifier, where to return) is sealed into a
//! cookie of the browser that starts it, not stored: the callback completes only in that
//! browser (a leaked `/oauth2/login/callback?code=..&state=..` URL signs nobody in: login CSRF,
//! OAuth 2.0 Security BCP section 4.7.1, issue 9 item 1), and an unauthenticated request costs
//! the store nothing (DESIGN 3.2 invariant 9).

use std::time::Duration;

use oauth2::PkceCodeChallenge;
use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;
use url::Url;

use super::IdentityError;
use super::consent::{self, BrowserSession, now, random_token};
use super::settings::IdentitySections;
use crate::inbound::KeySourceConfig;
use crate::inbound::{KeyStore, Verifier};
use crate::vault::{Secret, Store};

pub const LOGIN_TTL_SECONDS: u64 = 600;
/// The [`Store::seal_transient`] purpose of sign-in cookies.
const COOKIE_PURPOSE: &str = "login-attempt";
/// Cookie names carry a prefix of the `state`, so that two sign-ins started in two tabs of
/// one browser do not overwrite each other.
const COOKIE_PREFIX: &str = "portcullis_login_";
const STATE_CHARS_IN_NAME: usize = 16;

/// A sign-in in progress, as sealed into its cookie.
#[derive(serde::Serialize, Deserialize)]
struct LoginAttempt {
    state: String,
    return_to: String,
    nonce: String,
    pkce_verifier: Secret,
    expires_at: u64,
}

/// The cookie that binds a sign-in to the browser that started it.
pub struct LoginCookie {
    pub name: String,
    /// base64url of the sealed [`LoginAttempt`].
    pub value: String,
}

/// The cookie name for the sign-in whose `state` is `state` (`None` for a `state` that no
/// sign-in of ours could have: too short, or not URL-safe).
pub fn cookie_name(state: &str) -> Option<String> {
    let prefix = state.get(..STATE_CHARS_IN_NAME)?;
    prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        .then(|| format!("{COOKIE_PREFIX}{prefix}"))
}
const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
struct Metadata {
    authorization_endpoint: String,
    token_endpoint: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

pub struct LoginClient {
    discovery_url: Url,
    client_id: String,
    client_secret: Option<Secret>,
    redirect_uri: String,
    /// The `[inbound]` rules, for ID tokens too (issue 9 item 6: one set of header/key rules).
    verifier: Verifier,
    http: reqwest::Client,
    endpoints: OnceCell<(Url, Url)>,
}

fn fail(reason: impl Into<String>) -> IdentityError {
    IdentityError::Provider {
        provider: "inbound login".into(),
        reason: reason.into(),
    }
}

impl LoginClient {
    /// `None` unless `[inbound.login]` is configured with a discoverable issuer.
    pub fn new(
        sections: IdentitySections<'_>,
        keys: std::sync::Arc<KeyStore>,
        http: reqwest::Client,
    ) -> Option<LoginClient> {
        let login = sections.identity.login.as_ref()?;
        let KeySourceConfig::Discovery { discovery_url, .. } = &sections.inbound.keys else {
            return None;
        };
        Some(LoginClient {
            discovery_url: discovery_url.clone(),
            client_id: login.client_id.clone(),
            client_secret: login.client_secret.clone(),
            redirect_uri: format!("{}/oauth2/login/callback", sections.public_url),
            verifier: Verifier::new(sections.inbound, keys),
            http,
            endpoints: OnceCell::new(),
        })
    }

    async fn endpoints(&self) -> Result<&(Url, Url), IdentityError> {
        self.endpoints
            .get_or_try_init(|| async {
                let response = self
                    .http
                    .get(self.discovery_url.clone())
                    .timeout(TIMEOUT)
                    .send()
                    .await
                    .map_err(|e| fail(e.without_url().to_string()))?;
                let metadata: Metadata = response
                    .json()
                    .await
                    .map_err(|e| fail(e.without_url().to_string()))?;
                let parse =
                    |s: &str| Url::parse(s).map_err(|e| fail(format!("bad endpoint {s:?}: {e}")));
                Ok((
                    parse(&metadata.authorization_endpoint)?,
                    parse(&metadata.token_endpoint)?,
                ))
            })
            .await
    }

    /// Starts a sign-in that returns the browser to `return_to` (a path on this gateway):
    /// the IdP's authorization URL, and the cookie to set on the same response.
    pub async fn start(
        &self,
        store: &dyn Store,
        return_to: &str,
    ) -> Result<(Url, LoginCookie), IdentityError> {
        let (authorization, _) = self.endpoints().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = random_token(24);
        let nonce = random_token(18);
        let attempt = LoginAttempt {
            state: state.clone(),
            return_to: return_to.to_string(),
            nonce: nonce.clone(),
            pkce_verifier: Secret::new(verifier.secret().clone()),
            expires_at: now() + LOGIN_TTL_SECONDS,
        };
        let plaintext = zeroize::Zeroizing::new(
            serde_json::to_vec(&attempt).map_err(|e| IdentityError::Internal(e.to_string()))?,
        );
        let sealed = store.seal_transient(COOKIE_PURPOSE, &plaintext)?;
        let cookie = LoginCookie {
            name: cookie_name(&state)
                .ok_or_else(|| IdentityError::Internal("sign-in state is not URL-safe".into()))?,
            value: base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                sealed,
            ),
        };
        let mut url = authorization.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", "openid")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256");
        Ok((url, cookie))
    }

    /// The sign-in `cookie` (from this browser) was sealed by us for exactly `state`, and is
    /// not expired; anything else is "not started in this browser".
    fn attempt_from_cookie(
        store: &dyn Store,
        cookie: Option<&str>,
        state: &str,
    ) -> Result<LoginAttempt, IdentityError> {
        let not_this_browser = || IdentityError::BrowserMismatch;
        let sealed = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            cookie.ok_or_else(not_this_browser)?,
        )
        .map_err(|_| not_this_browser())?;
        let plaintext = store
            .open_transient(COOKIE_PURPOSE, &sealed)
            .map_err(|_| not_this_browser())?;
        let attempt: LoginAttempt =
            serde_json::from_slice(&plaintext).map_err(|_| not_this_browser())?;
        let same_state = aws_lc_rs::constant_time::verify_slices_are_equal(
            attempt.state.as_bytes(),
            state.as_bytes(),
        )
        .is_ok();
        if !same_state {
            return Err(not_this_browser());
        }
        if attempt.expires_at <= now() {
            return Err(fail("the sign-in expired; start again"));
        }
        Ok(attempt)
    }

    /// Finishes a sign-in started in this browser (`cookie` is its sign-in cookie): exchanges
    /// the code, verifies the ID token, stores a browser session. Returns the new browser
    /// session id and where to send the browser.
    pub async fn finish(
        &self,
        store: &dyn Store,
        cookie: Option<&str>,
        state: &str,
        code: &str,
    ) -> Result<(String, String), IdentityError> {
        let attempt = Self::attempt_from_cookie(store, cookie, state)?;
        let (_, token_endpoint) = self.endpoints().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", attempt.pkce_verifier.expose()),
        ];
        let response = self
            .http
            .post(token_endpoint.clone())
            .basic_auth(
                &self.client_id,
                self.client_secret.as_ref().map(Secret::expose),
            )
            .form(&form)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!(
                "token endpoint answered HTTP {}",
                response.status()
            )));
        }
        let tokens: TokenResponse = response
            .json()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        let id_token = tokens
            .id_token
            .ok_or_else(|| fail("no id_token in the token response"))?;
        let claims = self.verify_id_token(&id_token, &attempt.nonce).await?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let (Some(issuer), Some(subject)) = (text("iss"), text("sub")) else {
            return Err(fail("ID token without iss/sub"));
        };
        let sid = random_token(24);
        let session = BrowserSession {
            issuer,
            subject,
            csrf: random_token(18),
            expires_at: now() + consent::BROWSER_SESSION_TTL_SECONDS,
        };
        consent::save_browser(store, &sid, &session).await?;
        Ok((sid, attempt.return_to))
    }

    /// OIDC Core 1.0 section 3.1.3.7: the `[inbound]` header, key and signature rules (the
    /// algorithm allow-list, the JWK's own `alg`, exactly one key), `iss`, `aud` contains our
    /// client id, `exp` ([`Verifier::verify_id_token`]), then the `nonce` we sent (item 11).
    async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, IdentityError> {
        let claims = self
            .verifier
            .verify_id_token(token, &self.client_id)
            .await
            .map_err(|e| fail(format!("ID token rejected: {e}")))?;
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(fail("ID token nonce does not match"));
        }
        Ok(claims)
    }
}
