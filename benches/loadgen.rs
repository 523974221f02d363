//! Load generator for Portcullis benchmarks (issue 5). Run with
//! `cargo bench --bench loadgen -- <subcommand> [options]`; `bench/run` drives it.
//!
//! Subcommands:
//! - `backend`: a trivial hyper HTTP/1.1 JSON backend; `POST /echo` answers the body as JSON.
//!   With `--require-bearer T`, `POST /echo-authed` does the same but answers 401 unless the
//!   request carries `Authorization: Bearer T` (proves a gateway injected the vaulted token).
//! - `oauth-provider`: a minimal OAuth 2.0 authorization server for the vault scenario:
//!   `GET /authorize` approves at once (redirects back with a code and the state), `POST /token`
//!   exchanges the code (PKCE S256 and client credentials checked) or a refresh token.
//! - `direct`: POST the backend's `/echo` directly (the baseline).
//! - `mcp-session`: MCP 2025-11-25, one session (initialize + initialized) per connection, then
//!   `tools/call` on it.
//! - `mcp-stateless`: MCP 2026-07-28, every `tools/call` carries its own `_meta`, no session.
//! - `tools-list`: full `tools/list` listings (following `nextCursor`), session mode by default.
//! - `idle`: opens N connections that each initialize a session (or, with `--plain`, just do
//!   `GET /healthz`), holds them, reports the gateway's RSS, then checks every one still answers.
//! - `coldstart`: spawns a command and measures the time until its `/readyz` answers 200.
//!
//! Each load connection is one keep-alive HTTP/1.1 connection driven in a closed loop (one
//! request in flight). Every answer is verified: HTTP 200, a JSON-RPC `result` with our `id`,
//! `isError` not true, and `structuredContent.n` equal to the `n` that was sent (for `direct`:
//! the echoed `n`). Transport/protocol failures are *errors*, a well-formed answer with the wrong
//! content is a *wrong answer*; both are counted and reported, and make the exit status 3.
//!
//! With `--server-pid`, the gateway's CPU time (utime + stime from /proc/<pid>/stat) is read at
//! the start and the end of the measured window, and its RSS (VmRSS / VmHWM) is sampled. With
//! `--server-tree` as well, the pid's descendants (forked workers) are included: CPU and RSS are
//! summed over the process tree, and the summed Pss is reported too.
//!
//! Other gateways (bench/run --peers): `--tool NAME` names the tool, `--accept-text-json` takes
//! the echoed `n` from a text content block's JSON when a result has no structuredContent (still
//! verified against the `n` sent), and `--session-optional` accepts a 2025-11-25 server that
//! assigns no Mcp-Session-Id.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const SESSION_VERSION: &str = "2025-11-25";
const STATELESS_VERSION: &str = "2026-07-28";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// Per-request timeout; a request that takes longer counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Portcullis load generator and benchmark backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Trivial JSON backend: `POST /echo` returns the request body as application/json.
    Backend(BackendArgs),
    /// Minimal OAuth 2.0 authorization server that approves every authorization request.
    OauthProvider(OauthProviderArgs),
    /// POST {"n":N} to the backend's /echo directly (baseline).
    Direct(LoadArgs),
    /// tools/call over MCP 2025-11-25 sessions (one session per connection).
    McpSession(LoadArgs),
    /// tools/call over stateless MCP 2026-07-28.
    McpStateless(LoadArgs),
    /// Full tools/list listings (all pages).
    ToolsList(LoadArgs),
    /// Open N connections with one initialized session each, hold them, report RSS.
    Idle(IdleArgs),
    /// Spawn a command and time it until GET <ready-url> answers 200.
    Coldstart(ColdstartArgs),
}

#[derive(Args)]
struct BackendArgs {
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: SocketAddr,
    /// Runtime worker threads (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Serve `POST /echo-authed`: like `/echo`, but 401 unless `Authorization: Bearer <this>`.
    #[arg(long)]
    require_bearer: Option<String>,
}

#[derive(Args)]
struct OauthProviderArgs {
    #[arg(long, default_value = "127.0.0.1:18082")]
    listen: SocketAddr,
    /// The only client allowed (checked at /authorize and /token).
    #[arg(long)]
    client_id: String,
    /// File holding that client's secret (whitespace trimmed); client_secret_basic or _post.
    #[arg(long)]
    client_secret_file: PathBuf,
    /// File holding the access token every grant returns (whitespace trimmed).
    #[arg(long)]
    access_token_file: PathBuf,
    /// `expires_in` of every access token, seconds.
    #[arg(long, default_value_t = 86_400)]
    expires_in: u64,
}

#[derive(Args, Clone)]
struct TokenArgs {
    /// Bearer token sent with every request.
    #[arg(long)]
    token: Option<String>,
    /// File holding the bearer token (whitespace trimmed).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Mint this many distinct tokens up front with the gateway's dev issuer key and use a new
    /// one for each request (wrapping around, counted as `token_reuses`, if they run out).
    #[arg(long)]
    fresh_tokens: Option<usize>,
    /// The gateway's data_dir (where the dev issuer key lives), for --fresh-tokens.
    #[arg(long)]
    dev_data_dir: Option<PathBuf>,
    /// The gateway's public_url, for --fresh-tokens (the issuer is <public_url>/dev).
    #[arg(long)]
    public_url: Option<String>,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Target URL: the backend's http://host:port/echo for `direct`, the gateway's /mcp otherwise.
    #[arg(long)]
    url: String,
    /// Concurrent keep-alive connections (one request in flight each).
    #[arg(short = 'c', long, default_value_t = 16)]
    connections: usize,
    /// Measured duration in seconds (ignored when --requests is given).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// Measure exactly this many calls instead of a fixed duration.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Upper bound on the measured window with --requests, seconds.
    #[arg(long, default_value_t = 300.0)]
    max_time: f64,
    /// Warm-up seconds before the measured window (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Load generator runtime threads (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Tool to call.
    #[arg(long, alias = "tool-name", default_value = "bench___echo")]
    tool: String,
    /// tools/call answers: when structuredContent is absent, take the echoed `n` from a text
    /// content block holding a JSON object (`{"n": N}`); it must still equal the `n` sent.
    /// Without this flag structuredContent.n is required.
    #[arg(long)]
    accept_text_json: bool,
    /// mcp-session / tools-list: a server that assigns no Mcp-Session-Id on initialize (the spec
    /// allows it) is used without one: initialize once per connection, then calls carry only
    /// MCP-Protocol-Version. Without this flag a missing session id is an error.
    #[arg(long)]
    session_optional: bool,
    /// tools-list: the listing must contain exactly this many tools.
    #[arg(long)]
    expect_tools: Option<usize>,
    /// tools-list: use stateless 2026-07-28 instead of a session.
    #[arg(long)]
    stateless: bool,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    procs: ProcArgs,
    /// Free-form label copied into the JSON result.
    #[arg(long, default_value = "")]
    label: String,
    /// Write the result as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ProcArgs {
    /// Gateway pid: CPU (utime+stime) over the measured window, VmRSS / VmHWM.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Count --server-pid together with all its descendant processes (a gateway that forks
    /// workers): CPU is the sum of utime+stime+cutime+cstime over the tree, memory the sum of
    /// VmRSS / VmHWM / RssAnon / RssFile over it, plus the sum of Pss (shared pages split).
    #[arg(long, requires = "server_pid")]
    server_tree: bool,
    /// Backend pid: CPU over the measured window.
    #[arg(long)]
    backend_pid: Option<u32>,
    /// Clock ticks per second for /proc/<pid>/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
}

#[derive(Args)]
struct IdleArgs {
    /// The gateway's /mcp URL.
    #[arg(long)]
    url: String,
    #[arg(short = 'c', long, default_value_t = 10_000)]
    connections: usize,
    /// Connections being set up at the same time.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to hold the idle sessions (RSS is sampled meanwhile).
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    #[arg(long, default_value = "bench___echo")]
    tool: String,
    /// Plain keep-alive connections without an MCP session (each does GET /healthz), to
    /// separate the cost of a connection from the cost of a session.
    #[arg(long)]
    plain: bool,
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    procs: ProcArgs,
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ColdstartArgs {
    /// Readiness URL, e.g. http://127.0.0.1:18090/readyz
    #[arg(long)]
    ready_url: String,
    /// The readiness JSON must report this many tools.
    #[arg(long)]
    expect_tools: Option<u64>,
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Give up on one start after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long)]
    json: Option<PathBuf>,
    /// The command to start (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn main() {
    // `cargo bench` appends `--bench` to the arguments of every bench target.
    let args = std::env::args().filter(|a| a != "--bench");
    let cli = Cli::parse_from(args);
    let threads = match &cli.command {
        Command::Backend(a) => a.threads,
        Command::OauthProvider(_) => 1,
        Command::Direct(a)
        | Command::McpSession(a)
        | Command::McpStateless(a)
        | Command::ToolsList(a) => a.threads,
        Command::Idle(a) => a.threads,
        Command::Coldstart(_) => 1,
    };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Backend(a) => backend(a).await.map(|()| 0),
            Command::OauthProvider(a) => oauth_provider(a).await.map(|()| 0),
            Command::Direct(a) => load(Mode::Direct, a).await,
            Command::McpSession(a) => load(Mode::Session, a).await,
            Command::McpStateless(a) => load(Mode::Stateless, a).await,
            Command::ToolsList(a) => {
                let mode = if a.stateless {
                    Mode::ListStateless
                } else {
                    Mode::ListSession
                };
                load(mode, a).await
            }
            Command::Idle(a) => idle(a).await,
            Command::Coldstart(a) => coldstart(a).await,
        }
    });
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Backend

async fn backend(args: BackendArgs) -> Result<(), BoxError> {
    let listener = TcpListener::bind(args.listen).await?;
    println!("backend listening on {}", listener.local_addr()?);
    // The whole header value, compared as bytes on every /echo-authed request.
    let required: Option<Arc<HeaderValue>> = match &args.require_bearer {
        Some(token) => Some(Arc::new(bearer(token)?)),
        None => None,
    };
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("backend: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let required = required.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| echo_service(request, required.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn plain_reply(
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

async fn echo_service(
    request: Request<Incoming>,
    required_bearer: Option<Arc<HeaderValue>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = plain_reply;
    let echo = |request: Request<Incoming>| async move {
        match request.into_body().collect().await {
            Ok(body) => reply(StatusCode::OK, "application/json", body.to_bytes()),
            Err(_) => reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                Bytes::from_static(b"bad body"),
            ),
        }
    };
    match (request.method(), request.uri().path()) {
        (&Method::POST, "/echo") => echo(request).await,
        (&Method::POST, "/echo-authed") if required_bearer.is_some() => {
            let authorized = required_bearer
                .as_deref()
                .is_some_and(|required| request.headers().get(AUTHORIZATION) == Some(required));
            if authorized {
                echo(request).await
            } else {
                let mut response = reply(
                    StatusCode::UNAUTHORIZED,
                    "text/plain",
                    Bytes::from_static(b"missing or wrong bearer token"),
                )?;
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                Ok(response)
            }
        }
        (&Method::GET, "/healthz") => {
            reply(StatusCode::OK, "text/plain", Bytes::from_static(b"ok"))
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found"),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// OAuth 2.0 authorization server (scenario 2: a real consent flow fills the gateway's vault)

/// How long an authorization code can be exchanged (RFC 6749 section 4.1.2: short-lived).
const CODE_TTL: Duration = Duration::from_secs(120);

struct PendingCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: Option<String>,
    issued: Instant,
}

struct OauthServer {
    issuer: String,
    client_id: String,
    client_secret: String,
    access_token: String,
    refresh_token: String,
    expires_in: u64,
    codes: parking_lot::Mutex<HashMap<String, PendingCode>>,
}

fn read_trimmed(path: &PathBuf) -> Result<String, BoxError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()).into());
    }
    Ok(text.to_string())
}

/// 32 random bytes, base64url.
fn random_string() -> Result<String, BoxError> {
    use aws_lc_rs::rand::SecureRandom;
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness")?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

async fn oauth_provider(args: OauthProviderArgs) -> Result<(), BoxError> {
    let listener = TcpListener::bind(args.listen).await?;
    let local = listener.local_addr()?;
    let provider = Arc::new(OauthServer {
        issuer: format!("http://{local}"),
        client_id: args.client_id.clone(),
        client_secret: read_trimmed(&args.client_secret_file)?,
        access_token: read_trimmed(&args.access_token_file)?,
        refresh_token: random_string()?,
        expires_in: args.expires_in,
        codes: parking_lot::Mutex::new(HashMap::new()),
    });
    println!("oauth-provider listening on {local}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("oauth-provider: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let provider = provider.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request| oauth_service(request, provider.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn oauth_service(
    request: Request<Incoming>,
    provider: Arc<OauthServer>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/authorize") => {
            let query = request.uri().query().unwrap_or("").to_string();
            Ok(authorize(&provider, &query))
        }
        (&Method::POST, "/token") => {
            let basic = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match request.into_body().collect().await {
                Ok(body) => Ok(token_endpoint(
                    &provider,
                    basic.as_deref(),
                    &body.to_bytes(),
                )),
                Err(_) => plain_reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    Bytes::from_static(b"bad body"),
                ),
            }
        }
        (&Method::GET, "/healthz") => {
            plain_reply(StatusCode::OK, "text/plain", Bytes::from_static(b"ok"))
        }
        _ => plain_reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found"),
        ),
    }
}

/// First value of each parameter of an `application/x-www-form-urlencoded` text.
fn form_params(text: &[u8]) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(text) {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
}

fn text_response(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// `GET /authorize`: the user approves at once. The request must be a valid authorization
/// code request of the one client with PKCE S256 (RFC 6749 section 4.1.1, RFC 7636 section 4.3);
/// the answer redirects to `redirect_uri` with the code, the state and the RFC 9207 `iss`.
fn authorize(provider: &OauthServer, query: &str) -> Response<Full<Bytes>> {
    let params = form_params(query.as_bytes());
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let refuse = |reason: &str| {
        eprintln!("oauth-provider: /authorize refused: {reason}");
        text_response(
            StatusCode::BAD_REQUEST,
            format!("authorization refused: {reason}\n"),
        )
    };
    if get("response_type") != Some("code") {
        return refuse("response_type must be code");
    }
    if get("client_id") != Some(provider.client_id.as_str()) {
        return refuse("unknown client_id");
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return refuse("missing redirect_uri");
    };
    let Ok(mut location) = url::Url::parse(redirect_uri) else {
        return refuse("redirect_uri is not a URL");
    };
    if !matches!(location.scheme(), "http" | "https") || location.fragment().is_some() {
        return refuse("redirect_uri must be an http(s) URL without fragment");
    }
    let Some(state) = get("state") else {
        return refuse("missing state");
    };
    if get("code_challenge_method") != Some("S256") {
        return refuse("code_challenge_method must be S256");
    }
    let Some(challenge) = get("code_challenge").filter(|c| c.len() == 43) else {
        return refuse("missing or malformed code_challenge");
    };
    let Ok(code) = random_string() else {
        return refuse("no randomness");
    };
    {
        let mut codes = provider.codes.lock();
        codes.retain(|_, pending| pending.issued.elapsed() < CODE_TTL);
        codes.insert(
            code.clone(),
            PendingCode {
                client_id: provider.client_id.clone(),
                redirect_uri: redirect_uri.to_string(),
                code_challenge: challenge.to_string(),
                scope: get("scope").map(str::to_string),
                issued: Instant::now(),
            },
        );
    }
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state)
        .append_pair("iss", &provider.issuer);
    let mut response = text_response(StatusCode::FOUND, String::new());
    match HeaderValue::from_str(location.as_str()) {
        Ok(value) => {
            response.headers_mut().insert(http::header::LOCATION, value);
            response
        }
        Err(_) => refuse("redirect_uri cannot be a header value"),
    }
}

fn token_error(status: StatusCode, error: &str, description: &str) -> Response<Full<Bytes>> {
    eprintln!("oauth-provider: /token refused: {error}: {description}");
    let body = json!({"error": error, "error_description": description}).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oauth-provider\""),
        );
    }
    response
}

/// The client's id and secret: HTTP Basic (RFC 6749 section 2.3.1, both form-urlencoded
/// first) or `client_id` / `client_secret` in the body.
fn client_credentials(
    basic: Option<&str>,
    params: &HashMap<String, String>,
) -> Option<(String, String)> {
    use base64::Engine;
    if let Some(encoded) = basic.and_then(|h| h.strip_prefix("Basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        let unescape = |part: &str| {
            url::form_urlencoded::parse(format!("x={part}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((unescape(id)?, unescape(secret)?));
    }
    Some((
        params.get("client_id")?.clone(),
        params.get("client_secret")?.clone(),
    ))
}

/// `POST /token`: `authorization_code` (single-use code, same redirect_uri, PKCE S256 verifier)
/// or `refresh_token`; the client must authenticate.
fn token_endpoint(
    provider: &OauthServer,
    basic: Option<&str>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    use base64::Engine;
    let params = form_params(body);
    let authenticated = client_credentials(basic, &params).is_some_and(|(id, secret)| {
        id == provider.client_id
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                secret.as_bytes(),
                provider.client_secret.as_bytes(),
            )
            .is_ok()
    });
    if !authenticated {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    let get = |name: &str| params.get(name).map(String::as_str);
    let scope = match get("grant_type") {
        Some("authorization_code") => {
            let pending = get("code").and_then(|code| provider.codes.lock().remove(code));
            let Some(pending) = pending.filter(|p| p.issued.elapsed() < CODE_TTL) else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown, expired or already used code",
                );
            };
            if pending.client_id != provider.client_id
                || get("redirect_uri") != Some(pending.redirect_uri.as_str())
            {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri or client differs from the authorization request",
                );
            }
            let verifier = get("code_verifier").unwrap_or("");
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()),
            );
            if !(43..=128).contains(&verifier.len()) || computed != pending.code_challenge {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            println!("oauth-provider: authorization_code grant");
            pending.scope
        }
        Some("refresh_token") => {
            if get("refresh_token") != Some(provider.refresh_token.as_str()) {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown refresh token",
                );
            }
            println!("oauth-provider: refresh_token grant");
            get("scope").map(str::to_string)
        }
        _ => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "authorization_code or refresh_token",
            );
        }
    };
    let mut body = json!({
        "access_token": provider.access_token,
        "token_type": "Bearer",
        "expires_in": provider.expires_in,
        "refresh_token": provider.refresh_token,
    });
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

// ---------------------------------------------------------------------------------------------
// Shared client plumbing

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Direct,
    Session,
    Stateless,
    ListSession,
    ListStateless,
}

impl Mode {
    fn name(self) -> &'static str {
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

/// Where requests go: address for the TCP connect, Host header and path.
#[derive(Clone)]
struct Endpoint {
    addr: SocketAddr,
    host: HeaderValue,
    path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, BoxError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("only http:// URLs are supported")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = authority
            .parse()
            .map_err(|_| format!("{authority:?} is not an IP:port address"))?;
        Ok(Endpoint {
            addr,
            host: HeaderValue::from_str(authority)?,
            path: path.to_string(),
        })
    }
}

/// The bearer tokens: one repeated, or a pool of distinct ones used round-robin.
struct Tokens {
    values: Vec<HeaderValue>,
    next: AtomicUsize,
}

impl Tokens {
    fn get(&self) -> Option<HeaderValue> {
        match self.values.len() {
            0 => None,
            1 => Some(self.values[0].clone()),
            n => Some(self.values[self.next.fetch_add(1, Ordering::Relaxed) % n].clone()),
        }
    }
    /// How many times a token was handed out again after the pool ran out.
    fn reuses(&self) -> u64 {
        let used = self.next.load(Ordering::Relaxed);
        let n = self.values.len();
        if n > 1 {
            used.saturating_sub(n) as u64
        } else {
            0
        }
    }
}

fn bearer(token: &str) -> Result<HeaderValue, BoxError> {
    Ok(HeaderValue::from_maybe_shared(Bytes::from(format!(
        "Bearer {}",
        token.trim()
    )))?)
}

fn load_tokens(args: &TokenArgs) -> Result<Tokens, BoxError> {
    let mut values = Vec::new();
    if let Some(n) = args.fresh_tokens {
        let data_dir = args
            .dev_data_dir
            .as_ref()
            .ok_or("--fresh-tokens needs --dev-data-dir")?;
        let public_url = args
            .public_url
            .as_ref()
            .ok_or("--fresh-tokens needs --public-url")?;
        let issuer = portcullis::inbound::DevIssuer::load_or_create(data_dir, public_url)?;
        let scopes = vec![portcullis::inbound::DEV_SCOPE.to_string()];
        let started = Instant::now();
        let workers = std::thread::available_parallelism().map_or(1, |p| p.get());
        let chunk = n.div_ceil(workers.max(1)).max(1);
        let minted: Result<Vec<Vec<HeaderValue>>, BoxError> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..n)
                .step_by(chunk)
                .map(|start| {
                    let issuer = &issuer;
                    let scopes = &scopes;
                    scope.spawn(move || -> Result<Vec<HeaderValue>, BoxError> {
                        (start..(start + chunk).min(n))
                            .map(|i| {
                                let token = issuer.mint(
                                    &format!("bench-user-{i}"),
                                    scopes,
                                    portcullis::inbound::DEV_AUDIENCE,
                                )?;
                                bearer(&token)
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| BoxError::from("minting thread panicked"))?
                })
                .collect()
        });
        values = minted?.into_iter().flatten().collect();
        eprintln!(
            "minted {} distinct tokens in {:.2} s",
            values.len(),
            started.elapsed().as_secs_f64()
        );
    } else if let Some(token) = &args.token {
        values.push(bearer(token)?);
    } else if let Some(path) = &args.token_file {
        values.push(bearer(&std::fs::read_to_string(path)?)?);
    }
    Ok(Tokens {
        values,
        next: AtomicUsize::new(0),
    })
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Why a call did not count as a good answer.
#[derive(Debug)]
enum Failure {
    /// Transport, HTTP status, protocol: the kind goes into the error table.
    Error(String, String),
    /// A well-formed answer whose content is not what was asked for.
    Wrong(String),
}

fn err(kind: &str, detail: impl Into<String>) -> Failure {
    Failure::Error(kind.to_string(), detail.into())
}

struct Reply {
    status: StatusCode,
    content_type: String,
    session: Option<HeaderValue>,
    body: Bytes,
}

/// Sends one request (keep-alive) and reads the whole body, with a timeout.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Result<Reply, Failure> {
    let work = async {
        sender
            .ready()
            .await
            .map_err(|e| err("transport", e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| err("transport", e.to_string()))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let session = response.headers().get("mcp-session-id").cloned();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| err("transport", e.to_string()))?
            .to_bytes();
        Ok(Reply {
            status,
            content_type,
            session,
            body,
        })
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, work).await {
        Ok(result) => result,
        Err(_) => Err(err(
            "timeout",
            format!("no answer within {REQUEST_TIMEOUT:?}"),
        )),
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.chars().count() > 200 {
        format!("{}...", text.chars().take(200).collect::<String>())
    } else {
        text.to_string()
    }
}

/// The JSON-RPC message answering request `id`, from a JSON or an SSE (`data:` lines) body.
fn json_rpc_reply(reply: &Reply, id: u64) -> Result<Value, Failure> {
    if reply.status != StatusCode::OK {
        return Err(err(
            &format!("http-{}", reply.status.as_u16()),
            excerpt(&reply.body),
        ));
    }
    let message = if reply.content_type.starts_with("text/event-stream") {
        let mut found = None;
        for line in reply.body.split(|b| *b == b'\n') {
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let data = data.trim_ascii();
            if data.is_empty() {
                continue; // SSE priming event
            }
            let value: Value = serde_json::from_slice(data)
                .map_err(|e| err("malformed", format!("SSE data is not JSON: {e}")))?;
            if value.get("id").and_then(Value::as_u64) == Some(id) {
                found = Some(value);
                break;
            }
        }
        found.ok_or_else(|| {
            err(
                "malformed",
                format!(
                    "no JSON-RPC message with id {id} in the SSE stream: {}",
                    excerpt(&reply.body)
                ),
            )
        })?
    } else if reply.content_type.starts_with("application/json") {
        serde_json::from_slice(&reply.body)
            .map_err(|e| err("malformed", format!("body is not JSON: {e}")))?
    } else {
        return Err(err(
            "malformed",
            format!("unexpected content-type {:?}", reply.content_type),
        ));
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(err("malformed", "not a JSON-RPC 2.0 message"));
    }
    if message.get("id").and_then(Value::as_u64) != Some(id) {
        return Err(Failure::Wrong(format!(
            "answer for id {:?}, expected {id}",
            message.get("id")
        )));
    }
    if let Some(error) = message.get("error") {
        return Err(err("jsonrpc-error", error.to_string()));
    }
    match message {
        Value::Object(mut map) => map
            .remove("result")
            .ok_or_else(|| err("no-result", "JSON-RPC answer without result")),
        _ => Err(err("malformed", "JSON-RPC message is not an object")),
    }
}

/// A tools/call result must echo `n` in structuredContent (and not be an error). With
/// `accept_text_json`, a result without structuredContent may carry it instead as a JSON object
/// in a text content block (servers that wrap a REST answer as text).
fn check_echo_result(result: &Value, n: u64, accept_text_json: bool) -> Result<(), Failure> {
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return Err(err("tool-error", excerpt(result.to_string().as_bytes())));
    }
    match result.get("structuredContent") {
        None if accept_text_json => check_text_json_echo(result, n)?,
        structured => {
            let got = structured.and_then(|s| s.get("n"));
            if got.and_then(Value::as_u64) != Some(n) {
                return Err(Failure::Wrong(format!(
                    "sent n={n}, structuredContent.n = {got:?}"
                )));
            }
        }
    }
    let text_ok = result
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|blocks| !blocks.is_empty());
    if !text_ok {
        return Err(Failure::Wrong("result without content blocks".into()));
    }
    Ok(())
}

/// The echoed `n` in the first text content block that holds a JSON object: it must equal `n`.
fn check_text_json_echo(result: &Value, n: u64) -> Result<(), Failure> {
    let blocks = result
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::Wrong("no structuredContent and no content blocks".into()))?;
    let echoed = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .find_map(|text| match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        });
    let Some(echoed) = echoed else {
        return Err(Failure::Wrong(format!(
            "no structuredContent and no text block with a JSON object: {}",
            excerpt(result.to_string().as_bytes())
        )));
    };
    let got = echoed.get("n");
    if got.and_then(Value::as_u64) != Some(n) {
        return Err(Failure::Wrong(format!(
            "sent n={n}, text content JSON n = {got:?}"
        )));
    }
    Ok(())
}

fn stateless_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "portcullis-loadgen", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}

/// One client connection with its MCP state.
struct Client {
    endpoint: Endpoint,
    mode: Mode,
    tokens: Arc<Tokens>,
    tool: String,
    tool_header: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
    session: Option<HeaderValue>,
    /// Session modes: initialize + initialized done on this connection.
    initialized: bool,
    /// Session modes: go on without a session id if the server assigns none.
    session_optional: bool,
    /// tools/call: accept the echo as JSON in a text block when structuredContent is absent.
    accept_text_json: bool,
    next_id: u64,
    /// HTTP requests made by `call` (a tools/list listing takes one per page).
    requests: u64,
    /// Distinguishes the `n` values of different connections.
    salt: u64,
}

impl Client {
    fn new(
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

    fn request(&self) -> http::request::Builder {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.path.as_str())
            .header(HOST, self.endpoint.host.clone())
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

    /// Connects (and for session modes initializes) if needed.
    async fn ensure_ready(&mut self) -> Result<(), Failure> {
        if self.sender.is_none() {
            self.sender = Some(
                connect(self.endpoint.addr)
                    .await
                    .map_err(|e| err("connect", e.to_string()))?,
            );
        }
        if self.mode.uses_session() && !self.initialized {
            self.initialize().await?;
        }
        Ok(())
    }

    async fn initialize(&mut self) -> Result<(), Failure> {
        let id = self.next_id;
        self.next_id += 1;
        let body = serde_json::to_vec(&json!({
            "jsonrpc": "2.0", "id": id, "method": "initialize",
            "params": {
                "protocolVersion": SESSION_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "portcullis-loadgen", "version": "1"}
            }
        }))
        .map_err(|e| err("client", e.to_string()))?;
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
    async fn call(
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
                self.requests += 1;
                let started = Instant::now();
                let reply = self.send(builder, body).await;
                let elapsed = started.elapsed();
                let outcome = reply.and_then(|reply| {
                    if reply.status != StatusCode::OK {
                        return Err(err(
                            &format!("http-{}", reply.status.as_u16()),
                            excerpt(&reply.body),
                        ));
                    }
                    let value: Value = serde_json::from_slice(&reply.body)
                        .map_err(|e| err("malformed", format!("body is not JSON: {e}")))?;
                    if value.get("n").and_then(Value::as_u64) == Some(n) {
                        Ok(())
                    } else {
                        Err(Failure::Wrong(format!(
                            "sent n={n}, got {}",
                            excerpt(&reply.body)
                        )))
                    }
                });
                (elapsed, outcome)
            }
            Mode::Session | Mode::Stateless => {
                let id = self.next_id;
                self.next_id += 1;
                let mut params = json!({"name": self.tool, "arguments": {"n": n}});
                if !self.mode.uses_session() {
                    params["_meta"] = stateless_meta();
                }
                let body = match serde_json::to_vec(
                    &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}),
                ) {
                    Ok(b) => b,
                    Err(e) => return (Duration::ZERO, Err(err("client", e.to_string()))),
                };
                let builder = self.mcp_request("tools/call", true);
                self.requests += 1;
                let started = Instant::now();
                let reply = self.send(builder, body).await;
                let elapsed = started.elapsed();
                let outcome = reply
                    .and_then(|reply| json_rpc_reply(&reply, id))
                    .and_then(|result| check_echo_result(&result, n, self.accept_text_json));
                (elapsed, outcome)
            }
            Mode::ListSession | Mode::ListStateless => {
                let mut cursor: Option<String> = None;
                let mut count = 0usize;
                let mut elapsed = Duration::ZERO;
                for _page in 0..10_000 {
                    let id = self.next_id;
                    self.next_id += 1;
                    let mut params = json!({});
                    if let Some(c) = &cursor {
                        params["cursor"] = json!(c);
                    }
                    if !self.mode.uses_session() {
                        params["_meta"] = stateless_meta();
                    }
                    let body = match serde_json::to_vec(
                        &json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params}),
                    ) {
                        Ok(b) => b,
                        Err(e) => return (elapsed, Err(err("client", e.to_string()))),
                    };
                    let builder = self.mcp_request("tools/list", false);
                    self.requests += 1;
                    let started = Instant::now();
                    let reply = self.send(builder, body).await;
                    elapsed += started.elapsed();
                    let result = match reply.and_then(|reply| json_rpc_reply(&reply, id)) {
                        Ok(r) => r,
                        Err(f) => return (elapsed, Err(f)),
                    };
                    let Some(tools) = result.get("tools").and_then(Value::as_array) else {
                        return (
                            elapsed,
                            Err(Failure::Wrong("tools/list result without tools".into())),
                        );
                    };
                    if tools.iter().any(|t| {
                        t.get("name")
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty)
                    }) {
                        return (
                            elapsed,
                            Err(Failure::Wrong("a listed tool has no name".into())),
                        );
                    }
                    count += tools.len();
                    match result.get("nextCursor").and_then(Value::as_str) {
                        Some(next) if !next.is_empty() => cursor = Some(next.to_string()),
                        _ => {
                            let outcome = match expect_tools {
                                Some(expected) if expected != count => Err(Failure::Wrong(
                                    format!("listing has {count} tools, expected {expected}"),
                                )),
                                None if count == 0 => Err(Failure::Wrong("empty listing".into())),
                                _ => Ok(()),
                            };
                            return (elapsed, outcome);
                        }
                    }
                }
                (elapsed, Err(Failure::Wrong("more than 10000 pages".into())))
            }
        }
    }

    /// GET /healthz on the held connection (no reconnect): proves the connection is alive.
    async fn probe(&mut self) -> Result<(), Failure> {
        let request = Request::builder()
            .method(Method::GET)
            .uri("/healthz")
            .header(HOST, self.endpoint.host.clone())
            .body(Full::new(Bytes::new()))
            .map_err(|e| err("client", e.to_string()))?;
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| err("connection-lost", "not connected"))?;
        let reply = exchange(sender, request).await?;
        if reply.status != StatusCode::OK {
            return Err(err(
                &format!("http-{}", reply.status.as_u16()),
                excerpt(&reply.body),
            ));
        }
        Ok(())
    }

    /// Ends the session politely (DELETE), ignoring the outcome.
    async fn close(&mut self) {
        if let (Some(session), Some(sender)) = (self.session.take(), self.sender.as_mut()) {
            let mut builder = Request::builder()
                .method(Method::DELETE)
                .uri(self.endpoint.path.as_str())
                .header(HOST, self.endpoint.host.clone())
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

// ---------------------------------------------------------------------------------------------
// /proc readings

#[derive(Clone, Copy, Default)]
struct ProcSample {
    cpu_ticks: u64,
}

/// The fields of /proc/<pid>/stat after the parenthesised command name: index 0 is field 3
/// (state), 1 the ppid, 11 and 12 utime and stime (fields 14 and 15), 13 and 14 cutime and
/// cstime.
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    // The state is a letter: keep its place with 0 so that the indices stay the field numbers.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

fn cpu_ticks(pid: &str) -> Option<u64> {
    let fields = stat_fields(pid)?;
    Some(fields.get(11)? + fields.get(12)?)
}

/// utime + stime + cutime + cstime: the process and its children that exited and were reaped,
/// so that summing this over a live process tree counts every process once.
fn cpu_ticks_with_reaped(pid: u32) -> Option<u64> {
    let fields = stat_fields(&pid.to_string())?;
    Some(fields.get(11)? + fields.get(12)? + fields.get(13)? + fields.get(14)?)
}

/// `root` and all its live descendants (root first); empty if `root` is gone.
fn process_tree(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(ppid) = stat_fields(&pid.to_string()).and_then(|f| f.get(1).copied()) {
                parents.push((pid, ppid));
            }
        }
    }
    if !parents.iter().any(|&(pid, _)| pid == root) {
        return Vec::new();
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = u64::from(tree[i]);
        tree.extend(
            parents
                .iter()
                .filter(|&&(_, ppid)| ppid == parent)
                .map(|&(pid, _)| pid),
        );
        i += 1;
    }
    tree
}

/// The measured gateway: one process, or with --server-tree a process and its descendants.
#[derive(Clone, Copy)]
struct Server {
    pid: u32,
    tree: bool,
}

impl ProcArgs {
    fn server(&self) -> Option<Server> {
        self.server_pid.map(|pid| Server {
            pid,
            tree: self.server_tree,
        })
    }
}

impl Server {
    /// The processes measured now (the root first).
    fn pids(self) -> Vec<u32> {
        if self.tree {
            process_tree(self.pid)
        } else {
            vec![self.pid]
        }
    }

    fn cpu_ticks(self) -> Option<u64> {
        if !self.tree {
            return cpu_ticks(&self.pid.to_string());
        }
        let pids = self.pids();
        let root = cpu_ticks_with_reaped(*pids.first()?)?;
        Some(
            root + pids[1..]
                .iter()
                .filter_map(|&p| cpu_ticks_with_reaped(p))
                .sum::<u64>(),
        )
    }

    /// A pair of KiB figures summed over the processes (None if the root has none).
    fn sum_pairs(pids: &[u32], read: fn(u32) -> Option<(u64, u64)>) -> Option<(u64, u64)> {
        let root = read(*pids.first()?)?;
        Some(
            pids[1..]
                .iter()
                .filter_map(|&p| read(p))
                .fold(root, |(a, b), (x, y)| (a + x, b + y)),
        )
    }

    /// (VmRSS, VmHWM) in KiB, summed over the processes (shared pages counted in each).
    fn memory_kib(self) -> Option<(u64, u64)> {
        Self::sum_pairs(&self.pids(), memory_kib)
    }

    /// (RssAnon, RssFile) in KiB, summed over the processes.
    fn rss_split_kib(self) -> Option<(u64, u64)> {
        Self::sum_pairs(&self.pids(), rss_split_kib)
    }
}

/// Proportional set size in KiB (shared pages divided among the processes that map them).
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// (VmRSS, VmHWM) in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// (RssAnon, RssFile) in KiB: heap and stacks vs pages of the mapped binary and libraries.
fn rss_split_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("RssAnon:")?, field("RssFile:")?))
}

/// Busy ticks of the whole machine (user, nice, system, irq, softirq, steal) from /proc/stat.
fn machine_busy_ticks() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let fields: Vec<u64> = stat
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal
            Some(
                [0, 1, 2, 5, 6, 7]
                    .iter()
                    .filter_map(|&i| fields.get(i))
                    .sum(),
            )
        })
        .unwrap_or(0)
}

fn sample(pid: Option<u32>) -> ProcSample {
    ProcSample {
        cpu_ticks: pid.and_then(|p| cpu_ticks(&p.to_string())).unwrap_or(0),
    }
}

fn server_sample(server: Option<Server>) -> ProcSample {
    ProcSample {
        cpu_ticks: server.and_then(Server::cpu_ticks).unwrap_or(0),
    }
}

fn self_sample() -> ProcSample {
    ProcSample {
        cpu_ticks: cpu_ticks("self").unwrap_or(0),
    }
}

/// Samples the gateway's VmRSS (summed over its processes) every 100 ms until stopped; returns
/// the maximum seen. A process tree is re-listed once a second, not at every sample.
fn rss_sampler(server: Option<Server>, stop: Arc<AtomicU8>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut max = 0;
        let Some(server) = server else { return 0 };
        let rss = |pids: &[u32]| Server::sum_pairs(pids, memory_kib).map(|(rss, _)| rss);
        let mut pids = server.pids();
        let mut tick = 0u64;
        while stop.load(Ordering::Relaxed) == 0 {
            if let Some(rss) = rss(&pids) {
                max = max.max(rss);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            tick += 1;
            if tick.is_multiple_of(10) {
                pids = server.pids();
            }
        }
        if let Some(rss) = rss(&server.pids()) {
            max = max.max(rss);
        }
        max
    })
}

fn cpu_json(
    procs: &ProcArgs,
    pid: Option<u32>,
    before: ProcSample,
    after: ProcSample,
    calls: u64,
) -> Value {
    match pid {
        None => Value::Null,
        Some(pid) => {
            let seconds =
                after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64 / procs.clk_tck as f64;
            json!({
                "pid": pid,
                "cpu_seconds": seconds,
                "cpu_us_per_call": if calls > 0 { seconds * 1e6 / calls as f64 } else { 0.0 },
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Closed-loop load

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct Shared {
    phase: AtomicU8,
    tickets: AtomicU64,
    limit: Option<u64>,
}

#[derive(Default)]
struct Tally {
    /// HTTP requests made by measured calls.
    requests: u64,
    ok: u64,
    wrong: u64,
    errors: BTreeMap<String, u64>,
    samples: Vec<String>,
    warmup_failures: u64,
}

impl Tally {
    fn failure(&mut self, failure: Failure) {
        let line = match failure {
            Failure::Error(kind, detail) => {
                *self.errors.entry(kind.clone()).or_default() += 1;
                format!("error {kind}: {detail}")
            }
            Failure::Wrong(detail) => {
                self.wrong += 1;
                format!("wrong answer: {detail}")
            }
        };
        if self.samples.len() < 5 {
            self.samples.push(line);
        }
    }
    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.requests += other.requests;
        self.wrong += other.wrong;
        self.warmup_failures += other.warmup_failures;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for s in other.samples {
            if self.samples.len() < 10 {
                self.samples.push(s);
            }
        }
    }
}

fn new_histogram() -> Result<Histogram<u64>, BoxError> {
    // Nanoseconds, 1 ns .. 100 s, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 100_000_000_000, 3)?)
}

async fn worker(
    mut client: Client,
    shared: Arc<Shared>,
    expect_tools: Option<usize>,
    mut histogram: Histogram<u64>,
) -> (Histogram<u64>, Tally) {
    let mut tally = Tally::default();
    let mut seq = 0u64;
    loop {
        let phase = shared.phase.load(Ordering::Acquire);
        if phase == STOP {
            break;
        }
        if phase == MEASURE
            && let Some(limit) = shared.limit
            && shared.tickets.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break;
        }
        seq += 1;
        let requests_before = client.requests;
        let (elapsed, outcome) = client.call(seq, expect_tools).await;
        let failed = outcome.is_err();
        if phase == MEASURE {
            tally.requests += client.requests - requests_before;
            match outcome {
                Ok(()) => {
                    tally.ok += 1;
                    let _ = histogram.record((elapsed.as_nanos() as u64).max(1));
                }
                Err(failure) => tally.failure(failure),
            }
        } else if failed {
            tally.warmup_failures += 1;
            if let Err(failure) = outcome
                && tally.samples.len() < 5
            {
                tally.samples.push(format!("(warm-up) {failure:?}"));
            }
        }
        if failed {
            // Do not spin on a broken server.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    client.close().await;
    (histogram, tally)
}

fn latency_json(h: &Histogram<u64>) -> Value {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "p50": us(0.5), "p90": us(0.9), "p99": us(0.99), "p99_9": us(0.999),
        "max": h.max() as f64 / 1000.0, "mean": h.mean() / 1000.0,
        "count": h.len(),
    })
}

async fn load(mode: Mode, args: LoadArgs) -> Result<i32, BoxError> {
    let endpoint = Endpoint::parse(&args.url)?;
    let tokens = Arc::new(load_tokens(&args.tokens)?);
    if mode != Mode::Direct && tokens.values.is_empty() {
        return Err("MCP modes need --token, --token-file or --fresh-tokens".into());
    }
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(WARMUP),
        tickets: AtomicU64::new(0),
        limit: args.requests,
    });
    let expect_tools = args.expect_tools;
    let mut handles = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let mut client = Client::new(
            endpoint.clone(),
            mode,
            tokens.clone(),
            &args.tool,
            i as u64 + 1,
        )?;
        client.session_optional = args.session_optional;
        client.accept_text_json = args.accept_text_json;
        handles.push(tokio::spawn(worker(
            client,
            shared.clone(),
            expect_tools,
            new_histogram()?,
        )));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;

    let stop_sampler = Arc::new(AtomicU8::new(0));
    let server_proc = args.procs.server();
    let sampler = rss_sampler(server_proc, stop_sampler.clone());
    let server_before = server_sample(server_proc);
    let backend_before = sample(args.procs.backend_pid);
    let self_before = self_sample();
    let machine_before = machine_busy_ticks();
    let started = Instant::now();
    shared.phase.store(MEASURE, Ordering::Release);

    let mut results = Vec::new();
    let window;
    let (server_after, backend_after, self_after);
    match args.requests {
        None => {
            tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
            shared.phase.store(STOP, Ordering::Release);
            window = started.elapsed();
            server_after = server_sample(server_proc);
            backend_after = sample(args.procs.backend_pid);
            self_after = self_sample();
            for h in handles {
                results.push(h.await?);
            }
        }
        Some(_) => {
            let deadline = tokio::time::sleep(Duration::from_secs_f64(args.max_time));
            tokio::pin!(deadline);
            let mut joined = futures::future::join_all(handles);
            tokio::select! {
                r = &mut joined => {
                    window = started.elapsed();
                    server_after = server_sample(server_proc);
                    backend_after = sample(args.procs.backend_pid);
                    self_after = self_sample();
                    results = r.into_iter().collect::<Result<Vec<_>, _>>()?;
                }
                () = &mut deadline => {
                    eprintln!("--max-time reached before --requests completed");
                    shared.phase.store(STOP, Ordering::Release);
                    window = started.elapsed();
                    server_after = server_sample(server_proc);
                    backend_after = sample(args.procs.backend_pid);
                    self_after = self_sample();
                    results = joined.await.into_iter().collect::<Result<Vec<_>, _>>()?;
                }
            }
        }
    }
    let machine_after = machine_busy_ticks();
    stop_sampler.store(1, Ordering::Relaxed);
    let rss_max = sampler.await?;

    let mut histogram = new_histogram()?;
    let mut tally = Tally::default();
    for (h, t) in results {
        histogram.add(&h)?;
        tally.merge(t);
    }
    let calls = tally.ok + tally.wrong + tally.error_count();
    let seconds = window.as_secs_f64();
    let rate = calls as f64 / seconds;
    let memory = server_proc.and_then(Server::memory_kib);
    let mut server = cpu_json(
        &args.procs,
        args.procs.server_pid,
        server_before,
        server_after,
        calls,
    );
    if let (Value::Object(map), Some((rss, hwm))) = (&mut server, memory) {
        map.insert("vm_rss_kib_end".into(), json!(rss));
        map.insert("vm_hwm_kib".into(), json!(hwm));
        if let Some((anon, file)) = server_proc.and_then(Server::rss_split_kib) {
            map.insert("rss_anon_kib_end".into(), json!(anon));
            map.insert("rss_file_kib_end".into(), json!(file));
        }
        map.insert("vm_rss_kib_max_during".into(), json!(rss_max));
        if let Some(server) = server_proc.filter(|s| s.tree) {
            // Forked workers share pages: the RSS sums count them in every process, Pss
            // divides them.
            let pids = server.pids();
            map.insert("process_tree".into(), json!(true));
            map.insert("processes".into(), json!(pids.len()));
            map.insert("pids".into(), json!(pids));
            let pss: Vec<u64> = pids.iter().filter_map(|&p| pss_kib(p)).collect();
            if pss.len() == pids.len() {
                map.insert("pss_kib_end".into(), json!(pss.iter().sum::<u64>()));
            }
        }
    }
    let backend = cpu_json(
        &args.procs,
        args.procs.backend_pid,
        backend_before,
        backend_after,
        calls,
    );
    let loadgen = cpu_json(
        &args.procs,
        Some(std::process::id()),
        self_before,
        self_after,
        calls,
    );
    // CPU used by processes other than the gateway, the backend and this load generator during
    // the window: the noise on a shared machine.
    let tck = args.procs.clk_tck as f64;
    let machine_cores = machine_after.saturating_sub(machine_before) as f64 / tck / seconds;
    let ours: f64 = [&server, &backend, &loadgen]
        .iter()
        .filter_map(|v| v["cpu_seconds"].as_f64())
        .sum();
    let others_cores = (machine_cores - ours / seconds).max(0.0);
    let result = json!({
        "mode": mode.name(),
        "label": args.label,
        "url": args.url,
        "connections": args.connections,
        "loadgen_threads": args.threads,
        "warmup_s": args.warmup,
        "window_s": seconds,
        "calls": calls,
        "ok": tally.ok,
        "wrong_answers": tally.wrong,
        "errors": tally.error_count(),
        "error_kinds": tally.errors,
        "warmup_failures": tally.warmup_failures,
        "failure_samples": tally.samples,
        "calls_per_s": rate,
        "http_requests": tally.requests,
        "http_requests_per_s": tally.requests as f64 / seconds,
        "latency_us": latency_json(&histogram),
        "distinct_tokens": tokens.values.len(),
        "token_reuses": tokens.reuses(),
        "server": server,
        "backend": backend,
        "loadgen": loadgen,
        "machine_busy_cores": machine_cores,
        "other_processes_busy_cores": others_cores,
    });
    print_summary(&result);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    // Failures during the warm-up are not in the figures, but they are failures all the same.
    Ok(
        if tally.wrong + tally.error_count() + tally.warmup_failures > 0 {
            3
        } else {
            0
        },
    )
}

fn print_summary(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let lat = &r["latency_us"];
    let mut line = format!(
        "{:<14} {:<22} c={:<3} {:>6.1}s {:>8} calls {:>9.0}/s | p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3} ms | ok {} errors {} wrong {}",
        r["mode"].as_str().unwrap_or(""),
        r["label"].as_str().unwrap_or(""),
        r["connections"],
        f(&r["window_s"]),
        r["calls"],
        f(&r["calls_per_s"]),
        f(&lat["p50"]) / 1000.0,
        f(&lat["p99"]) / 1000.0,
        f(&lat["p99_9"]) / 1000.0,
        f(&lat["max"]) / 1000.0,
        r["ok"],
        r["errors"],
        r["wrong_answers"],
    );
    if r["server"].is_object() {
        line.push_str(&format!(
            " | gateway {:.1} us/call, RSS {:.1} MiB (max {:.1}, HWM {:.1})",
            f(&r["server"]["cpu_us_per_call"]),
            f(&r["server"]["vm_rss_kib_end"]) / 1024.0,
            f(&r["server"]["vm_rss_kib_max_during"]) / 1024.0,
            f(&r["server"]["vm_hwm_kib"]) / 1024.0,
        ));
        if r["server"]["process_tree"].as_bool() == Some(true) {
            line.push_str(&format!(
                " summed over {} processes, Pss {:.1} MiB",
                r["server"]["processes"],
                f(&r["server"]["pss_kib_end"]) / 1024.0,
            ));
        }
    }
    if r["backend"].is_object() {
        line.push_str(&format!(
            " | backend {:.1} us/call",
            f(&r["backend"]["cpu_us_per_call"])
        ));
    }
    line.push_str(&format!(
        " | loadgen {:.1} us/call",
        f(&r["loadgen"]["cpu_us_per_call"])
    ));
    let others = f(&r["other_processes_busy_cores"]);
    if others > 0.2 {
        line.push_str(&format!(
            " | !! other processes used {others:.2} cores meanwhile"
        ));
    }
    println!("{line}");
    if r["errors"].as_u64().unwrap_or(0) + r["wrong_answers"].as_u64().unwrap_or(0) > 0 {
        println!("  !! errors by kind: {}", r["error_kinds"]);
    }
    if r["warmup_failures"].as_u64().unwrap_or(0) > 0 {
        println!(
            "  !! {} failures during the warm-up (not in the figures above)",
            r["warmup_failures"]
        );
    }
    if let Some(samples) = r["failure_samples"].as_array() {
        for s in samples {
            println!("  !! {}", s.as_str().unwrap_or(""));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Idle sessions

async fn idle(args: IdleArgs) -> Result<i32, BoxError> {
    use futures::StreamExt;
    let endpoint = Endpoint::parse(&args.url)?;
    let tokens = Arc::new(load_tokens(&args.tokens)?);
    if tokens.values.is_empty() && !args.plain {
        return Err("idle needs --token, --token-file or --fresh-tokens".into());
    }
    let plain = args.plain;
    let what = if plain {
        "plain connections"
    } else {
        "sessions"
    };
    let server = args.procs.server();
    let pid = args.procs.server_pid;
    let rss_before = server.and_then(Server::memory_kib);
    let cpu_before = server_sample(server);
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut clients = Vec::with_capacity(args.connections);
    let mut setups = futures::stream::iter(0..args.connections)
        .map(|i| {
            let endpoint = endpoint.clone();
            let tokens = tokens.clone();
            let tool = args.tool.clone();
            async move {
                let mut client = Client::new(endpoint, Mode::Session, tokens, &tool, i as u64 + 1)
                    .map_err(|e| err("client", e.to_string()))?;
                if plain {
                    client.sender = Some(
                        connect(client.endpoint.addr)
                            .await
                            .map_err(|e| err("connect", e.to_string()))?,
                    );
                    client.probe().await.map(|()| client)
                } else {
                    client.ensure_ready().await.map(|()| client)
                }
            }
        })
        .buffer_unordered(args.concurrency.max(1));
    while let Some(outcome) = setups.next().await {
        match outcome {
            Ok(client) => clients.push(client),
            Err(failure) => tally.failure(failure),
        }
    }
    drop(setups);
    let setup_s = started.elapsed().as_secs_f64();
    let cpu_after_setup = server_sample(server);
    let established = clients.len();
    println!(
        "idle: {established} of {} {what} set up in {setup_s:.2} s ({} failures)",
        args.connections,
        tally.error_count() + tally.wrong
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_settled = server.and_then(Server::memory_kib);
    let stop = Arc::new(AtomicU8::new(0));
    let sampler = rss_sampler(server, stop.clone());
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    stop.store(1, Ordering::Relaxed);
    let rss_max = sampler.await?;
    let rss_held = server.and_then(Server::memory_kib);
    let split = server.and_then(Server::rss_split_kib);

    // Every held session must still answer.
    let verify_started = Instant::now();
    let mut verify = Tally::default();
    let mut checked = Vec::with_capacity(clients.len());
    {
        let mut calls = futures::stream::iter(clients.into_iter().enumerate())
            .map(|(i, mut client)| async move {
                if plain {
                    let outcome = client.probe().await;
                    return (client, outcome);
                }
                let had_session = client.session.clone();
                let (_, outcome) = client.call(i as u64 + 1, None).await;
                // A re-initialized session would hide a dropped one.
                let outcome = outcome.and_then(|()| {
                    if client.session == had_session {
                        Ok(())
                    } else {
                        Err(err(
                            "session-lost",
                            "the held session had to be re-established",
                        ))
                    }
                });
                (client, outcome)
            })
            .buffer_unordered(args.concurrency.max(1));
        while let Some((client, outcome)) = calls.next().await {
            match outcome {
                Ok(()) => verify.ok += 1,
                Err(f) => verify.failure(f),
            }
            checked.push(client);
        }
    }
    let verify_s = verify_started.elapsed().as_secs_f64();
    let rss_after_calls = server.and_then(Server::memory_kib);
    println!(
        "idle: after holding {:.1} s, {} of {established} {what} answered ({}) ({} errors, {} wrong) in {verify_s:.2} s",
        args.hold,
        verify.ok,
        if plain {
            "GET /healthz"
        } else {
            "a tools/call"
        },
        verify.error_count(),
        verify.wrong
    );
    for s in tally.samples.iter().chain(verify.samples.iter()) {
        println!("  !! {s}");
    }
    let kib = |m: Option<(u64, u64)>| {
        m.map_or(
            Value::Null,
            |(rss, hwm)| json!({"vm_rss_kib": rss, "vm_hwm_kib": hwm}),
        )
    };
    let rss_held_split = split.map_or(
        Value::Null,
        |(anon, file)| json!({"rss_anon_kib": anon, "rss_file_kib": file}),
    );
    let per_session = match (rss_before, rss_held) {
        (Some((before, _)), Some((held, _))) if established > 0 => {
            json!((held as f64 - before as f64) / established as f64)
        }
        _ => Value::Null,
    };
    let setup_cpu = cpu_json(
        &args.procs,
        pid,
        cpu_before,
        cpu_after_setup,
        established as u64,
    );
    let result = json!({
        "mode": if plain { "idle-plain-connections" } else { "idle-sessions" },
        "label": args.label,
        "requested_connections": args.connections,
        "established_sessions": established,
        "setup_seconds": setup_s,
        "setup_failures": tally.error_count() + tally.wrong,
        "setup_error_kinds": tally.errors,
        "initialize_per_s": established as f64 / setup_s,
        "server_cpu_during_setup": setup_cpu,
        "hold_s": args.hold,
        "rss_before": kib(rss_before),
        "rss_settled": kib(rss_settled),
        "rss_held": kib(rss_held),
        "rss_held_anon_file": rss_held_split,
        "rss_max_during_hold_kib": rss_max,
        "rss_after_verify_calls": kib(rss_after_calls),
        "rss_kib_per_idle_session": per_session,
        "verify_ok": verify.ok,
        "verify_errors": verify.error_count(),
        "verify_wrong": verify.wrong,
        "verify_error_kinds": verify.errors,
        "failure_samples": tally.samples.iter().chain(verify.samples.iter()).collect::<Vec<_>>(),
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    drop(checked);
    let failures = tally.error_count() + tally.wrong + verify.error_count() + verify.wrong;
    Ok(if failures > 0 { 3 } else { 0 })
}

// ---------------------------------------------------------------------------------------------
// Cold start

async fn coldstart(args: ColdstartArgs) -> Result<i32, BoxError> {
    let endpoint = Endpoint::parse(&args.ready_url)?;
    let (program, rest) = args.command.split_first().ok_or("no command given")?;
    let mut runs = Vec::new();
    let mut failures = 0;
    for run in 0..args.repeat.max(1) {
        let started = Instant::now();
        let mut child = tokio::process::Command::new(program)
            .args(rest)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id();
        let mut outcome: Result<Value, String> = Err("timed out".into());
        let deadline = started + Duration::from_secs_f64(args.timeout);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                outcome = Err(format!("exited with {status} before it was ready"));
                break;
            }
            match ready_once(&endpoint).await {
                Ok(Some(body)) => {
                    let tools = body.get("tools").and_then(Value::as_u64);
                    match args.expect_tools {
                        Some(expected) if tools != Some(expected) => {
                            outcome =
                                Err(format!("ready with {tools:?} tools, expected {expected}"));
                        }
                        _ => outcome = Ok(body),
                    }
                    break;
                }
                Ok(None) | Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let memory = pid.and_then(memory_kib);
        let _ = child.kill().await;
        match outcome {
            Ok(body) => {
                println!(
                    "coldstart {} run {}: ready in {elapsed_ms:.1} ms, RSS {:.1} MiB ({})",
                    args.label,
                    run + 1,
                    memory.map_or(0.0, |m| m.0 as f64 / 1024.0),
                    body
                );
                runs.push(json!({
                    "ready_ms": elapsed_ms,
                    "vm_rss_kib_at_ready": memory.map(|m| m.0),
                    "readyz": body,
                }));
            }
            Err(problem) => {
                failures += 1;
                println!(
                    "coldstart {} run {}: FAILED: {problem}",
                    args.label,
                    run + 1
                );
                runs.push(json!({"error": problem}));
            }
        }
        // Let the port be released before the next start.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut times: Vec<f64> = runs.iter().filter_map(|r| r["ready_ms"].as_f64()).collect();
    times.sort_by(f64::total_cmp);
    let result = json!({
        "mode": "coldstart",
        "label": args.label,
        "command": args.command,
        "runs": runs,
        "failures": failures,
        "ready_ms_min": times.first(),
        "ready_ms_median": times.get(times.len() / 2),
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result)?)?;
    }
    Ok(if failures > 0 { 3 } else { 0 })
}

/// One GET of the readiness URL on a fresh connection: Some(body) when it answered 200.
async fn ready_once(endpoint: &Endpoint) -> Result<Option<Value>, BoxError> {
    let mut sender = connect(endpoint.addr).await?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(endpoint.path.as_str())
        .header(HOST, endpoint.host.clone())
        .body(Full::new(Bytes::new()))?;
    let reply = exchange(&mut sender, request)
        .await
        .map_err(|f| format!("{f:?}"))?;
    if reply.status != StatusCode::OK {
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_slice(&reply.body).unwrap_or(Value::Null),
    ))
}
