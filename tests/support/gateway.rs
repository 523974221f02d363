//! Runs the real gateway (the library's `Gateway`, the same code `portcullis serve` runs) on an
//! ephemeral loopback port, with target files and config written to a temporary folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use portcullis::Gateway;
use portcullis::config::Config;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::idp::Idp;

pub struct TestGateway {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pub dir: tempfile::TempDir,
    pub state: std::sync::Arc<portcullis::GatewayState>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// What a test gateway is built from.
#[derive(Default)]
pub struct Setup<'a> {
    pub targets: Vec<(&'a str, Value)>,
    /// Extra TOML appended to `[inbound]` (e.g. `allowed_clients = ["x"]`).
    pub inbound_extra: &'a str,
    /// Extra TOML sections appended at the end of the file.
    pub extra: &'a str,
    /// Extra TOML appended to `[server]` (e.g. `mcp_session_idle_seconds = 1`).
    pub server_extra: &'a str,
    pub watch: bool,
    /// Files written next to `portcullis.toml` (mode 0600) before the config is loaded:
    /// secrets and vault keys.
    pub files: Vec<(&'a str, String)>,
}

pub fn write_json(dir: &Path, name: &str, value: &Value) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// Writes a file readable by its owner only, as secrets and vault keys must be.
pub fn write_private(path: &Path, content: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(content.as_bytes()).unwrap();
}

impl TestGateway {
    /// A gateway trusting `idp` for tokens with audience `<base>/mcp` and scope `mcp`.
    pub async fn start(idp: &Idp, setup: Setup<'_>) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let inbound = format!(
            "[inbound]\ndiscovery_url = \"{}\"\nallowed_audiences = [\"{base}/mcp\"]\nallowed_scopes = [\"mcp\"]\n{}\n",
            idp.discovery_url(),
            setup.inbound_extra
        );
        Self::start_with(listener, &base, &base, &inbound, setup, false).await
    }

    /// A replica behind a load balancer at `public_url`: tokens are for `<public_url>/mcp`,
    /// and every URL the gateway hands out (consent, callbacks) names `public_url`. `base` is
    /// still the replica's own address.
    pub async fn start_behind(idp: &Idp, public_url: &str, setup: Setup<'_>) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let inbound = format!(
            "[inbound]\ndiscovery_url = \"{}\"\nallowed_audiences = [\"{public_url}/mcp\"]\nallowed_scopes = [\"mcp\"]\n{}\n",
            idp.discovery_url(),
            setup.inbound_extra
        );
        Self::start_with(listener, &base, public_url, &inbound, setup, false).await
    }

    /// A gateway in `--dev` mode (embedded issuer, dev routes).
    pub async fn start_dev(setup: Setup<'_>) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        Self::start_with(listener, &base, &base, "", setup, true).await
    }

    async fn start_with(
        listener: TcpListener,
        base: &str,
        public_url: &str,
        inbound: &str,
        setup: Setup<'_>,
        dev: bool,
    ) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        let targets = dir.path().join("targets");
        std::fs::create_dir_all(&targets).unwrap();
        for (name, value) in &setup.targets {
            write_json(&targets, name, value);
        }
        for (name, content) in &setup.files {
            write_private(&dir.path().join(name), content);
        }
        let addr = base.trim_start_matches("http://");
        let toml = format!(
            "[server]\nlisten = \"{addr}\"\npublic_url = \"{public_url}\"\n{}\n\n{inbound}\n[targets]\ndir = \"targets\"\nwatch = {}\n\n{}\n",
            setup.server_extra, setup.watch, setup.extra
        );
        std::fs::write(dir.path().join("portcullis.toml"), &toml).unwrap();
        let config = Config::load(Some(&dir.path().join("portcullis.toml")), dev).unwrap();
        let gateway = Gateway::build(config).await.unwrap();
        let state = gateway.state.clone();
        // Load the IdP's keys before the first request instead of racing the background refresh.
        if !state.keys.is_loaded() {
            state.keys.refresh().await.unwrap();
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            gateway
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        TestGateway {
            base: base.to_string(),
            dir,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn targets_dir(&self) -> PathBuf {
        self.dir.path().join("targets")
    }

    /// A real client_credentials token from `idp` for this gateway's audience.
    pub async fn token(&self, idp: &Idp) -> String {
        idp.client_credentials_token(
            super::idp::MCP_CLIENT,
            super::idp::MCP_CLIENT_SECRET,
            "mcp",
            &self.mcp_url(),
        )
        .await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A JSON-RPC `initialize` body, for raw HTTP tests.
pub fn initialize_body() -> Value {
    serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}
    })
}

/// POSTs an MCP message with the headers Streamable HTTP requires.
pub async fn post_mcp(url: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// The legacy (session) revision that raw session tests speak.
pub const SESSION_VERSION: &str = "2025-11-25";

/// One request to `url` carrying `Mcp-Session-Id: session`: (status, body).
pub async fn in_session(
    url: &str,
    token: &str,
    session: &str,
    method: reqwest::Method,
    body: Option<Value>,
) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", SESSION_VERSION)
        .header("mcp-session-id", session);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The JSON-RPC message in a one-message SSE stream (or a plain JSON body).
pub fn message_of(body: &str) -> Value {
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .find_map(|data| serde_json::from_str(data.trim()).ok())
        .unwrap_or_else(|| serde_json::from_str(body).unwrap())
}

/// `initialize` + `notifications/initialized` as `token` at `url`; returns the session id.
pub async fn open_session(url: &str, token: &str) -> String {
    let response = post_mcp(url, Some(token), &initialize_body()).await;
    assert_eq!(response.status().as_u16(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = response.text().await.unwrap();
    let initialized = in_session(
        url,
        token,
        &session,
        reqwest::Method::POST,
        Some(serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
    )
    .await;
    assert_eq!(initialized.0, 202, "{}", initialized.1);
    session
}
