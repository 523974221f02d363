//! `loadgen coldstart`: how long a gateway takes from spawn to a 200 from its readiness URL,
//! and its RSS at that moment (scenario 3: a 10k-tool catalog vs one tool). The command is run
//! `--repeat` times; the median start is the figure, since one start can hit a cold page cache.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::net::{Endpoint, connect, exchange};
use crate::procstat::memory_kib;
use crate::{BoxError, exit_status, write_json};

#[derive(Args)]
pub struct ColdstartArgs {
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

pub async fn run(args: ColdstartArgs) -> Result<i32, BoxError> {
    let endpoint = Endpoint::parse(&args.ready_url)?;
    let (program, rest) = args.command.split_first().ok_or("no command given")?;
    let mut runs = Vec::new();
    let mut failures = 0u64;
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
    write_json(args.json.as_ref(), &result)?;
    Ok(exit_status(failures))
}

/// One GET of the readiness URL on a fresh connection: Some(body) when it answered 200.
async fn ready_once(endpoint: &Endpoint) -> Result<Option<Value>, BoxError> {
    let mut sender = connect(endpoint.addr).await?;
    let request = endpoint
        .request(Method::GET, &endpoint.path)
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
