//! The upstream MCP server on the official Python SDK (`tests/python/upstream_server.py`), run
//! in the Python test venv that `tests/python/run` builds (`./tests/run` runs that stage
//! before the Rust tests; `PORTCULLIS_TEST_PYTHON` may name another interpreter with `mcp`).
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

pub struct PythonUpstream {
    /// The MCP endpoint, `http://127.0.0.1:<port>/mcp`.
    pub url: String,
    /// Killed on drop; closing its stdin also ends it.
    _child: tokio::process::Child,
}

impl PythonUpstream {
    /// Starts the server; it accepts only RS256 JWTs of `issuer` (signed by `public_key_pem`)
    /// whose `aud` is its own URL.
    pub async fn start(issuer: &str, public_key_pem: &str) -> PythonUpstream {
        let root = env!("CARGO_MANIFEST_DIR");
        let python = std::env::var("PORTCULLIS_TEST_PYTHON")
            .unwrap_or_else(|_| format!("{root}/target/test-venv/bin/python"));
        assert!(
            Path::new(&python).exists(),
            "no Python with the mcp SDK at {python}: run tests/python/run first (./tests/run does)"
        );
        let mut child = tokio::process::Command::new(&python)
            .arg(format!("{root}/tests/python/upstream_server.py"))
            .env("UPSTREAM_ISSUER", issuer)
            .env("UPSTREAM_PUBLIC_KEY_PEM", public_key_pem)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut first = String::new();
        BufReader::new(stdout).read_line(&mut first).await.unwrap();
        let announced: serde_json::Value = serde_json::from_str(&first)
            .unwrap_or_else(|e| panic!("the Python upstream did not start ({e}): {first:?}"));
        PythonUpstream {
            url: announced["url"].as_str().unwrap().to_string(),
            _child: child,
        }
    }
}
