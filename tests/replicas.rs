#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Several gateway replicas on one PostgreSQL database behind a round-robin proxy (DESIGN
//! 2.9): any replica serves any step of a consent, refresh stays single-flight across them,
//! and a database outage is survived. The world is `support/replicas.rs`.

mod support {
    pub mod browser;
    pub mod downstream;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
    pub mod proxy;
    pub mod replicas;
    pub mod sigv4;
}

use std::collections::BTreeSet;
use std::sync::Arc;

use support::downstream::{call, text_of};
use support::replicas::{
    ACCESS_KEY_ID, ACCESS_SECRET, WEATHER_KEY, pg_cluster, replicas, replicas_on,
};
use support::sigv4::Signer;

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
    let new_access = (*tokens.iter().next().unwrap()).clone();
    drop(seen);
    // What a backup of the shared database holds: sealed envelopes, no token the provider
    // issued (neither the spent one nor the new one) and no refresh token.
    let record = store.get_token(&key).await.unwrap().unwrap();
    let refresh = record.refresh_token.unwrap().expose().to_string();
    let dump = {
        let (cluster, database) = (world.cluster.clone(), world.database.clone());
        tokio::task::spawn_blocking(move || cluster.pg_dump(&database))
            .await
            .unwrap()
    };
    assert!(dump.contains("vault_tokens"), "the dump has the table");
    for secret in [&old_access, &new_access, &refresh] {
        assert!(
            !dump.contains(secret.as_str()),
            "a token in clear in pg_dump"
        );
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_token_issued_by_one_replica_is_honoured_by_the_others() {
    let world = replicas(3).await;
    let signer = Signer::new(ACCESS_KEY_ID, ACCESS_SECRET);
    let token = signer
        .workload_token(&world.gateways[0].base, "agent")
        .await;
    for index in 1..3 {
        let answer = signer
            .post(
                &world.gateways[index].base,
                "api-key",
                &serde_json::json!({"workloadIdentityToken": token, "resourceCredentialProviderName": "weather"}),
            )
            .await;
        assert_eq!(answer.status, 200, "replica {index}: {answer:?}");
        assert_eq!(answer.body["apiKey"], WEATHER_KEY);
    }
    // The key is in the database, sealed; no replica wrote one to its data folder.
    for gateway in &world.gateways {
        let data_dir = &gateway.state.config.server.data_dir;
        assert!(
            !data_dir.join("workload-token.p8").exists(),
            "{}",
            data_dir.display()
        );
    }
}
