#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issue 9 item 4 (DESIGN 3.2 invariant 9): nothing an unauthenticated request can trigger
//! grows stored state, and what an authenticated caller can trigger is capped. 3,000
//! unauthenticated connect / connections hits and 300 forced consents grow the vault by less
//! than 1 MiB after a purge cycle, and every in-memory map stays under its bound.

mod support {
    pub mod browser;
    pub mod downstream;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
}

use rmcp::model::CallToolRequestParams;
use serde_json::json;
use support::downstream::{call, consent_url, world};

const UNAUTHENTICATED_HITS: usize = 3_000;
const FORCED_CONSENTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_of_sign_ins_and_consents_leave_the_vault_and_memory_bounded() {
    let world = world("login").await;
    let store = world.store();
    let identity = world.gateway.state.identity.clone().unwrap();
    let alice = world.client("alice").await;
    let link = consent_url(&call(&alice, "acct___me").await, &world.gateway);
    let before = store.consent_usage().await.unwrap();

    // Signed-out browsers: every hit starts a sign-in (a redirect to the IdP with a cookie).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let connections = format!("{}/connections", world.gateway.base);
    for i in 0..UNAUTHENTICATED_HITS {
        let url = if i % 2 == 0 { &connections } else { &link };
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 303, "hit {i} on {url}");
    }
    let after_hits = store.consent_usage().await.unwrap();
    assert_eq!(
        after_hits.records, before.records,
        "unauthenticated requests stored nothing"
    );

    // An authenticated caller asking for consent after consent.
    for _ in 0..FORCED_CONSENTS {
        let mut params = CallToolRequestParams::new("acct___me").with_arguments(Default::default());
        params.meta =
            Some(serde_json::from_value(json!({"portcullis/forceAuthentication": true})).unwrap());
        let result = alice.call_tool(params).await.unwrap();
        let _ = consent_url(&result, &world.gateway);
    }
    store
        .purge_expired(portcullis::vault::unix_now())
        .await
        .unwrap();
    let after = store.consent_usage().await.unwrap();
    let grown = after.bytes.saturating_sub(before.bytes);
    assert!(
        grown < 1 << 20,
        "the vault grew by {grown} bytes ({} -> {} records)",
        before.records,
        after.records
    );
    // Each pending consent is a session and its `state` index.
    let cap = 2 * portcullis::identity::MAX_PENDING_PER_USER;
    assert!(after.records <= cap + 1, "{} records", after.records);
    // The first link was withdrawn long ago: it answers "expired or already used".
    let page = world.browser("alice", "alice-gh").get(&link).await;
    assert_eq!(page.status, 410, "{}", page.body);

    for (map, len, bound) in identity.memory_bounds() {
        assert!(len <= bound, "{map}: {len} entries, bound {bound}");
    }
    alice.cancel().await.unwrap();
}
