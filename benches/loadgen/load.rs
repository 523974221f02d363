//! `direct`, `mcp-session`, `mcp-stateless` and `tools-list`: the closed-loop load. Each
//! connection keeps one request in flight, so the rate is what the server sustains at that
//! concurrency and the latency is not inflated by a queue in the load generator. A warm-up runs
//! first (connections, sessions, caches), then the measured window, whose CPU readings bracket
//! exactly the calls that are counted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::mcp::{Client, Mode};
use crate::net::Endpoint;
use crate::outcome::Tally;
use crate::procstat::{
    ProcArgs, Server, add_memory_json, cpu_json, cpu_ticks_of, machine_busy_ticks, rss_sampler,
};
use crate::summary::print_summary;
use crate::tokens::{TokenArgs, load_tokens};
use crate::{BoxError, exit_status, write_json};

#[derive(Args, Clone)]
pub struct LoadArgs {
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
    pub threads: usize,
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
    pub stateless: bool,
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

// The phases every worker follows, set by `run`.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What the workers share: the phase, and with --requests the tickets for the measured calls.
struct Shared {
    phase: AtomicU8,
    tickets: AtomicU64,
    limit: Option<u64>,
}

fn new_histogram() -> Result<Histogram<u64>, BoxError> {
    // Nanoseconds, 1 ns .. 100 s, 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 100_000_000_000, 3)?)
}

/// One connection's closed loop: calls until the phase says stop (or the tickets run out);
/// only calls made in the measured phase are counted.
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

pub async fn run(mode: Mode, args: LoadArgs) -> Result<i32, BoxError> {
    let endpoint = Endpoint::parse(&args.url)?;
    let tokens = Arc::new(load_tokens(&args.tokens)?);
    if mode != Mode::Direct && tokens.distinct() == 0 {
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
    // The measured processes, in the order of the result's "server", "backend", "loadgen".
    let processes = [
        server_proc,
        args.procs.backend(),
        Some(Server::single(std::process::id())),
    ];
    let cpu_now = || processes.map(cpu_ticks_of);
    let cpu_before = cpu_now();
    let machine_before = machine_busy_ticks();
    let started = Instant::now();
    shared.phase.store(MEASURE, Ordering::Release);
    // The window ends when the last counted call has been made: read the clock and the CPU
    // counters then, before waiting for the workers to wind down.
    let window_end = || (started.elapsed(), cpu_now());

    let ((window, cpu_after), results) = match args.requests {
        None => {
            tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
            shared.phase.store(STOP, Ordering::Release);
            let end = window_end();
            let mut results = Vec::new();
            for h in handles {
                results.push(h.await?);
            }
            (end, results)
        }
        Some(_) => {
            let deadline = tokio::time::sleep(Duration::from_secs_f64(args.max_time));
            tokio::pin!(deadline);
            let mut joined = futures::future::join_all(handles);
            tokio::select! {
                r = &mut joined => {
                    let end = window_end();
                    (end, r.into_iter().collect::<Result<Vec<_>, _>>()?)
                }
                () = &mut deadline => {
                    eprintln!("--max-time reached before --requests completed");
                    shared.phase.store(STOP, Ordering::Release);
                    let end = window_end();
                    (end, joined.await.into_iter().collect::<Result<Vec<_>, _>>()?)
                }
            }
        }
    };
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
    let [mut server, backend, loadgen] = std::array::from_fn(|i| {
        cpu_json(
            args.procs.clk_tck,
            processes[i].map(Server::pid),
            cpu_before[i],
            cpu_after[i],
            calls,
        )
    });
    add_memory_json(&mut server, server_proc, rss_max);
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
        "distinct_tokens": tokens.distinct(),
        "token_reuses": tokens.reuses(),
        "server": server,
        "backend": backend,
        "loadgen": loadgen,
        "machine_busy_cores": machine_cores,
        "other_processes_busy_cores": others_cores,
    });
    print_summary(&result);
    write_json(args.json.as_ref(), &result)?;
    // Failures during the warm-up are not in the figures, but they are failures all the same.
    Ok(exit_status(
        tally.wrong + tally.error_count() + tally.warmup_failures,
    ))
}
