//! The client side of one load connection: what it speaks (`Mode`), and the MCP state it keeps
//! (connection, session, request ids) so that each measured call is one closed-loop operation.
//! 2025-11-25 clients initialize a session once per connection; 2026-07-28 clients are
//! stateless and send the protocol version, client info and capabilities in every `_meta`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::BoxError;
use crate::net::{Endpoint, Reply, Sender, connect, exchange};
use crate::outcome::{Failure, err, excerpt};
use crate::tokens::Tokens;
use crate::verify::{
    check_direct_echo, check_echo_result, check_listing, json_rpc_reply, listed_tools,
};

const SESSION_VERSION: &str = "2025-11-25";
const STATELESS_VERSION: &str = "2026-07-28";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";

/// What one measured call is: the subcommand that chose it, and the `mode` of the JSON result.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Direct,
    Session,
    Stateless,
    ListSession,
    ListStateless,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Session => "mcp-session",
            Mode::Stateless => "mcp-stateless",
            Mode::ListSession => "tools-list",
            Mode::ListStateless => "tools-list-stateless",
        }
    }
    fn uses_session(self) -> bool {
        matches!(self, Mode::Session | Mode::ListSession)
    }
}

fn stateless_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "portcullis-loadgen", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// One client connection with its MCP state.
pub struct Client {
    endpoint: Endpoint,
    mode: Mode,
    tokens: Arc<Tokens>,
    tool: String,
    tool_header: HeaderValue,
    sender: Option<Sender>,
    session: Option<HeaderValue>,
    /// Session modes: initialize + initialized done on this connection.
    initialized: bool,
    /// Session modes: go on without a session id if the server assigns none.
    pub session_optional: bool,
    /// tools/call: accept the echo as JSON in a text block when structuredContent is absent.
    pub accept_text_json: bool,
    next_id: u64,
    /// HTTP requests made by `call` (a tools/list listing takes one per page).
    pub requests: u64,
    /// Distinguishes the `n` values of different connections.
    salt: u64,
}

impl Client {
    pub fn new(
        endpoint: Endpoint,
        mode: Mode,
        tokens: Arc<Tokens>,
        tool: &str,
        salt: u64,
    ) -> Result<Client, BoxError> {
        Ok(Client {
            endpoint,
            mode,
            tokens,
            tool: tool.to_string(),
            tool_header: HeaderValue::from_str(tool)?,
            sender: None,
            session: None,
            initialized: false,
            session_optional: false,
            accept_text_json: false,
            next_id: 1,
            requests: 0,
            salt,
        })
    }

    /// The Mcp-Session-Id this connection holds, if any.
    pub fn session_id(&self) -> Option<&HeaderValue> {
        self.session.as_ref()
    }

    fn request(&self) -> http::request::Builder {
        let mut builder = self
            .endpoint
            .request(Method::POST, &self.endpoint.path)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if self.mode != Mode::Direct {
            builder = builder.header(ACCEPT, HeaderValue::from_static(ACCEPT_BOTH));
        }
        if let Some(token) = self.tokens.get() {
            builder = builder.header(AUTHORIZATION, token);
        }
        builder
    }

    async fn send(
        &mut self,
        builder: http::request::Builder,
        body: Vec<u8>,
    ) -> Result<Reply, Failure> {
        let request = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| err("client", e.to_string()))?;
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| err("client", "not connected"))?;
        let result = exchange(sender, request).await;
        if result.is_err() {
            // Never reuse a connection after a failure: reconnect (and re-initialize).
            self.sender = None;
            self.session = None;
            self.initialized = false;
        }
        result
    }

    /// `send`, counted as one HTTP request of a measured call and timed: the time is the
    /// latency that goes into the histogram.
    async fn timed_send(
        &mut self,
        builder: http::request::Builder,
        body: Vec<u8>,
    ) -> (Duration, Result<Reply, Failure>) {
        self.requests += 1;
        let started = Instant::now();
        let reply = self.send(builder, body).await;
        (started.elapsed(), reply)
    }

    /// A JSON-RPC request body with the next id; stateless clients add the `_meta` that stands
    /// in for the session.
    fn rpc_body(&mut self, method: &str, mut params: Value) -> Result<(u64, Vec<u8>), Failure> {
        let id = self.next_id;
        self.next_id += 1;
        if !self.mode.uses_session() {
            params["_meta"] = stateless_meta();
        }
        let body = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )
        .map_err(|e| err("client", e.to_string()))?;
        Ok((id, body))
    }

    /// Opens the TCP connection if there is none.
    pub async fn ensure_connected(&mut self) -> Result<(), Failure> {
        if self.sender.is_none() {
            self.sender = Some(
                connect(self.endpoint.addr)
                    .await
                    .map_err(|e| err("connect", e.to_string()))?,
            );
        }
        Ok(())
    }

    /// Connects (and for session modes initializes) if needed.
    pub async fn ensure_ready(&mut self) -> Result<(), Failure> {
        self.ensure_connected().await?;
        if self.mode.uses_session() && !self.initialized {
            self.initialize().await?;
        }
        Ok(())
    }

    async fn initialize(&mut self) -> Result<(), Failure> {
        let (id, body) = self.rpc_body(
            "initialize",
            json!({
                "protocolVersion": SESSION_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "portcullis-loadgen", "version": "1"}
            }),
        )?;
        let builder = self.request();
        let reply = self.send(builder, body).await?;
        let session = reply.session.clone();
        let result = json_rpc_reply(&reply, id).map_err(|f| match f {
            Failure::Error(kind, detail) => Failure::Error(format!("initialize-{kind}"), detail),
            other => other,
        })?;
        if result.get("protocolVersion").and_then(Value::as_str) != Some(SESSION_VERSION) {
            return Err(err(
                "initialize-version",
                format!("server chose {:?}", result.get("protocolVersion")),
            ));
        }
        if session.is_none() && !self.session_optional {
            return Err(err("initialize-no-session", "no Mcp-Session-Id header"));
        }
        let mut builder = self
            .request()
            .header("mcp-protocol-version", SESSION_VERSION);
        if let Some(session) = &session {
            builder = builder.header("mcp-session-id", session.clone());
        }
        let reply = self
            .send(
                builder,
                br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec(),
            )
            .await?;
        if reply.status != StatusCode::ACCEPTED && reply.status != StatusCode::OK {
            self.sender = None;
            return Err(err(
                &format!("initialized-http-{}", reply.status.as_u16()),
                excerpt(&reply.body),
            ));
        }
        self.session = session;
        self.initialized = true;
        Ok(())
    }

    /// Builder for an MCP request with the per-revision headers.
    fn mcp_request(&self, method: &'static str, with_name: bool) -> http::request::Builder {
        let mut builder = self.request();
        match &self.session {
            Some(session) => {
                builder = builder
                    .header("mcp-session-id", session.clone())
                    .header("mcp-protocol-version", SESSION_VERSION);
            }
            // An initialized connection to a server that assigned no session id.
            None if self.mode.uses_session() => {
                builder = builder.header("mcp-protocol-version", SESSION_VERSION);
            }
            None => {
                builder = builder
                    .header("mcp-protocol-version", STATELESS_VERSION)
                    .header("mcp-method", method);
                if with_name {
                    builder = builder.header("mcp-name", self.tool_header.clone());
                }
            }
        }
        builder
    }

    /// One measured operation. Returns the time spent waiting for the answer(s) and the
    /// verification outcome.
    pub async fn call(
        &mut self,
        seq: u64,
        expect_tools: Option<usize>,
    ) -> (Duration, Result<(), Failure>) {
        if let Err(f) = self.ensure_ready().await {
            return (Duration::ZERO, Err(f));
        }
        let n = (self.salt << 32) | (seq & 0xffff_ffff);
        match self.mode {
            Mode::Direct => {
                let body = format!("{{\"n\":{n}}}").into_bytes();
                let builder = self.request();
                let (elapsed, reply) = self.timed_send(builder, body).await;
                (
                    elapsed,
                    reply.and_then(|reply| check_direct_echo(&reply, n)),
                )
            }
            Mode::Session | Mode::Stateless => {
                let params = json!({"name": self.tool, "arguments": {"n": n}});
                let (id, body) = match self.rpc_body("tools/call", params) {
                    Ok(request) => request,
                    Err(f) => return (Duration::ZERO, Err(f)),
                };
                let builder = self.mcp_request("tools/call", true);
                let (elapsed, reply) = self.timed_send(builder, body).await;
                let outcome = reply
                    .and_then(|reply| json_rpc_reply(&reply, id))
                    .and_then(|result| check_echo_result(&result, n, self.accept_text_json));
                (elapsed, outcome)
            }
            Mode::ListSession | Mode::ListStateless => self.list_all(expect_tools).await,
        }
    }

    /// One full tools/list listing, following `nextCursor`; the time is summed over the pages.
    async fn list_all(&mut self, expect_tools: Option<usize>) -> (Duration, Result<(), Failure>) {
        let mut cursor: Option<String> = None;
        let mut count = 0usize;
        let mut elapsed = Duration::ZERO;
        for _page in 0..10_000 {
            let mut params = json!({});
            if let Some(c) = &cursor {
                params["cursor"] = json!(c);
            }
            let (id, body) = match self.rpc_body("tools/list", params) {
                Ok(request) => request,
                Err(f) => return (elapsed, Err(f)),
            };
            let builder = self.mcp_request("tools/list", false);
            let (took, reply) = self.timed_send(builder, body).await;
            elapsed += took;
            let result = match reply.and_then(|reply| json_rpc_reply(&reply, id)) {
                Ok(r) => r,
                Err(f) => return (elapsed, Err(f)),
            };
            match listed_tools(&result) {
                Ok(tools) => count += tools.len(),
                Err(f) => return (elapsed, Err(f)),
            }
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => cursor = Some(next.to_string()),
                _ => return (elapsed, check_listing(count, expect_tools)),
            }
        }
        (elapsed, Err(Failure::Wrong("more than 10000 pages".into())))
    }

    /// GET /healthz on the held connection (no reconnect): proves the connection is alive.
    pub async fn probe(&mut self) -> Result<(), Failure> {
        let request = self
            .endpoint
            .request(Method::GET, "/healthz")
            .body(Full::new(Bytes::new()))
            .map_err(|e| err("client", e.to_string()))?;
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| err("connection-lost", "not connected"))?;
        exchange(sender, request).await?.expect_ok()
    }

    /// Ends the session politely (DELETE), ignoring the outcome.
    pub async fn close(&mut self) {
        if let (Some(session), Some(sender)) = (self.session.take(), self.sender.as_mut()) {
            let mut builder = self
                .endpoint
                .request(Method::DELETE, &self.endpoint.path)
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", SESSION_VERSION);
            if let Some(token) = self.tokens.get() {
                builder = builder.header(AUTHORIZATION, token);
            }
            if let Ok(request) = builder.body(Full::new(Bytes::new())) {
                let _ = exchange(sender, request).await;
            }
        }
    }
}
