//! Several gateway replicas on one PostgreSQL database behind a round-robin [`Proxy`] (DESIGN
//! 2.9): a real throwaway PostgreSQL cluster (the one the store's own tests use), the real
//! inbound IdP, a second real authorization server as the downstream provider (rotating
//! refresh tokens), and the downstream API.
#![allow(dead_code)]

use std::sync::Arc;

use rmcp::ServiceExt;
use rmcp::model::ClientConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::browser::Browser;
use super::downstream::{
    API_RESOURCE, Api, Client, OauthConfig, acct_target, call, start_api, text_of,
};
use super::gateway::TestGateway;
use super::idp::Idp;
use super::proxy::{self, Proxy};

#[path = "../../src/vault/postgres_store/test_cluster.rs"]
pub mod pg_cluster;

/// Three replicas sharing one database and one vault key, behind [`Proxy`] (their
/// `public_url`).
pub struct Replicas {
    pub inbound: Idp,
    pub downstream: Idp,
    pub api: Api,
    pub gateways: Vec<TestGateway>,
    pub proxy: Proxy,
    pub cluster: Arc<pg_cluster::Cluster>,
    /// The replicas' database on `cluster`.
    pub database: String,
    _api_task: tokio::task::JoinHandle<()>,
}

/// The identity API: one access key for the workload `agent`, which may read the API key
/// `weather`.
const IDENTITY_API: &str = "[[identity.workloads]]\nname = \"agent\"\napi_keys = [\"weather\"]\n\
     [[identity.access_keys]]\naccess_key_id = \"AKIDREPLICAS\"\nsecret_access_key_file = \"identity.secret\"\n\
     [api_keys.weather]\nkey_file = \"weather.key\"\n";
pub const ACCESS_KEY_ID: &str = "AKIDREPLICAS";
pub const ACCESS_SECRET: &str = "replicas-signing-secret";
pub const WEATHER_KEY: &str = "wk-weather-replicas";

pub const VAULT: &str =
    "[vault]\nbackend = \"postgres\"\nurl_file = \"database.url\"\nkey_file = \"vault.key\"\n";

pub async fn replicas(count: usize) -> Replicas {
    let cluster = tokio::task::spawn_blocking(pg_cluster::shared)
        .await
        .unwrap();
    replicas_on(cluster, count).await
}

/// A target whose tool needs no credential (the API's `/ping`).
pub fn open_target(api_url: &str) -> serde_json::Value {
    serde_json::json!({
        "name": "open", "http": {"baseUrl": api_url},
        "tools": [{"name": "ping", "inputSchema": {"type": "object"}, "http": {"method": "GET", "path": "/ping"}}]
    })
}

pub async fn replicas_on(cluster: Arc<pg_cluster::Cluster>, count: usize) -> Replicas {
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
    let config = OauthConfig::new(&downstream, "login", "", IDENTITY_API, VAULT);
    let mut gateways = Vec::with_capacity(count);
    for _ in 0..count {
        let setup = config.setup(
            vec![
                ("acct.json", acct_target(&api_url, Some(API_RESOURCE))),
                ("open.json", open_target(&api_url)),
            ],
            vec![
                ("database.url", url.clone()),
                ("identity.secret", ACCESS_SECRET.to_string()),
                ("weather.key", WEATHER_KEY.to_string()),
            ],
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
        cluster,
        database,
        _api_task: api_task,
    }
}

impl Replicas {
    /// `user`'s MCP client connected straight to replica `index` (its token is for the public
    /// URL, as every replica's is).
    pub async fn client(&self, index: usize, user: &str) -> Client {
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

    pub fn browser(&self, user: &str, account: &str) -> Browser {
        Browser::new()
            .account(&self.inbound.issuer, user)
            .account(&self.downstream.issuer, account)
    }

    /// The consent URL (on the public URL) in a call's `isError` result.
    pub fn consent_url(&self, result: &rmcp::model::CallToolResult) -> String {
        assert_eq!(result.is_error, Some(true), "{}", text_of(result));
        let text = text_of(result);
        let start = text
            .find(&format!("{}/oauth2/connect/", self.proxy.base))
            .unwrap_or_else(|| panic!("no consent URL on the public URL in {text}"));
        text[start..].split_whitespace().next().unwrap().to_string()
    }

    /// Alice links `alice-gh`: consent started by a call on replica 0, the browser's steps
    /// through the proxy.
    pub async fn link_alice(&self) {
        let alice = self.client(0, "alice").await;
        let url = self.consent_url(&call(&alice, "acct___me").await);
        let page = self.browser("alice", "alice-gh").get(&url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        alice.cancel().await.unwrap();
    }

    /// A `/metrics` counter (`name{labels}`), for all replicas at once: the replicas of one
    /// test process share its metrics registry, so any replica's `/metrics` counts all three.
    pub async fn counter(&self, series: &str) -> u64 {
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
