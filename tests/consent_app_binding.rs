#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `consent_binding = "app"` for consents that MCP tool calls trigger (DESIGN 2.6): after the
//! provider's callback the browser goes to the app's return URL with `session_id`; the token
//! is linked only when the app calls CompleteResourceTokenAuth (identity API, SigV4) with the
//! JWT of the user who made the call.

mod support {
    pub mod browser;
    pub mod downstream;
    pub mod gateway;
    pub mod idp;
    pub mod mcp;
    pub mod sigv4;
}

use serde_json::{Value, json};
use support::downstream::{call, consent_url, text_of, world_full};
use support::idp;
use support::sigv4::Signer;

const RETURN_URL: &str = "http://127.0.0.1:9/app/done";
const ACCESS_KEY_ID: &str = "AKIDAPPBINDING";
const SECRET: &str = "app-binding-test-secret";

/// CompleteResourceTokenAuth through the HTTP surface, signed like an AWS SDK signs it.
async fn complete(base: &str, session_uri: &str, user_jwt: &str) -> (u16, String, Value) {
    let answer = Signer::new(ACCESS_KEY_ID, SECRET)
        .post(
            base,
            "CompleteResourceTokenAuth",
            &json!({"sessionUri": session_uri, "userIdentifier": {"userToken": user_jwt}}),
        )
        .await;
    (answer.status, answer.error_type, answer.body)
}

async fn app_world() -> support::downstream::World {
    world_full(
        "app",
        &format!("allowed_return_urls = [\"{RETURN_URL}\"]"),
        &format!(
            "[[identity.access_keys]]\naccess_key_id = \"{ACCESS_KEY_ID}\"\nsecret_access_key_file = \"identity.secret\"\n"
        ),
        vec![("identity.secret", SECRET.to_string())],
    )
    .await
}

/// The `session_id` the app's return URL received.
fn session_id_of(landed: &url::Url) -> String {
    landed
        .query_pairs()
        .find(|(k, _)| k == "session_id")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no session_id in {landed}"))
}

/// The session URI of a consent URL (`/oauth2/connect/<id>`): what its holder knows.
fn session_uri_of_connect_url(url: &str) -> String {
    let id = url.rsplit('/').next().unwrap();
    format!("urn:ietf:params:oauth:request_uri:{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alice_completes_her_app_bound_consent_and_a_refused_completion_burns_the_grant() {
    let world = app_world().await;
    let base = world.gateway.base.clone();
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);

    // No sign-in at the gateway: the provider, then back to the app with a completion id.
    let mut browser = world.browser("alice", "alice-at-provider");
    let completion = session_id_of(&browser.get_until(&url, "/app/done").await);
    assert!(completion.starts_with("urn:ietf:params:oauth:request_uri:"));
    assert_ne!(completion, session_uri_of_connect_url(&url));
    // Nothing is linked before the app binds the user.
    assert_eq!(call(&alice, "acct___me").await.is_error, Some(true));
    assert!(world.api.seen.lock().await.is_empty());

    let audience = world.gateway.mcp_url();
    let alice_jwt = world.inbound.user_token("alice", "mcp", &audience).await;
    let (status, _, body) = complete(&base, &completion, &alice_jwt).await;
    assert_eq!(status, 200, "{body}");
    let retried = call(&alice, "acct___me").await;
    assert_ne!(retried.is_error, Some(true), "{}", text_of(&retried));
    assert_eq!(
        retried.structured_content.unwrap()["login"],
        "alice-at-provider"
    );
    // Single use: the same completion again finds nothing.
    let (status, error_type, body) = complete(&base, &completion, &alice_jwt).await;
    assert_eq!(
        (status, error_type.as_str()),
        (404, "ResourceNotFoundException"),
        "{body}"
    );

    // A second consent whose completion id leaks to bob: his refused attempt burns it, so it
    // is worth nothing to anyone afterwards, alice included; she consents again.
    let url = {
        let mut params =
            rmcp::model::CallToolRequestParams::new("acct___me").with_arguments(Default::default());
        params.meta =
            Some(serde_json::from_value(json!({"portcullis/forceAuthentication": true})).unwrap());
        consent_url(&alice.call_tool(params).await.unwrap(), &world.gateway)
    };
    let leaked = session_id_of(&browser.get_until(&url, "/app/done").await);
    let bob_jwt = world.inbound.user_token("bob", "mcp", &audience).await;
    let (status, error_type, body) = complete(&base, &leaked, &bob_jwt).await;
    assert_eq!(
        (status, error_type.as_str()),
        (403, "AccessDeniedException"),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("another user"),
        "{body}"
    );
    let (status, _, body) = complete(&base, &leaked, &alice_jwt).await;
    assert_eq!(status, 404, "the grant was burnt: {body}");
    // The token went to Alice's calls only; nothing was ever stored for bob.
    let seen = world.api.seen.lock().await;
    assert!(seen.iter().all(|(sub, _)| sub == "alice-at-provider"));
    let (header, _) = idp::decode_unverified(&seen[0].1);
    assert_eq!(header["alg"], "RS256");
    let links = world.store().list_tokens(None).await.unwrap();
    assert_eq!(links.len(), 1);
    assert!(links[0].0.user.ends_with("#alice"));
}

/// Issue 9 item 2: bob starts a consent and sends its link to alice. She consents with her
/// own provider account; the honest app's completion as alice is refused (the consent is
/// bob's). Bob, who holds the link's session id, must not be able to finish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initiator_cannot_finish_a_consent_someone_else_gave() {
    let world = app_world().await;
    let base = world.gateway.base.clone();
    let audience = world.gateway.mcp_url();
    let bob = world.client("bob").await;
    let url = consent_url(&call(&bob, "acct___me").await, &world.gateway);
    let link_session = session_uri_of_connect_url(&url);

    let mut alices = world.browser("alice", "alice-at-provider");
    let completion = session_id_of(&alices.get_until(&url, "/app/done").await);
    assert_ne!(
        completion, link_session,
        "only alice's browser learns the completion id"
    );

    let alice_jwt = world.inbound.user_token("alice", "mcp", &audience).await;
    let (status, error_type, _) = complete(&base, &completion, &alice_jwt).await;
    assert_eq!(
        (status, error_type.as_str()),
        (403, "AccessDeniedException")
    );

    let bob_jwt = world.inbound.user_token("bob", "mcp", &audience).await;
    for session in [&link_session, &completion] {
        let (status, error_type, body) = complete(&base, session, &bob_jwt).await;
        assert_ne!(
            status, 200,
            "bob finished alice's consent with {session}: {body}"
        );
        assert!(
            matches!(
                error_type.as_str(),
                "ValidationException" | "ResourceNotFoundException"
            ),
            "{error_type}: {body}"
        );
    }
    assert!(world.store().list_tokens(None).await.unwrap().is_empty());
    let again = call(&bob, "acct___me").await;
    let _ = consent_url(&again, &world.gateway);
    assert!(
        world.api.seen.lock().await.is_empty(),
        "nothing reached the API"
    );
    bob.cancel().await.unwrap();
}
