//! Tool search relevance on real API descriptions (issue 13, DESIGN 2.11): 1,323 tools from
//! GitHub's, Notion's and ShipEngine's OpenAPI documents (`tests/fixtures/search/tools.json`,
//! made by `convert.py`, sources in `LICENSES.md`) and hand-labelled natural-language queries.
//! `queries.json` (137 queries) is the set the method was tuned on: it must reach recall@5 0.9.
//! `queries_holdout.json` (40 queries) was written after the tuning, from operations drawn at
//! random, and never tuned on: it shows how well the method carries over to new wording, and
//! fails below 0.8 (a sign the method over-fits the first set).
//!
//! recall@5 is the share of a query's right tools found in its first five results, averaged
//! over the queries; MRR@10 the mean of 1 / rank of the first right tool (0 past rank 10).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::PathBuf;

use portcullis::search::{SearchIndex, ToolDoc};
use serde::Deserialize;
use serde_json::{Map, Value};

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
    relevant: Vec<String>,
}

fn fixture<T: for<'de> Deserialize<'de>>(file: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/search")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn tools() -> Vec<Tool> {
    fixture("tools.json")
}

fn index(tools: &[Tool]) -> SearchIndex {
    SearchIndex::build(tools.iter().map(|tool| ToolDoc {
        name: &tool.name,
        description: &tool.description,
        input_schema: &tool.input_schema,
    }))
    .unwrap()
}

#[test]
fn the_labelled_set_is_large_and_every_label_names_a_real_tool() {
    let tools = tools();
    let queries: Vec<Labelled> = fixture("queries.json");
    let held_out: Vec<Labelled> = fixture("queries_holdout.json");
    assert!(tools.len() >= 1_000, "{} tools", tools.len());
    assert!(queries.len() >= 100, "{} queries", queries.len());
    let names: HashSet<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names.len(), tools.len(), "tool names are unique");
    for labelled in queries.iter().chain(&held_out) {
        assert!(!labelled.relevant.is_empty(), "{:?}", labelled.query);
        for name in &labelled.relevant {
            assert!(
                names.contains(name.as_str()),
                "{name} ({:?})",
                labelled.query
            );
        }
    }
}

/// recall@5 and MRR@10 of `queries`, printed with the queries that miss a right tool.
fn relevance(set: &str, tools: &[Tool], index: &SearchIndex) -> (f64, f64) {
    let queries: Vec<Labelled> = fixture(set);
    let mut recall = 0.0;
    let mut reciprocal_ranks = 0.0;
    let mut misses = Vec::new();
    for labelled in &queries {
        let hits = index.search(&labelled.query, 10, |_| true).unwrap();
        let names: Vec<&str> = hits.iter().map(|hit| hit.name.as_str()).collect();
        let found = labelled
            .relevant
            .iter()
            .filter(|name| names.iter().take(5).any(|hit| hit == name))
            .count();
        recall += found as f64 / labelled.relevant.len() as f64;
        if let Some(rank) = names
            .iter()
            .position(|hit| labelled.relevant.iter().any(|name| name == hit))
        {
            reciprocal_ranks += 1.0 / (rank + 1) as f64;
        }
        if found < labelled.relevant.len() {
            misses.push(format!(
                "  {:?}: wanted {:?}, got {:?}",
                labelled.query,
                labelled.relevant,
                &names[..names.len().min(5)]
            ));
        }
    }
    let count = queries.len() as f64;
    let (recall, mrr) = (recall / count, reciprocal_ranks / count);
    println!(
        "search relevance ({set}): {} tools, {} queries, recall@5 = {recall:.3}, \
         MRR@10 = {mrr:.3}",
        tools.len(),
        queries.len()
    );
    println!(
        "queries missing a right tool in the top 5 ({}):\n{}",
        misses.len(),
        misses.join("\n")
    );
    (recall, mrr)
}

#[test]
fn recall_at_5_is_at_least_0_9_on_real_api_tools() {
    let tools = tools();
    let index = index(&tools);
    let (recall, _) = relevance("queries.json", &tools, &index);
    assert!(recall >= 0.9, "recall@5 = {recall:.3} < 0.9");
}

#[test]
fn held_out_queries_reach_recall_at_5_of_0_8() {
    let tools = tools();
    let index = index(&tools);
    let (recall, _) = relevance("queries_holdout.json", &tools, &index);
    assert!(recall >= 0.8, "held-out recall@5 = {recall:.3} < 0.8");
}

#[test]
fn a_disallowed_tool_never_appears_and_allowed_ones_still_fill_the_limit() {
    let tools = tools();
    let queries: Vec<Labelled> = fixture("queries.json");
    let index = index(&tools);
    for labelled in &queries {
        // The policy refuses every right answer and everything the unfiltered search ranked
        // first: what is left must still fill five places, none of them refused.
        let unfiltered = index.search(&labelled.query, 5, |_| true).unwrap();
        let refused: HashSet<&str> = labelled
            .relevant
            .iter()
            .map(String::as_str)
            .chain(unfiltered.iter().map(|hit| hit.name.as_str()))
            .collect();
        let hits = index
            .search(&labelled.query, 5, |name| !refused.contains(name))
            .unwrap();
        for hit in &hits {
            assert!(
                !refused.contains(hit.name.as_str()),
                "{:?} returned the refused {}",
                labelled.query,
                hit.name
            );
        }
        let matching = index
            .search(&labelled.query, tools.len(), |_| true)
            .unwrap();
        let available = matching
            .iter()
            .filter(|hit| !refused.contains(hit.name.as_str()))
            .count();
        assert_eq!(hits.len(), available.min(5), "{:?}", labelled.query);
    }
}

#[test]
fn a_policy_that_allows_only_one_target_sees_only_that_target() {
    let tools = tools();
    let index = index(&tools);
    // "repository" matches hundreds of GitHub tools first; only ShipEngine's may be seen.
    let hits = index
        .search("create a repository webhook", 5, |name| {
            name.starts_with("shipengine___")
        })
        .unwrap();
    assert_eq!(hits.len(), 5, "{hits:?}");
    assert!(hits.iter().all(|hit| hit.name.starts_with("shipengine___")));
    assert_eq!(hits[0].name, "shipengine___create_webhook");
}
