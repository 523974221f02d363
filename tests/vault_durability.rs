#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The vault survives the worst: the gateway binary is SIGKILLed again and again while calls
//! refresh a user's token, and no link is lost; a restart keeps links; and the vault
//! directory holds none of the tokens or secrets that passed through it.

mod support {
    pub mod backend;
    pub mod binary;
    pub mod gateway;
    pub mod idp;
}

use futures::StreamExt;
use portcullis::vault::{Keyring, Secret, SledStore, Store, TokenKey, TokenRecord};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;
use support::backend::Backend;
use support::binary::{RunningBinary, free_port};
use support::gateway::{write_json, write_private};
use support::idp::{self, Idp};

const VAULT_KEY: &str = "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE=";
const ROUNDS: usize = 8;

fn open_store(dir: &std::path::Path) -> SledStore {
    SledStore::open(
        &dir.join("vault"),
        Keyring::from_env_base64(VAULT_KEY).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_refreshes_loses_no_link_and_the_vault_holds_no_plaintext() {
    let inbound = Idp::start().await;
    // Without rotation every refresh token stays valid, so a lost link can only mean the vault
    // lost a write: that is what this test is about. Rotation is covered in consent_flow.rs.
    let downstream = Idp::spawn(&[("IDP_ROTATE_REFRESH", "0")]).await;
    let backend = Backend::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    std::fs::write(
        dir.path().join("portcullis.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[inbound]\ndiscovery_url = \"{}\"\nallowed_audiences = [\"{base}/mcp\"]\n\
             [targets]\ndir = \"targets\"\nwatch = false\n[vault]\npath = \"vault\"\nkey_file = \"vault.key\"\n\
             [identity]\nconsent_binding = \"app\"\n[providers.downstream]\nvendor = \"custom\"\ndiscovery_url = \"{}\"\n\
             client_id = \"{}\"\nclient_secret_file = \"downstream.secret\"\ntoken_auth_method = \"client_secret_post\"\n",
            inbound.discovery_url(),
            downstream.discovery_url(),
            idp::DOWNSTREAM_CLIENT
        ),
    )
    .unwrap();
    write_private(&dir.path().join("vault.key"), VAULT_KEY);
    write_private(
        &dir.path().join("downstream.secret"),
        idp::DOWNSTREAM_CLIENT_SECRET,
    );
    let mut target = backend.target("acct");
    target["credentials"] = json!({"oauth": {"provider": "downstream", "grantType": "AUTHORIZATION_CODE", "scopes": ["tools.read"]}});
    write_json(&dir.path().join("targets"), "acct.json", &target);

    // Alice linked her account earlier: a real token set from the provider, in the vault.
    let granted = downstream
        .authorization_code_flow(
            idp::DOWNSTREAM_CLIENT,
            idp::DOWNSTREAM_CLIENT_SECRET,
            "http://127.0.0.1/oauth2/callback",
            "alice-gh",
            "tools.read",
            &backend.url,
        )
        .await;
    let key = TokenKey {
        workload: "portcullis".into(),
        user: format!("{}#alice", inbound.issuer),
        provider: "downstream".into(),
    };
    let mut issued = vec![
        granted.access_token.clone(),
        granted.refresh_token.clone().unwrap(),
    ];
    {
        let store = open_store(dir.path());
        let record = TokenRecord {
            access_token: Secret::new(granted.access_token.clone()),
            refresh_token: granted.refresh_token.clone().map(Secret::new),
            token_type: "Bearer".into(),
            expires_at: Some(1),
            scopes: vec!["tools.read".into()],
            obtained_at: 1,
            refreshed_at: None,
        };
        store.put_token(&key, &record).await.unwrap();
        store.close().await.unwrap();
    }
    let aws = [
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "y"),
        ("AWS_REGION", "us-east-1"),
    ];

    for round in 0..ROUNDS {
        let mut gateway = RunningBinary::serve(dir.path(), port, false, &aws).await;
        let token = inbound.user_token("alice", "mcp", &gateway.mcp_url()).await;
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url()).auth_header(token),
        );
        let client = ClientConfig::default().serve(transport).await.unwrap();
        let client = std::sync::Arc::new(client);
        // Twenty calls in flight, all needing the expired token refreshed; the process is
        // killed after `round` answers (round 0: before any), i.e. mid-refresh or mid-read.
        let mut calls = futures::stream::FuturesUnordered::new();
        for _ in 0..20 {
            let client = client.clone();
            calls.push(tokio::spawn(async move {
                client
                    .call_tool(
                        CallToolRequestParams::new("acct___echo")
                            .with_arguments(json!({"text": "x"}).as_object().unwrap().clone()),
                    )
                    .await
            }));
        }
        for _ in 0..round {
            calls.next().await;
        }
        gateway.child.start_kill().unwrap();
        gateway.child.wait().await.unwrap();
        drop(calls);

        // The link is intact and readable; age it so the next round refreshes again.
        let store = open_store(dir.path());
        let mut record = store
            .get_token(&key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("round {round}: the link was lost"));
        assert!(
            record.refresh_token.is_some(),
            "round {round}: refresh token lost"
        );
        issued.push(record.access_token.expose().to_string());
        record.expires_at = Some(1);
        store.put_token(&key, &record).await.unwrap();
        store.close().await.unwrap();
    }

    // A clean restart: the link still works.
    let gateway = RunningBinary::serve(dir.path(), port, false, &aws).await;
    let token = inbound.user_token("alice", "mcp", &gateway.mcp_url()).await;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gateway.mcp_url()).auth_header(token),
    );
    let client = ClientConfig::default().serve(transport).await.unwrap();
    let result = client
        .call_tool(
            CallToolRequestParams::new("acct___echo")
                .with_arguments(json!({"text": "x"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_ne!(
        result.is_error,
        Some(true),
        "{result:?}\n{}",
        gateway.log_text()
    );
    for headers in backend.seen.requests.lock().await.iter() {
        if let Some(token) = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            issued.push(token.to_string());
        }
    }
    drop(client);
    drop(gateway);

    // Every token and secret that passed through, plus the vault key: none is on disk in clear.
    issued.push(idp::DOWNSTREAM_CLIENT_SECRET.to_string());
    issued.sort();
    issued.dedup();
    assert!(issued.len() > 3, "the test saw tokens: {}", issued.len());
    let mut files = vec![dir.path().join("vault")];
    let mut scanned = 0usize;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for secret in &issued {
            // A JWT's payload segment is distinctive enough; opaque tokens are checked whole.
            let needle = secret.split('.').nth(1).unwrap_or(secret).as_bytes();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds a token or secret in clear",
                path.display()
            );
        }
    }
    assert!(scanned > 0);
}
