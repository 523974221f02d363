#![allow(clippy::unwrap_used, clippy::expect_used)]
//! DESIGN 3.2 invariant 1: no request reaches a target without a validated caller. Every kind
//! of bad token, real or forged with the real IdP's key, is refused with the right challenge.

mod support {
    pub mod gateway;
    pub mod idp;
}

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::gateway::{Setup, TestGateway, initialize_body, post_mcp};
use support::idp::{self, Idp, now};

async fn setup() -> (Idp, TestGateway) {
    let idp = Idp::start().await;
    let gateway = TestGateway::start(
        &idp,
        Setup {
            inbound_extra: "allowed_clients = [\"mcp-client\"]",
            ..Setup::default()
        },
    )
    .await;
    (idp, gateway)
}

/// Claims like the IdP's own access tokens, for this gateway.
fn claims(idp: &Idp, gateway: &TestGateway) -> Value {
    json!({
        "iss": idp.issuer, "sub": "alice", "aud": gateway.mcp_url(),
        "client_id": idp::MCP_CLIENT, "scope": "mcp",
        "iat": now(), "exp": now() + 300, "jti": "j1",
    })
}

async fn assert_refused(gateway: &TestGateway, token: &str, status: u16, error: &str) {
    let response = post_mcp(&gateway.mcp_url(), Some(token), &initialize_body()).await;
    assert_eq!(
        response.status().as_u16(),
        status,
        "token should be refused with {status}"
    );
    let challenge = response
        .headers()
        .get("www-authenticate")
        .expect("challenge header")
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(&format!("error=\"{error}\"")),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            gateway.base
        )),
        "{challenge}"
    );
    assert!(
        !challenge.contains(token),
        "the challenge must not echo the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_token_from_the_idp_is_accepted() {
    let (idp, gateway) = setup().await;
    let token = gateway.token(&idp).await;
    let response = post_mcp(&gateway.mcp_url(), Some(&token), &initialize_body()).await;
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_gets_a_challenge_without_error_code() {
    let (_idp, gateway) = setup().await;
    let response = post_mcp(&gateway.mcp_url(), None, &initialize_body()).await;
    assert_eq!(response.status().as_u16(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert_eq!(
        challenge,
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            gateway.base
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_tokens_are_refused() {
    let (idp, gateway) = setup().await;
    let mut expired = claims(&idp, &gateway);
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    assert_refused(&gateway, &idp.sign(&expired), 401, "invalid_token").await;
    let mut early = claims(&idp, &gateway);
    early["nbf"] = json!(now() + 3600);
    assert_refused(&gateway, &idp.sign(&early), 401, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_issuer_is_refused() {
    let (idp, gateway) = setup().await;
    let mut token = claims(&idp, &gateway);
    token["iss"] = json!("https://evil.example.com");
    assert_refused(&gateway, &idp.sign(&token), 401, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_token_for_another_audience_is_refused() {
    let (idp, gateway) = setup().await;
    let token = idp
        .client_credentials_token(
            idp::MCP_CLIENT,
            idp::MCP_CLIENT_SECRET,
            "mcp",
            "http://127.0.0.1:9/other",
        )
        .await;
    assert_refused(&gateway, &token, 401, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_token_of_another_client_is_refused() {
    let (idp, gateway) = setup().await;
    let token = idp
        .client_credentials_token(
            idp::OTHER_CLIENT,
            idp::OTHER_CLIENT_SECRET,
            "mcp",
            &gateway.mcp_url(),
        )
        .await;
    assert_refused(&gateway, &token, 401, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_token_without_the_scope_gets_insufficient_scope() {
    let (idp, gateway) = setup().await;
    let token = idp
        .client_credentials_token(
            idp::MCP_CLIENT,
            idp::MCP_CLIENT_SECRET,
            "profile",
            &gateway.mcp_url(),
        )
        .await;
    // RFC 6750 section 3.1: a valid token lacking scope is 403 insufficient_scope.
    assert_refused(&gateway, &token, 403, "insufficient_scope").await;
    let response = post_mcp(&gateway.mcp_url(), Some(&token), &initialize_body()).await;
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("scope=\"mcp\""), "{challenge}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_refused() {
    let (idp, gateway) = setup().await;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(&idp, &gateway).to_string());
    assert_refused(
        &gateway,
        &format!("{header}.{payload}."),
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_signed_with_the_public_key_is_refused() {
    let (idp, gateway) = setup().await;
    // RFC 8725 section 2.1: the classic key-confusion attack uses the RSA public key as an
    // HMAC secret.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(idp.kid.clone());
    let key = jsonwebtoken::EncodingKey::from_secret(idp.public_key_pem().as_bytes());
    let token = jsonwebtoken::encode(&header, &claims(&idp, &gateway), &key).unwrap();
    assert_refused(&gateway, &token, 401, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_is_refused_after_one_refetch() {
    let (idp, gateway) = setup().await;
    let token = idp.sign_with_kid(&claims(&idp, &gateway), "no-such-key");
    assert_refused(&gateway, &token, 401, "invalid_token").await;
    // The keys the gateway had are still there: a valid token still works.
    let good = idp.sign(&claims(&idp, &gateway));
    assert_eq!(
        post_mcp(&gateway.mcp_url(), Some(&good), &initialize_body())
            .await
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_payload_is_refused() {
    let (idp, gateway) = setup().await;
    let token = idp.sign(&claims(&idp, &gateway));
    let parts: Vec<&str> = token.split('.').collect();
    let mut forged = claims(&idp, &gateway);
    forged["sub"] = json!("admin");
    let payload = URL_SAFE_NO_PAD.encode(forged.to_string());
    let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
    assert_refused(&gateway, &tampered, 401, "invalid_token").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_refused() {
    let (_idp, gateway) = setup().await;
    for garbage in ["garbage", "a.b.c", "....", &"x".repeat(20_000)] {
        assert_refused(&gateway, garbage, 401, "invalid_token").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_rules_are_enforced() {
    let idp = Idp::start().await;
    let gateway = TestGateway::start(
        &idp,
        Setup {
            extra: "[[inbound.claims]]\nname = \"groups\"\ncontains_any = [\"eng\"]\n",
            ..Setup::default()
        },
    )
    .await;
    let mut outsider = claims(&idp, &gateway);
    outsider["groups"] = json!(["sales"]);
    assert_refused(&gateway, &idp.sign(&outsider), 401, "invalid_token").await;
    let mut engineer = claims(&idp, &gateway);
    engineer["groups"] = json!(["eng"]);
    let ok = post_mcp(
        &gateway.mcp_url(),
        Some(&idp.sign(&engineer)),
        &initialize_body(),
    )
    .await;
    assert_eq!(ok.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_resource_metadata_points_at_the_idp() {
    let (idp, gateway) = setup().await;
    for (path, resource) in [
        (
            "/.well-known/oauth-protected-resource/mcp",
            gateway.mcp_url(),
        ),
        (
            "/.well-known/oauth-protected-resource",
            gateway.base.clone(),
        ),
    ] {
        let doc: Value = reqwest::get(format!("{}{path}", gateway.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["resource"], json!(resource), "{path}");
        assert_eq!(doc["authorization_servers"], json!([idp.issuer]), "{path}");
        assert_eq!(doc["scopes_supported"], json!(["mcp"]), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_an_idp_outage() {
    let mut idp = Idp::spawn(&[]).await;
    let gateway = TestGateway::start(&idp, Setup::default()).await;
    let token = gateway.token(&idp).await;
    idp.stop().await;
    // A refresh during the outage fails, and an unknown kid cannot be fetched either...
    assert!(gateway.state.keys.refresh().await.is_err());
    let forged = idp.sign_with_kid(&claims(&idp, &gateway), "rotated-key");
    assert_refused(&gateway, &forged, 401, "invalid_token").await;
    // ...but the last good keys keep serving: callers are not logged out by an IdP outage.
    let response = post_mcp(&gateway.mcp_url(), Some(&token), &initialize_body()).await;
    assert_eq!(response.status().as_u16(), 200);
}
