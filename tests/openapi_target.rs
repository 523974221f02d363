#![allow(clippy::unwrap_used, clippy::expect_used)]
//! OpenAPI targets end to end (DESIGN 2.8): the vendored Swagger Petstore document
//! (`tests/fixtures/openapi/`), a real recording HTTP server, the real gateway and rmcp's
//! client. Each test asserts what the server actually received.

mod support {
    pub mod binary;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use rmcp::ServiceExt;
use rmcp::model::{CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use support::binary::run;
use support::gateway::{Setup, TestGateway, write_json};
use support::idp::Idp;
use support::mcp::{call, text_of};
use tokio::sync::Mutex;

const PETSTORE: &str = include_str!("fixtures/openapi/petstore.yaml");

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Option<Value>,
}

/// An HTTP server that records every request and answers with a JSON echo of it.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(seen): State<Arc<Mutex<Vec<Received>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::Json<Value> {
    let body = (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap());
    seen.lock().await.push(Received {
        method: method.clone(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body: body.clone(),
    });
    axum::Json(json!({"method": method.as_str(), "path": uri.path(), "body": body}))
}

impl Recorder {
    async fn start() -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(record).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Recorder { url, seen, task }
    }

    async fn only(&self) -> Received {
        let seen = self.seen.lock().await;
        assert_eq!(seen.len(), 1, "{seen:?}");
        seen[0].clone()
    }
}

struct World {
    _idp: Idp,
    server: Recorder,
    gateway: TestGateway,
    client: RunningService<RoleClient, ClientConfig>,
}

fn petstore_target(base: &str, extra: Value) -> Value {
    let mut target = json!({
        "name": "pets",
        "openapi": {"specFile": "specs/petstore.yaml", "baseUrl": format!("{base}/v2")},
    });
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            target["openapi"][key] = value;
        }
    }
    target
}

async fn world(extra: Value) -> World {
    world_with(extra, None).await
}

/// The key `[api_keys.petstore]` holds in [`world_with`]'s gateway.
const PETSTORE_KEY: &str = "pk-live-7d1e";

/// With `credentials`, the target file carries them and the gateway has the `petstore` key.
async fn world_with(extra: Value, credentials: Option<Value>) -> World {
    let idp = Idp::start().await;
    let server = Recorder::start().await;
    let mut target = petstore_target(&server.url, extra);
    let mut files = vec![("targets/specs/petstore.yaml", PETSTORE.to_string())];
    let mut extra = "";
    if let Some(credentials) = credentials {
        target["credentials"] = credentials;
        files.push(("petstore.key", PETSTORE_KEY.to_string()));
        // Credentials need the identity part, and so a vault (32 bytes, base64).
        files.push((
            "vault.key",
            "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE=".to_string(),
        ));
        extra = "[vault]\npath = \"vault\"\nkey_file = \"vault.key\"\n\
                 [api_keys.petstore]\nkey_file = \"petstore.key\"\n";
    }
    let gateway = TestGateway::start(
        &idp,
        Setup {
            targets: vec![("pets.json", target)],
            files,
            extra,
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
        server,
        gateway,
        client,
    }
}

impl World {
    async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        let result = call(&self.client, &format!("pets___{tool}"), args).await;
        assert_ne!(result.is_error, Some(true), "{tool}: {}", text_of(&result));
        result
    }

    async fn tool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .client
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        names.sort();
        names
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mappable_petstore_operation_is_a_tool_with_its_schema() {
    let world = world(json!({})).await;
    let names = world.tool_names().await;
    assert_eq!(names.len(), 17, "{names:?}");
    assert!(names.contains(&"pets___findPetsByStatus".to_string()));
    // A form body, a multipart upload and a path / body name clash are skipped, not guessed.
    for skipped in ["updatePetWithForm", "uploadFile", "updateUser"] {
        assert!(!names.contains(&format!("pets___{skipped}")), "{skipped}");
    }
    let tools = world.client.list_all_tools().await.unwrap();
    let add = tools.iter().find(|t| t.name == "pets___addPet").unwrap();
    assert_eq!(
        add.description.as_deref(),
        Some("Add a new pet to the store")
    );
    assert_eq!(add.input_schema["required"], json!(["name", "photoUrls"]));
    let get = tools
        .iter()
        .find(|t| t.name == "pets___getPetById")
        .unwrap();
    assert_eq!(get.annotations.as_ref().unwrap().read_only_hint, Some(true));
    drop(world.gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_fill_their_segment() {
    let world = world(json!({})).await;
    world.call("getPetById", json!({"petId": 42})).await;
    let got = world.server.only().await;
    assert_eq!((got.method, got.path.as_str()), (Method::GET, "/v2/pet/42"));
    assert_eq!(got.query, None);
    assert_eq!(got.body, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_arrays_repeat_the_parameter_as_form_explode_says() {
    let world = world(json!({})).await;
    world
        .call("findPetsByStatus", json!({"status": ["available", "sold"]}))
        .await;
    let got = world.server.only().await;
    assert_eq!(got.path, "/v2/pet/findByStatus");
    assert_eq!(got.query.as_deref(), Some("status=available&status=sold"));
    // The enum in the document is enforced before anything is sent.
    let refused = call(
        &world.client,
        "pets___findPetsByStatus",
        json!({"status": ["lost"]}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true));
    assert_eq!(world.server.seen.lock().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_parameters_become_headers() {
    let world = world(json!({})).await;
    world
        .call("deletePet", json!({"petId": 7, "api_key": "k-123"}))
        .await;
    let got = world.server.only().await;
    assert_eq!(
        (got.method, got.path.as_str()),
        (Method::DELETE, "/v2/pet/7")
    );
    assert_eq!(got.headers["api_key"], "k-123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_body_is_the_remaining_arguments_and_an_array_body_is_one() {
    let world = world(json!({})).await;
    let pet = json!({"name": "Rex", "photoUrls": ["u"], "status": "available"});
    world.call("addPet", pet.clone()).await;
    let got = world.server.only().await;
    assert_eq!((got.method, got.path.as_str()), (Method::POST, "/v2/pet"));
    assert_eq!(got.body, Some(pet));
    assert_eq!(got.headers["content-type"], "application/json");
    world.server.seen.lock().await.clear();
    let users = json!([{"username": "a"}, {"username": "b"}]);
    world
        .call("createUsersWithArrayInput", json!({"body": users}))
        .await;
    let got = world.server.only().await;
    assert_eq!(got.path, "/v2/user/createWithArray");
    assert_eq!(got.body, Some(users));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_arguments_never_reach_the_api() {
    let world = world(json!({})).await;
    let result = call(&world.client, "pets___addPet", json!({"photoUrls": []})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(text_of(&result).contains("name"), "{}", text_of(&result));
    assert!(world.server.seen.lock().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_keeps_only_the_named_operations() {
    let world = world(json!({"operations": ["getPetById", "loginUser"]})).await;
    assert_eq!(
        world.tool_names().await,
        ["pets___getPetById", "pets___loginUser"]
    );
    world
        .call("loginUser", json!({"username": "u", "password": "p w"}))
        .await;
    let got = world.server.only().await;
    assert_eq!(got.query.as_deref(), Some("username=u&password=p+w"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_goes_where_the_documents_security_scheme_says() {
    // The Petstore document's one usable scheme: `api_key`, an apiKey in the `api_key` header.
    let world = world_with(
        json!({"operations": ["getInventory"]}),
        Some(json!({"apiKey": {"provider": "petstore"}})),
    )
    .await;
    world.call("getInventory", json!({})).await;
    let seen = world.server.only().await;
    assert_eq!(seen.path, "/v2/store/inventory");
    assert_eq!(seen.headers["api_key"], PETSTORE_KEY);
    assert_eq!(seen.query, None);
    assert!(!seen.headers.contains_key("authorization"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_target_file_says_about_the_key_wins_over_the_document() {
    let world = world_with(
        json!({"operations": ["getInventory"]}),
        Some(json!({"apiKey": {
            "provider": "petstore", "location": "QUERY_PARAMETER", "parameterName": "key",
        }})),
    )
    .await;
    world.call("getInventory", json!({})).await;
    let seen = world.server.only().await;
    assert_eq!(
        seen.query.as_deref(),
        Some(format!("key={PETSTORE_KEY}").as_str())
    );
    assert!(!seen.headers.contains_key("api_key"));
}

#[test]
fn a_key_with_nowhere_to_go_is_refused_with_its_pointer() {
    // A document without a usable scheme (only an oauth2 one) cannot stand in for
    // `location` / `parameterName`.
    let spec = json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {"/a": {"get": {"operationId": "a"}}},
        "components": {"securitySchemes": {"oauth": {"type": "oauth2", "flows": {}}}},
    });
    let target = json!({
        "name": "t",
        "openapi": {"specFile": "specs/t.json", "baseUrl": "http://127.0.0.1:9"},
        "credentials": {"apiKey": {"provider": "weather"}},
    });
    let dir = setup_dir(&target, "t.json", &spec.to_string());
    let (code, stderr) = validate(dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "pets.json at /credentials/apiKey: `location` and `parameterName` are required"
        ),
        "{stderr}"
    );
}

fn validate(dir: &Path) -> (i32, String) {
    let (code, _, stderr) = run(&["validate", "--config", "portcullis.toml"], dir);
    (code, stderr)
}

fn setup_dir(target: &Value, spec_name: &str, spec: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("portcullis.toml"),
        "[inbound]\ndiscovery_url = \"https://idp.example.com/.well-known/openid-configuration\"\nallowed_audiences = [\"portcullis\"]\n[targets]\ndir = \"targets\"\n",
    )
    .unwrap();
    write_json(&dir.path().join("targets"), "pets.json", target);
    std::fs::create_dir_all(dir.path().join("targets/specs")).unwrap();
    std::fs::write(dir.path().join("targets/specs").join(spec_name), spec).unwrap();
    dir
}

#[test]
fn validate_names_each_skipped_operation_with_file_and_pointer() {
    let target = petstore_target(
        "http://127.0.0.1:9",
        json!({"operations": ["getPetById", "uploadFile", "noSuchOp"]}),
    );
    let dir = setup_dir(&target, "petstore.yaml", PETSTORE);
    let (code, stderr) = validate(dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("petstore.yaml at /paths/~1pet~1{petId}~1uploadImage/post/requestBody/content: skipped: no JSON media type among [\"multipart/form-data\"]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pets.json at /openapi/operations/2: skipped: the document has no operation \"noSuchOp\""),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");
}

#[test]
fn a_broken_ref_skips_its_operation_and_the_rest_loads() {
    let spec = json!({
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "servers": [{"url": "https://api.example.com/{version}", "variables": {"version": {"default": "v1"}}}],
        "paths": {
            "/a": {"get": {"operationId": "good"}},
            "/b": {"post": {"operationId": "broken", "requestBody": {"$ref": "#/components/requestBodies/Gone"}}},
        },
    });
    let target = json!({"name": "t", "openapi": {"specFile": "specs/t.json"}});
    let dir = setup_dir(&target, "t.json", &spec.to_string());
    let (code, stderr) = validate(dir.path());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("t.json at /paths/~1b/post/requestBody: skipped: $ref \"#/components/requestBodies/Gone\" points at nothing in the document"),
        "{stderr}"
    );
    assert!(stderr.contains("1 problem(s)"), "{stderr}");
}

#[test]
fn a_spec_file_outside_the_targets_folder_or_unreadable_is_refused() {
    for (spec_file, needle) in [
        (
            "../secret.yaml",
            "must be a relative path inside the targets folder",
        ),
        ("specs/missing.yaml", "cannot read the document"),
    ] {
        let target = json!({"name": "t", "openapi": {"specFile": spec_file, "baseUrl": "http://127.0.0.1:9"}});
        let dir = setup_dir(&target, "other.yaml", "openapi: 3.1.0\n");
        let (code, stderr) = validate(dir.path());
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("pets.json at /openapi"), "{stderr}");
        assert!(stderr.contains(needle), "{spec_file}: {stderr}");
    }
}
