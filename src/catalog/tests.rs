//! One test per kind of target-file mistake: each asserts the message names file, pointer and
//! problem.

use std::path::Path;

use serde_json::{Value, json};

use super::*;

fn http_target(name: &str) -> Value {
    json!({
        "name": name,
        "http": {"baseUrl": "http://127.0.0.1:9/api"},
        "tools": [{
            "name": "get_item",
            "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
            "http": {"method": "GET", "path": "/items/{id}"}
        }]
    })
}

fn load(dir: &Path, previous: &Catalog) -> (Catalog, Vec<Problem>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(Catalog::load(
        dir,
        previous,
        &crate::targets::Transport::new().unwrap(),
    ))
}

fn write(dir: &Path, file: &str, value: &Value) {
    let path = dir.join(file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

fn problems_for(value: Value) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "t.json", &value);
    let (catalog, problems) = load(dir.path(), &Catalog::default());
    assert!(catalog.is_empty(), "a bad file must not contribute tools");
    assert!(!problems.is_empty(), "expected problems");
    problems.iter().map(ToString::to_string).collect()
}

fn assert_named(problems: &[String], needles: &[&str]) {
    assert!(
        problems
            .iter()
            .any(|p| needles.iter().all(|n| p.contains(n))),
        "no problem mentions all of {needles:?}: {problems:#?}"
    );
}

#[test]
fn good_http_target_loads_with_qualified_names() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "shop.json", &http_target("shop"));
    let (catalog, problems) = load(dir.path(), &Catalog::default());
    assert!(problems.is_empty(), "{problems:?}");
    assert!(catalog.get("shop___get_item").is_some());
}

#[test]
fn underscore_in_target_name_is_refused() {
    assert_named(
        &problems_for(http_target("my_shop")),
        &["t.json", "/name", "pattern"],
    );
}

#[test]
fn both_lambda_and_http_is_refused() {
    let mut target = http_target("shop");
    target["lambda"] = json!({"functionArn": "fn"});
    assert_named(
        &problems_for(target),
        &["exactly one of `lambda`, `http`, `openapi` or `mcp`"],
    );
}

#[test]
fn unknown_key_is_refused_with_its_location() {
    let mut target = http_target("shop");
    target["tools"][0]["http"]["verb"] = json!("GET");
    assert_named(&problems_for(target), &["/tools/0/http", "verb"]);
}

#[test]
fn tool_name_with_separator_is_refused() {
    let mut target = http_target("shop");
    target["tools"][0]["name"] = json!("get___item");
    assert_named(&problems_for(target), &["/tools/0/name"]);
}

#[test]
fn input_schema_must_be_an_object_schema() {
    let mut target = http_target("shop");
    target["tools"][0]["inputSchema"] = json!({"type": "array"});
    assert_named(&problems_for(target), &["/tools/0/inputSchema"]);
}

#[test]
fn invalid_input_schema_is_refused() {
    let mut target = http_target("shop");
    target["tools"][0]["inputSchema"]["properties"]["id"] = json!({"type": "strnig"});
    assert_named(
        &problems_for(target),
        &["/tools/0/inputSchema", "not a valid JSON Schema"],
    );
}

#[test]
fn path_parameter_must_be_a_required_property() {
    let mut target = http_target("shop");
    target["tools"][0]["http"]["path"] = json!("/items/{sku}");
    assert_named(&problems_for(target), &["/tools/0/http/path", "{sku}"]);
}

#[test]
fn http_tool_needs_a_mapping() {
    let mut target = http_target("shop");
    target["tools"][0].as_object_mut().unwrap().remove("http");
    assert_named(
        &problems_for(target),
        &["/tools/0", "need an `http` mapping"],
    );
}

#[test]
fn inline_authorization_header_is_refused() {
    let mut target = http_target("shop");
    target["http"]["headers"] = json!({"Authorization": "Bearer secret"});
    assert_named(
        &problems_for(target),
        &["/http/headers/Authorization", "credentials"],
    );
}

#[test]
fn duplicate_tool_names_are_refused() {
    let mut target = http_target("shop");
    let tool = target["tools"][0].clone();
    target["tools"].as_array_mut().unwrap().push(tool);
    assert_named(&problems_for(target), &["/tools/1/name", "duplicate"]);
}

#[test]
fn invalid_json_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.json"), "{\"name\": \"x\",\n  oops}").unwrap();
    let (_, problems) = load(dir.path(), &Catalog::default());
    assert_named(
        &problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        &["t.json", "invalid JSON", "line 2"],
    );
}

#[test]
fn tool_schema_file_may_not_escape_the_folder() {
    let target =
        json!({"name": "w", "lambda": {"functionArn": "w"}, "toolSchemaFile": "../x.json"});
    assert_named(&problems_for(target), &["/toolSchemaFile"]);
}

#[test]
fn tool_schema_file_problems_name_the_schema_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "w.json",
        &json!({"name": "w", "lambda": {"functionArn": "w"}, "toolSchemaFile": "tools/w.json"}),
    );
    write(
        dir.path(),
        "tools/w.json",
        &json!([{"name": "check", "inputSchema": {"type": "object"}}, {"name": "bad"}]),
    );
    let (_, problems) = load(dir.path(), &Catalog::default());
    let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_named(&rendered, &["tools/w.json", "/1", "inputSchema"]);
}

#[test]
fn agentcore_tool_schema_file_loads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "w.json",
        &json!({"name": "warranty", "lambda": {"functionArn": "arn:aws:lambda:us-east-1:123456789012:function:warranty"}, "toolSchemaFile": "tools/w.json"}),
    );
    write(
        dir.path(),
        "tools/w.json",
        &json!([{"name": "check_warranty_status", "description": "d",
                 "inputSchema": {"type": "object", "properties": {"serialNumber": {"type": "string"}}, "required": ["serialNumber"]}}]),
    );
    let (catalog, problems) = load(dir.path(), &Catalog::default());
    assert!(problems.is_empty(), "{problems:?}");
    let tool = catalog.get("warranty___check_warranty_status").unwrap();
    assert_eq!(tool.target.kind, "lambda");
    assert!(format!("{:?}", tool.target.runtime).contains("us-east-1"));
}

#[test]
fn duplicate_target_names_keep_the_first_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", &http_target("shop"));
    write(dir.path(), "b.json", &http_target("shop"));
    let (catalog, problems) = load(dir.path(), &Catalog::default());
    assert_eq!(catalog.target_count(), 1);
    assert_named(
        &problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
        &["b.json", "/name", "already defined in", "a.json"],
    );
}

#[test]
fn a_broken_file_keeps_its_last_good_version_and_others_still_load() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", &http_target("shop"));
    let (first, _) = load(dir.path(), &Catalog::default());
    std::fs::write(dir.path().join("a.json"), "{ half-saved").unwrap();
    write(dir.path(), "b.json", &http_target("store"));
    let (second, problems) = load(dir.path(), &first);
    assert_eq!(problems.len(), 1);
    assert!(
        second.get("shop___get_item").is_some(),
        "last good version kept"
    );
    assert!(
        second.get("store___get_item").is_some(),
        "other files unaffected"
    );
}

#[test]
fn pages_are_ordered_and_cursors_opaque() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        write(
            dir.path(),
            &format!("t{i}.json"),
            &http_target(&format!("t{i}")),
        );
    }
    let (catalog, _) = load(dir.path(), &Catalog::default());
    let (first, cursor) = catalog.page(None, 2).unwrap();
    assert_eq!(first.len(), 2);
    let cursor = cursor.unwrap();
    assert!(!cursor.contains("t1"), "cursor must be opaque");
    let mut names: Vec<String> = first.iter().map(|t| t.qualified_name.clone()).collect();
    let mut next = Some(cursor);
    while let Some(c) = next {
        let (page, after) = catalog.page(Some(&c), 2).unwrap();
        names.extend(page.iter().map(|t| t.qualified_name.clone()));
        next = after;
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 5);
    assert_eq!(
        catalog.page(Some("garbage!"), 2).unwrap_err(),
        CatalogError::BadCursor
    );
}

#[test]
fn base_url_must_be_http_or_https() {
    for bad in ["ftp://files.example.com/pub", "mailto:ops@example.com"] {
        let mut target = http_target("shop");
        target["http"]["baseUrl"] = json!(bad);
        assert_named(&problems_for(target), &["t.json", "/http/baseUrl"]);
    }
}

#[test]
fn a_tool_may_not_carry_another_kinds_key() {
    let target = json!({
        "name": "warranty",
        "lambda": {"functionArn": "arn:aws:lambda:us-east-1:123456789012:function:warranty"},
        "tools": [{"name": "check", "inputSchema": {"type": "object"},
                   "http": {"method": "GET", "path": "/x"}}]
    });
    assert_named(
        &problems_for(target),
        &["t.json", "/tools/0/http", "only tools of http targets"],
    );
}

#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let mut target = http_target("shop");
    target["http"]["headers"] = json!({"Cookie": "session=1"});
    target["tools"][0]["inputSchema"]["properties"]["id"] = json!({"type": "strnig"});
    let problems = problems_for(target);
    assert_named(&problems, &["/http/headers/Cookie"]);
    assert_named(&problems, &["/tools/0/inputSchema"]);
}
