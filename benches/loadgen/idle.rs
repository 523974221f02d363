//! `loadgen idle`: what many idle clients cost a gateway (scenario 5). It opens N connections
//! that each initialize an MCP session (or, with `--plain`, only `GET /healthz`, to separate the
//! cost of a connection from the cost of a session), holds them while the gateway's RSS is
//! sampled, then checks that every one still answers: memory held by dropped sessions would
//! otherwise look like a saving.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::mcp::{Client, Mode};
use crate::net::Endpoint;
use crate::outcome::{Tally, err};
use crate::procstat::{ProcArgs, Server, cpu_json, cpu_ticks_of, rss_sampler};
use crate::tokens::{TokenArgs, load_tokens};
use crate::{BoxError, exit_status, write_json};

#[derive(Args)]
pub struct IdleArgs {
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
    pub threads: usize,
    #[command(flatten)]
    tokens: TokenArgs,
    #[command(flatten)]
    procs: ProcArgs,
    #[arg(long, default_value = "")]
    label: String,
    #[arg(long)]
    json: Option<PathBuf>,
}

pub async fn run(args: IdleArgs) -> Result<i32, BoxError> {
    let endpoint = Endpoint::parse(&args.url)?;
    let tokens = Arc::new(load_tokens(&args.tokens)?);
    if tokens.distinct() == 0 && !args.plain {
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
    let cpu_before = cpu_ticks_of(server);
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
                    client.ensure_connected().await?;
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
    let cpu_after_setup = cpu_ticks_of(server);
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
                let had_session = client.session_id().cloned();
                let (_, outcome) = client.call(i as u64 + 1, None).await;
                // A re-initialized session would hide a dropped one.
                let outcome = outcome.and_then(|()| {
                    if client.session_id() == had_session.as_ref() {
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
        args.procs.clk_tck,
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
    write_json(args.json.as_ref(), &result)?;
    drop(checked);
    Ok(exit_status(
        tally.error_count() + tally.wrong + verify.error_count() + verify.wrong,
    ))
}
