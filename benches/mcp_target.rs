//! An `mcp` target's cost (issue 11): `cargo bench --bench mcp_target`.
//!
//! A real rmcp upstream server (Streamable HTTP, stateful sessions, one `echo` tool answering
//! `structuredContent: {n}`) and a real gateway in `--dev` mode with an `mcp` target on it, each
//! on a runtime of its own (threads standing in for processes). rmcp's client calls `echo`
//! directly and `up___echo` through the gateway, in interleaved rounds, in the two shapes
//! clients use: one session shared by 16 concurrent calls, and 16 sessions with one call in
//! flight each. Every answer is checked (`structuredContent.n` is the `n` sent).
//!
//! Prints calls/s, p50 / p99 for each, the latency the gateway adds and the share of the direct
//! rate it keeps. Goal: <= 0.5 ms added at p50 and >= 80% of the direct rate. On a 2-core
//! machine the client, the gateway and the upstream share the cores, so the gateway's share of
//! the CPU is taken from the others: the ratio is what is comparable between runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, ErrorData,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities, Tool,
};
use rmcp::service::{RequestContext, RoleClient, RoleServer, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};

const CONCURRENCY: usize = 16;
const ROUNDS: usize = 3;
const ROUND: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> InitializeResult {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema =
            json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
        let Value::Object(schema) = schema else {
            unreachable!()
        };
        Ok(ListToolsResult::with_all_items(vec![Tool::new_with_raw(
            "echo",
            Some("Answers the n it is sent.".into()),
            Arc::new(schema),
        )]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let n = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("n"))
            .cloned()
            .unwrap_or(Value::Null);
        Ok(CallToolResponse::Complete(CallToolResult::structured(
            json!({ "n": n }),
        )))
    }
}

/// A runtime on threads of its own, standing in for a process.
fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn start_upstream(runtime: &tokio::runtime::Runtime) -> String {
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let service = StreamableHttpService::new(
            || Ok(Echo),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default(),
        );
        let app = axum::Router::new().route_service("/mcp", service);
        // axum's defaults (no TCP_NODELAY), as most servers built on rmcp run.
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    })
}

/// A `--dev` gateway with one `mcp` target, `up`, on `upstream`; its MCP URL and a token.
fn start_gateway(
    runtime: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    upstream: &str,
) -> (String, String) {
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    std::fs::write(
        dir.join("targets/up.json"),
        json!({"name": "up", "mcp": {"url": upstream}}).to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("portcullis.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n[telemetry]\nlog_level = \"warn\"\n",
    )
    .unwrap();
    let config =
        portcullis::config::Config::load(Some(&dir.join("portcullis.toml")), true).unwrap();
    let issuer = portcullis::inbound::DevIssuer::load_or_create(
        &config.server.data_dir,
        &config.server.public_url,
    )
    .unwrap();
    let token = issuer
        .mint(
            "bench-alice",
            &[portcullis::inbound::DEV_SCOPE.to_string()],
            portcullis::inbound::DEV_AUDIENCE,
        )
        .unwrap();
    let url = runtime.block_on(async {
        let gateway = portcullis::Gateway::build(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(gateway.serve(listener, std::future::pending()));
        url
    });
    (url, token)
}

type Client = RunningService<RoleClient, ClientConfig>;

async fn connect(url: &str, token: Option<&str>) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(token) = token {
        config = config.auth_header(token.to_string());
    }
    ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap()
}

/// One measured round: `CONCURRENCY` closed loops calling `tool` for `ROUND`.
async fn round(clients: &[Arc<Client>], tool: &'static str) -> (f64, Vec<Duration>) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = (i as u64) << 32;
                while started.elapsed() < ROUND {
                    n += 1;
                    let arguments = json!({ "n": n }).as_object().cloned();
                    let call = Instant::now();
                    let result = client
                        .call_tool(
                            CallToolRequestParams::new(tool).with_arguments(arguments.unwrap()),
                        )
                        .await
                        .unwrap();
                    latencies.push(call.elapsed());
                    let got = result
                        .structured_content
                        .as_ref()
                        .and_then(|s| s["n"].as_u64());
                    assert_eq!(got, Some(n), "a wrong answer: {result:?}");
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    (rate, latencies)
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)].as_secs_f64() * 1e3
}

struct Measured {
    rate: f64,
    p50: f64,
    p99: f64,
}

/// The median round's rate, and percentiles over every round's calls.
fn summarise(rounds: Vec<(f64, Vec<Duration>)>) -> Measured {
    let mut rates: Vec<f64> = rounds.iter().map(|(rate, _)| *rate).collect();
    rates.sort_by(f64::total_cmp);
    let mut all: Vec<Duration> = rounds.into_iter().flat_map(|(_, l)| l).collect();
    Measured {
        rate: rates[rates.len() / 2],
        p50: percentile(&mut all, 0.5),
        p99: percentile(&mut all, 0.99),
    }
}

fn main() {
    let upstream_runtime = runtime(1);
    let gateway_runtime = runtime(2);
    let client_runtime = runtime(2);
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_upstream(&upstream_runtime);
    let (gateway, token) = start_gateway(&gateway_runtime, dir.path(), &upstream);

    client_runtime.block_on(async {
        for (shape, sessions) in [
            ("one session, 16 concurrent calls", 1),
            ("16 sessions, one call each", CONCURRENCY),
        ] {
            let mut direct_clients = Vec::new();
            let mut gateway_clients = Vec::new();
            for _ in 0..sessions {
                direct_clients.push(Arc::new(connect(&upstream, None).await));
                gateway_clients.push(Arc::new(connect(&gateway, Some(&token)).await));
            }
            // Warm both paths (the gateway opens its upstream session on the first call).
            round(&direct_clients, "echo").await;
            round(&gateway_clients, "up___echo").await;
            let (mut direct, mut through) = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                direct.push(round(&direct_clients, "echo").await);
                through.push(round(&gateway_clients, "up___echo").await);
            }
            let (direct, through) = (summarise(direct), summarise(through));
            println!(
                "mcp target, {shape}: direct {:.0} calls/s p50 {:.2} ms p99 {:.2} ms; through the gateway {:.0} calls/s p50 {:.2} ms p99 {:.2} ms; added p50 {:.2} ms (goal <= 0.5), p99 {:.2} ms; {:.0}% of the direct rate (goal >= 80%)",
                direct.rate,
                direct.p50,
                direct.p99,
                through.rate,
                through.p50,
                through.p99,
                through.p50 - direct.p50,
                through.p99 - direct.p99,
                100.0 * through.rate / direct.rate
            );
        }
    });
}
