#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Attacks on the consent flow through the real HTTP surface (issue 9; DESIGN 3.2 invariants
//! 3, 4, 7): a real inbound IdP, a real downstream authorization server, a downstream API
//! that checks its tokens, rmcp clients and scripted browsers. Each test reproduces an attack
//! and asserts what did *not* happen: nothing linked, nothing reached the API.

mod support {
    pub mod browser;
    pub mod downstream;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use support::downstream::{call, consent_url, text_of, world, world_without_resource};

/// Issue 9 item 1 (login CSRF): mallory starts a consent, signs in at the IdP as himself and
/// stops before the gateway's sign-in callback; he sends that callback URL to alice, whose
/// provider account silently approves. Nobody may be signed in by that URL, and alice's
/// account must not end up linked under mallory's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_login_callback_links_nothing() {
    let world = world("login").await;
    let mallory = world.client("mallory").await;
    let url = consent_url(&call(&mallory, "acct___me").await, &world.gateway);
    let mut mallorys = world.browser("mallory", "mallory-at-provider");
    let leaked = mallorys.get_until(&url, "/oauth2/login/callback").await;
    assert!(leaked.query_pairs().any(|(k, _)| k == "code"), "{leaked}");

    // Alice's browser (signed in at the provider, which approves silently) opens the link.
    let mut alices = world.browser("alice", "alice-at-provider");
    let page = alices.get(leaked.as_str()).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        page.body.contains("not started in this browser"),
        "{}",
        page.body
    );
    assert!(
        !page
            .trail
            .iter()
            .any(|u| u.as_str().starts_with(&world.downstream.issuer)),
        "alice's browser was never sent to the provider: {:?}",
        page.trail
    );
    assert_eq!(
        alices.cookie(&world.gateway.base, "portcullis_session"),
        None,
        "alice's browser is signed in as nobody"
    );
    let store = world.store();
    assert!(store.list_tokens(None).await.unwrap().is_empty());
    assert!(world.api.seen.lock().await.is_empty());

    // The binding does not break the honest flow: mallory's own browser finishes his sign-in
    // and links *his* provider account to *his* user.
    let page = mallorys.get(leaked.as_str()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let links = store.list_tokens(None).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].0.user, format!("{}#mallory", world.inbound.issuer));
    let result = call(&mallory, "acct___me").await;
    assert_ne!(result.is_error, Some(true), "{}", text_of(&result));
    assert_eq!(
        result.structured_content.unwrap()["login"],
        "mallory-at-provider"
    );
    mallory.cancel().await.unwrap();
}

/// A sign-in cookie only opens for the `state` it was made for: swapping in another
/// sign-in's callback (or a forged cookie) signs nobody in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_callback_with_another_sign_ins_state_is_refused() {
    let world = world("login").await;
    let mallory = world.client("mallory").await;
    let url = consent_url(&call(&mallory, "acct___me").await, &world.gateway);
    let leaked = world
        .browser("mallory", "m")
        .get_until(&url, "/oauth2/login/callback")
        .await;
    // Alice starts her own sign-in (so she holds a sign-in cookie), then gets mallory's URL.
    let mut alices = world.browser("alice", "alice-at-provider");
    let own = alices
        .get_until(
            &format!("{}/connections", world.gateway.base),
            "/oauth2/login/callback",
        )
        .await;
    assert_ne!(own, leaked);
    let page = alices.get(leaked.as_str()).await;
    assert_eq!(page.status, 403, "{}", page.body);
    // A cookie forged under the leaked state's name does not open either.
    let state = leaked
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let mut forger = world.browser("alice", "alice-at-provider");
    forger.set_cookie(
        &world.gateway.base,
        &format!("portcullis_login_{}=AAAA; Path=/", &state[..16]),
    );
    assert_eq!(forger.get(leaked.as_str()).await.status, 403);
    assert!(world.store().list_tokens(None).await.unwrap().is_empty());
    mallory.cancel().await.unwrap();
}

/// Issue 9 item 10: the API checks `aud` against its own identifier, and the target names no
/// RFC 8707 resource, so the provider issues tokens the API refuses. The gateway refreshes
/// once, then says why the call failed instead of asking for the same consent forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_api_refuses_after_a_fresh_grant_ends_in_an_explanation_not_another_consent() {
    let world = world_without_resource("login").await;
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);
    let authorize = world.browser("alice", "alice-gh").get(&url).await;
    assert_eq!(authorize.status, 200, "{}", authorize.body);
    // No `resource` was invented from the target's URL.
    let provider_request = authorize
        .trail
        .iter()
        .find(|u| u.as_str().starts_with(&world.downstream.issuer) && u.path().ends_with("/auth"))
        .unwrap();
    assert!(
        !provider_request.query_pairs().any(|(k, _)| k == "resource"),
        "{provider_request}"
    );
    let store = world.store();
    let sessions_before = store.consent_usage().await.unwrap().records;

    let result = call(&alice, "acct___me").await;
    assert_eq!(result.is_error, Some(true));
    let text = text_of(&result);
    assert!(!text.contains("/oauth2/connect/"), "no new consent: {text}");
    assert!(text.contains("HTTP 401"), "{text}");
    assert!(
        text.contains("error=\"invalid_token\""),
        "the API's challenge is passed on: {text}"
    );
    assert!(text.contains("resource"), "{text}");
    let sessions_after = store.consent_usage().await.unwrap().records;
    assert!(
        sessions_after <= sessions_before,
        "no consent session was started ({sessions_before} -> {sessions_after})"
    );
    assert_eq!(
        store.list_tokens(None).await.unwrap().len(),
        1,
        "the link stays"
    );
    alice.cancel().await.unwrap();
}
