#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Attacks on the inbound token rules through the real HTTP surface (issue 9 items 3 and 6;
//! DESIGN 3.2 invariant 1). Tokens are forged with the real IdP's signing key, so every one of
//! them carries a valid signature: only the claim rules stand between them and the gateway.
//! - `aud` must be present and a string or an array of strings, one of them allowed
//!   (RFC 7519 section 4.1.3, RFC 9068 section 4), on `/mcp` and for the identity API's
//!   `userToken`s alike.
//! - The gateway's own sign-in checks the ID token with the same algorithm allow-list as
//!   access tokens (RFC 8725 section 3.1, OIDC Core 1.0 section 3.1.3.7).

mod support {
    pub mod browser;
    pub mod gateway;
    pub mod idp;
    pub mod sigv4;
}

use serde_json::{Value, json};
use support::browser::Browser;
use support::gateway::{Setup, TestGateway, initialize_body, post_mcp};
use support::idp::{self, Idp};
use support::sigv4::{Answer as ApiAnswer, Signer};

const ACCESS_KEY_ID: &str = "AKIDTOKENRULES";
const SECRET: &str = "token-rules-test-secret";
const WORKLOAD: &str = "agent-app";
const VAULT_KEY: &str = "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE="; // 32 bytes, base64
/// A session URI that names no consent: a `userToken` that passes the inbound rules gets as
/// far as looking it up (404), one that does not is refused before (401).
const NO_SUCH_SESSION: &str = "urn:ietf:params:oauth:request_uri:no-such-session";

/// A gateway trusting `idp`, with the identity API (one access key for [`WORKLOAD`]) and the
/// gateway's own sign-in (`[inbound.login]`); `inbound_extra` goes into `[inbound]`.
async fn gateway(idp: &Idp, inbound_extra: &str) -> TestGateway {
    TestGateway::start(
        idp,
        Setup {
            inbound_extra: &format!(
                "{inbound_extra}\n[inbound.login]\nclient_id = \"{}\"\nclient_secret_file = \"login.secret\"\n",
                idp::PORTCULLIS_CLIENT
            ),
            extra: &format!(
                "[vault]\npath = \"vault\"\nkey_file = \"vault.key\"\n\
                 [[identity.workloads]]\nname = \"{WORKLOAD}\"\n\
                 [[identity.access_keys]]\naccess_key_id = \"{ACCESS_KEY_ID}\"\n\
                 secret_access_key_file = \"identity.secret\"\nworkloads = [\"{WORKLOAD}\"]\n"
            ),
            files: vec![
                ("vault.key", VAULT_KEY.to_string()),
                ("identity.secret", SECRET.to_string()),
                ("login.secret", idp::PORTCULLIS_CLIENT_SECRET.to_string()),
            ],
            ..Setup::default()
        },
    )
    .await
}

/// A token signed by the real IdP's key, like its access tokens for this gateway, with `aud`
/// replaced (`None`: no `aud` claim at all).
fn token_with_aud(idp: &Idp, gateway: &TestGateway, aud: Option<Value>) -> String {
    let mut claims = idp.access_token_claims("alice", &gateway.mcp_url(), "mcp");
    match aud {
        Some(aud) => claims["aud"] = aud,
        None => {
            claims.as_object_mut().unwrap().remove("aud");
        }
    }
    idp.sign(&claims)
}

/// The audiences an attacker tries, and what the refusal must say about each. The array's
/// string member is the allowed audience: a non-string member spoils the whole claim.
fn bad_audiences(gateway: &TestGateway) -> Vec<(&'static str, Option<Value>, &'static str)> {
    let kind = "must be a string or an array of strings";
    vec![
        ("no aud", None, "audience claim is missing"),
        ("aud: 123", Some(json!(123)), kind),
        ("aud: {\"x\":1}", Some(json!({"x": 1})), kind),
        (
            "aud: [allowed, 5]",
            Some(json!([gateway.mcp_url(), 5])),
            kind,
        ),
    ]
}

/// `aud` values an honest IdP sends: the allowed audience as a string, or inside an array.
fn good_audiences(gateway: &TestGateway) -> Vec<(&'static str, Value)> {
    vec![
        ("string aud", json!(gateway.mcp_url())),
        (
            "array aud",
            json!(["https://other.example.com", gateway.mcp_url()]),
        ),
    ]
}

async fn workload_token_for_jwt(gateway: &TestGateway, user_token: &str) -> ApiAnswer {
    Signer::new(ACCESS_KEY_ID, SECRET)
        .post(
            &gateway.base,
            "GetWorkloadAccessTokenForJWT",
            &json!({"workloadName": WORKLOAD, "userToken": user_token}),
        )
        .await
}

async fn complete_with_user_token(gateway: &TestGateway, user_token: &str) -> ApiAnswer {
    Signer::new(ACCESS_KEY_ID, SECRET)
        .post(
            &gateway.base,
            "CompleteResourceTokenAuth",
            &json!({"sessionUri": NO_SUCH_SESSION, "userIdentifier": {"userToken": user_token}}),
        )
        .await
}

fn assert_unauthorized(answer: &ApiAnswer, field: &str, reason: &str, token: &str, case: &str) {
    assert_eq!(
        (answer.status, answer.error_type.as_str()),
        (401, "UnauthorizedException"),
        "{case}: {answer:?}"
    );
    let message = answer.message();
    assert!(message.starts_with(field), "{case}: {message}");
    assert!(message.contains(reason), "{case}: {message}");
    assert!(
        !message.contains(token),
        "{case}: the error must not echo the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_without_a_string_audience_are_refused_on_mcp() {
    let idp = Idp::start().await;
    let gateway = gateway(&idp, "").await;
    for (case, aud, reason) in bad_audiences(&gateway) {
        let token = token_with_aud(&idp, &gateway, aud);
        let response = post_mcp(&gateway.mcp_url(), Some(&token), &initialize_body()).await;
        assert_eq!(response.status().as_u16(), 401, "{case}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{case}: {challenge}"
        );
        assert!(challenge.contains(reason), "{case}: {challenge}");
        assert!(!challenge.contains(&token), "{case}: the token is echoed");
    }
    for (case, aud) in good_audiences(&gateway) {
        let token = token_with_aud(&idp, &gateway, Some(aud));
        let response = post_mcp(&gateway.mcp_url(), Some(&token), &initialize_body()).await;
        assert_eq!(response.status().as_u16(), 200, "{case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_without_a_string_audience_are_refused_as_user_tokens_of_the_identity_api() {
    let idp = Idp::start().await;
    let gateway = gateway(&idp, "").await;
    for (case, aud, reason) in bad_audiences(&gateway) {
        let token = token_with_aud(&idp, &gateway, aud);
        let answer = workload_token_for_jwt(&gateway, &token).await;
        assert_unauthorized(&answer, "userToken: ", reason, &token, case);
        assert!(answer.body.get("workloadAccessToken").is_none(), "{case}");
        let answer = complete_with_user_token(&gateway, &token).await;
        assert_unauthorized(&answer, "userIdentifier.userToken: ", reason, &token, case);
    }
    for (case, aud) in good_audiences(&gateway) {
        let token = token_with_aud(&idp, &gateway, Some(aud));
        let answer = workload_token_for_jwt(&gateway, &token).await;
        assert_eq!(answer.status, 200, "{case}: {answer:?}");
        assert!(answer.body["workloadAccessToken"].is_string(), "{case}");
        // Past the token check: the made-up session is what is missing.
        let answer = complete_with_user_token(&gateway, &token).await;
        assert_eq!(
            (answer.status, answer.error_type.as_str()),
            (404, "ResourceNotFoundException"),
            "{case}: {answer:?}"
        );
    }
}

/// Issue 9 item 6: the real IdP signs its ID tokens with RS256; a gateway whose allow-list
/// admits only ES256 must refuse them at sign-in as it refuses RS256 access tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_refuses_an_id_token_whose_algorithm_is_not_allowed() {
    let idp = Idp::start().await;
    let strict = gateway(&idp, "algorithms = [\"ES256\"]").await;
    let mut browser = Browser::new().account(&idp.issuer, "alice");
    let page = browser.get(&format!("{}/connections", strict.base)).await;
    assert!(
        page.trail
            .iter()
            .any(|u| u.path() == "/oauth2/login/callback"),
        "the browser went through the IdP and back: {:?}",
        page.trail
    );
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("Sign-in failed"), "{}", page.body);
    assert!(
        page.body.contains("algorithm RS256 is not accepted"),
        "{}",
        page.body
    );
    assert_eq!(
        browser.cookie(&strict.base, "portcullis_session"),
        None,
        "nobody is signed in"
    );

    // The same IdP and user sign in where RS256 is allowed.
    let lenient = gateway(&idp, "algorithms = [\"RS256\"]").await;
    let mut browser = Browser::new().account(&idp.issuer, "alice");
    let page = browser.get(&format!("{}/connections", lenient.base)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("alice"), "{}", page.body);
}
