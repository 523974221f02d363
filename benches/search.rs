//! Tool search at 10,000 tools (issue 13, DESIGN 2.11): index build time and query latency
//! (`cargo bench --bench search`). The catalog is the 1,323 real tools of
//! `tests/fixtures/search/tools.json` copied under suffixed names until there are 10,000 (so the
//! index has the term statistics of real API text, with each tool present seven or eight times),
//! and the queries are the labelled ones of `queries.json`, in turn.
//!
//! First prints plain figures (median build time of a few builds; p50 / p90 / p99 of every
//! query run several times), then lets criterion measure the same two things with its own
//! statistics.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::Criterion;
use portcullis::search::{SearchIndex, ToolDoc};
use serde::Deserialize;
use serde_json::{Map, Value};

const TOOLS: usize = 10_000;
const BUILDS: usize = 5;
const PASSES: usize = 20;

#[derive(Deserialize)]
struct Tool {
    name: String,
    description: String,
    #[serde(rename = "inputSchema")]
    input_schema: Map<String, Value>,
}

#[derive(Deserialize)]
struct Labelled {
    query: String,
}

fn fixture<T: for<'de> Deserialize<'de>>(file: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/search")
        .join(file);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `TOOLS` tools: the fixture's, then copies named `<name>_copy<n>`.
fn catalog(real: &[Tool]) -> Vec<(String, &Tool)> {
    (0..TOOLS)
        .map(|i| {
            let tool = &real[i % real.len()];
            match i / real.len() {
                0 => (tool.name.clone(), tool),
                copy => (format!("{}_copy{copy}", tool.name), tool),
            }
        })
        .collect()
}

fn build(catalog: &[(String, &Tool)]) -> SearchIndex {
    SearchIndex::build(catalog.iter().map(|(name, tool)| ToolDoc {
        name,
        description: &tool.description,
        input_schema: &tool.input_schema,
    }))
    .unwrap()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn main() {
    let real: Vec<Tool> = fixture("tools.json");
    let queries: Vec<Labelled> = fixture("queries.json");
    let catalog = catalog(&real);

    let mut builds: Vec<Duration> = (0..BUILDS)
        .map(|_| {
            let started = Instant::now();
            black_box(build(&catalog));
            started.elapsed()
        })
        .collect();
    builds.sort();
    let index = build(&catalog);
    assert_eq!(index.len(), TOOLS);

    let mut samples = Vec::with_capacity(PASSES * queries.len());
    for _ in 0..PASSES {
        for labelled in &queries {
            let started = Instant::now();
            let hits = index
                .search(black_box(&labelled.query), 5, |_| true)
                .unwrap();
            samples.push(started.elapsed());
            black_box(hits);
        }
    }
    samples.sort();
    let at = |q: f64| millis(samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)]);
    println!(
        "search index build, {TOOLS} tools: median {:.0} ms (min {:.0} ms, {BUILDS} builds)",
        millis(builds[BUILDS / 2]),
        millis(builds[0])
    );
    println!(
        "search query, {TOOLS} tools, limit 5: p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms \
         ({} queries x {PASSES})",
        at(0.5),
        at(0.9),
        at(0.99),
        queries.len()
    );

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("search_10k_tools");
    group.sample_size(10);
    group.bench_function("build", |b| b.iter(|| build(&catalog)));
    group.sample_size(100);
    let mut next = 0;
    group.bench_function("query", |b| {
        b.iter(|| {
            next = (next + 1) % queries.len();
            index.search(&queries[next].query, 5, |_| true).unwrap()
        })
    });
    group.finish();
    criterion.final_summary();
}
