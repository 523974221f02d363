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
}

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::{Value, json};
use support::downstream::{call, consent_url, text_of, world_full};
use support::idp;

const RETURN_URL: &str = "http://127.0.0.1:9/app/done";
const ACCESS_KEY_ID: &str = "AKIDAPPBINDING";
const SECRET: &str = "app-binding-test-secret";

/// CompleteResourceTokenAuth through the HTTP surface, signed like an AWS SDK signs it.
async fn complete(base: &str, session_uri: &str, user_jwt: &str) -> (u16, String, Value) {
    let url = format!("{base}/identities/CompleteResourceTokenAuth");
    let body = serde_json::to_vec(
        &json!({"sessionUri": session_uri, "userIdentifier": {"userToken": user_jwt}}),
    )
    .unwrap();
    let host = url::Url::parse(base).unwrap();
    let host = format!("{}:{}", host.host_str().unwrap(), host.port().unwrap());
    let identity =
        aws_credential_types::Credentials::new(ACCESS_KEY_ID, SECRET, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock-agentcore")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [
        ("content-type", "application/json"),
        ("host", host.as_str()),
    ];
    let signable = SignableRequest::new(
        "POST",
        url.clone(),
        headers.iter().copied(),
        SignableBody::Bytes(&body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, error_type, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bob_cannot_complete_alices_app_bound_consent_and_alice_can() {
    let world = world_full(
        "app",
        &format!("allowed_return_urls = [\"{RETURN_URL}\"]"),
        &format!(
            "[[identity.access_keys]]\naccess_key_id = \"{ACCESS_KEY_ID}\"\nsecret_access_key_file = \"identity.secret\"\n"
        ),
        vec![("identity.secret", SECRET.to_string())],
    )
    .await;
    let base = world.gateway.base.clone();
    let alice = world.client("alice").await;
    let url = consent_url(&call(&alice, "acct___me").await, &world.gateway);

    // No sign-in at the gateway: the provider, then back to the app with the session id.
    let mut browser = world.browser("alice", "alice-at-provider");
    let landed = browser.get_until(&url, "/app/done").await;
    let session_uri = landed
        .query_pairs()
        .find(|(k, _)| k == "session_id")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no session_id in {landed}"));
    assert!(session_uri.starts_with("urn:ietf:params:oauth:request_uri:"));
    // Nothing is linked before the app binds the user.
    assert_eq!(call(&alice, "acct___me").await.is_error, Some(true));
    assert!(world.api.seen.lock().await.is_empty());

    let audience = world.gateway.mcp_url();
    let bob_jwt = world.inbound.user_token("bob", "mcp", &audience).await;
    let (status, error_type, body) = complete(&base, &session_uri, &bob_jwt).await;
    assert_eq!(
        (status, error_type.as_str()),
        (403, "AccessDeniedException"),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("another user"),
        "{body}"
    );

    let alice_jwt = world.inbound.user_token("alice", "mcp", &audience).await;
    let (status, _, body) = complete(&base, &session_uri, &alice_jwt).await;
    assert_eq!(status, 200, "{body}");
    let retried = call(&alice, "acct___me").await;
    assert_ne!(retried.is_error, Some(true), "{}", text_of(&retried));
    assert_eq!(
        retried.structured_content.unwrap()["login"],
        "alice-at-provider"
    );
    // The token went to Alice's calls only.
    let seen = world.api.seen.lock().await;
    assert!(seen.iter().all(|(sub, _)| sub == "alice-at-provider"));
    let (header, _) = idp::decode_unverified(&seen[0].1);
    assert_eq!(header["alg"], "RS256");
}
