#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Several gateway replicas on one PostgreSQL database behind a round-robin proxy (DESIGN
//! 2.9): any replica serves any step of a flow. A real throwaway PostgreSQL cluster (the one
//! the store's own tests use), the real inbound IdP and a second real authorization server as
//! the downstream provider (rotating refresh tokens), rmcp clients and a scripted browser.

#[path = "../src/vault/postgres_store/test_cluster.rs"]
#[allow(dead_code)]
mod pg_cluster;

mod support {
    pub mod browser;
    pub mod downstream;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
    pub mod proxy;
}

use std::collections::BTreeSet;
use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::model::ClientConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use support::browser::Browser;
use support::downstream::{
    API_RESOURCE, Api, Client, OauthConfig, acct_target, call, start_api, text_of,
};
use support::gateway::TestGateway;
use support::idp::Idp;
use support::proxy::{self, Proxy};

/// Three replicas sharing one database and one vault key, behind [`Proxy`] (their
/// `public_url`).
struct Replicas {
    inbound: Idp,
    downstream: Idp,
    api: Api,
    gateways: Vec<TestGateway>,
    proxy: Proxy,
    _cluster: Arc<pg_cluster::Cluster>,
    _api_task: tokio::task::JoinHandle<()>,
}

const VAULT: &str =
    "[vault]\nbackend = \"postgres\"\nurl_file = \"database.url\"\nkey_file = \"vault.key\"\n";

async fn replicas(count: usize) -> Replicas {
    let cluster = tokio::task::spawn_blocking(pg_cluster::shared)
        .await
        .unwrap();
    replicas_on(cluster, count).await
}

/// A target whose tool needs no credential (the API's `/ping`).
fn open_target(api_url: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "open", "http": {"baseUrl": api_url},
        "tools": [{"name": "ping", "inputSchema": {"type": "object"}, "http": {"method": "GET", "path": "/ping"}}]
    })
}

async fn replicas_on(cluster: Arc<pg_cluster::Cluster>, count: usize) -> Replicas {
    let database = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.database())
            .await
            .unwrap()
    };
    let url = cluster.url_text(&database);
    let inbound = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    let (api, api_url, api_task) = start_api(&downstream).await;
    let (listener, public_url) = proxy::bind().await;
    let config = OauthConfig::new(&downstream, "login", "", "", VAULT);
    let mut gateways = Vec::with_capacity(count);
    for _ in 0..count {
        let setup = config.setup(
            vec![
                ("acct.json", acct_target(&api_url, Some(API_RESOURCE))),
                ("open.json", open_target(&api_url)),
            ],
            vec![("database.url", url.clone())],
        );
        gateways.push(TestGateway::start_behind(&inbound, &public_url, setup).await);
    }
    let addresses = gateways
        .iter()
        .map(|g| g.base.trim_start_matches("http://").to_string())
        .collect();
    Replicas {
        inbound,
        downstream,
        api,
        gateways,
        proxy: Proxy::start(listener, addresses),
        _cluster: cluster,
        _api_task: api_task,
    }
}

impl Replicas {
    /// `user`'s MCP client connected straight to replica `index` (its token is for the public
    /// URL, as every replica's is).
    async fn client(&self, index: usize, user: &str) -> Client {
        let token = self
            .inbound
            .user_token(user, "mcp", &format!("{}/mcp", self.proxy.base))
            .await;
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(self.gateways[index].mcp_url())
                .auth_header(token),
        );
        ClientConfig::default().serve(transport).await.unwrap()
    }

    fn browser(&self, user: &str, account: &str) -> Browser {
        Browser::new()
            .account(&self.inbound.issuer, user)
            .account(&self.downstream.issuer, account)
    }

    /// The consent URL (on the public URL) in a call's `isError` result.
    fn consent_url(&self, result: &rmcp::model::CallToolResult) -> String {
        assert_eq!(result.is_error, Some(true), "{}", text_of(result));
        let text = text_of(result);
        let start = text
            .find(&format!("{}/oauth2/connect/", self.proxy.base))
            .unwrap_or_else(|| panic!("no consent URL on the public URL in {text}"));
        text[start..].split_whitespace().next().unwrap().to_string()
    }

    /// Alice links `alice-gh`: consent started by a call on replica 0, the browser's steps
    /// through the proxy.
    async fn link_alice(&self) {
        let alice = self.client(0, "alice").await;
        let url = self.consent_url(&call(&alice, "acct___me").await);
        let page = self.browser("alice", "alice-gh").get(&url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        alice.cancel().await.unwrap();
    }

    /// A `/metrics` counter (`name{labels}`), for all replicas at once: the replicas of one
    /// test process share its metrics registry, so any replica's `/metrics` counts all three.
    async fn counter(&self, series: &str) -> u64 {
        let metrics = reqwest::get(format!("{}/metrics", self.gateways[0].base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series))
            .map_or(0, |value| value.trim().parse::<u64>().unwrap())
    }
}

/// What a request of the browser's consent walk was, by its path.
fn step_name(path: &str) -> &'static str {
    if path.starts_with("/oauth2/connect/") {
        "connect page"
    } else if path.starts_with("/oauth2/login/callback") {
        "sign-in callback"
    } else if path.starts_with("/oauth2/callback") {
        "provider callback"
    } else {
        "other"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_started_on_one_replica_is_finished_across_the_others_and_every_replica_serves_the_link()
 {
    let world = replicas(3).await;
    world.link_alice().await;

    // Round robin per request: each step of the browser's walk (connect page, sign-in
    // callback, connect page again, provider callback) reached another replica than the one
    // before it, so no step found its state in the memory of the process that made it.
    let steps: Vec<(String, usize)> = world.proxy.served.lock().clone();
    let names: Vec<&str> = steps.iter().map(|(path, _)| step_name(path)).collect();
    assert_eq!(
        names,
        [
            "connect page",
            "sign-in callback",
            "connect page",
            "provider callback"
        ],
        "{steps:?}"
    );
    for pair in steps.windows(2) {
        assert_ne!(pair[0].1, pair[1].1, "{steps:?}");
    }
    let all: BTreeSet<usize> = steps.iter().map(|(_, r)| *r).collect();
    assert_eq!(all, BTreeSet::from([0, 1, 2]), "{steps:?}");

    // The retried call succeeds on each replica, with alice's own provider account.
    for index in 0..3 {
        let alice = world.client(index, "alice").await;
        let result = call(&alice, "acct___me").await;
        assert_ne!(
            result.is_error,
            Some(true),
            "replica {index}: {}",
            text_of(&result)
        );
        assert!(
            text_of(&result).contains("alice-gh"),
            "{}",
            text_of(&result)
        );
        alice.cancel().await.unwrap();
    }
    let seen = world.api.seen.lock().await;
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(sub, _)| sub == "alice-gh"), "{seen:?}");
    drop(seen);

    // Bob, on another replica, gets his own consent, not alice's link.
    let bob = world.client(2, "bob").await;
    let url = world.consent_url(&call(&bob, "acct___me").await);
    assert!(url.starts_with(&world.proxy.base));
    bob.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_refreshes_once_under_200_concurrent_calls_spread_over_three_replicas() {
    let world = replicas(3).await;
    world.link_alice().await;

    // Age the stored access token past its expiry (the refresh token stays valid).
    let store = world.gateways[0]
        .state
        .identity
        .as_ref()
        .unwrap()
        .store()
        .clone();
    let (key, _) = store.list_tokens(None).await.unwrap().remove(0);
    let mut record = store.get_token(&key).await.unwrap().unwrap();
    let old_access = record.access_token.expose().to_string();
    record.expires_at = Some(1);
    store.put_token(&key, &record).await.unwrap();
    world.api.seen.lock().await.clear();

    let mut clients = Vec::new();
    for index in 0..3 {
        clients.push(Arc::new(world.client(index, "alice").await));
    }
    let calls = (0..200).map(|i| {
        let client = clients[i % 3].clone();
        tokio::spawn(async move { call(&client, "acct___me").await })
    });
    for result in futures::future::join_all(calls).await {
        let result = result.unwrap();
        assert_ne!(
            result.is_error,
            Some(true),
            "nobody is logged out: {}",
            text_of(&result)
        );
    }
    let seen = world.api.seen.lock().await;
    let tokens: BTreeSet<&String> = seen.iter().map(|(_, t)| t).collect();
    assert_eq!(seen.len(), 200);
    assert_eq!(
        tokens.len(),
        1,
        "every call on every replica used the one new token"
    );
    assert!(!tokens.contains(&old_access));
    drop(seen);
    let ok = "portcullis_token_refresh_total{provider=\"downstream\",outcome=\"ok\"}";
    let refused =
        "portcullis_token_refresh_total{provider=\"downstream\",outcome=\"invalid_grant\"}";
    assert_eq!(
        world.counter(ok).await,
        1,
        "exactly one refresh among the replicas"
    );
    assert_eq!(
        world.counter(refused).await,
        0,
        "no replica spent a rotated refresh token"
    );
    for client in clients {
        Arc::into_inner(client).unwrap().cancel().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_only_the_calls_that_need_it_and_the_replicas_recover_by_themselves()
 {
    // A private cluster: this test stops its server.
    let cluster = Arc::new(
        tokio::task::spawn_blocking(pg_cluster::Cluster::start)
            .await
            .unwrap(),
    );
    let world = replicas_on(cluster.clone(), 2).await;
    world.link_alice().await;
    let alice = world.client(1, "alice").await;
    let ready = |index: usize| {
        let url = format!("{}/readyz", world.gateways[index].base);
        async move { reqwest::get(url).await.unwrap().status().as_u16() }
    };
    assert_eq!(ready(1).await, 200);

    let stopping = cluster.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .unwrap();
    let result = call(&alice, "acct___me").await;
    assert_eq!(result.is_error, Some(true), "{}", text_of(&result));
    let text = text_of(&result);
    assert!(
        text.contains("credential store is unavailable") && text.contains("Nothing was run"),
        "{text}"
    );
    // The store's whereabouts are for the operator's log, not the caller.
    assert!(
        !text.contains("127.0.0.1") && !text.contains(&cluster.port().to_string()),
        "{text}"
    );
    assert!(!text.contains(pg_cluster::PASSWORD), "{text}");
    let ping = call(&alice, "open___ping").await;
    assert_ne!(
        ping.is_error,
        Some(true),
        "a tool without a credential still works: {}",
        text_of(&ping)
    );
    assert_eq!(ready(1).await, 503, "readiness includes the database");

    let starting = cluster.clone();
    tokio::task::spawn_blocking(move || starting.restart())
        .await
        .unwrap();
    // No gateway restart: the pools replace their dead connections.
    let result = call(&alice, "acct___me").await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    assert!(text_of(&result).contains("alice-gh"));
    assert_eq!(ready(1).await, 200);
    assert_eq!(ready(0).await, 200);
    alice.cancel().await.unwrap();
}
