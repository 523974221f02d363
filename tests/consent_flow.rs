#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Per-user OAuth end to end (DESIGN 2.6, 3.2): a real inbound IdP, a second real
//! authorization server playing the downstream provider (rotating refresh tokens), a downstream
//! API that verifies the provider's JWTs, rmcp clients, and a scripted browser that walks the
//! consent URL with cookies and redirects.

mod support {
    pub mod browser;
    pub mod downstream;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use std::sync::Arc;

use support::browser::Browser;
use support::downstream::{call, consent_url, text_of, world};
use support::idp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_links_her_account_and_the_retried_call_succeeds() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let first = call(&alice, "acct___me").await;
    let url = consent_url(&first, &world.gateway);
    assert!(
        world.api.seen.lock().await.is_empty(),
        "nothing reaches the API without a token"
    );

    let mut browser = world.browser("alice", "alice-at-provider");
    let page = browser.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Your downstream account is connected"),
        "{}",
        page.body
    );
    // The browser was signed in at the inbound IdP, then sent to the provider.
    assert!(
        page.trail
            .iter()
            .any(|u| u.as_str().starts_with(&world.inbound.issuer))
    );
    assert!(
        page.trail
            .iter()
            .any(|u| u.as_str().starts_with(&world.downstream.issuer))
    );

    let retried = call(&alice, "acct___me").await;
    assert_ne!(retried.is_error, Some(true), "{}", text_of(&retried));
    assert_eq!(
        retried.structured_content.unwrap()["login"],
        "alice-at-provider"
    );
    // Invariant 2: the inbound token never reached the API; the provider's did.
    let seen = world.api.seen.lock().await;
    assert_eq!(seen.len(), 1);
    let (header, _) = idp::decode_unverified(&seen[0].1);
    assert_eq!(header["kid"], world.downstream.kid);
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_cannot_complete_alices_consent_and_nothing_is_stored() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);

    let mut bobs_browser = world.browser("bob", "bob-at-provider");
    let page = bobs_browser.get(&url).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("belongs to another user"),
        "{}",
        page.body
    );
    assert!(
        !page
            .trail
            .iter()
            .any(|u| u.as_str().starts_with(&world.downstream.issuer)),
        "bob never reaches the provider"
    );
    let store = world.store();
    assert!(
        store.list_tokens(None).await.unwrap().is_empty(),
        "nothing stored on refusal"
    );

    // Bob's own calls never use anything of alice's: he is asked for his own consent.
    let bob = world.client("bob").await;
    let bobs = call(&bob, "acct___me").await;
    assert_ne!(consent_url(&bobs, &world.gateway), url);

    // Alice can still complete her link afterwards.
    let page = world.browser("alice", "alice-at-provider").get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let links = store.list_tokens(None).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].0.user, format!("{}#alice", world.inbound.issuer));
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_url_cannot_be_replayed_and_a_tampered_state_is_refused() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);
    let mut browser = world.browser("alice", "alice-at-provider");
    let page = browser.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let callback = page
        .trail
        .iter()
        .find(|u| u.path() == "/oauth2/callback")
        .unwrap()
        .clone();

    // The same consent URL again: single use.
    let again = browser.get(&url).await;
    assert_eq!(again.status, 410, "{}", again.body);
    // The provider's answer replayed: the state is spent.
    let replay = browser.get(callback.as_str()).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    // A forged state.
    let mut forged = callback.clone();
    forged.set_query(Some("state=forged&code=abc"));
    let page = browser.get(forged.as_str()).await;
    assert_eq!(page.status, 400, "{}", page.body);
    let store = world.store();
    assert_eq!(
        store.list_tokens(None).await.unwrap().len(),
        1,
        "only the one real link"
    );
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_delivered_by_another_browser_is_refused() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);
    let mut alices = world.browser("alice", "alice-gh");
    let callback = alices.get_until(&url, "/oauth2/callback").await;

    // OAuth 2.0 Security BCP 4.7: an attacker who obtains the provider's answer (or injects
    // their own code) cannot complete the consent from a browser that did not start it.
    let mut attacker = Browser::new();
    let refused = attacker.get(callback.as_str()).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let store = world.store();
    assert!(store.list_tokens(None).await.unwrap().is_empty());

    // The refusal did not burn the session: alice's own browser still completes it.
    let page = alices.get(callback.as_str()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(store.list_tokens(None).await.unwrap().len(), 1);
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_scopes_ask_for_consent_to_the_union() {
    let world = world("login").await;
    let (alice, _) = world.linked_alice().await;
    assert_ne!(call(&alice, "acct___me").await.is_error, Some(true));

    let second = call(&alice, "acct___me_write").await;
    let url = consent_url(&second, &world.gateway);
    let page = world.browser("alice", "alice-gh").get(&url).await;
    let authorize = page
        .trail
        .iter()
        .find(|u| u.as_str().starts_with(&world.downstream.issuer) && u.path().ends_with("/auth"))
        .unwrap();
    let scope = authorize
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .unwrap()
        .1
        .to_string();
    let mut scopes: Vec<&str> = scope.split(' ').collect();
    scopes.sort();
    assert_eq!(scopes, ["tools.read", "tools.write"]);
    let result = call(&alice, "acct___me_write").await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_refreshes_once_under_200_concurrent_calls() {
    let world = world("login").await;
    let (alice, _) = world.linked_alice().await;

    // Age the stored access token past its expiry (the refresh token stays valid).
    let store = world.store();
    let (key, _) = store.list_tokens(None).await.unwrap().remove(0);
    let mut record = store.get_token(&key).await.unwrap().unwrap();
    let old_access = record.access_token.expose().to_string();
    record.expires_at = Some(1);
    store.put_token(&key, &record).await.unwrap();
    world.api.seen.lock().await.clear();

    let alice = Arc::new(alice);
    let calls = (0..200).map(|_| {
        let alice = alice.clone();
        tokio::spawn(async move { call(&alice, "acct___me").await })
    });
    let results = futures::future::join_all(calls).await;
    for result in &results {
        let result = result.as_ref().unwrap();
        assert_ne!(
            result.is_error,
            Some(true),
            "nobody is logged out: {}",
            text_of(result)
        );
    }
    let seen = world.api.seen.lock().await;
    let tokens: std::collections::BTreeSet<&String> = seen.iter().map(|(_, t)| t).collect();
    assert_eq!(seen.len(), 200);
    assert_eq!(
        tokens.len(),
        1,
        "exactly one refresh: every call used the same new token"
    );
    assert!(!tokens.contains(&old_access));
    let metrics = reqwest::get(format!("{}/metrics", world.gateway.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("portcullis_token_refresh_total{provider=\"downstream\",outcome=\"ok\"} 1"),
        "{metrics}"
    );
    // The rotated refresh token was stored: refreshing again works.
    let record = store.get_token(&key).await.unwrap().unwrap();
    assert_ne!(record.access_token.expose(), old_access);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_grant_asks_for_consent_again() {
    let world = world("login").await;
    let (alice, _) = world.linked_alice().await;
    let store = world.store();
    let (key, _) = store.list_tokens(None).await.unwrap().remove(0);
    let mut record = store.get_token(&key).await.unwrap().unwrap();
    // The provider revoked the grant: its refresh token no longer works.
    let status = world
        .downstream
        .revoke(
            idp::DOWNSTREAM_CLIENT,
            idp::DOWNSTREAM_CLIENT_SECRET,
            record.refresh_token.as_ref().unwrap().expose(),
        )
        .await;
    assert_eq!(status, 200);
    record.expires_at = Some(1);
    store.put_token(&key, &record).await.unwrap();
    let result = call(&alice, "acct___me").await;
    consent_url(&result, &world.gateway);
    assert!(
        store.get_token(&key).await.unwrap().is_none(),
        "the dead link is dropped"
    );
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_page_lists_and_revokes_links() {
    let world = world("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);
    let mut browser = world.browser("alice", "alice-gh");
    assert_eq!(browser.get(&url).await.status, 200);
    let page = browser
        .get(&format!("{}/connections", world.gateway.base))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("downstream"), "{}", page.body);
    assert!(page.body.contains("tools.read"), "{}", page.body);
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();

    let forged = browser
        .post_form(
            &format!("{}/connections/revoke", world.gateway.base),
            &[("provider", "downstream"), ("csrf", "wrong")],
        )
        .await;
    assert_eq!(forged.status, 403);
    let page = browser
        .post_form(
            &format!("{}/connections/revoke", world.gateway.base),
            &[("provider", "downstream"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("No accounts are linked"),
        "{}",
        page.body
    );
    consent_url(&call(&alice, "acct___me").await, &world.gateway);
    alice.cancel().await.unwrap();
}
