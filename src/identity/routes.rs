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
    if !matches!(session.stage, consent::Stage::Pending) {
        return pages::failure(
            StatusCode::GONE,
            "This link was already used",
            "The provider already answered for this link. Start again from your application to get a new one.",
        );
    }
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
        // The app binds the user afterwards (CompleteResourceTokenAuth); the callback must
        // still come back to this browser (the nonce cookie below).
        ConsentBinding::App | ConsentBinding::None => {}
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
    match finish_callback(identity, session, &params).await {
        Ok(response) => with_cookie(response, clear),
        Err((session, response)) => {
            if session.keep_after_callback {
                // Polling with the sessionUri must learn that this ended (sessionStatus FAILED).
                let failed = consent::ConsentSession {
                    stage: consent::Stage::Failed,
                    ..session
                };
                if let Err(error) = consent::put_session(store, &failed).await {
                    tracing::warn!(%error, "could not record the failed consent");
                }
            }
            with_cookie(response, clear)
        }
    }
}

/// The rest of the callback, once the session is taken: the provider's answer, the code
/// exchange, then storing (or, with `consent_binding = "app"`, holding) the token. On a
/// refusal the session comes back with the page to show.
async fn finish_callback(
    identity: &Identity,
    mut session: consent::ConsentSession,
    params: &CallbackParams,
) -> Result<Response, (consent::ConsentSession, Response)> {
    let refuse = |status, title: &str, reason: &str| {
        crate::telemetry::consent_refused("callback");
        tracing::warn!(title, "consent callback refused");
        pages::failure(status, title, reason)
    };
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
        let page = refuse(
            StatusCode::BAD_REQUEST,
            "The provider did not grant access",
            &reason,
        );
        return Err((session, page));
    }
    let Some(code) = params.code.as_deref() else {
        let page = refuse(
            StatusCode::BAD_REQUEST,
            "Missing code",
            "The provider's answer carries no code.",
        );
        return Err((session, page));
    };
    let Ok(provider) = identity.provider(&session.provider) else {
        let page = refuse(
            StatusCode::BAD_REQUEST,
            "Unknown provider",
            &session.provider,
        );
        return Err((session, page));
    };
    let (endpoints, client) = match provider.resolve().await {
        Ok(resolved) => resolved,
        Err(error) => return Err((session, internal(&error))),
    };
    // RFC 9207 section 2.4: a mismatching `iss` means a mix-up attack; refuse.
    if let (Some(expected), Some(got)) = (&endpoints.issuer, &params.iss)
        && expected.trim_end_matches('/') != got.trim_end_matches('/')
    {
        let page = refuse(
            StatusCode::BAD_REQUEST,
            "Wrong issuer",
            "The answer came from another authorization server. Nothing was stored.",
        );
        return Err((session, page));
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
            let page = refuse(
                StatusCode::BAD_GATEWAY,
                "The provider refused the code",
                &format!("{error}. Nothing was stored."),
            );
            return Err((session, page));
        }
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
    let store = identity.store().as_ref();
    if identity.binding() == ConsentBinding::App {
        // DESIGN 2.6 `app`: nothing is linked until the app names the same user through
        // CompleteResourceTokenAuth; the token waits, sealed, in the session.
        session.stage = consent::Stage::Authorized(Box::new(record));
        if let Err(error) = consent::put_session(store, &session).await {
            session.stage = consent::Stage::Pending;
            return Err((session, internal(&error)));
        }
        tracing::info!(provider = %session.provider, consent = %session.id, "provider granted; waiting for CompleteResourceTokenAuth");
        return Ok(back_to_app(&session).unwrap_or_else(|| {
            pages::failure(
                StatusCode::OK,
                "Almost done",
                &format!(
                    "{} granted access. Your application must now confirm session {} for you.",
                    session.provider,
                    session.session_uri()
                ),
            )
        }));
    }
    let key = TokenKey {
        workload: session.workload.clone(),
        user: session.user_id(),
        provider: session.provider.clone(),
    };
    if let Err(error) = store.put_token(&key, &record).await {
        return Err((session, internal(&IdentityError::Vault(error))));
    }
    tracing::info!(provider = %session.provider, issuer = %session.issuer, subject = %session.subject, "account linked");
    crate::telemetry::consent_completed(&session.provider);
    identity.notify_completed(&session.id).await;
    if session.keep_after_callback {
        session.stage = consent::Stage::Completed;
        if let Err(error) = consent::put_session(store, &session).await {
            tracing::warn!(%error, "could not record the completed consent");
        }
    }
    Ok(back_to_app(&session).unwrap_or_else(|| pages::linked(&session.provider, &session.subject)))
}

/// The redirect to the session's return URL with `session_id` (the sessionUri) and, when
/// the app sent one, its `customState` as `state`.
fn back_to_app(session: &consent::ConsentSession) -> Option<Response> {
    let mut url = url::Url::parse(session.return_url.as_deref()?).ok()?;
    url.query_pairs_mut()
        .append_pair("session_id", &session.session_uri());
    if let Some(state) = &session.custom_state {
        url.query_pairs_mut().append_pair("state", state.expose());
    }
    Some(Redirect::to(url.as_str()).into_response())
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
