//! The end of a consent: the provider's answer at `/oauth2/callback`, the code exchange, and
//! linking the granted token to the user who asked (DESIGN 2.6). The routes render pages; the
//! flow lives here, so that the callback and `CompleteResourceTokenAuth` share one
//! [`Identity::link_account`].
//!
//! With `consent_binding = "app"` the token is not linked at the callback: it is held in a
//! new *completion* record whose id is created here and handed only to the browser that
//! consented (as `session_id` on the return URL). The connect URL's id, which whoever started
//! the consent holds, never completes anything (issue 9, item 2); a completion refused for the
//! wrong user burns the held token.

use http::StatusCode;
use url::Url;

use super::consent::{self, ConsentSession, Stage, now, random_token};
use super::{Identity, IdentityError};
use crate::identity::settings::ConsentBinding;
use crate::vault::{TokenKey, TokenRecord};

/// The provider's redirect parameters (RFC 6749 section 4.1.2, RFC 9207).
#[derive(Debug, Default)]
pub struct ProviderAnswer {
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// RFC 9207 authorization server issuer identification.
    pub iss: Option<String>,
}

/// How a callback ended, for the route to show.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// The token is in the vault for the session's user.
    Linked {
        provider: String,
        subject: String,
        /// The app's return URL, with `session_id` (and `state`) added.
        return_to: Option<Url>,
    },
    /// `consent_binding = "app"`: the token waits for `CompleteResourceTokenAuth` with the
    /// completion session URI, which only this browser receives.
    AwaitingApp {
        provider: String,
        completion_uri: String,
        return_to: Option<Url>,
    },
}

/// A refused callback: nothing was stored.
#[derive(Debug)]
pub struct CallbackRefusal {
    pub status: StatusCode,
    pub title: &'static str,
    pub reason: String,
}

fn refusal(status: StatusCode, title: &'static str, reason: impl Into<String>) -> CallbackRefusal {
    CallbackRefusal {
        status,
        title,
        reason: reason.into(),
    }
}

impl Identity {
    /// Finishes a consent the callback has taken (single use) and checked the browser of:
    /// the provider's answer, RFC 9207 `iss`, the code exchange with the PKCE verifier, then
    /// linking (or, with `consent_binding = "app"`, holding) the token.
    pub async fn finish_consent(
        &self,
        session: ConsentSession,
        answer: &ProviderAnswer,
    ) -> Result<CallbackOutcome, CallbackRefusal> {
        match self.exchange(&session, answer).await {
            Ok(record) if self.binding == ConsentBinding::App => {
                self.hold_for_app(session, record).await
            }
            Ok(record) => {
                let provider = session.provider.clone();
                let subject = session.subject.clone();
                let return_to = return_url(&session, &session.session_uri());
                self.link_account(&session, &record)
                    .await
                    .map_err(|error| internal(&error))?;
                Ok(CallbackOutcome::Linked {
                    provider,
                    subject,
                    return_to,
                })
            }
            Err(refused) => {
                self.record_failure(&session).await;
                Err(refused)
            }
        }
    }

    /// The provider's answer turned into a token record, or why not.
    async fn exchange(
        &self,
        session: &ConsentSession,
        answer: &ProviderAnswer,
    ) -> Result<TokenRecord, CallbackRefusal> {
        if let Some(error) = &answer.error {
            let detail = answer
                .error_description
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "The provider did not grant access",
                format!(
                    "{} answered {error}{detail}. Nothing was stored.",
                    session.provider
                ),
            ));
        }
        let Some(code) = answer.code.as_deref() else {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "Missing code",
                "The provider's answer carries no code.",
            ));
        };
        let provider = self
            .provider(&session.provider)
            .map_err(|_| refusal(StatusCode::BAD_REQUEST, "Unknown provider", ""))?;
        let (endpoints, client) = provider.resolve().await.map_err(|e| internal(&e))?;
        // RFC 9207 section 2.4: a mismatching `iss` means a mix-up attack; refuse.
        if let (Some(expected), Some(got)) = (&endpoints.issuer, &answer.iss)
            && expected.trim_end_matches('/') != got.trim_end_matches('/')
        {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "Wrong issuer",
                "The answer came from another authorization server. Nothing was stored.",
            ));
        }
        let extra: Vec<(String, String)> = session
            .resource
            .iter()
            .map(|r| ("resource".to_string(), r.clone()))
            .collect();
        let granted = client
            .exchange_code(code, &session.pkce_verifier, &extra)
            .await
            .map_err(|error| {
                refusal(
                    StatusCode::BAD_GATEWAY,
                    "The provider refused the code",
                    format!("{error}. Nothing was stored."),
                )
            })?;
        Ok(TokenRecord {
            access_token: granted.access_token,
            refresh_token: granted.refresh_token,
            token_type: granted.token_type,
            expires_at: granted.expires_in.map(|s| now() + s),
            scopes: granted.scopes.unwrap_or_else(|| session.scopes.clone()),
            obtained_at: now(),
            refreshed_at: None,
        })
    }

    /// `consent_binding = "app"`: stores the token in a new completion record under a fresh
    /// id, and (for identity API sessions, which are polled) marks the original session as
    /// waiting. Nothing is linked yet.
    async fn hold_for_app(
        &self,
        session: ConsentSession,
        record: TokenRecord,
    ) -> Result<CallbackOutcome, CallbackRefusal> {
        let store = self.store.as_ref();
        let completion = ConsentSession {
            id: random_token(18),
            // Never a live `state`: the callback index points at the original id only.
            state: random_token(24),
            stage: Stage::Authorized(Box::new(record)),
            origin: Some(session.id.clone()),
            browser_nonce: None,
            ..session.clone()
        };
        consent::put_session(store, &completion)
            .await
            .map_err(|e| internal(&e))?;
        if session.keep_after_callback {
            let waiting = ConsentSession {
                stage: Stage::AwaitingApp,
                ..session.clone()
            };
            if let Err(error) = consent::put_session(store, &waiting).await {
                tracing::warn!(%error, "could not record the consent as waiting for the app");
            }
        }
        tracing::info!(provider = %session.provider, "provider granted; waiting for CompleteResourceTokenAuth");
        let completion_uri = completion.session_uri();
        Ok(CallbackOutcome::AwaitingApp {
            provider: session.provider.clone(),
            return_to: return_url(&session, &completion_uri),
            completion_uri,
        })
    }

    /// Stores `record` as the token of `session`'s workload, user and provider, and tells
    /// whoever waits (the MCP session that asked, identity API polling). The one place a
    /// consent becomes a link, for both bindings.
    pub(super) async fn link_account(
        &self,
        session: &ConsentSession,
        record: &TokenRecord,
    ) -> Result<(), IdentityError> {
        let key = TokenKey {
            workload: session.workload.clone(),
            user: session.user_id(),
            provider: session.provider.clone(),
        };
        self.store.put_token(&key, record).await?;
        tracing::info!(provider = %session.provider, issuer = %session.issuer, subject = ?session.subject, "account linked");
        crate::telemetry::consent_completed(&session.provider);
        let origin = session.origin.as_deref().unwrap_or(&session.id);
        self.mark_origin(session, origin, Stage::Completed).await;
        self.notify_completed(origin).await;
        Ok(())
    }

    /// Polling with the `sessionUri` must learn that this ended (sessionStatus FAILED).
    pub(super) async fn record_failure(&self, session: &ConsentSession) {
        let origin = session.origin.as_deref().unwrap_or(&session.id);
        self.mark_origin(session, origin, Stage::Failed).await;
    }

    /// Writes the final stage of a polled (identity API) session under its original id.
    async fn mark_origin(&self, session: &ConsentSession, origin: &str, stage: Stage) {
        if !session.keep_after_callback {
            return;
        }
        let done = ConsentSession {
            id: origin.to_string(),
            stage,
            origin: None,
            ..session.clone()
        };
        if let Err(error) = consent::put_session(self.store.as_ref(), &done).await {
            tracing::warn!(%error, "could not record how the consent ended");
        }
    }
}

/// The session's return URL with `session_id` (a session URI) and, when the app sent one,
/// its `customState` as `state`.
fn return_url(session: &ConsentSession, session_uri: &str) -> Option<Url> {
    let mut url = Url::parse(session.return_url.as_deref()?).ok()?;
    url.query_pairs_mut().append_pair("session_id", session_uri);
    if let Some(state) = &session.custom_state {
        url.query_pairs_mut().append_pair("state", state.expose());
    }
    Some(url)
}

fn internal(error: &IdentityError) -> CallbackRefusal {
    tracing::error!(%error, "consent flow failed");
    refusal(
        StatusCode::BAD_GATEWAY,
        "Something went wrong",
        error.to_string(),
    )
}
