#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Proves the real test IdP (tests/idp/idp.mjs, npm oidc-provider) and its Rust driver
//! (tests/support/idp.rs) behave as the gateway's integration tests expect.

mod support {
    pub mod idp;
}

use serde_json::{Value, json};
use support::idp::{self, CookieJar, Idp, decode_unverified};

const RESOURCE: &str = "http://127.0.0.1:9/mcp";

fn verify(idp: &Idp, jwt: &str, aud: &str) -> Value {
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(idp.public_key_pem().as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[idp.issuer.as_str()]);
    jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .unwrap()
        .claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_issuer_and_jwks_match() {
    let idp = Idp::start().await;
    assert!(
        idp.issuer.starts_with("http://127.0.0.1:"),
        "{}",
        idp.issuer
    );
    let doc = idp.discovery().await;
    assert_eq!(doc["issuer"], json!(idp.issuer));
    assert_eq!(doc["token_endpoint"], json!(idp.token_endpoint()));
    assert_eq!(
        doc["authorization_endpoint"],
        json!(idp.authorization_endpoint())
    );
    assert_eq!(doc["jwks_uri"], json!(idp.jwks_url()));
    assert_eq!(
        doc["introspection_endpoint"],
        json!(idp.introspection_endpoint())
    );
    assert_eq!(doc["revocation_endpoint"], json!(idp.revocation_endpoint()));
    assert_eq!(
        doc["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    let grants = doc["grant_types_supported"].as_array().unwrap();
    for g in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(grants.contains(&json!(g)), "{g} not in {grants:?}");
    }

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let jwks: Value = http
        .get(idp.jwks_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let ours = idp.public_jwk();
    assert_eq!(keys[0]["kid"], json!(idp.kid));
    assert_eq!(keys[0]["kty"], json!("RSA"));
    assert_eq!(keys[0]["n"], ours["n"]);
    assert_eq!(keys[0]["e"], ours["e"]);
    assert!(keys[0].get("d").is_none(), "private part published: {jwks}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_token_is_rs256_jwt_for_the_resource() {
    let idp = Idp::start().await;
    let at = idp
        .client_credentials_token(
            idp::MCP_CLIENT,
            idp::MCP_CLIENT_SECRET,
            "mcp tools.read",
            RESOURCE,
        )
        .await;
    let (header, payload) = decode_unverified(&at);
    assert_eq!(header["alg"], json!("RS256"));
    assert_eq!(header["kid"], json!(idp.kid));
    assert_eq!(header["typ"], json!("at+jwt"));
    assert_eq!(payload["aud"], json!(RESOURCE));
    assert_eq!(payload["client_id"], json!("mcp-client"));
    assert_eq!(payload["scope"], json!("mcp tools.read"));
    assert_eq!(payload["iss"], json!(idp.issuer));
    assert_eq!(payload["sub"], json!("mcp-client"));
    assert!(payload["exp"].as_u64().unwrap() > idp::now());

    // The signature verifies with the published key.
    let claims = verify(&idp, &at, RESOURCE);
    assert_eq!(claims["client_id"], json!("mcp-client"));

    // Scopes outside the resource server's set are dropped from the token.
    let at = idp
        .client_credentials_token(
            idp::OTHER_CLIENT,
            idp::OTHER_CLIENT_SECRET,
            "mcp openid",
            RESOURCE,
        )
        .await;
    let (_, payload) = decode_unverified(&at);
    assert_eq!(payload["scope"], json!("mcp"));
    assert_eq!(payload["client_id"], json!("other-client"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_resource_and_client_secret_post() {
    let idp = Idp::start().await;
    // No resource requested: audience is the default resource.
    let at = idp
        .client_credentials_token(
            idp::PORTCULLIS_CLIENT,
            idp::PORTCULLIS_CLIENT_SECRET,
            "mcp",
            "",
        )
        .await;
    assert_eq!(
        decode_unverified(&at).1["aud"],
        json!(idp::DEFAULT_RESOURCE)
    );

    // downstream-app authenticates with client_secret_post...
    let at = idp
        .client_credentials_token(
            idp::DOWNSTREAM_CLIENT,
            idp::DOWNSTREAM_CLIENT_SECRET,
            "extra",
            RESOURCE,
        )
        .await;
    assert_eq!(
        decode_unverified(&at).1["client_id"],
        json!("downstream-app")
    );
    // ...and only with it.
    let err = idp
        .try_token_request_with(
            idp::ClientAuth::Basic,
            idp::DOWNSTREAM_CLIENT,
            idp::DOWNSTREAM_CLIENT_SECRET,
            &[("grant_type", "client_credentials")],
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.status, err.error()),
        (401, "invalid_client"),
        "{err:?}"
    );
    // Likewise a client_secret_basic client cannot switch to client_secret_post.
    let err = idp
        .try_token_request_with(
            idp::ClientAuth::Post,
            idp::MCP_CLIENT,
            idp::MCP_CLIENT_SECRET,
            &[("grant_type", "client_credentials")],
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.status, err.error()),
        (401, "invalid_client"),
        "{err:?}"
    );

    // A wrong secret is rejected.
    let err = idp
        .try_token_request(
            idp::MCP_CLIENT,
            "nope",
            &[("grant_type", "client_credentials")],
        )
        .await
        .unwrap_err();
    assert_eq!(
        (err.status, err.error()),
        (401, "invalid_client"),
        "{err:?}"
    );

    // A relative resource indicator is rejected.
    let err = idp
        .try_token_request(
            idp::MCP_CLIENT,
            idp::MCP_CLIENT_SECRET,
            &[
                ("grant_type", "client_credentials"),
                ("resource", "not-a-uri"),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(err.error(), "invalid_target", "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_client_auth_is_oidc_provider_default() {
    let idp = Idp::spawn(&[("IDP_STRICT_CLIENT_AUTH", "0")]).await;
    for (auth, client, secret) in [
        (
            idp::ClientAuth::Basic,
            idp::DOWNSTREAM_CLIENT,
            idp::DOWNSTREAM_CLIENT_SECRET,
        ),
        (
            idp::ClientAuth::Post,
            idp::MCP_CLIENT,
            idp::MCP_CLIENT_SECRET,
        ),
    ] {
        let ok = idp
            .try_token_request_with(
                auth,
                client,
                secret,
                &[("grant_type", "client_credentials")],
            )
            .await;
        assert!(ok.is_ok(), "{auth:?} {client}: {ok:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_token_carries_the_account_as_sub() {
    let idp = Idp::start().await;
    let at = idp
        .user_token("alice", "openid mcp tools.read", RESOURCE)
        .await;
    let (header, payload) = decode_unverified(&at);
    assert_eq!(header["alg"], json!("RS256"));
    assert_eq!(header["kid"], json!(idp.kid));
    assert_eq!(payload["sub"], json!("alice"));
    assert_eq!(payload["aud"], json!(RESOURCE));
    assert_eq!(payload["client_id"], json!("mcp-client"));
    assert_eq!(payload["scope"], json!("mcp tools.read"));
    verify(&idp, &at, RESOURCE);

    // Two users in the same IdP, without openid, default resource.
    let set = idp
        .user_token_set("bob", "mcp tools.write profile extra", "")
        .await;
    let (_, payload) = decode_unverified(&set.access_token);
    assert_eq!(payload["sub"], json!("bob"));
    assert_eq!(payload["aud"], json!(idp::DEFAULT_RESOURCE));
    assert_eq!(payload["scope"], json!("mcp tools.write profile extra"));
    assert!(set.refresh_token.is_some(), "{}", set.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_claims() {
    let idp = Idp::start().await;
    let set = idp.user_token_set("carol", "openid profile", "").await;
    let id_token = set.id_token.expect("id_token for openid scope");
    let (header, claims) = decode_unverified(&id_token);
    assert_eq!(header["kid"], json!(idp.kid));
    assert_eq!(claims["sub"], json!("carol"));
    assert_eq!(claims["aud"], json!("mcp-client"));
    assert_eq!(claims["iss"], json!(idp.issuer));
    // The access token always has an audience (a resource), so oidc-provider puts the
    // scope-requested claims into the ID token itself.
    assert_eq!(claims["name"], json!("carol"), "{claims}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_old_ones_die() {
    let idp = Idp::start().await;
    let (at1, rt1) = idp.user_tokens("alice", "mcp tools.read", RESOURCE).await;
    let (at2, rt2) = idp.refresh(&rt1).await;
    assert_ne!(rt1, rt2, "refresh token was not rotated");
    assert_ne!(at1, at2);
    let (_, payload) = decode_unverified(&at2);
    assert_eq!(payload["sub"], json!("alice"));
    assert_eq!(
        payload["aud"],
        json!(RESOURCE),
        "granted resource is kept on refresh"
    );
    assert_eq!(payload["scope"], json!("mcp tools.read"));

    // The rotated-out token is dead...
    let err = idp
        .try_refresh(idp::MCP_CLIENT, idp::MCP_CLIENT_SECRET, &rt1)
        .await
        .unwrap_err();
    assert_eq!((err.status, err.error()), (400, "invalid_grant"), "{err:?}");
    // ...and reusing it revoked the grant, so the new one is dead too (reuse detection).
    let err = idp
        .try_refresh(idp::MCP_CLIENT, idp::MCP_CLIENT_SECRET, &rt2)
        .await
        .unwrap_err();
    assert_eq!(err.error(), "invalid_grant", "{err:?}");

    // Another client cannot use a refresh token it was not issued.
    let (_, rt) = idp.user_tokens("alice", "mcp", RESOURCE).await;
    let err = idp
        .try_refresh(idp::OTHER_CLIENT, idp::OTHER_CLIENT_SECRET, &rt)
        .await
        .unwrap_err();
    assert_eq!(err.error(), "invalid_grant", "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotation_can_be_disabled() {
    let idp = Idp::spawn(&[("IDP_ROTATE_REFRESH", "0")]).await;
    let (_, rt1) = idp.user_tokens("alice", "mcp", RESOURCE).await;
    let (_, rt2) = idp.refresh(&rt1).await;
    assert_eq!(rt1, rt2);
    let (_, rt3) = idp.refresh(&rt1).await;
    assert_eq!(rt1, rt3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_style_flow_with_portcullis_client_on_any_loopback_port() {
    let idp = Idp::start().await;
    // What a gateway on port 18080 would send the browser to (no login_hint: `login` adds it).
    let pkce = idp::Pkce::new();
    let redirect_uri = "http://127.0.0.1:18080/oauth2/callback";
    let mut auth = url::Url::parse(&idp.authorization_endpoint()).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", idp::PORTCULLIS_CLIENT)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", "openid profile")
        .append_pair("state", "xyz")
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256");
    let callback = idp.login(auth.as_str(), "dave").await;
    assert_eq!(
        callback.origin(),
        url::Url::parse(redirect_uri).unwrap().origin()
    );
    assert_eq!(callback.path(), "/oauth2/callback");
    let q: std::collections::HashMap<_, _> = callback.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], idp.issuer);
    let set = idp
        .exchange_code(
            idp::PORTCULLIS_CLIENT,
            idp::PORTCULLIS_CLIENT_SECRET,
            &q["code"],
            redirect_uri,
            &pkce.verifier,
            "",
        )
        .await;
    let (_, id) = decode_unverified(set.id_token.as_deref().unwrap());
    assert_eq!(id["sub"], json!("dave"));
    assert_eq!(id["aud"], json!("portcullis"));

    // The same code cannot be used twice.
    let err = idp
        .try_token_request(
            idp::PORTCULLIS_CLIENT,
            idp::PORTCULLIS_CLIENT_SECRET,
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", redirect_uri),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(err.error(), "invalid_grant", "{err:?}");

    // downstream-app (client_secret_post) through the generic helper.
    let set = idp
        .authorization_code_flow(
            idp::DOWNSTREAM_CLIENT,
            idp::DOWNSTREAM_CLIENT_SECRET,
            "http://127.0.0.1:4242/oauth2/callback",
            "erin",
            "mcp tools.read",
            RESOURCE,
        )
        .await;
    let (_, payload) = decode_unverified(&set.access_token);
    assert_eq!(payload["sub"], json!("erin"));
    assert_eq!(payload["client_id"], json!("downstream-app"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interaction_without_login_hint_is_a_clear_400() {
    let idp = Idp::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let mut auth = url::Url::parse(&idp.authorization_endpoint()).unwrap();
    auth.query_pairs_mut()
        .append_pair("client_id", idp::MCP_CLIENT)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", idp::MCP_CLIENT_REDIRECT_URI)
        .append_pair("scope", "mcp");
    let resp = http.get(auth.as_str()).send().await.unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    let mut jar = CookieJar::default();
    for v in resp.headers().get_all("set-cookie") {
        jar.store(v.to_str().unwrap());
    }
    assert!(jar.get("_interaction").is_some(), "{jar:?}");
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let interaction = auth.join(&location).unwrap();
    assert!(
        interaction.path().starts_with("/interaction/"),
        "{interaction}"
    );
    let resp = http
        .get(interaction.as_str())
        .header("cookie", jar.header().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("login_hint"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_use_the_idp_key() {
    let idp = Idp::start().await;
    let claims = idp.access_token_claims("mallory", RESOURCE, "mcp");
    let forged = idp.sign(&claims);
    let (header, payload) = decode_unverified(&forged);
    assert_eq!(header["alg"], json!("RS256"));
    assert_eq!(header["kid"], json!(idp.kid));
    assert_eq!(header["typ"], json!("at+jwt"));
    assert_eq!(payload, claims);
    assert_eq!(verify(&idp, &forged, RESOURCE)["sub"], json!("mallory"));

    let other = idp.sign_with_kid(&claims, "some-other-kid");
    assert_eq!(decode_unverified(&other).0["kid"], json!("some-other-kid"));
    verify(&idp, &other, RESOURCE);

    // Real tokens and forged ones share everything but jti/iat/exp.
    let real = idp.user_token("mallory", "mcp", RESOURCE).await;
    let (real_header, real_payload) = decode_unverified(&real);
    assert_eq!(real_header, header);
    for k in ["iss", "sub", "aud", "client_id", "scope"] {
        assert_eq!(real_payload[k], payload[k], "{k}");
    }

    // HS256 with the public key as secret (algorithm confusion) can be built from public_key_pem.
    let pem = idp.public_key_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(idp.kid.clone());
    let confused = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(pem.as_bytes()),
    )
    .unwrap();
    assert_eq!(decode_unverified(&confused).0["alg"], json!("HS256"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_revocation_are_enabled() {
    let idp = Idp::start().await;
    let (_, rt) = idp.user_tokens("alice", "mcp", RESOURCE).await;
    let info = idp
        .introspect(idp::MCP_CLIENT, idp::MCP_CLIENT_SECRET, &rt)
        .await;
    assert_eq!(info["active"], json!(true), "{info}");
    assert_eq!(info["sub"], json!("alice"), "{info}");
    assert_eq!(
        idp.revoke(idp::MCP_CLIENT, idp::MCP_CLIENT_SECRET, &rt)
            .await,
        200
    );
    let info = idp
        .introspect(idp::MCP_CLIENT, idp::MCP_CLIENT_SECRET, &rt)
        .await;
    assert_eq!(info["active"], json!(false), "{info}");
}
