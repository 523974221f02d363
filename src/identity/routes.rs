//! Browser-facing routes: the consent URL handed to users, the provider callback, the
//! gateway's own sign-in callback, and the connections page (DESIGN 2.4, 2.6).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Deserialize;

use super::consent::{self, BrowserSession, now, random_token};
use super::pages::{self, ConnectionRow};
use super::{Identity, IdentityError};
use crate::GatewayState;
use crate::config::ConsentBinding;
use crate::vault::{TokenKey, TokenRecord};

const SESSION_COOKIE: &str = "portcullis_session";

pub fn routes() -> Router<Arc<GatewayState>> {
    Router::new()
        .route("/oauth2/connect/{id}", get(connect))
        .route("/oauth2/callback", get(callback))
        .route("/oauth2/login/callback", get(login_callback))
        .route("/connections", get(connections))
        .route("/connections/revoke", post(revoke))
}

fn not_configured() -> Response {
    pages::failure(
        StatusCode::NOT_FOUND,
        "Not available",
        "Per-user OAuth is not configured on this gateway.",
    )
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(
    identity: &Identity,
    name: &str,
    value: &str,
    path: &str,
    max_age: u64,
) -> Option<HeaderValue> {
    let secure = if identity.public_url().starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    ))
    .ok()
}

fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response
            .headers_mut()
            .append(http::header::SET_COOKIE, cookie);
    }
    response
}

fn internal(error: &IdentityError) -> Response {
    tracing::error!(%error, "consent flow failed");
    pages::failure(
        StatusCode::BAD_GATEWAY,
        "Something went wrong",
        &error.to_string(),
    )
}

fn consent_cookie_name(id: &str) -> String {
    format!("portcullis_consent_{id}")
}

/// The browser's signed-in user, if any.
async fn browser_user(
    identity: &Identity,
    headers: &HeaderMap,
) -> Option<(String, BrowserSession)> {
    let sid = cookie(headers, SESSION_COOKIE)?;
    let session = consent::load_browser(identity.store().as_ref(), sid)
        .await
        .ok()??;
    Some((sid.to_string(), session))
}

/// Sends the browser to sign in at the inbound IdP, returning to `return_to` afterwards.
async fn sign_in(identity: &Identity, return_to: &str) -> Response {
    let Some(login) = &identity.login else {
        return pages::failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in is not configured",
            "The gateway needs [inbound.login] to know who you are.",
        );
    };
    match login.start(identity.store().as_ref(), return_to).await {
        Ok(url) => Redirect::to(url.as_str()).into_response(),
        Err(error) => internal(&error),
    }
}

/// `GET /oauth2/connect/{id}`: binds the browser user to the consent session, then sends the
/// browser to the provider. The link itself is never pre-authenticated.
async fn connect(
    State(state): State<Arc<GatewayState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(identity) = state.identity.as_ref() else {
        return not_configured();
    };
    let store = identity.store().as_ref();
    let mut session = match consent::load_session(store, &id).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return pages::failure(
                StatusCode::GONE,
                "This link has expired or was already used",
                "Consent links work once and for 10 minutes. Use the tool again to get a new one.",
            );
        }
        Err(error) => return internal(&error),
    };
    match identity.binding() {
        ConsentBinding::Login => match browser_user(identity, &headers).await {
            None => return sign_in(identity, &format!("/oauth2/connect/{id}")).await,
            Some((_, user)) if user.issuer != session.issuer || user.subject != session.subject => {
                tracing::warn!(
                    consent = %session.id, provider = %session.provider,
                    "consent refused: the signed-in browser user is not the user who asked"
                );
                crate::telemetry::consent_refused("wrong_user");
                return pages::failure(
                    StatusCode::FORBIDDEN,
                    "This link belongs to another user",
                    &format!(
                        "You are signed in as {}, but this link was created for another account. Nothing was linked.",
                        user.subject
                    ),
                );
            }
            Some(_) => {}
        },
        ConsentBinding::App => {
            return pages::failure(
                StatusCode::NOT_IMPLEMENTED,
                "Not available",
                "consent_binding = \"app\" completes through the identity API, which this build does not include.",
            );
        }
        ConsentBinding::None => {}
    }
    let nonce = random_token(18);
    session.browser_nonce = Some(nonce.clone());
    if let Err(error) = consent::save_session(store, &session).await {
        return internal(&error);
    }
    let max_age = session.expires_at.saturating_sub(now());
    let cookie = set_cookie(
        identity,
        &consent_cookie_name(&session.id),
        &nonce,
        "/oauth2/callback",
        max_age,
    );
    with_cookie(
        Redirect::to(&session.authorization_url).into_response(),
        cookie,
    )
}

#[derive(Deserialize)]
struct CallbackParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// RFC 9207 authorization server issuer identification.
    iss: Option<String>,
}

/// `GET /oauth2/callback`: the provider's redirect. Checks state, browser binding and issuer,
/// exchanges the code with the PKCE verifier, and stores the token for the session's user.
async fn callback(
    State(state): State<Arc<GatewayState>>,
    Query(params): Query<CallbackParams>,
    headers: HeaderMap,
) -> Response {
    let Some(identity) = state.identity.as_ref() else {
        return not_configured();
    };
    let store = identity.store().as_ref();
    let refuse = |status, title: &str, reason: &str| {
        crate::telemetry::consent_refused("callback");
        tracing::warn!(title, "consent callback refused");
        pages::failure(status, title, reason)
    };
    let Some(oauth_state) = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 256)
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Missing state",
            "The provider's answer carries no `state` parameter.",
        );
    };
    let session = match consent::session_for_state(store, oauth_state).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "Unknown or expired sign-in",
                "This answer does not belong to a live consent (wrong, expired or already used `state`). Nothing was stored.",
            );
        }
        Err(error) => return internal(&error),
    };
    // OAuth 2.0 Security BCP section 4.7: the callback must come from the browser that was
    // sent to the provider, or an attacker could inject their own authorization code.
    let expected = session.browser_nonce.as_deref();
    if expected.is_none() || cookie(&headers, &consent_cookie_name(&session.id)) != expected {
        return refuse(
            StatusCode::FORBIDDEN,
            "This browser did not start this sign-in",
            "Open the consent link again in this browser. Nothing was stored.",
        );
    }
    let session = match consent::take_session(store, &session).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return refuse(
                StatusCode::GONE,
                "Already used",
                "This consent was already completed.",
            );
        }
        Err(error) => return internal(&error),
    };
    let clear = set_cookie(
        identity,
        &consent_cookie_name(&session.id),
        "",
        "/oauth2/callback",
        0,
    );
    if let Some(error) = &params.error {
        let reason = format!(
            "{} answered {error}{}. Nothing was stored.",
            session.provider,
            params
                .error_description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        );
        return with_cookie(
            refuse(
                StatusCode::BAD_REQUEST,
                "The provider did not grant access",
                &reason,
            ),
            clear,
        );
    }
    let Some(code) = params.code.as_deref() else {
        return with_cookie(
            refuse(
                StatusCode::BAD_REQUEST,
                "Missing code",
                "The provider's answer carries no code.",
            ),
            clear,
        );
    };
    let Ok(provider) = identity.provider(&session.provider) else {
        return with_cookie(
            refuse(
                StatusCode::BAD_REQUEST,
                "Unknown provider",
                &session.provider,
            ),
            clear,
        );
    };
    let (endpoints, client) = match provider.resolve().await {
        Ok(resolved) => resolved,
        Err(error) => return with_cookie(internal(&error), clear),
    };
    // RFC 9207 section 2.4: a mismatching `iss` means a mix-up attack; refuse.
    if let (Some(expected), Some(got)) = (&endpoints.issuer, &params.iss)
        && expected.trim_end_matches('/') != got.trim_end_matches('/')
    {
        return with_cookie(
            refuse(
                StatusCode::BAD_REQUEST,
                "Wrong issuer",
                "The answer came from another authorization server. Nothing was stored.",
            ),
            clear,
        );
    }
    let extra: Vec<(String, String)> = session
        .resource
        .iter()
        .map(|r| ("resource".to_string(), r.clone()))
        .collect();
    let granted = match client
        .exchange_code(code, &session.pkce_verifier, &extra)
        .await
    {
        Ok(granted) => granted,
        Err(error) => {
            return with_cookie(
                refuse(
                    StatusCode::BAD_GATEWAY,
                    "The provider refused the code",
                    &format!("{error}. Nothing was stored."),
                ),
                clear,
            );
        }
    };
    let key = TokenKey {
        workload: session.workload.clone(),
        user: session.user_id(),
        provider: session.provider.clone(),
    };
    let record = TokenRecord {
        access_token: granted.access_token,
        refresh_token: granted.refresh_token,
        token_type: granted.token_type,
        expires_at: granted.expires_in.map(|s| now() + s),
        scopes: granted.scopes.unwrap_or_else(|| session.scopes.clone()),
        obtained_at: now(),
        refreshed_at: None,
    };
    if let Err(error) = identity.store().put_token(&key, &record).await {
        return with_cookie(internal(&IdentityError::Vault(error)), clear);
    }
    tracing::info!(provider = %session.provider, issuer = %session.issuer, subject = %session.subject, "account linked");
    crate::telemetry::consent_completed(&session.provider);
    identity.notify_completed(&session.id).await;
    with_cookie(pages::linked(&session.provider, &session.subject), clear)
}

#[derive(Deserialize)]
struct LoginParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// `GET /oauth2/login/callback`: the inbound IdP's answer to the gateway's own sign-in.
async fn login_callback(
    State(state): State<Arc<GatewayState>>,
    Query(params): Query<LoginParams>,
) -> Response {
    let Some(identity) = state.identity.as_ref() else {
        return not_configured();
    };
    let Some(login) = &identity.login else {
        return pages::failure(StatusCode::NOT_FOUND, "Sign-in is not configured", "");
    };
    if let Some(error) = params.error {
        return pages::failure(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            &format!("The identity provider answered {error}."),
        );
    }
    let (Some(login_state), Some(code)) = (params.state, params.code) else {
        return pages::failure(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "Missing state or code.",
        );
    };
    match login
        .finish(identity.store().as_ref(), &login_state, &code)
        .await
    {
        Ok((sid, return_to)) => {
            let return_to = if return_to.starts_with('/') && !return_to.starts_with("//") {
                return_to
            } else {
                "/connections".into()
            };
            let cookie = set_cookie(
                identity,
                SESSION_COOKIE,
                &sid,
                "/",
                consent::BROWSER_SESSION_TTL_SECONDS,
            );
            with_cookie(Redirect::to(&return_to).into_response(), cookie)
        }
        Err(error) => {
            tracing::warn!(%error, "sign-in refused");
            pages::failure(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                &error.to_string(),
            )
        }
    }
}

fn format_time(unix: Option<u64>) -> String {
    match unix {
        None => "never".into(),
        Some(t) => {
            let remaining = t.saturating_sub(now());
            if remaining == 0 {
                "expired (refreshes on next use)".into()
            } else {
                format!("in {} min", remaining / 60)
            }
        }
    }
}

/// `GET /connections`: the signed-in user's linked providers.
async fn connections(State(state): State<Arc<GatewayState>>, headers: HeaderMap) -> Response {
    let Some(identity) = state.identity.as_ref() else {
        return not_configured();
    };
    let Some((_, user)) = browser_user(identity, &headers).await else {
        return sign_in(identity, "/connections").await;
    };
    let user_id = format!("{}#{}", user.issuer, user.subject);
    let links = match identity.store().list_tokens(Some(&user_id)).await {
        Ok(links) => links,
        Err(error) => return internal(&IdentityError::Vault(error)),
    };
    let rows: Vec<ConnectionRow> = links
        .into_iter()
        .filter(|(key, _)| key.workload == identity.workload())
        .map(|(key, meta)| ConnectionRow {
            provider: key.provider,
            scopes: meta.scopes,
            linked_at: format!("{} min ago", now().saturating_sub(meta.obtained_at) / 60),
            expires: format_time(meta.expires_at),
        })
        .collect();
    pages::connections(&user.subject, &rows, &user.csrf, None)
}

#[derive(Deserialize)]
struct RevokeForm {
    provider: String,
    csrf: String,
}

/// `POST /connections/revoke`: forgets one link of the signed-in user.
async fn revoke(
    State(state): State<Arc<GatewayState>>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    let Some(identity) = state.identity.as_ref() else {
        return not_configured();
    };
    let Some((_, user)) = browser_user(identity, &headers).await else {
        return pages::failure(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            "Open /connections to sign in first.",
        );
    };
    if aws_lc_rs::constant_time::verify_slices_are_equal(form.csrf.as_bytes(), user.csrf.as_bytes())
        .is_err()
    {
        return pages::failure(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form is stale or did not come from this page.",
        );
    }
    let key = TokenKey {
        workload: identity.workload().to_string(),
        user: format!("{}#{}", user.issuer, user.subject),
        provider: form.provider.clone(),
    };
    match identity.store().delete_token(&key).await {
        Ok(_) => {
            tracing::info!(provider = %form.provider, subject = %user.subject, "link revoked by its user");
            Redirect::to("/connections").into_response()
        }
        Err(error) => internal(&IdentityError::Vault(error)),
    }
}
