//! Runs the real `portcullis` binary as a child process (for tests that need their own
//! environment, such as AWS credentials, or that exercise the CLI itself).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// A free loopback port (bound then released; the OS does not hand it out again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct RunningBinary {
    pub base: String,
    pub child: Child,
    pub log: PathBuf,
}

impl RunningBinary {
    /// `portcullis serve --config <dir>/portcullis.toml [--dev]` with `env`, waiting until
    /// `/readyz` answers 200 (polling a condition, bounded to 30 s).
    pub async fn serve(dir: &Path, port: u16, dev: bool, env: &[(&str, &str)]) -> RunningBinary {
        let log = dir.join("gateway.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .arg("--config")
            .arg(dir.join("portcullis.toml"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        if dev {
            command.arg("--dev");
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "gateway exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Ok(response) = client.get(format!("{base}/readyz")).send().await
                && response.status().is_success()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway not ready in 30 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        RunningBinary { base, child, log }
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs a `portcullis` subcommand to completion: (exit code, stdout, stderr).
pub fn run(args: &[&str], dir: &Path) -> (i32, String, String) {
    let output = std::process::Command::new(binary())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
