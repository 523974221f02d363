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
use super::link::{CallbackOutcome, CallbackRefusal, ProviderAnswer};
use super::login::{self, LOGIN_TTL_SECONDS};
use super::pages::{self, ConnectionRow};
use super::{Identity, IdentityError};
use crate::identity::settings::ConsentBinding;
use crate::vault::TokenKey;

const SESSION_COOKIE: &str = "portcullis_session";
const LOGIN_CALLBACK_PATH: &str = "/oauth2/login/callback";
const CALLBACK_PATH: &str = "/oauth2/callback";

/// The browser routes, on `identity`; without per-user OAuth they all answer "not
/// configured".
pub fn routes(identity: Option<Arc<Identity>>) -> Router {
    let Some(identity) = identity else {
        let off = || async { not_configured() };
        return Router::new()
            .route("/oauth2/connect/{id}", get(off))
            .route(CALLBACK_PATH, get(off))
            .route(LOGIN_CALLBACK_PATH, get(off))
            .route("/connections", get(off))
            .route("/connections/revoke", post(off));
    };
    Router::new()
        .route("/oauth2/connect/{id}", get(connect))
        .route(CALLBACK_PATH, get(callback))
        .route(LOGIN_CALLBACK_PATH, get(login_callback))
        .route("/connections", get(connections))
        .route("/connections/revoke", post(revoke))
        .with_state(identity)
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

/// Sends the browser to sign in at the inbound IdP, returning to `return_to` afterwards. The
/// sign-in travels in a sealed cookie of this browser (nothing is stored), checked at the
/// callback (DESIGN 3.2 invariants 7 and 9).
async fn sign_in(identity: &Identity, return_to: &str) -> Response {
    let Some(login) = &identity.login else {
        return pages::failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Sign-in is not configured",
            "The gateway needs [inbound.login] to know who you are.",
        );
    };
    match login.start(identity.store().as_ref(), return_to).await {
        Ok((url, cookie)) => {
            let cookie = set_cookie(
                identity,
                &cookie.name,
                &cookie.value,
                LOGIN_CALLBACK_PATH,
                LOGIN_TTL_SECONDS,
            );
            with_cookie(Redirect::to(url.as_str()).into_response(), cookie)
        }
        Err(error) => internal(&error),
    }
}

/// `GET /oauth2/connect/{id}`: binds the browser user to the consent session, then sends the
/// browser to the provider. The link itself is never pre-authenticated.
async fn connect(
    State(identity): State<Arc<Identity>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let identity = identity.as_ref();
    let store = identity.store().as_ref();
    let used = || {
        pages::failure(
            StatusCode::GONE,
            "This link was already used",
            "The provider already answered for this link. Start again from your application to get a new one.",
        )
    };
    let loaded = match consent::load_session_record(store, &id).await {
        Ok(Some(loaded)) => loaded,
        Ok(None) => {
            return pages::failure(
                StatusCode::GONE,
                "This link has expired or was already used",
                "Consent links work once and for 10 minutes. Use the tool again to get a new one.",
            );
        }
        Err(error) => return internal(&error),
    };
    let session = &loaded.session;
    if !matches!(session.stage, consent::Stage::Pending) || session.origin.is_some() {
        return used();
    }
    match identity.binding() {
        ConsentBinding::Login => match browser_user(identity, &headers).await {
            None => return sign_in(identity, &format!("/oauth2/connect/{id}")).await,
            Some((_, user)) if user.issuer != session.issuer || user.subject != session.subject => {
                tracing::warn!(
                    provider = %session.provider,
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
    let bound = consent::ConsentSession {
        browser_nonce: Some(nonce.clone()),
        ..session.clone()
    };
    // Compare-and-swap: a callback that consumed or advanced the session since we loaded it
    // wins, and a used session is never brought back (issue 9, item 9).
    match consent::swap_session(store, &loaded, &bound).await {
        Ok(true) => {}
        Ok(false) => return used(),
        Err(error) => return internal(&error),
    }
    let max_age = bound.expires_at.saturating_sub(now());
    let cookie = set_cookie(
        identity,
        &consent_cookie_name(&bound.id),
        &nonce,
        CALLBACK_PATH,
        max_age,
    );
    with_cookie(
        Redirect::to(&bound.authorization_url).into_response(),
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

/// `GET /oauth2/callback`: the provider's redirect. Checks `state` and that this browser
/// opened the connect URL, takes the session (single use), then hands the answer to
/// [`Identity::finish_consent`].
async fn callback(
    State(identity): State<Arc<Identity>>,
    Query(params): Query<CallbackParams>,
    headers: HeaderMap,
) -> Response {
    let identity = identity.as_ref();
    let store = identity.store().as_ref();
    let Some(oauth_state) = params
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 256)
    else {
        return refused(&CallbackRefusal {
            status: StatusCode::BAD_REQUEST,
            title: "Missing state",
            reason: "The provider's answer carries no `state` parameter.".into(),
        });
    };
    let session = match consent::session_for_state(store, oauth_state).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return refused(&CallbackRefusal {
                status: StatusCode::BAD_REQUEST,
                title: "Unknown or expired sign-in",
                reason: "This answer does not belong to a live consent (wrong, expired or already used `state`). Nothing was stored.".into(),
            });
        }
        Err(error) => return internal(&error),
    };
    // OAuth 2.0 Security BCP section 4.7: the callback must come from the browser that was
    // sent to the provider, or an attacker could inject their own authorization code.
    let expected = session.browser_nonce.as_deref();
    if expected.is_none() || cookie(&headers, &consent_cookie_name(&session.id)) != expected {
        return refused(&CallbackRefusal {
            status: StatusCode::FORBIDDEN,
            title: "This browser did not start this sign-in",
            reason: "Open the consent link again in this browser. Nothing was stored.".into(),
        });
    }
    let session = match consent::take_session(store, &session).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return refused(&CallbackRefusal {
                status: StatusCode::GONE,
                title: "Already used",
                reason: "This consent was already completed.".into(),
            });
        }
        Err(error) => return internal(&error),
    };
    let clear = set_cookie(
        identity,
        &consent_cookie_name(&session.id),
        "",
        CALLBACK_PATH,
        0,
    );
    let answer = ProviderAnswer {
        code: params.code,
        error: params.error,
        error_description: params.error_description,
        iss: params.iss,
    };
    let response = match identity.finish_consent(session, &answer).await {
        Ok(CallbackOutcome::Linked {
            provider,
            subject,
            return_to,
        }) => match return_to {
            Some(url) => Redirect::to(url.as_str()).into_response(),
            None => pages::linked(&provider, &subject),
        },
        Ok(CallbackOutcome::AwaitingApp {
            provider,
            completion_uri,
            return_to,
        }) => match return_to {
            Some(url) => Redirect::to(url.as_str()).into_response(),
            None => pages::failure(
                StatusCode::OK,
                "Almost done",
                &format!(
                    "{provider} granted access. Your application must now confirm session {completion_uri} for you."
                ),
            ),
        },
        Err(refusal) => refused(&refusal),
    };
    with_cookie(response, clear)
}

/// A refused callback: counted, logged (without any parameter of the request) and shown.
fn refused(refusal: &CallbackRefusal) -> Response {
    crate::telemetry::consent_refused("callback");
    tracing::warn!(title = refusal.title, "consent callback refused");
    pages::failure(refusal.status, refusal.title, &refusal.reason)
}

#[derive(Deserialize)]
struct LoginParams {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// `GET /oauth2/login/callback`: the inbound IdP's answer to the gateway's own sign-in. Only
/// the browser holding the sign-in cookie of this `state` gets signed in: a leaked callback URL
/// signs nobody in (login CSRF, issue 9 item 1).
async fn login_callback(
    State(identity): State<Arc<Identity>>,
    Query(params): Query<LoginParams>,
    headers: HeaderMap,
) -> Response {
    let identity = identity.as_ref();
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
    let cookie_name = login::cookie_name(&login_state);
    let sealed = cookie_name
        .as_deref()
        .and_then(|name| cookie(&headers, name));
    let clear = cookie_name
        .as_deref()
        .and_then(|name| set_cookie(identity, name, "", LOGIN_CALLBACK_PATH, 0));
    let response = match login
        .finish(identity.store().as_ref(), sealed, &login_state, &code)
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
        Err(error @ IdentityError::BrowserMismatch) => {
            tracing::warn!("sign-in refused: the callback reached a browser that did not start it");
            crate::telemetry::consent_refused("login_browser");
            pages::failure(
                StatusCode::FORBIDDEN,
                "This sign-in was not started in this browser",
                &format!(
                    "{error}. Open the link you were given again, in this browser. Nobody was signed in."
                ),
            )
        }
        Err(error) => {
            tracing::warn!(%error, "sign-in refused");
            pages::failure(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                &error.to_string(),
            )
        }
    };
    with_cookie(response, clear)
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
async fn connections(State(identity): State<Arc<Identity>>, headers: HeaderMap) -> Response {
    let identity = identity.as_ref();
    let Some((_, user)) = browser_user(identity, &headers).await else {
        return sign_in(identity, "/connections").await;
    };
    let links = match identity.store().list_tokens(Some(&user.user_key())).await {
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
    State(identity): State<Arc<Identity>>,
    headers: HeaderMap,
    Form(form): Form<RevokeForm>,
) -> Response {
    let identity = identity.as_ref();
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
        user: user.user_key(),
        provider: form.provider.clone(),
    };
    match identity.store().delete_token(&key).await {
        Ok(_) => {
            tracing::info!(provider = ?form.provider, subject = ?user.subject, "link revoked by its user");
            Redirect::to("/connections").into_response()
        }
        Err(error) => internal(&IdentityError::Vault(error)),
    }
}
