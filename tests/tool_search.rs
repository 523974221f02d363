#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Tool search through the real HTTP surface (DESIGN 2.11): the real gateway, a real token
//! from the test IdP, rmcp's client, and the vendored Swagger Petstore document as the
//! catalog. Relevance on a large labelled set is measured in `search_relevance.rs`; this file
//! shows the tool as a client meets it.

mod support {
    pub mod binary;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig, Tool};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::gateway::{Setup, TestGateway, write_json};
use support::idp::Idp;
use support::mcp::{call, text_of};

const PETSTORE: &str = include_str!("fixtures/openapi/petstore.yaml");
const SEARCH: &str = "x_amz_bedrock_agentcore_search";

struct World {
    _idp: Idp,
    gateway: TestGateway,
    client: RunningService<RoleClient, ClientConfig>,
}

/// A gateway whose catalog is the Petstore (17 tools) plus a small hand-mapped HTTP target.
async fn world(search: &str) -> World {
    let idp = Idp::start().await;
    let gateway = TestGateway::start(
        &idp,
        Setup {
            targets: vec![
                (
                    "pets.json",
                    json!({"name": "pets", "openapi": {"specFile": "specs/petstore.yaml", "baseUrl": "http://127.0.0.1:9/v2"}}),
                ),
                ("weather.json", weather_target("weather")),
            ],
            files: vec![("targets/specs/petstore.yaml", PETSTORE.to_string())],
            extra: search,
            ..Setup::default()
        },
    )
    .await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url())
            .auth_header(gateway.token(&idp).await),
    );
    let client = ClientConfig::default().serve(transport).await.unwrap();
    World {
        _idp: idp,
        gateway,
        client,
    }
}

fn weather_target(name: &str) -> Value {
    json!({
        "name": name,
        "http": {"baseUrl": "http://127.0.0.1:9"},
        "tools": [{
            "name": "forecast",
            "description": "Get the weather forecast for a city: temperature, wind and rain for the next days.",
            "inputSchema": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]},
            "http": {"method": "GET", "path": "/forecast/{city}"}
        }]
    })
}

impl World {
    /// The names of the tools a search returns, best first, checking the answer's shape.
    async fn search(&self, query: &str) -> Vec<String> {
        let result = call(&self.client, SEARCH, json!({ "query": query })).await;
        assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
        let structured = result.structured_content.clone().unwrap();
        // The text block carries the same JSON for clients that read only `content`.
        let text: Value = serde_json::from_str(&text_of(&result)).unwrap();
        assert_eq!(text, structured);
        structured["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tool| tool["name"].as_str().unwrap().to_string())
            .collect()
    }

    async fn listing(&self) -> Vec<Tool> {
        self.client.list_all_tools().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_natural_language_query_finds_the_right_tool_first() {
    let world = world("[search]\nenabled = true\n").await;
    assert_eq!(
        world.search("find pets by their status").await[0],
        "pets___findPetsByStatus"
    );
    assert_eq!(
        world.search("will it rain in Paris tomorrow").await[0],
        "weather___forecast"
    );
    assert_eq!(
        world.search("remove a user account").await[0],
        "pets___deleteUser"
    );
    assert_eq!(
        world.search("place an order for a pet").await[0],
        "pets___placeOrder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_the_same_definitions_tools_list_gives_and_are_bounded() {
    let world = world("[search]\nenabled = true\nmax_results = 3\n").await;
    let listed = world.listing().await;
    assert_eq!(listed[0].name, SEARCH, "the search tool heads the list");
    assert_eq!(listed.len(), 17 + 1 + 1);
    let result = call(&world.client, SEARCH, json!({"query": "pet"})).await;
    let tools = result.structured_content.unwrap()["tools"].clone();
    let tools = tools.as_array().unwrap();
    assert_eq!(tools.len(), 3, "max_results bounds the answer");
    for found in tools {
        let same = listed.iter().find(|t| found["name"] == *t.name).unwrap();
        assert_eq!(found, &serde_json::to_value(same).unwrap());
    }
    // The search tool never finds itself.
    assert!(
        !world
            .search("search tools")
            .await
            .contains(&SEARCH.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_named_and_nothing_is_searched() {
    let world = world("[search]\nenabled = true\n").await;
    for (args, expected) in [
        (json!({}), "/: required: \"query\" is a required property"),
        (
            json!({"query": 7}),
            "/query: type: a number is not of type \"string\"",
        ),
        (
            json!({"query": "  "}),
            "/query: minLength: the query is empty",
        ),
        (json!({"query": "pets", "top": 3}), "\"top\" is not allowed"),
    ] {
        let result = call(&world.client, SEARCH, args.clone()).await;
        assert_eq!(result.is_error, Some(true), "{args}");
        assert!(
            text_of(&result).contains(expected),
            "{args}: {}",
            text_of(&result)
        );
    }
    // A query of stop words only says what to do instead of returning noise.
    let result = call(&world.client, SEARCH, json!({"query": "the of and"})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text_of(&result).contains("no searchable words"),
        "{}",
        text_of(&result)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_follows_a_catalog_reload() {
    let world = world("[search]\nenabled = true\n").await;
    assert!(
        !world
            .search("weather forecast")
            .await
            .contains(&"climate___forecast".to_string())
    );
    write_json(
        &world.gateway.targets_dir(),
        "climate.json",
        &weather_target("climate"),
    );
    world.gateway.state.reload_catalog().await;
    let found = world.search("weather forecast").await;
    assert!(
        found.contains(&"climate___forecast".to_string()),
        "{found:?}"
    );
    std::fs::remove_file(world.gateway.targets_dir().join("pets.json")).unwrap();
    world.gateway.state.reload_catalog().await;
    let found = world.search("find pets by status").await;
    assert!(
        found.iter().all(|name| !name.starts_with("pets___")),
        "{found:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_search_enabled_the_tool_does_not_exist() {
    let world = world("").await;
    assert!(world.listing().await.iter().all(|t| t.name != SEARCH));
    let error = world
        .client
        .call_tool(
            CallToolRequestParams::new(SEARCH)
                .with_arguments(json!({"query": "pets"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("unknown tool"), "{error}");
}
