#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Dropping, editing and deleting target files changes the catalog live, and sessions hear
//! about it through `notifications/tools/list_changed`.

mod support {
    pub mod backend;
    pub mod gateway;
    pub mod idp;
}

use std::time::Duration;

use rmcp::ClientHandler;
use rmcp::ServiceExt;
use rmcp::model::ClientConfig;
use rmcp::service::{NotificationContext, RoleClient};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use support::backend::Backend;
use support::gateway::{Setup, TestGateway, write_json};
use support::idp::Idp;
use tokio::sync::mpsc;

/// A client that reports each list-changed notification on a channel.
#[derive(Clone)]
struct Listener {
    changed: mpsc::UnboundedSender<()>,
}

impl ClientHandler for Listener {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.changed.send(());
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::default()
    }
}

type Client = rmcp::service::RunningService<RoleClient, Listener>;

async fn names(client: &Client) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

/// Waits for list-changed notifications until the listed tools satisfy `done` (an editor's
/// save can arrive as more than one burst). The bound only turns a hang into a failure.
async fn after_changes(
    client: &Client,
    changes: &mut mpsc::UnboundedReceiver<()>,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    loop {
        tokio::time::timeout(Duration::from_secs(20), changes.recv())
            .await
            .expect("no tools/list_changed notification within 20 s")
            .expect("client closed");
        let listed = names(client).await;
        if done(&listed) {
            return listed;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_files_reload_live_and_sessions_are_notified() {
    let idp = Idp::start().await;
    let backend = Backend::start().await;
    let gateway = TestGateway::start(
        &idp,
        Setup {
            targets: vec![("shop.json", backend.target("shop"))],
            watch: true,
            ..Setup::default()
        },
    )
    .await;
    let (tx, mut changes) = mpsc::unbounded_channel();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url())
            .auth_header(gateway.token(&idp).await),
    );
    let client = Listener { changed: tx }.serve(transport).await.unwrap();
    assert!(
        !names(&client)
            .await
            .iter()
            .any(|n| n.starts_with("store___"))
    );

    // A new file appears.
    write_json(
        &gateway.targets_dir(),
        "store.json",
        &backend.target("store"),
    );
    after_changes(&client, &mut changes, |l| {
        l.iter().any(|n| n == "store___echo")
    })
    .await;

    // A half-saved edit while a new tool is added elsewhere: the store keeps its last good
    // version, the other file's change still lands.
    std::fs::write(gateway.targets_dir().join("store.json"), "{ \"name\": ").unwrap();
    let mut shop = backend.target("shop");
    let mut extra = shop["tools"][0].clone();
    extra["name"] = serde_json::json!("echo_again");
    shop["tools"].as_array_mut().unwrap().push(extra);
    write_json(&gateway.targets_dir(), "shop.json", &shop);
    let listed = after_changes(&client, &mut changes, |l| {
        l.iter().any(|n| n == "shop___echo_again")
    })
    .await;
    assert!(
        listed.contains(&"store___echo".to_string()),
        "last good version kept: {listed:?}"
    );
    assert_eq!(
        gateway.state.catalog.load().target_count(),
        2,
        "both targets still served"
    );

    // The file is removed: its tools go away.
    std::fs::remove_file(gateway.targets_dir().join("store.json")).unwrap();
    let listed = after_changes(&client, &mut changes, |l| {
        !l.iter().any(|n| n.starts_with("store___"))
    })
    .await;
    assert!(listed.contains(&"shop___echo".to_string()));
    client.cancel().await.unwrap();
}
