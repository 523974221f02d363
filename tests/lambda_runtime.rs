#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Lambda targets against a REAL `lambda_runtime` function (DESIGN 2.3 "Lambda contract"): the
//! `portcullis` binary, the real aws-sdk-lambda client, and tests/lambda-fn served by
//! `cargo lambda watch`. Start the function first:
//!
//! ```sh
//! eval "$(tests/lambda-fn/start)" && cargo test --test lambda_runtime
//! kill "$PORTCULLIS_TEST_LAMBDA_PID"
//! ```
//!
//! Without `PORTCULLIS_TEST_LAMBDA_URL` every test fails, unless `PORTCULLIS_SKIP_LAMBDA_RUNTIME=1`.
//! cargo-lambda drops the SDK's client context and answers function errors with HTTP 500
//! instead of 200 + `X-Amz-Function-Error`, so those contract details are tested elsewhere.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

const PROTOCOL_VERSION: &str = "2026-07-28";
const TOOL: &str = "fn___echo";

/// The Invoke API URL printed by tests/lambda-fn/start, or `None` when explicitly skipped.
fn lambda_url() -> Option<String> {
    if let Ok(url) = std::env::var("PORTCULLIS_TEST_LAMBDA_URL") {
        return Some(url);
    }
    if std::env::var("PORTCULLIS_SKIP_LAMBDA_RUNTIME").as_deref() == Ok("1") {
        eprintln!(
            "NOTICE: PORTCULLIS_SKIP_LAMBDA_RUNTIME=1: skipping the real lambda_runtime test \
             (nothing was checked)"
        );
        return None;
    }
    panic!(
        "PORTCULLIS_TEST_LAMBDA_URL is not set. Start the test function first with\n  \
         eval \"$(tests/lambda-fn/start)\"\nthen rerun `cargo test --test lambda_runtime` in the \
         same shell (or set PORTCULLIS_SKIP_LAMBDA_RUNTIME=1 to skip these tests)."
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `portcullis serve --dev` child process with one Lambda target `fn` and a token for alice.
struct Gateway {
    base: String,
    token: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    child: Child,
}

impl Gateway {
    async fn start(lambda_url: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        std::fs::write(
            dir.path().join("portcullis.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"{base}\"\n\
                 data_dir = \"data\"\n[targets]\ndir = \"targets\"\nwatch = false\n"
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("targets")).unwrap();
        let target = json!({
            "name": "fn",
            "lambda": {
                // A bare function name: cargo-lambda answers 404 for ARNs.
                "functionArn": "portcullis-test-fn",
                "endpointUrl": lambda_url,
                "region": "us-east-1",
                "timeoutMs": 60000
            },
            "tools": [{
                "name": "echo",
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "msg": {"type": "string"},
                        "fail": {"type": "boolean"},
                        "mcp": {"type": "boolean"}
                    }
                }
            }]
        });
        std::fs::write(
            dir.path().join("targets/fn.json"),
            serde_json::to_vec_pretty(&target).unwrap(),
        )
        .unwrap();

        let config = dir.path().join("portcullis.toml");
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("serve")
            .arg("--dev")
            .arg("--config")
            .arg(&config)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("stdout.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut gateway = Gateway {
            base,
            token: String::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .unwrap(),
            dir,
            child,
        };
        gateway.wait_ready().await;
        gateway.token = mint_token(&config);
        gateway
    }

    /// Polls `GET /readyz` until it answers 200, for at most 30 s.
    async fn wait_ready(&mut self) {
        let url = format!("{}/readyz", self.base);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "portcullis exited ({status}) before it was ready:\n{}",
                    self.logs()
                );
            }
            let answer = self
                .http
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} did not answer 200 within 30 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            read("stdout.log"),
            read("stderr.log")
        )
    }

    /// `tools/call` over Streamable HTTP; returns the JSON-RPC `result`.
    async fn call(&self, arguments: Value) -> Value {
        let body = json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": TOOL,
                "arguments": arguments,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": PROTOCOL_VERSION,
                    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
                    "io.modelcontextprotocol/clientCapabilities": {}
                }
            }
        });
        let response = self
            .http
            .post(format!("{}/mcp", self.base))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {}", self.token))
            .header("mcp-protocol-version", PROTOCOL_VERSION)
            .header("mcp-method", "tools/call")
            .header("mcp-name", TOOL)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = response.text().await.unwrap();
        assert!(
            status.is_success(),
            "POST /mcp answered {status}: {text}\n{}",
            self.logs()
        );
        let message = if content_type.starts_with("text/event-stream") {
            sse_response(&text, 1)
        } else {
            serde_json::from_str(&text).unwrap()
        };
        assert!(message.get("error").is_none(), "JSON-RPC error: {message}");
        message
            .get("result")
            .unwrap_or_else(|| panic!("no result in {message}"))
            .clone()
    }
}

/// The JSON-RPC response with `id` among the SSE `data:` lines.
fn sse_response(stream: &str, id: u64) -> Value {
    stream
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|message| message.get("id") == Some(&json!(id)))
        .unwrap_or_else(|| panic!("no JSON-RPC response with id {id} in the SSE stream:\n{stream}"))
}

fn mint_token(config: &Path) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["token", "--sub", "alice", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "portcullis token failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn texts(result: &Value) -> Vec<String> {
    result["content"]
        .as_array()
        .unwrap_or_else(|| panic!("no content array in {result}"))
        .iter()
        .filter_map(|block| block["text"].as_str().map(ToString::to_string))
        .collect()
}

/// DESIGN 2.3: the event is the bare arguments object; a returned value without `content`
/// becomes structured content.
#[tokio::test(flavor = "multi_thread")]
async fn the_function_receives_the_bare_arguments_and_its_object_becomes_structured_content() {
    let Some(url) = lambda_url() else { return };
    let gateway = Gateway::start(&url).await;
    let result = gateway.call(json!({"msg": "hi"})).await;
    assert_ne!(result["isError"], json!(true), "{result}");
    assert_eq!(
        result["structuredContent"],
        json!({"echo": {"msg": "hi"}, "function": "portcullis-test-fn"}),
        "{result}"
    );
}

/// DESIGN 2.3: a returned object with `content` is used as the MCP result.
#[tokio::test(flavor = "multi_thread")]
async fn an_mcp_shaped_return_value_passes_through_unchanged() {
    let Some(url) = lambda_url() else { return };
    let gateway = Gateway::start(&url).await;
    let result = gateway.call(json!({"mcp": true})).await;
    assert_eq!(
        result["content"],
        json!([{"type": "text", "text": "from a real lambda"}]),
        "{result}"
    );
    assert_ne!(result["isError"], json!(true), "{result}");
    assert!(result.get("structuredContent").is_none(), "{result}");
}

/// DESIGN 2.3: a function error becomes an `isError` result. (cargo-lambda reports it as
/// HTTP 500, which the SDK surfaces as a failed invocation rather than `FunctionError`.)
#[tokio::test(flavor = "multi_thread")]
async fn a_function_error_becomes_an_is_error_result() {
    let Some(url) = lambda_url() else { return };
    let gateway = Gateway::start(&url).await;
    let result = gateway.call(json!({"fail": true})).await;
    assert_eq!(result["isError"], json!(true), "{result}");
    let text = texts(&result).join("\n");
    eprintln!("isError text for {{\"fail\": true}}: {text}");
    assert!(text.contains("asked to fail"), "{result}");
}
