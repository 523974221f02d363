//! A real OpenID Connect provider for integration tests: npm `oidc-provider` (pinned in
//! `tests/idp/package.json`) driven by `tests/idp/idp.mjs`.
//!
//! Include it from an integration test with either
//! `#[path = "support/idp.rs"] mod idp;` or `mod support { pub mod idp; }`.
//!
//! Prerequisite (once per checkout): `npm ci --prefix tests/idp` (Node >= 20).
//!
//! What the IdP offers (see `tests/idp/idp.mjs` for the authoritative configuration):
//! * issuer `http://127.0.0.1:<ephemeral port>`, a fresh RSA-2048 signing key per process
//!   (`kid` = its RFC 7638 thumbprint), discovery at `/.well-known/openid-configuration`.
//! * access tokens are RS256 JWTs (`typ: at+jwt`) with `iss`, `sub`, `aud` (= the RFC 8707
//!   `resource`, default `urn:portcullis:test`), `client_id`, `scope`, `iat`, `exp`, `jti`.
//!   Resource-server scopes: `mcp tools.read tools.write profile extra`.
//! * any account id logs in (`login_hint`), claims `{sub, email: <id>@example.test, name}`.
//! * confidential clients (see the `*_CLIENT*` constants below). Unlike stock oidc-provider,
//!   which accepts `client_secret_basic` and `client_secret_post` interchangeably, each client
//!   must use its registered method (401 `invalid_client` otherwise; `IDP_STRICT_CLIENT_AUTH=0`
//!   in [`Idp::spawn`] restores the lenient behaviour). Refresh tokens for every client
//!   allowed the `refresh_token` grant, rotated on every use (reusing a rotated refresh token
//!   gives `invalid_grant` and, like any real oidc-provider, revokes the whole grant).
//!
//! Shared IdP: when `PORTCULLIS_TEST_IDP` holds the JSON line printed by `idp.mjs`,
//! [`Idp::start`] connects to that IdP instead of spawning one, e.g.
//! ```text
//! IDP_IGNORE_STDIN=1 node tests/idp/idp.mjs > /tmp/idp.json 2>/tmp/idp.log &
//! until [ -s /tmp/idp.json ]; do sleep 0.1; done
//! export PORTCULLIS_TEST_IDP="$(head -n1 /tmp/idp.json)"
//! ```
//! Set `PORTCULLIS_TEST_IDP_LOG=1` to echo a spawned IdP's stderr to the test's stderr;
//! [`Idp::logs`] returns it in any case.
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// Client with a loopback redirect (`http://127.0.0.1/callback`, any port), `client_secret_basic`.
pub const MCP_CLIENT: &str = "mcp-client";
pub const MCP_CLIENT_SECRET: &str = "mcp-client-secret";
/// Same shape as [`MCP_CLIENT`].
pub const OTHER_CLIENT: &str = "other-client";
pub const OTHER_CLIENT_SECRET: &str = "other-client-secret";
/// The gateway's own client: redirects `http://127.0.0.1/oauth2/login/callback` and
/// `http://127.0.0.1/oauth2/callback` (any port), `client_secret_basic`.
pub const PORTCULLIS_CLIENT: &str = "portcullis";
pub const PORTCULLIS_CLIENT_SECRET: &str = "portcullis-secret";
/// A downstream OAuth app: redirect `http://127.0.0.1/oauth2/callback` (any port),
/// `client_secret_post`.
pub const DOWNSTREAM_CLIENT: &str = "downstream-app";
pub const DOWNSTREAM_CLIENT_SECRET: &str = "downstream-app-secret";
/// Redirect URI used by [`Idp::user_token`] / [`Idp::user_tokens`].
pub const MCP_CLIENT_REDIRECT_URI: &str = "http://127.0.0.1/callback";
/// Audience the IdP uses when no `resource` is requested.
pub const DEFAULT_RESOURCE: &str = "urn:portcullis:test";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 20;

/// A running (or shared) test IdP.
pub struct Idp {
    pub issuer: String,
    pub kid: String,
    private_key_pem: String,
    http: reqwest::Client,
    logs: Arc<tokio::sync::Mutex<String>>,
    // Declared last: dropped after everything else. Dropping `stdin` closes the pipe (the IdP
    // exits on EOF); `kill_on_drop` covers the rest.
    process: Option<IdpProcess>,
}

struct IdpProcess {
    _stdin: ChildStdin,
    _child: Child,
}

/// Result of a token-endpoint call that is expected to fail (status, JSON body).
#[derive(Debug, Clone)]
pub struct TokenError {
    pub status: u16,
    pub body: Value,
}

impl TokenError {
    /// The OAuth `error` code, e.g. `invalid_grant`.
    pub fn error(&self) -> &str {
        self.body.get("error").and_then(Value::as_str).unwrap_or("")
    }
}

/// A successful token response.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub scope: Option<String>,
    pub expires_in: Option<u64>,
    /// The whole JSON body.
    pub raw: Value,
}

impl TokenSet {
    fn from_json(raw: Value) -> TokenSet {
        let s = |k: &str| raw.get(k).and_then(Value::as_str).map(str::to_owned);
        TokenSet {
            access_token: s("access_token")
                .unwrap_or_else(|| panic!("token response without access_token: {raw}")),
            refresh_token: s("refresh_token"),
            id_token: s("id_token"),
            scope: s("scope"),
            expires_in: raw.get("expires_in").and_then(Value::as_u64),
            raw,
        }
    }
}

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// `client_id` / `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// The client authentication method the IdP has registered for `client_id`.
pub fn client_auth_for(client_id: &str) -> ClientAuth {
    if client_id == DOWNSTREAM_CLIENT {
        ClientAuth::Post
    } else {
        ClientAuth::Basic
    }
}

/// PKCE pair (RFC 7636, S256).
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).unwrap_or_else(|e| panic!("rng: {e:?}"));
        let verifier = URL_SAFE_NO_PAD.encode(bytes);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        Pkce {
            challenge: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            verifier,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Pkce::new()
    }
}

/// Decodes a JWT's (header, payload) without verifying anything.
pub fn decode_unverified(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let mut part = |what: &str| -> Value {
        let seg = parts
            .next()
            .unwrap_or_else(|| panic!("JWT without {what}: {jwt}"));
        let bytes = URL_SAFE_NO_PAD
            .decode(seg)
            .unwrap_or_else(|e| panic!("JWT {what} is not base64url ({e}): {jwt}"));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("JWT {what} is not JSON ({e}): {jwt}"))
    };
    let header = part("header");
    let payload = part("payload");
    (header, payload)
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_else(|e| panic!("clock before 1970: {e}"))
}

impl Idp {
    /// Starts `node tests/idp/idp.mjs` (stdin piped and kept open; the IdP exits when it closes,
    /// i.e. when this value is dropped or the test process dies) and reads its JSON line.
    /// If `PORTCULLIS_TEST_IDP` is set, connects to that IdP instead.
    pub async fn start() -> Idp {
        if let Ok(line) = std::env::var("PORTCULLIS_TEST_IDP")
            && !line.trim().is_empty()
        {
            return Idp::from_line(&line, None, Arc::default());
        }
        Idp::spawn(&[]).await
    }

    /// Spawns a private IdP (never the shared one) with extra environment, e.g.
    /// `[("IDP_ROTATE_REFRESH", "0")]`.
    pub async fn spawn(env: &[(&str, &str)]) -> Idp {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests")
            .join("idp");
        let script = dir.join("idp.mjs");
        if !dir.join("node_modules").join("oidc-provider").is_dir() {
            panic!(
                "oidc-provider is not installed for the test IdP: run `npm ci --prefix {}`",
                dir.display()
            );
        }
        let node = std::env::var("PORTCULLIS_TEST_NODE").unwrap_or_else(|_| "node".to_owned());
        let mut cmd = Command::new(&node);
        cmd.arg(&script)
            .current_dir(&dir)
            .env("IDP_PORT", "0")
            .env_remove("IDP_IGNORE_STDIN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{node} {}`: {e}", script.display()));
        let stdin = child
            .stdin
            .take()
            .unwrap_or_else(|| panic!("IdP stdin not piped"));
        let stdout = child
            .stdout
            .take()
            .unwrap_or_else(|| panic!("IdP stdout not piped"));
        let stderr = child
            .stderr
            .take()
            .unwrap_or_else(|| panic!("IdP stderr not piped"));

        let logs: Arc<tokio::sync::Mutex<String>> = Arc::default();
        let echo = std::env::var_os("PORTCULLIS_TEST_IDP_LOG").is_some();
        {
            let logs = Arc::clone(&logs);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        eprintln!("[idp] {line}");
                    }
                    let mut buf = logs.lock().await;
                    buf.push_str(&line);
                    buf.push('\n');
                }
            });
        }

        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(STARTUP_TIMEOUT, stdout.read_line(&mut line)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            other => {
                let status = child.try_wait().ok().flatten();
                // Give the stderr reader a chance to collect what the process said.
                let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                let logs = logs.lock().await.clone();
                panic!(
                    "test IdP did not print its JSON line ({other:?}, exit status {status:?}); stderr:\n{logs}"
                );
            }
        }
        // Keep draining stdout so the IdP can never block on a full pipe.
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut stdout, &mut sink).await;
        });

        Idp::from_line(
            &line,
            Some(IdpProcess {
                _stdin: stdin,
                _child: child,
            }),
            logs,
        )
    }

    fn from_line(
        line: &str,
        process: Option<IdpProcess>,
        logs: Arc<tokio::sync::Mutex<String>>,
    ) -> Idp {
        let v: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("IdP JSON line is not JSON ({e}): {line:?}"));
        let field = |k: &str| -> String {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("IdP JSON line lacks {k:?}: {line}"))
                .to_owned()
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|e| panic!("reqwest client: {e}"));
        Idp {
            issuer: field("issuer"),
            kid: field("kid"),
            private_key_pem: field("private_key_pem"),
            http,
            logs,
            process,
        }
    }

    /// Whether this value spawned (and owns) the IdP process.
    /// Kills a spawned IdP and waits for it to exit: an IdP outage. No-op for a shared IdP.
    pub async fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process._child.kill().await;
        }
    }

    pub fn is_owned(&self) -> bool {
        self.process.is_some()
    }

    /// Everything the spawned IdP wrote to stderr so far (empty for a shared IdP).
    pub async fn logs(&self) -> String {
        self.logs.lock().await.clone()
    }

    // ---------------------------------------------------------------------------------------
    // Endpoints (oidc-provider defaults; all are also in the discovery document).
    // ---------------------------------------------------------------------------------------

    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/auth", self.issuer)
    }
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer)
    }
    pub fn userinfo_endpoint(&self) -> String {
        format!("{}/me", self.issuer)
    }
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/token/introspection", self.issuer)
    }
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/token/revocation", self.issuer)
    }

    /// GETs the discovery document.
    pub async fn discovery(&self) -> Value {
        let resp = self
            .http
            .get(self.discovery_url())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {}: {e}", self.discovery_url()));
        let status = resp.status();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("discovery body: {e}"));
        assert!(status.is_success(), "discovery: HTTP {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("discovery not JSON ({e}): {text}"))
    }

    // ---------------------------------------------------------------------------------------
    // Token endpoint.
    // ---------------------------------------------------------------------------------------

    /// POSTs `params` to the token endpoint, authenticating as `client_id` with the method the
    /// IdP registered for it ([`client_auth_for`]). Returns the JSON body on 200.
    pub async fn try_token_request(
        &self,
        client_id: &str,
        secret: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, TokenError> {
        self.try_token_request_with(client_auth_for(client_id), client_id, secret, params)
            .await
    }

    /// Like [`Idp::try_token_request`] with an explicit client authentication method.
    pub async fn try_token_request_with(
        &self,
        auth: ClientAuth,
        client_id: &str,
        secret: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, TokenError> {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let mut req = self.http.post(self.token_endpoint());
        match auth {
            ClientAuth::Basic => {
                // RFC 6749 2.3.1: form-urlencode id and secret before Basic encoding.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let creds = STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret)));
                req = req.header("authorization", format!("Basic {creds}"));
            }
            ClientAuth::Post => {
                form.append_pair("client_id", client_id);
                form.append_pair("client_secret", secret);
            }
        }
        let resp = req
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form.finish())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {}: {e}", self.token_endpoint()));
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("token response body: {e}"));
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
        if status == 200 {
            Ok(body)
        } else {
            Err(TokenError { status, body })
        }
    }

    async fn token_request(&self, client_id: &str, secret: &str, params: &[(&str, &str)]) -> Value {
        match self.try_token_request(client_id, secret, params).await {
            Ok(v) => v,
            Err(e) => {
                let logs = self.logs().await;
                panic!(
                    "token request {params:?} as {client_id} failed: HTTP {} {}\nIdP stderr:\n{logs}",
                    e.status, e.body
                )
            }
        }
    }

    /// `client_credentials` grant (client_secret_basic, or client_secret_post for
    /// `downstream-app`). `resource` becomes the RFC 8707 `resource` parameter (the JWT's `aud`);
    /// empty `scope` / `resource` are omitted. Returns the access-token JWT.
    pub async fn client_credentials_token(
        &self,
        client_id: &str,
        secret: &str,
        scope: &str,
        resource: &str,
    ) -> String {
        let mut params = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            params.push(("scope", scope));
        }
        if !resource.is_empty() {
            params.push(("resource", resource));
        }
        TokenSet::from_json(self.token_request(client_id, secret, &params).await).access_token
    }

    /// Full authorization-code flow (PKCE S256) for account `sub` with client `mcp-client` and
    /// redirect URI `http://127.0.0.1/callback`; returns the access-token JWT (`aud` = `resource`,
    /// or `urn:portcullis:test` if `resource` is empty).
    pub async fn user_token(&self, sub: &str, scope: &str, resource: &str) -> String {
        self.user_token_set(sub, scope, resource).await.access_token
    }

    /// Like [`Idp::user_token`], returning `(access_token, refresh_token)`.
    pub async fn user_tokens(&self, sub: &str, scope: &str, resource: &str) -> (String, String) {
        let set = self.user_token_set(sub, scope, resource).await;
        let refresh = set
            .refresh_token
            .unwrap_or_else(|| panic!("no refresh token in {}", set.raw));
        (set.access_token, refresh)
    }

    /// Like [`Idp::user_token`], returning the whole token response.
    pub async fn user_token_set(&self, sub: &str, scope: &str, resource: &str) -> TokenSet {
        self.authorization_code_flow(
            MCP_CLIENT,
            MCP_CLIENT_SECRET,
            MCP_CLIENT_REDIRECT_URI,
            sub,
            scope,
            resource,
        )
        .await
    }

    /// Authorization-code flow with PKCE for any registered client and redirect URI (a loopback
    /// redirect may carry any port). Empty `scope` / `resource` are omitted.
    pub async fn authorization_code_flow(
        &self,
        client_id: &str,
        secret: &str,
        redirect_uri: &str,
        sub: &str,
        scope: &str,
        resource: &str,
    ) -> TokenSet {
        let pkce = Pkce::new();
        let state = uuid::Uuid::new_v4().to_string();
        let mut auth = url::Url::parse(&self.authorization_endpoint())
            .unwrap_or_else(|e| panic!("authorization endpoint: {e}"));
        {
            let mut q = auth.query_pairs_mut();
            q.append_pair("client_id", client_id)
                .append_pair("response_type", "code")
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("state", &state)
                .append_pair("code_challenge", &pkce.challenge)
                .append_pair("code_challenge_method", "S256");
            if !scope.is_empty() {
                q.append_pair("scope", scope);
            }
            if !resource.is_empty() {
                q.append_pair("resource", resource);
            }
        }
        let callback = self.login(auth.as_str(), sub).await;
        let params: HashMap<String, String> = callback.query_pairs().into_owned().collect();
        if let Some(err) = params.get("error") {
            panic!(
                "authorization failed: {err} {:?} ({callback})",
                params.get("error_description")
            );
        }
        assert_eq!(
            params.get("state"),
            Some(&state),
            "state mismatch in {callback}"
        );
        assert_eq!(
            params.get("iss"),
            Some(&self.issuer),
            "RFC 9207 iss mismatch in {callback}"
        );
        let code = params
            .get("code")
            .unwrap_or_else(|| panic!("no code in {callback}"));
        self.exchange_code(
            client_id,
            secret,
            code,
            redirect_uri,
            &pkce.verifier,
            resource,
        )
        .await
    }

    /// Plays the user at the IdP: adds `login_hint=sub` to `authorization_url` (an IdP
    /// `/auth?...` URL, e.g. one a gateway redirected a browser to), then follows the IdP's
    /// redirects one by one with a cookie jar until a redirect leaves the IdP. Returns that final
    /// URL (the client's redirect URI with `code`, `state` and `iss`, or `error`). Panics if the
    /// IdP answers anything but a redirect.
    pub async fn login(&self, authorization_url: &str, sub: &str) -> url::Url {
        let mut url = url::Url::parse(authorization_url)
            .unwrap_or_else(|e| panic!("bad authorization URL {authorization_url:?}: {e}"));
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .into_owned()
            .filter(|(k, _)| k != "login_hint")
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("login_hint", sub);
        self.follow_redirects(url).await
    }

    /// Follows IdP redirects from `start` (cookie jar, one hop at a time) until a redirect
    /// leaves the IdP's origin; returns that URL.
    pub async fn follow_redirects(&self, start: url::Url) -> url::Url {
        let issuer = url::Url::parse(&self.issuer).unwrap_or_else(|e| panic!("issuer: {e}"));
        let mut jar = CookieJar::default();
        let mut url = start;
        for _ in 0..MAX_REDIRECTS {
            if url.origin() != issuer.origin() {
                return url;
            }
            let mut req = self.http.get(url.as_str());
            if let Some(cookie) = jar.header() {
                req = req.header("cookie", cookie);
            }
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {url}: {e}"));
            for value in resp.headers().get_all("set-cookie") {
                if let Ok(v) = value.to_str() {
                    jar.store(v);
                }
            }
            let status = resp.status();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match location {
                Some(loc) if status.is_redirection() => {
                    url = url
                        .join(&loc)
                        .unwrap_or_else(|e| panic!("bad Location {loc:?}: {e}"));
                }
                _ => {
                    let body = resp.text().await.unwrap_or_default();
                    let logs = self.logs().await;
                    panic!(
                        "IdP answered GET {url} with HTTP {status}: {body}\nIdP stderr:\n{logs}"
                    );
                }
            }
        }
        panic!("more than {MAX_REDIRECTS} redirects at the IdP, last {url}");
    }

    /// Exchanges an authorization code. `resource` (if non-empty) is sent as RFC 8707 `resource`.
    pub async fn exchange_code(
        &self,
        client_id: &str,
        secret: &str,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
        resource: &str,
    ) -> TokenSet {
        let mut params = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        if !resource.is_empty() {
            params.push(("resource", resource));
        }
        TokenSet::from_json(self.token_request(client_id, secret, &params).await)
    }

    /// Refreshes a token obtained through [`Idp::user_tokens`] (client `mcp-client`); returns
    /// `(access_token, refresh_token)`. With rotation (the default) the refresh token is new and
    /// the old one is dead.
    pub async fn refresh(&self, refresh_token: &str) -> (String, String) {
        match self
            .try_refresh(MCP_CLIENT, MCP_CLIENT_SECRET, refresh_token)
            .await
        {
            Ok(set) => {
                let rt = set
                    .refresh_token
                    .unwrap_or_else(|| panic!("no refresh token in {}", set.raw));
                (set.access_token, rt)
            }
            Err(e) => panic!("refresh failed: HTTP {} {}", e.status, e.body),
        }
    }

    /// `refresh_token` grant for any client; `Err` carries the IdP's error (e.g. `invalid_grant`).
    pub async fn try_refresh(
        &self,
        client_id: &str,
        secret: &str,
        refresh_token: &str,
    ) -> Result<TokenSet, TokenError> {
        self.try_token_request(
            client_id,
            secret,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
        .map(TokenSet::from_json)
    }

    /// RFC 7662 introspection (as `client_id`); returns the JSON body.
    pub async fn introspect(&self, client_id: &str, secret: &str, token: &str) -> Value {
        self.form_post(
            &self.introspection_endpoint(),
            client_id,
            secret,
            &[("token", token)],
        )
        .await
        .1
    }

    /// RFC 7009 revocation (as `client_id`); returns the HTTP status.
    pub async fn revoke(&self, client_id: &str, secret: &str, token: &str) -> u16 {
        self.form_post(
            &self.revocation_endpoint(),
            client_id,
            secret,
            &[("token", token)],
        )
        .await
        .0
    }

    async fn form_post(
        &self,
        endpoint: &str,
        client_id: &str,
        secret: &str,
        params: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let mut req = self.http.post(endpoint);
        match client_auth_for(client_id) {
            ClientAuth::Basic => req = req.basic_auth(client_id, Some(secret)),
            ClientAuth::Post => {
                form.append_pair("client_id", client_id);
                form.append_pair("client_secret", secret);
            }
        }
        let resp = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {endpoint}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    // ---------------------------------------------------------------------------------------
    // Forging tokens with the IdP's own key.
    // ---------------------------------------------------------------------------------------

    /// Claims shaped like this IdP's access tokens (`iss`, `sub`, `aud`, `client_id`, `scope`,
    /// `iat`, `exp` = now + 1 h, `jti`); tweak them and [`Idp::sign`] to forge edge cases.
    pub fn access_token_claims(&self, sub: &str, aud: &str, scope: &str) -> Value {
        let iat = now();
        json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "client_id": MCP_CLIENT,
            "scope": scope,
            "iat": iat,
            "exp": iat + 3600,
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    /// Signs `claims` with the IdP's key: RS256, header `kid` = `self.kid`, `typ` = `at+jwt`
    /// (like the IdP's own access tokens).
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_kid(claims, &self.kid)
    }

    /// Like [`Idp::sign`] with another `kid` in the header (the signature is still by the IdP's key).
    pub fn sign_with_kid(&self, claims: &Value, kid: &str) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        header.typ = Some("at+jwt".to_owned());
        self.sign_with_header(claims, &header)
    }

    /// Signs `claims` with the IdP's RSA key and an arbitrary header (its `alg` must be an RSA
    /// algorithm: RS256/384/512 or PS256/384/512).
    pub fn sign_with_header(&self, claims: &Value, header: &jsonwebtoken::Header) -> String {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(self.private_key_pem.as_bytes())
            .unwrap_or_else(|e| panic!("IdP private key: {e}"));
        jsonwebtoken::encode(header, claims, &key).unwrap_or_else(|e| panic!("sign: {e}"))
    }

    /// The signing key's private part, PKCS#8 PEM.
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    /// The signing key's public part, SPKI PEM (`-----BEGIN PUBLIC KEY-----`), e.g. to forge an
    /// HS256 token keyed with the public key (algorithm confusion).
    pub fn public_key_pem(&self) -> String {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        let der = pem_body(&self.private_key_pem, "PRIVATE KEY");
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
            .unwrap_or_else(|e| panic!("IdP private key is not PKCS#8 RSA: {e}"));
        let spki = pair
            .public_key()
            .as_der()
            .unwrap_or_else(|e| panic!("SPKI encoding: {e:?}"));
        to_pem("PUBLIC KEY", spki.as_ref())
    }

    /// The signing key's public part as a JWK (`kty`, `n`, `e`, `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> Value {
        use aws_lc_rs::signature::KeyPair as _;
        let der = pem_body(&self.private_key_pem, "PRIVATE KEY");
        let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
            .unwrap_or_else(|e| panic!("IdP private key is not PKCS#8 RSA: {e}"));
        let components = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        json!({
            "kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(&components.n),
            "e": URL_SAFE_NO_PAD.encode(&components.e),
            "kid": self.kid,
            "alg": "RS256",
            "use": "sig",
        })
    }
}

fn pem_body(pem: &str, label: &str) -> Vec<u8> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .unwrap_or_else(|| panic!("PEM without {begin}"))
        + begin.len();
    let stop = pem[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("PEM without {end}"))
        + start;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("PEM body is not base64: {e}"))
}

fn to_pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Minimal cookie jar for one origin: name=value only; a cookie set with an empty value, an
/// expiry in 1970 or `Max-Age` <= 0 is removed.
#[derive(Default, Debug, Clone)]
pub struct CookieJar {
    cookies: Vec<(String, String)>,
}

impl CookieJar {
    /// Records one `Set-Cookie` header value.
    pub fn store(&mut self, set_cookie: &str) {
        let mut parts = set_cookie.split(';');
        let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        let expired = parts.any(|attr| {
            let attr = attr.trim().to_ascii_lowercase();
            (attr.starts_with("expires=") && attr.contains("1970"))
                || attr
                    .strip_prefix("max-age=")
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v <= 0)
        });
        self.cookies.retain(|(n, _)| *n != name);
        if !value.is_empty() && !expired {
            self.cookies.push((name, value));
        }
    }

    /// The `Cookie` request header, if any cookie is held.
    pub fn header(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        Some(
            self.cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}
