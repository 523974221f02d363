//! Operations -> tools on small documents, one rule each, and the vendored Swagger Petstore.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::document::{self, Document};
use super::operations::{Skipped, operations, tool_name};
use super::schema::from_openapi_3_0;

fn doc(paths: Value) -> Document {
    document::parse(json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {
                "Pet": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "id": {"type": "integer", "readOnly": true},
                        "name": {"type": "string"},
                        "tags": {"type": "array", "items": {"$ref": "#/components/schemas/Tag"}},
                    },
                },
                "Tag": {"type": "string"},
                "Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}},
            },
            "parameters": {"Limit": {"name": "limit", "in": "query", "schema": {"type": "integer"}}},
        },
    }))
    .unwrap()
}

fn only_tool(paths: Value) -> Value {
    let (tools, skipped) = operations(&doc(paths), None);
    assert_eq!(skipped, [], "nothing may be skipped");
    assert_eq!(tools.len(), 1);
    tools.into_iter().next().unwrap().tool
}

fn only_skip(paths: Value) -> Skipped {
    let (tools, mut skipped) = operations(&doc(paths), None);
    assert!(tools.is_empty(), "{tools:?}");
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    skipped.remove(0)
}

#[test]
fn parameters_map_to_path_query_and_headers_with_their_schemas() {
    let tool = only_tool(json!({
        "/pets/{petId}": {
            "parameters": [{"name": "petId", "in": "path", "required": true, "schema": {"type": "string"}, "description": "Which pet"}],
            "get": {
                "operationId": "getPet",
                "summary": "Find a pet",
                "parameters": [
                    {"$ref": "#/components/parameters/Limit"},
                    {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "X-Trace", "in": "header", "required": true, "schema": {"type": "string"}},
                    {"name": "Accept", "in": "header", "schema": {"type": "string"}},
                ],
            },
        },
    }));
    assert_eq!(tool["name"], "getPet");
    assert_eq!(tool["description"], "Find a pet");
    assert_eq!(
        tool["http"],
        json!({"method": "GET", "path": "/pets/{petId}", "query": ["limit", "tags"], "headers": ["X-Trace"]})
    );
    let schema = &tool["inputSchema"];
    assert_eq!(
        schema["properties"]["petId"],
        json!({"type": "string", "description": "Which pet"})
    );
    assert_eq!(schema["properties"]["limit"], json!({"type": "integer"}));
    assert_eq!(schema["required"], json!(["petId", "X-Trace"]));
    assert_eq!(schema["additionalProperties"], json!(false));
    assert!(
        schema["properties"].get("Accept").is_none(),
        "OpenAPI ignores an Accept parameter"
    );
    assert_eq!(tool["annotations"]["readOnlyHint"], json!(true));
}

#[test]
fn an_object_body_is_merged_without_read_only_properties() {
    let tool = only_tool(json!({
        "/pets": {"post": {
            "operationId": "addPet",
            "requestBody": {"required": true, "content": {
                "application/xml": {"schema": {"type": "string"}},
                "application/json": {"schema": {"$ref": "#/components/schemas/Pet"}},
            }},
        }},
    }));
    let schema = &tool["inputSchema"];
    assert_eq!(
        schema["properties"],
        json!({"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}})
    );
    assert_eq!(schema["required"], json!(["name"]));
    assert!(
        schema.get("additionalProperties").is_none(),
        "the body's schema allows more"
    );
    assert!(tool["http"].get("body").is_none());
}

#[test]
fn an_optional_body_makes_no_property_required_and_a_non_object_body_is_one_argument() {
    let optional = only_tool(json!({
        "/pets": {"put": {"operationId": "put", "requestBody": {"content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}}},
    }));
    assert!(optional["inputSchema"].get("required").is_none());
    let array = only_tool(json!({
        "/pets": {"post": {"operationId": "many", "requestBody": {"required": true, "content": {
            "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}}}}}}},
    }));
    assert_eq!(array["http"]["body"], "body");
    assert_eq!(array["inputSchema"]["required"], json!(["body"]));
    assert_eq!(array["inputSchema"]["properties"]["body"]["type"], "array");
}

#[test]
fn what_cannot_be_sent_faithfully_is_skipped_with_its_pointer() {
    let cases = [
        (
            json!({"/a": {"get": {"summary": "no id"}}}),
            "/paths/~1a/get",
            "no operationId",
        ),
        (
            json!({"/a": {"get": {"operationId": "a", "parameters": [{"name": "f", "in": "query", "style": "deepObject", "schema": {"type": "object"}}]}}}),
            "/paths/~1a/get/parameters/0",
            "style \"deepObject\" is not supported",
        ),
        (
            json!({"/a": {"get": {"operationId": "a", "parameters": [{"name": "ids", "in": "query", "explode": false, "schema": {"type": "array"}}]}}}),
            "/paths/~1a/get/parameters/0",
            "explode: false",
        ),
        (
            json!({"/a": {"get": {"operationId": "a", "parameters": [{"name": "s", "in": "cookie", "schema": {"type": "string"}}]}}}),
            "/paths/~1a/get/parameters/0",
            "cookie parameter",
        ),
        (
            json!({"/a": {"post": {"operationId": "a", "requestBody": {"content": {"multipart/form-data": {"schema": {"type": "object"}}}}}}}),
            "/paths/~1a/post/requestBody/content",
            "no JSON media type among [\"multipart/form-data\"]",
        ),
        (
            json!({"/a": {"post": {"operationId": "a", "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}}}}),
            "/paths/~1a/post/requestBody/content/application~1json/schema",
            "refers back to itself",
        ),
        (
            json!({"/a": {"get": {"operationId": "a", "parameters": [{"$ref": "#/components/parameters/Gone"}]}}}),
            "/paths/~1a/get/parameters/0",
            "points at nothing",
        ),
        (
            json!({"/a/{id}": {"get": {"operationId": "a", "parameters": [{"name": "id", "in": "query", "schema": {"type": "string"}}]}}}),
            "/paths/~1a~1{id}/get",
            "path parameter {id} is not declared",
        ),
        (
            json!({"/a/{id}": {"post": {"operationId": "a",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/json": {"schema": {"properties": {"id": {"type": "string"}}}}}}}}}),
            "/paths/~1a~1{id}/post/requestBody/content/application~1json/schema/properties/id",
            "argument \"id\" is defined twice (also at /paths/~1a~1{id}/post/parameters/0)",
        ),
    ];
    for (paths, pointer, needle) in cases {
        let skipped = only_skip(paths);
        assert_eq!(skipped.pointer, pointer, "{skipped:?}");
        assert!(
            skipped.message.contains(needle),
            "{:?} lacks {needle:?}",
            skipped.message
        );
    }
}

#[test]
fn operation_ids_become_tool_names_and_clashes_are_reported() {
    assert_eq!(tool_name("repos/list-for-user"), "repos_list-for-user");
    assert_eq!(tool_name("a...b"), "a__b", "never the `___` separator");
    assert_eq!(tool_name(&"x".repeat(300)).len(), 128);
    let (tools, skipped) = operations(
        &doc(json!({"/a": {"get": {"operationId": "get.a"}, "put": {"operationId": "get/a"}}})),
        None,
    );
    assert_eq!(tools.len(), 1);
    assert_eq!(skipped[0].pointer, "/paths/~1a/put/operationId");
    assert!(
        skipped[0]
            .message
            .contains("already taken by the operation at /paths/~1a/get")
    );
}

#[test]
fn the_allow_list_limits_the_tools() {
    let allow: BTreeSet<&str> = ["b"].into();
    let (tools, skipped) = operations(
        &doc(json!({"/a": {"get": {"operationId": "a"}}, "/b": {"get": {"operationId": "b"}}})),
        Some(&allow),
    );
    assert!(skipped.is_empty());
    assert_eq!(
        tools
            .iter()
            .map(|t| t.operation_id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
}

#[test]
fn openapi_3_0_schemas_become_json_schema() {
    let mut schema = json!({
        "type": "object",
        "properties": {
            "n": {"type": "integer", "nullable": true, "minimum": 0, "exclusiveMinimum": true},
            "m": {"type": "number", "maximum": 5, "exclusiveMaximum": false},
        },
    });
    from_openapi_3_0(&mut schema);
    assert_eq!(
        schema["properties"],
        json!({
            "n": {"type": ["integer", "null"], "exclusiveMinimum": 0},
            "m": {"type": "number", "maximum": 5},
        })
    );
}

#[test]
fn the_swagger_petstore_maps_every_json_operation() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openapi/petstore.yaml");
    let doc = document::read(&path).unwrap();
    assert!(doc.is_3_0);
    let (tools, skipped) = operations(&doc, None);
    let names: Vec<&str> = tools.iter().map(|t| t.operation_id.as_str()).collect();
    assert_eq!(names.len(), 17, "{names:?}");
    for name in [
        "addPet",
        "findPetsByStatus",
        "getPetById",
        "deletePet",
        "createUsersWithArrayInput",
        "loginUser",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let skipped: Vec<(&str, &str)> = skipped
        .iter()
        .map(|s| (s.pointer.as_str(), s.message.as_str()))
        .collect();
    // A form body, a multipart upload, and `username` both in the path and in the JSON body
    // (DESIGN 2.8: a clash is an error of that operation).
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(
        skipped[0]
            .0
            .starts_with("/paths/~1pet~1{petId}/post/requestBody"),
        "{skipped:?}"
    );
    assert!(
        skipped[0].1.contains("application/x-www-form-urlencoded"),
        "{skipped:?}"
    );
    assert!(
        skipped[1]
            .0
            .starts_with("/paths/~1pet~1{petId}~1uploadImage/post/requestBody"),
        "{skipped:?}"
    );
    assert!(
        skipped[2]
            .0
            .starts_with("/paths/~1user~1{username}/put/requestBody"),
        "{skipped:?}"
    );
    assert!(
        skipped[2].1.contains("\"username\" is defined twice"),
        "{skipped:?}"
    );
    for tool in &tools {
        let schema = tool.tool["inputSchema"].clone();
        assert!(
            jsonschema::validator_for(&schema).is_ok(),
            "{}: {schema}",
            tool.operation_id
        );
    }
}
