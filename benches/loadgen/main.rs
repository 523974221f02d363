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
//!
//! Layout, one job a module: this file parses the command line and dispatches;
//! - servers: [`backend`] (the echo backend), [`oauth_provider`] (the authorization server),
//!   both on the accept loop and replies of [`serve`];
//! - clients: [`net`] (one keep-alive HTTP/1.1 exchange), [`tokens`] (bearer tokens),
//!   [`mcp`] (the MCP client per connection), [`verify`] (is an answer right?), [`outcome`]
//!   (failures and their tally);
//! - measurements: [`load`] (the closed loop and its JSON result), [`summary`] (its one-line
//!   summary), [`idle`], [`coldstart`], and [`procstat`] (CPU and memory from /proc).

mod backend;
mod coldstart;
mod idle;
mod load;
mod mcp;
mod net;
mod oauth_provider;
mod outcome;
mod procstat;
mod serve;
mod summary;
mod tokens;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::backend::BackendArgs;
use crate::coldstart::ColdstartArgs;
use crate::idle::IdleArgs;
use crate::load::LoadArgs;
use crate::mcp::Mode;
use crate::oauth_provider::OauthProviderArgs;

/// Every fallible step of the load generator reports a message and ends it with status 1.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
            Command::Backend(a) => backend::run(a).await.map(|()| 0),
            Command::OauthProvider(a) => oauth_provider::run(a).await.map(|()| 0),
            Command::Direct(a) => load::run(Mode::Direct, a).await,
            Command::McpSession(a) => load::run(Mode::Session, a).await,
            Command::McpStateless(a) => load::run(Mode::Stateless, a).await,
            Command::ToolsList(a) => {
                let mode = if a.stateless {
                    Mode::ListStateless
                } else {
                    Mode::ListSession
                };
                load::run(mode, a).await
            }
            Command::Idle(a) => idle::run(a).await,
            Command::Coldstart(a) => coldstart::run(a).await,
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

/// `--json FILE`: every measuring subcommand writes its result the same way, pretty-printed,
/// so that bench/run can read it with jq.
fn write_json(path: Option<&PathBuf>, result: &Value) -> Result<(), BoxError> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(result)?)?;
    }
    Ok(())
}

/// The exit status of a measuring subcommand: 3 when any call failed or answered wrongly (the
/// figures are still printed and written), else 0. bench/run tells the two apart.
fn exit_status(failures: u64) -> i32 {
    if failures > 0 { 3 } else { 0 }
}
