//! Upstream MCP sessions, one per (calling user, target) (DESIGN 2.8).
//!
//! A session is opened with one user's credential and serves only that user: the upstream may
//! keep per-session state (a cursor, a selected project, an elicitation in progress), which
//! must never leak from one user to another. A session is reused across that user's calls
//! (rmcp multiplexes concurrent requests on it) and replaced when the credential it was opened
//! with changes (a refreshed token), when it fails, or when the server expires it (rmcp
//! re-initialises on HTTP 404, MCP 2025-11-25 "Session Management"). The pool is bounded:
//! beyond `max` sessions the least recently used is closed, and sessions idle for `idle` are
//! closed when the pool next grows.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue};
use rmcp::ServiceExt;
use rmcp::model::{ClientCapabilities, ClientConfig, Implementation};

pub use super::progress::SessionHandler;
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};

use crate::credential::{ApiKeyLocation, Injection};

/// An open client session with the upstream server.
pub type Client = RunningService<RoleClient, SessionHandler>;

/// Why no session could be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered HTTP 401, with this `WWW-Authenticate` challenge if printable.
    Refused(Option<String>),
    /// Anything else: unreachable, not an MCP server, initialisation failed.
    Failed(String),
}

/// The client identity the gateway presents to upstream servers.
/// No client capabilities: the gateway answers no sampling, roots or elicitation requests of
/// its own, so an upstream asks none (MCP 2025-11-25 "Capability Negotiation").
pub fn client_info() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("portcullis", env!("CARGO_PKG_VERSION")),
    )
}

/// Opens a session on `url` with `credential` on every request.
pub async fn connect(
    url: &str,
    http: &reqwest::Client,
    credential: Option<&Injection>,
) -> Result<Client, ConnectError> {
    connect_as(url, http, credential, SessionHandler::default()).await
}

/// [`connect`] with a handler of the server's messages to the client (notifications).
pub async fn connect_as<H: rmcp::ClientHandler>(
    url: &str,
    http: &reqwest::Client,
    credential: Option<&Injection>,
    handler: H,
) -> Result<RunningService<RoleClient, H>, ConnectError> {
    let mut config =
        StreamableHttpClientTransportConfig::with_uri(url).reinit_on_expired_session(true);
    match credential {
        None => {}
        Some(Injection::Bearer(token)) => config = config.auth_header(token.expose()),
        Some(Injection::ApiKey {
            location: ApiKeyLocation::Header,
            name,
            value,
        }) => {
            let name = HeaderName::try_from(name.as_str())
                .map_err(|_| ConnectError::Failed(format!("{name:?} is not a header name")))?;
            let mut value = HeaderValue::try_from(value.expose()).map_err(|_| {
                ConnectError::Failed("the API key is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            config = config.custom_headers(HashMap::from([(name, value)]));
        }
        Some(Injection::ApiKey {
            location: ApiKeyLocation::QueryParameter,
            ..
        }) => {
            return Err(ConnectError::Failed(
                "an MCP server's API key goes in a header, not in the URL".into(),
            ));
        }
    }
    let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
    handler.serve(transport).await.map_err(|error| {
        let refused = match &error {
            rmcp::service::ClientInitializeError::TransportError { error, .. } => {
                challenge_in(error)
            }
            _ => None,
        };
        match refused {
            Some(challenge) => ConnectError::Refused(challenge),
            None => ConnectError::Failed(format!(
                "no MCP session with {url} could be started: {error}"
            )),
        }
    })
}

/// `Some(challenge)` when a failed request was an HTTP 401 (RFC 6750 section 3.1).
pub fn refusal_of(error: &ServiceError) -> Option<Option<String>> {
    match error {
        ServiceError::TransportSend(error) => challenge_in(error),
        _ => None,
    }
}

fn challenge_in(error: &rmcp::transport::DynamicTransportError) -> Option<Option<String>> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.error.as_ref());
    while let Some(current) = source {
        if let Some(StreamableHttpError::<reqwest::Error>::AuthRequired(auth)) =
            current.downcast_ref::<StreamableHttpError<reqwest::Error>>()
        {
            return Some(crate::targets::printable_challenge(
                &auth.www_authenticate_header,
            ));
        }
        source = current.source();
    }
    None
}

/// The open session of one user, and the credential it was opened with.
struct Open {
    client: Arc<Client>,
    credential: Option<Injection>,
}

/// One user's place in the pool: opening is serialised per user (two first calls open one
/// session), calls are not.
struct Slot {
    open: tokio::sync::Mutex<Option<Open>>,
    /// Milliseconds since the pool's epoch at the last use, for LRU and idle closing.
    last_used: AtomicU64,
}

pub struct Sessions {
    url: Arc<str>,
    http: reqwest::Client,
    max: usize,
    idle: Duration,
    connect_timeout: Duration,
    epoch: Instant,
    slots: parking_lot::Mutex<HashMap<String, Arc<Slot>>>,
}

impl Sessions {
    pub fn new(
        url: Arc<str>,
        http: reqwest::Client,
        max: usize,
        idle: Duration,
        connect_timeout: Duration,
    ) -> Sessions {
        Sessions {
            url,
            http,
            max: max.max(1),
            idle,
            connect_timeout,
            epoch: Instant::now(),
            slots: parking_lot::Mutex::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The slot of `user`, made room for if new.
    fn slot(&self, user: &str) -> Arc<Slot> {
        let now = self.now_ms();
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get(user) {
            slot.last_used.store(now, Ordering::Relaxed);
            return slot.clone();
        }
        let idle_ms = u64::try_from(self.idle.as_millis()).unwrap_or(u64::MAX);
        slots
            .retain(|_, slot| now.saturating_sub(slot.last_used.load(Ordering::Relaxed)) < idle_ms);
        while slots.len() >= self.max {
            let oldest = slots
                .iter()
                .min_by_key(|(_, slot)| slot.last_used.load(Ordering::Relaxed))
                .map(|(user, _)| user.clone());
            match oldest {
                Some(user) => slots.remove(&user),
                None => break,
            };
        }
        let slot = Arc::new(Slot {
            open: tokio::sync::Mutex::new(None),
            last_used: AtomicU64::new(now),
        });
        slots.insert(user.to_string(), slot.clone());
        slot
    }

    /// `user`'s session, opened with `credential` if there is none yet or the one there was
    /// opened with another credential.
    pub async fn session(
        &self,
        user: &str,
        credential: Option<&Injection>,
    ) -> Result<Arc<Client>, ConnectError> {
        let slot = self.slot(user);
        let mut open = slot.open.lock().await;
        if let Some(current) = open.as_ref()
            && same_credential(current.credential.as_ref(), credential)
            && !current.client.is_closed()
        {
            return Ok(current.client.clone());
        }
        // Replacing drops the old session; rmcp closes it when its last call finishes.
        *open = None;
        let client = tokio::time::timeout(
            self.connect_timeout,
            connect(&self.url, &self.http, credential),
        )
        .await
        .map_err(|_| {
            ConnectError::Failed(format!(
                "the MCP server {} did not complete initialisation within {} ms",
                self.url,
                self.connect_timeout.as_millis()
            ))
        })??;
        let client = Arc::new(client);
        *open = Some(Open {
            client: client.clone(),
            credential: credential.cloned(),
        });
        Ok(client)
    }

    /// Drops `user`'s session (it failed); the next call opens a new one.
    pub async fn forget(&self, user: &str) {
        let slot = self.slots.lock().get(user).cloned();
        if let Some(slot) = slot {
            *slot.open.lock().await = None;
        }
    }
}

/// Whether a session opened with `a` may serve a call that carries `b`.
pub(super) fn same_credential(a: Option<&Injection>, b: Option<&Injection>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Injection::Bearer(a)), Some(Injection::Bearer(b))) => a.expose() == b.expose(),
        (
            Some(Injection::ApiKey {
                location: la,
                name: na,
                value: va,
            }),
            Some(Injection::ApiKey {
                location: lb,
                name: nb,
                value: vb,
            }),
        ) => la == lb && na == nb && va.expose() == vb.expose(),
        _ => false,
    }
}
