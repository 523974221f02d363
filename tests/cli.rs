#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The command line (DESIGN 2.1): `validate` reports every problem with its location,
//! `serve --dev` + `token` give a working gateway from nothing.

mod support {
    pub mod binary;
    pub mod gateway;
    pub mod idp;
}

use serde_json::{Value, json};
use support::binary::{RunningBinary, free_port, run};
use support::gateway::write_json;

fn good_target() -> Value {
    json!({"name": "shop", "http": {"baseUrl": "http://127.0.0.1:9"},
           "tools": [{"name": "get", "inputSchema": {"type": "object"}, "http": {"method": "GET", "path": "/"}}]})
}

const GOOD_CONFIG: &str = r#"
[inbound]
discovery_url = "https://idp.example.com/.well-known/openid-configuration"
allowed_audiences = ["portcullis"]
[targets]
dir = "targets"
"#;

#[test]
fn validate_accepts_a_good_setup() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("portcullis.toml"), GOOD_CONFIG).unwrap();
    write_json(&dir.path().join("targets"), "shop.json", &good_target());
    let (code, stdout, stderr) = run(&["validate", "--config", "portcullis.toml"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1 target(s), 1 tool(s)"), "{stdout}");
}

#[test]
fn validate_lists_every_config_problem_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("portcullis.toml"),
        "[server]\nlisten = \"nope\"\n[inbound]\ndiscovery_url = \"ftp://x\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["validate", "--config", "portcullis.toml"], dir.path());
    assert_eq!(code, 1);
    for key in [
        "server.listen",
        "inbound.discovery_url",
        "inbound.allowed_audiences",
    ] {
        assert!(stderr.contains(key), "{key} missing from: {stderr}");
    }
}

#[test]
fn validate_lists_every_target_problem_with_file_and_pointer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("portcullis.toml"), GOOD_CONFIG).unwrap();
    let targets = dir.path().join("targets");
    write_json(&targets, "good.json", &good_target());
    let mut bad_name = good_target();
    bad_name["name"] = json!("bad_name");
    write_json(&targets, "bad-name.json", &bad_name);
    let mut bad_tool = good_target();
    bad_tool["name"] = json!("other");
    bad_tool["tools"][0]["http"]["path"] = json!("/items/{id}");
    write_json(&targets, "bad-tool.json", &bad_tool);
    std::fs::write(targets.join("broken.json"), "{").unwrap();
    let (code, _, stderr) = run(&["validate", "--config", "portcullis.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("bad-name.json at /name"), "{stderr}");
    assert!(
        stderr.contains("bad-tool.json at /tools/0/http/path"),
        "{stderr}"
    );
    assert!(stderr.contains("broken.json: invalid JSON"), "{stderr}");
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
}

#[test]
fn serve_without_config_or_dev_explains_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&["serve"], dir.path());
    assert_eq!(code, 1);
    assert!(stderr.contains("--dev"), "{stderr}");
}

#[test]
fn dev_mode_refuses_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("portcullis.toml"),
        "[server]\nlisten = \"0.0.0.0:8080\"\n",
    )
    .unwrap();
    let (code, _, stderr) = run(
        &["serve", "--dev", "--config", "portcullis.toml"],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--dev refuses to bind the non-loopback address"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_and_token_give_a_working_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[targets]\ndir = \"targets\"\n"),
    )
    .unwrap();
    write_json(
        &dir.path().join("targets"),
        "echo.json",
        &json!({"name": "echo", "http": {"baseUrl": format!("{base}/dev/echo")},
                "tools": [{"name": "say", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
                           "http": {"method": "POST", "path": "/say"}}]}),
    );
    let gateway = RunningBinary::serve(dir.path(), port, true, &[]).await;
    let (code, token, stderr) = run(
        &["token", "--sub", "alice", "--config", "portcullis.toml"],
        dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    let token = token.trim();

    // The dev issuer is a real OIDC issuer: discovery and JWKS are served.
    let discovery: Value = reqwest::get(format!("{base}/dev/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], format!("{base}/dev"));

    let response = stateless(
        &gateway.mcp_url(),
        token,
        "tools/call",
        Some("echo___say"),
        json!({"name": "echo___say", "arguments": {"text": "hello"}}),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    // A one-message stateless answer is a JSON body, not an SSE stream.
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body = response.text().await.unwrap();
    let message: Value = body
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find_map(|d| serde_json::from_str(d.trim()).ok())
        .unwrap_or_else(|| serde_json::from_str(&body).unwrap());
    assert_eq!(
        message["result"]["structuredContent"],
        json!({"echo": "hello"}),
        "{body}"
    );

    // A token for another audience is refused even though the dev issuer signed it.
    let (_, other, _) = run(
        &[
            "token",
            "--sub",
            "alice",
            "--aud",
            "other",
            "--config",
            "portcullis.toml",
        ],
        dir.path(),
    );
    let refused = reqwest::Client::new()
        .post(gateway.mcp_url())
        .bearer_auth(other.trim())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    // SIGTERM shuts down gracefully, which flushes the batched log: the call's audit line is
    // there, plain text (no colour codes in a file), naming who and what, never the token.
    let mut gateway = gateway;
    let pid = gateway.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(gateway.child.wait().await.unwrap().success());
    let log = gateway.log_text();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("portcullis::audit"))
        .collect();
    assert_eq!(audit.len(), 1, "{log}");
    assert!(
        audit[0].ends_with(&format!(
            "tools/call issuer={base}/dev subject=alice tool=echo___say outcome=ok elapsed_us={}",
            audit[0].rsplit('=').next().unwrap()
        )),
        "{}",
        audit[0]
    );
    assert!(!log.contains(token), "the bearer token reached the log");
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in a log file");
}

#[test]
fn validate_names_credentials_that_point_at_unconfigured_providers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("portcullis.toml"), GOOD_CONFIG).unwrap();
    let mut target = good_target();
    target["credentials"] =
        json!({"oauth": {"provider": "github", "grantType": "AUTHORIZATION_CODE"}});
    write_json(&dir.path().join("targets"), "shop.json", &target);
    let (code, _, stderr) = run(&["validate", "--config", "portcullis.toml"], dir.path());
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "shop.json at /credentials/oauth/provider: \"github\" is not configured in [providers]"
        ),
        "{stderr}"
    );
}

/// Issue 9 item 3: with the login client id among the allowed audiences, the gateway's own ID
/// tokens would pass as access tokens; `validate` names the key and exits 1.
#[test]
fn validate_refuses_the_login_client_id_as_an_allowed_audience() {
    let dir = tempfile::tempdir().unwrap();
    let config = GOOD_CONFIG.replace(
        "allowed_audiences = [\"portcullis\"]",
        "allowed_audiences = [\"portcullis\"]\n[inbound.login]\nclient_id = \"portcullis\"\nclient_secret_file = \"login.secret\"",
    );
    std::fs::write(dir.path().join("portcullis.toml"), config).unwrap();
    support::gateway::write_private(&dir.path().join("login.secret"), "s3cret");
    write_json(&dir.path().join("targets"), "shop.json", &good_target());
    let (code, _, stderr) = run(&["validate", "--config", "portcullis.toml"], dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "inbound.login.client_id: \"portcullis\" is also in inbound.allowed_audiences"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("1 problem(s)"), "{stderr}");
}

/// Issue 9 item 7: a `sub` that carries a newline and a forged log line reaches the log of the
/// real binary (the audit line of its tool call) escaped: no line of the log starts with the
/// forged text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_with_a_newline_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[targets]\ndir = \"targets\"\n"),
    )
    .unwrap();
    write_json(
        &dir.path().join("targets"),
        "echo.json",
        &json!({"name": "echo", "http": {"baseUrl": format!("{base}/dev/echo")},
                "tools": [{"name": "say", "inputSchema": {"type": "object"},
                           "http": {"method": "POST", "path": "/say"}}]}),
    );
    let gateway = RunningBinary::serve(dir.path(), port, true, &[]).await;
    let forged = "2026-01-01T00:00:00.000000Z  INFO portcullis: account linked subject=admin";
    let sub = format!("mallory\n{forged}\r\u{1b}[2K");
    let (code, token, stderr) = run(
        &["token", "--sub", &sub, "--config", "portcullis.toml"],
        dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    let response = stateless(
        &gateway.mcp_url(),
        &token,
        "tools/call",
        Some("echo___say"),
        json!({"name": "echo___say", "arguments": {"text": "hi"}}),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    // SIGTERM: a graceful shutdown flushes the batched log.
    let mut gateway = gateway;
    let pid = gateway.child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(gateway.child.wait().await.unwrap().success());
    let log = gateway.log_text();
    assert!(log.contains("mallory"), "the call was logged: {log}");
    assert!(
        !log.lines().any(|line| line.starts_with("2026-01-01")),
        "a forged line: {log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "no raw escape reaches the log: {log}"
    );
}

/// Issue 9 item 12: `portcullis token` never signs with a key of its own. Run from another
/// folder it either finds the running dev gateway's key through that gateway's config, or
/// refuses and says where it looked; before, it minted with a fresh key the gateway refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_another_folder_uses_the_dev_gateways_key_or_says_where_it_looked() {
    let served = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        served.path().join("portcullis.toml"),
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[targets]\ndir = \"targets\"\n"),
    )
    .unwrap();
    std::fs::create_dir_all(served.path().join("targets")).unwrap();
    let gateway = RunningBinary::serve(served.path(), port, true, &[]).await;
    // From another folder, no config: nothing to find, and it says where it looked.
    let (code, token, stderr) = run(&["token", "--sub", "alice"], elsewhere.path());
    assert_ne!(code, 0, "minted {token}");
    assert!(token.trim().is_empty());
    assert!(stderr.contains("no development issuer key at"), "{stderr}");
    assert!(stderr.contains("dev-issuer.p8"), "{stderr}");
    assert!(
        !elsewhere.path().join("data").exists(),
        "no key was created where it ran"
    );

    // From another folder with the gateway's config: the gateway's own key.
    let config = served.path().join("portcullis.toml");
    let (code, token, stderr) = run(
        &[
            "token",
            "--sub",
            "alice",
            "--config",
            config.to_str().unwrap(),
        ],
        elsewhere.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    let listed = stateless(&gateway.mcp_url(), &token, "tools/list", None, json!({})).await;
    assert_eq!(listed.status().as_u16(), 200);
}

/// A stateless (2026-07-28) MCP request through HTTP, with the per-request headers and `_meta`.
async fn stateless(
    mcp_url: &str,
    token: &str,
    method: &str,
    name: Option<&str>,
    mut params: Value,
) -> reqwest::Response {
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                             "io.modelcontextprotocol/clientCapabilities": {}});
    let mut request = reqwest::Client::new()
        .post(mcp_url)
        .bearer_auth(token.trim())
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    request
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap()
}
