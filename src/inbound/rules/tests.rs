//! The token rules with fixed key sets: what an HTTP test cannot make the real IdP do (publish
//! several keys without a `kid`, pin another `alg` on a key, sign without a `kid`).

use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::inbound::KeySourceConfig;
use crate::inbound::es256::Es256Key;
use crate::inbound::jwks::KeySnapshot;

const ISSUER: &str = "https://idp.example.com";
const LOGIN_CLIENT: &str = "portcullis-login";
const AUDIENCE: &str = "https://gw.example.com/mcp";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn es256_key(dir: &tempfile::TempDir, name: &str) -> Es256Key {
    Es256Key::load_or_create(&dir.path().join(name)).unwrap()
}

fn verify_key(key: &Es256Key, alg: Option<Algorithm>) -> Arc<VerifyKey> {
    Arc::new(VerifyKey {
        key: key.decoding_key().unwrap(),
        alg,
    })
}

fn verifier(algorithms: &[Algorithm], snapshot: KeySnapshot) -> Verifier {
    let config = InboundConfig {
        keys: KeySourceConfig::DevIssuer,
        allowed_audiences: vec![AUDIENCE.into()],
        allowed_clients: vec![],
        allowed_scopes: vec![],
        algorithms: algorithms.to_vec(),
        leeway_seconds: 0,
        claims: vec![],
    };
    Verifier::new(&config, Arc::new(KeyStore::from_snapshot(snapshot)))
}

fn snapshot(by_kid: Vec<(&str, Arc<VerifyKey>)>, anonymous: Vec<Arc<VerifyKey>>) -> KeySnapshot {
    KeySnapshot {
        issuer: Some(ISSUER.into()),
        by_kid: by_kid
            .into_iter()
            .map(|(kid, key)| (kid.to_string(), key))
            .collect::<HashMap<_, _>>(),
        anonymous,
    }
}

/// An ID token as the IdP issues it for the gateway's own sign-in.
fn id_token_claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": LOGIN_CLIENT, "azp": LOGIN_CLIENT,
           "nonce": "n-1", "iat": now(), "exp": now() + 300})
}

/// Signs `claims` with `key`, ES256, with `kid` in the header (or none).
fn sign(key: &Es256Key, kid: Option<&str>, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key.encoding_key()).unwrap()
}

fn reason(result: Result<Map<String, Value>, AuthError>) -> String {
    match result {
        Err(AuthError::InvalidToken(reason)) => reason,
        other => panic!("expected an invalid-token refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn an_id_token_passes_the_same_rules_as_access_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let key = es256_key(&dir, "a.p8");
    let verifier = verifier(
        &[Algorithm::ES256],
        snapshot(
            vec![("a", verify_key(&key, Some(Algorithm::ES256)))],
            vec![],
        ),
    );
    let claims = verifier
        .verify_id_token(&sign(&key, Some("a"), &id_token_claims()), LOGIN_CLIENT)
        .await
        .unwrap();
    assert_eq!(claims["sub"], "alice");
}

/// Issue 9 item 6: the login path used `Validation::new(header.alg)`, whatever the header said.
#[tokio::test]
async fn an_id_token_whose_algorithm_is_not_allowed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = es256_key(&dir, "a.p8");
    let verifier = verifier(
        &[Algorithm::RS256],
        snapshot(vec![("a", verify_key(&key, None))], vec![]),
    );
    let token = sign(&key, Some("a"), &id_token_claims());
    let reason = reason(verifier.verify_id_token(&token, LOGIN_CLIENT).await);
    assert_eq!(reason, "algorithm ES256 is not accepted");
}

#[tokio::test]
async fn an_id_token_whose_algorithm_is_not_the_one_its_key_pins_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = es256_key(&dir, "a.p8");
    let verifier = verifier(
        &[Algorithm::ES256, Algorithm::ES384],
        snapshot(
            vec![("a", verify_key(&key, Some(Algorithm::ES384)))],
            vec![],
        ),
    );
    let token = sign(&key, Some("a"), &id_token_claims());
    let reason = reason(verifier.verify_id_token(&token, LOGIN_CLIENT).await);
    assert_eq!(reason, "algorithm ES256 does not match the signing key");
}

/// Issue 9 item 6: the login path took the first key published without a `kid`; exactly one
/// key must be the candidate.
#[tokio::test]
async fn an_id_token_without_kid_is_refused_while_several_keys_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (es256_key(&dir, "a.p8"), es256_key(&dir, "b.p8"));
    let verifier = verifier(
        &[Algorithm::ES256],
        snapshot(
            vec![],
            vec![verify_key(&first, None), verify_key(&second, None)],
        ),
    );
    let token = sign(&first, None, &id_token_claims());
    let reason = reason(verifier.verify_id_token(&token, LOGIN_CLIENT).await);
    assert!(reason.contains("no kid"), "{reason}");

    // With a single key without `kid`, the same token verifies.
    let verifier = verifier_with_one_anonymous(&first);
    assert!(verifier.verify_id_token(&token, LOGIN_CLIENT).await.is_ok());
}

fn verifier_with_one_anonymous(key: &Es256Key) -> Verifier {
    verifier(
        &[Algorithm::ES256],
        snapshot(vec![], vec![verify_key(key, None)]),
    )
}

#[tokio::test]
async fn an_id_token_with_an_unknown_kid_is_refused_while_several_keys_exist() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (es256_key(&dir, "a.p8"), es256_key(&dir, "b.p8"));
    let verifier = verifier(
        &[Algorithm::ES256],
        snapshot(
            vec![
                ("a", verify_key(&first, None)),
                ("b", verify_key(&second, None)),
            ],
            vec![verify_key(&first, None)],
        ),
    );
    let token = sign(&first, Some("no-such-kid"), &id_token_claims());
    let reason = reason(verifier.verify_id_token(&token, LOGIN_CLIENT).await);
    assert_eq!(reason, "signed with an unknown key (kid)");
}

#[tokio::test]
async fn an_id_token_for_another_client_or_without_aud_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = es256_key(&dir, "a.p8");
    let verifier = verifier_with_one_anonymous(&key);
    let mut other = id_token_claims();
    other["aud"] = json!("someone-else");
    other["azp"] = json!("someone-else");
    let token = sign(&key, None, &other);
    let refused = reason(verifier.verify_id_token(&token, LOGIN_CLIENT).await);
    assert_eq!(refused, "audience is not accepted");

    // OIDC Core 1.0 section 3.1.3.7 item 5: an azp names the client the token was issued to.
    let mut shared = id_token_claims();
    shared["aud"] = json!([LOGIN_CLIENT, "someone-else"]);
    shared["azp"] = json!("someone-else");
    let token = sign(&key, None, &shared);
    let refused = reason(verifier.verify_id_token(&token, LOGIN_CLIENT).await);
    assert_eq!(refused, "authorized party (azp) is not this client");

    let mut missing = id_token_claims();
    missing.as_object_mut().unwrap().remove("aud");
    let token = sign(&key, None, &missing);
    let refused = reason(verifier.verify_id_token(&token, LOGIN_CLIENT).await);
    assert_eq!(refused, "audience claim is missing");
}

#[test]
fn audience_must_be_a_string_or_an_array_of_strings_naming_us() {
    let allowed = |aud: &str| aud == AUDIENCE;
    let check = |aud: Option<Value>| {
        let mut claims = Map::new();
        if let Some(aud) = aud {
            claims.insert("aud".into(), aud);
        }
        check_audience(&claims, allowed).map_err(|e| e.to_string())
    };
    assert_eq!(check(Some(json!(AUDIENCE))), Ok(()));
    assert_eq!(check(Some(json!(["other", AUDIENCE]))), Ok(()));
    let missing = "invalid token: audience claim is missing";
    let shape = "invalid token: audience claim must be a string or an array of strings";
    let refused = "invalid token: audience is not accepted";
    assert_eq!(check(None), Err(missing.into()));
    assert_eq!(check(Some(json!(123))), Err(shape.into()));
    assert_eq!(check(Some(json!({"x": 1}))), Err(shape.into()));
    assert_eq!(check(Some(json!(null))), Err(shape.into()));
    assert_eq!(check(Some(json!([AUDIENCE, 5]))), Err(shape.into()));
    assert_eq!(check(Some(json!([5, AUDIENCE]))), Err(shape.into()));
    assert_eq!(check(Some(json!("other"))), Err(refused.into()));
    assert_eq!(check(Some(json!([]))), Err(refused.into()));
}

#[test]
fn scopes_come_from_scope_string_and_scp_array() {
    let claims = json!({"scope": "a b", "scp": ["c"]});
    assert_eq!(scopes_of(claims.as_object().unwrap()), ["a", "b", "c"]);
}

#[test]
fn contains_any_matches_arrays_and_space_separated_strings() {
    let rule = ClaimRule {
        name: "groups".into(),
        check: ClaimCheck::ContainsAny(vec![json!("eng")]),
    };
    assert!(rule_holds(&rule, Some(&json!(["ops", "eng"]))));
    assert!(rule_holds(&rule, Some(&json!("ops eng"))));
    assert!(!rule_holds(&rule, Some(&json!(["ops"]))));
    assert!(!rule_holds(&rule, None));
}
