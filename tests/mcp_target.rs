#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `mcp` targets end to end (DESIGN 2.8): a real upstream MCP server (rmcp's Streamable HTTP
//! server, `support/upstream_mcp.rs`), the real gateway, rmcp's client, a real IdP. These
//! tests need no downstream credential; per-user credentials are in `mcp_target_users.rs`.

mod support {
    pub mod binary;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
    pub mod upstream_mcp;
}

/// A client that reports each `notifications/tools/list_changed` on a channel.
#[derive(Clone)]
struct Listener {
    changed: mpsc::UnboundedSender<()>,
}

impl ClientHandler for Listener {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.changed.send(());
    }

    fn get_info(&self) -> ListenerConfig {
        ListenerConfig::default()
    }
}

use rmcp::ServiceExt;
use rmcp::model::ClientConfig;
use rmcp::service::{NotificationContext, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, model::ClientConfig as ListenerConfig};
use serde_json::{Value, json};
use support::gateway::{Setup, TestGateway, write_json};
use support::idp::Idp;
use support::mcp::{call, text_of};
use support::upstream_mcp::Upstream;
use tokio::sync::mpsc;

struct World {
    idp: Idp,
    upstream: Upstream,
    gateway: TestGateway,
    client: RunningService<RoleClient, ClientConfig>,
}

async fn world(section: Value) -> World {
    let idp = Idp::start().await;
    let upstream = Upstream::start(None).await;
    let mut mcp = json!({"url": upstream.url});
    if let Value::Object(extra) = section {
        for (key, value) in extra {
            mcp[key] = value;
        }
    }
    let gateway = TestGateway::start(
        &idp,
        Setup {
            targets: vec![("up.json", json!({"name": "up", "mcp": mcp}))],
            ..Setup::default()
        },
    )
    .await;
    let client = client(&idp, &gateway).await;
    World {
        idp,
        upstream,
        gateway,
        client,
    }
}

impl World {
    /// A client of the gateway with its own handler of the gateway's notifications.
    async fn connect<H: ClientHandler>(&self, handler: H) -> RunningService<RoleClient, H> {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.gateway.mcp_url())
                .auth_header(self.gateway.token(&self.idp).await),
        );
        handler.serve(transport).await.unwrap()
    }
}

/// Every tool name the gateway lists to `client`.
async fn tool_names<H: ClientHandler>(client: &RunningService<RoleClient, H>) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

async fn client(idp: &Idp, gateway: &TestGateway) -> RunningService<RoleClient, ClientConfig> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url())
            .auth_header(gateway.token(idp).await),
    );
    ClientConfig::default().serve(transport).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_discovered_over_every_page_with_their_schemas() {
    let world = world(json!({})).await;
    let tools = world.client.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort();
    // Seven upstream tools over four pages; "bad name!" cannot be prefixed and is skipped.
    assert_eq!(
        names,
        [
            "up___ask",
            "up___boom",
            "up___fail",
            "up___hang",
            "up___progress",
            "up___whoami"
        ]
    );
    let whoami = tools.iter().find(|t| t.name == "up___whoami").unwrap();
    assert_eq!(
        whoami.description.as_deref(),
        Some("Who the server thinks is calling, and on which session.")
    );
    assert_eq!(
        whoami.output_schema.as_ref().unwrap()["properties"]["sub"]["type"],
        json!(["string", "null"])
    );
    let fail = tools.iter().find(|t| t.name == "up___fail").unwrap();
    assert_eq!(fail.input_schema["required"], json!(["why"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_pass_through_unchanged_and_errors_name_the_server() {
    let world = world(json!({})).await;
    let ok = call(&world.client, "up___whoami", json!({})).await;
    assert_eq!(ok.is_error, Some(false));
    let structured = ok.structured_content.unwrap();
    assert_eq!(structured["sub"], Value::Null, "no credential was sent");
    assert!(structured["session"].is_string(), "{structured}");

    let failed = call(&world.client, "up___fail", json!({"why": "because"})).await;
    assert_eq!(failed.is_error, Some(true));
    assert_eq!(text_of(&failed), "it failed");
    assert_eq!(
        failed.structured_content,
        Some(json!({"why": "because", "code": 17}))
    );

    let boom = call(&world.client, "up___boom", json!({})).await;
    assert_eq!(boom.is_error, Some(true));
    let text = text_of(&boom);
    assert!(text.contains(&world.upstream.url), "{text}");
    assert!(
        text.contains("JSON-RPC error -32603: the upstream exploded"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_are_checked_before_anything_reaches_the_server() {
    let world = world(json!({})).await;
    let before = world.upstream.seen.lock().await.len();
    let result = call(&world.client, "up___fail", json!({"why": 3})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text_of(&result).contains("/why: type"),
        "{}",
        text_of(&result)
    );
    assert_eq!(world.upstream.seen.lock().await.len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_callers_calls_share_one_upstream_session() {
    let world = world(json!({})).await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let result = call(&world.client, "up___whoami", json!({})).await;
        sessions.push(result.structured_content.unwrap()["session"].clone());
    }
    assert_eq!(sessions[0], sessions[1]);
    assert_eq!(sessions[1], sessions[2]);
    // Discovery's session, the one the gateway keeps to hear the server's list_changed, and
    // the caller's: no session per call.
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        world.upstream.sessions_initialised(3),
    )
    .await
    .expect("fewer than three sessions");
    assert_eq!(world.upstream.sessions().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_outlives_timeout_ms_is_a_tool_error() {
    let world = world(json!({"timeoutMs": 300})).await;
    let result = call(&world.client, "up___hang", json!({})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text_of(&result).contains("within 300 ms"),
        "{}",
        text_of(&result)
    );
    // The session still serves the next call.
    let ok = call(&world.client, "up___whoami", json!({})).await;
    assert_eq!(ok.is_error, Some(false), "{}", text_of(&ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_the_file_and_reload_keeps_the_last_good_tools() {
    let world = world(json!({})).await;
    // Point the file at a server that is gone: the reload fails, the old tools stay.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/mcp", dead.local_addr().unwrap());
    drop(dead);
    write_json(
        &world.gateway.targets_dir(),
        "up.json",
        &json!({"name": "up", "mcp": {"url": dead_url}}),
    );
    world.gateway.state.reload_catalog().await;
    let names: Vec<String> = world
        .client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(names.contains(&"up___whoami".to_string()), "{names:?}");

    // A gateway starting with the dead server has no tools from it, and says why.
    let (catalog, problems) = portcullis::load_catalog(
        &world.gateway.state.config,
        &portcullis::catalog::Catalog::default(),
        &world.gateway.state.transport,
    )
    .await;
    assert!(catalog.is_empty());
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("up.json at /mcp: tools/list of") && p.contains(&dead_url)),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_gone_at_call_time_is_a_tool_error_naming_it() {
    let world = world(json!({"timeoutMs": 5000})).await;
    let World {
        idp,
        upstream,
        gateway,
        client,
    } = world;
    let url = upstream.url.clone();
    drop(upstream);
    let result = call(&client, "up___whoami", json!({})).await;
    assert_eq!(result.is_error, Some(true));
    let text = text_of(&result);
    assert!(
        text.contains("could not be reached") && text.contains(&url),
        "{text}"
    );
    drop((idp, gateway));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_a_skipped_upstream_tool_with_its_place() {
    let world = world(json!({})).await;
    let (_, problems) = portcullis::load_catalog(
        &world.gateway.state.config,
        &portcullis::catalog::Catalog::default(),
        &world.gateway.state.transport,
    )
    .await;
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("up.json at tools/list/4"),
        "{problems:?}"
    );
    assert!(problems[0].contains("skipped"), "{problems:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_tools_are_listed_again_and_sessions_are_told() {
    let world = world(json!({"refreshSeconds": 1})).await;
    let (changed, mut changes) = mpsc::unbounded_channel();
    let listener = world.connect(Listener { changed }).await;
    world.upstream.add_tool("fresh").await;
    // Event-driven: the gateway announces the change once its refresh found it. The bound
    // only turns a hang into a failure.
    tokio::time::timeout(std::time::Duration::from_secs(30), changes.recv())
        .await
        .expect("no tools/list_changed within 30 s")
        .unwrap();
    let names = tool_names(&listener).await;
    assert!(names.contains(&"up___fresh".to_string()), "{names:?}");
    let result = call(&world.client, "up___whoami", json!({})).await;
    assert_eq!(result.is_error, Some(false), "{}", text_of(&result));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_list_changed_makes_the_gateway_list_again() {
    // No periodic listing within the test: only the server's notification can do it.
    let world = world(json!({"refreshSeconds": 3600})).await;
    let (changed, mut changes) = mpsc::unbounded_channel();
    let listener = world.connect(Listener { changed }).await;
    let bound = std::time::Duration::from_secs(30);
    // Discovery's session, then the one the gateway keeps open to hear the server.
    tokio::time::timeout(bound, world.upstream.sessions_initialised(2))
        .await
        .expect("the gateway opened no watching session");
    world.upstream.add_tool("announced").await;
    assert!(world.upstream.announce_tools_changed().await >= 1);
    tokio::time::timeout(bound, changes.recv())
        .await
        .expect("no tools/list_changed reached the gateway's client")
        .unwrap();
    let names = tool_names(&listener).await;
    assert!(names.contains(&"up___announced".to_string()), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_is_cancelled_at_the_upstream_too() {
    let world = world(json!({})).await;
    let bound = std::time::Duration::from_secs(30);
    let request = rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(
        rmcp::model::CallToolRequestParams::new("up___hang"),
    ));
    let handle = world
        .client
        .send_cancellable_request(request, rmcp::service::PeerRequestOptions::no_options())
        .await
        .unwrap();
    tokio::time::timeout(bound, world.upstream.hang.started.reached(1))
        .await
        .expect("the call never reached the upstream");
    handle
        .cancel(Some("the user gave up".into()))
        .await
        .unwrap();
    tokio::time::timeout(bound, world.upstream.hang.cancelled.reached(1))
        .await
        .expect("the upstream never heard the cancellation");
    // The session serves the next call.
    let ok = call(&world.client, "up___whoami", json!({})).await;
    assert_eq!(ok.is_error, Some(false), "{}", text_of(&ok));
}

/// A client that keeps every `notifications/progress` it hears.
#[derive(Clone)]
struct ProgressListener {
    heard: mpsc::UnboundedSender<rmcp::model::ProgressNotificationParam>,
}

impl ClientHandler for ProgressListener {
    async fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.heard.send(params);
    }

    fn get_info(&self) -> ListenerConfig {
        ListenerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_progress_reaches_the_client_that_asked_for_it() {
    let world = world(json!({})).await;
    let (heard, mut progress) = mpsc::unbounded_channel();
    let client = world.connect(ProgressListener { heard }).await;
    // rmcp's client gives the request its progress token; the gateway must answer under it.
    let request = rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(
        rmcp::model::CallToolRequestParams::new("up___progress"),
    ));
    let handle = client
        .send_cancellable_request(request, rmcp::service::PeerRequestOptions::no_options())
        .await
        .unwrap();
    let mine = handle.progress_token.clone();
    let rmcp::model::ServerResult::CallToolResult(result) = handle.await_response().await.unwrap()
    else {
        panic!("not a tools/call result")
    };
    assert_eq!(result.is_error, Some(false), "{}", text_of(&result));
    // The upstream was asked for progress (under a token of the gateway's session).
    assert!(!result.structured_content.unwrap()["token"].is_null());
    // The reports under the client's token, increasing, ending with the last step (rmcp's
    // client hands each notification to its handler in a task of its own, so the order in
    // which this handler hears them is not the order on the wire).
    let bound = std::time::Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.contains(&3.0) {
        let report = tokio::time::timeout(bound, progress.recv())
            .await
            .expect("the last progress report never came")
            .unwrap();
        assert_eq!(report.progress_token, mine);
        assert_eq!(report.total, Some(3.0));
        assert_eq!(
            report.message.as_deref(),
            Some(format!("step {}", report.progress).as_str())
        );
        assert!(!seen.contains(&report.progress), "a report twice: {seen:?}");
        seen.push(report.progress);
    }
}

/// A client that answers every form question with a colour.
#[derive(Clone)]
struct Answering;

impl ClientHandler for Answering {
    fn get_info(&self) -> ListenerConfig {
        let mut info = ListenerConfig::default();
        info.capabilities.elicitation = Some(
            rmcp::model::ElicitationCapability::new()
                .with_form(rmcp::model::FormElicitationCapability::default()),
        );
        info
    }

    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        let rmcp::model::ElicitRequestParams::FormElicitationParams { message, .. } = request
        else {
            panic!("a form question was expected");
        };
        assert_eq!(message, "Which colour?");
        Ok(
            rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept)
                .with_content(json!({"colour": "teal"})),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_question_reaches_a_client_that_can_answer_and_is_declined_for_one_that_cannot()
{
    let world = world(json!({})).await;
    let answering = world.connect(Answering).await;
    let result = answering
        .call_tool(rmcp::model::CallToolRequestParams::new("up___ask"))
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    assert_eq!(
        result.structured_content.unwrap(),
        json!({"action": "accept", "content": {"colour": "teal"}})
    );

    // The default client declared no elicitation: the server hears a decline, nobody is asked.
    let result = call(&world.client, "up___ask", json!({})).await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    assert_eq!(
        result.structured_content.unwrap(),
        json!({"action": "decline"})
    );
}
