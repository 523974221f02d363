#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Identity API scoping (issue 9 item 8), through the real HTTP surface with SigV4-signed
//! requests: a workload uses only the OAuth providers, scopes and API keys it declares in
//! `portcullis.toml`, and a signature counts only for the `bedrock-agentcore` service and, when
//! `identity.allowed_regions` is set, for one of those regions. The downstream provider is the
//! real test IdP (client credentials enabled); a second provider name points at it too, so a
//! refusal is the policy and never a provider that cannot answer.

mod support {
    pub mod gateway;
    pub mod idp;
    pub mod sigv4;
}

use serde_json::{Value, json};
use support::gateway::{Setup, TestGateway};
use support::idp::{self, Idp};
use support::sigv4::{Answer, Signer};

/// May act for `agent-a` only (like an IAM policy scoped to one workload identity).
const AGENT_A_KEY: &str = "AKIDAGENTA";
const AGENT_A_SECRET: &str = "agent-a-signing-secret";
/// May act for every workload, the gateway's own included.
const ANY_KEY: &str = "AKIDANYWORKLOAD";
const ANY_SECRET: &str = "any-workload-signing-secret";
const WEATHER_KEY: &str = "wk-weather-0123";
const PAYROLL_KEY: &str = "pk-payroll-secret-4567";
const RETURN_URL: &str = "http://127.0.0.1:9/app/done";
const VAULT_KEY: &str = "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE="; // 32 bytes, base64

/// The gateway and the IdPs it talks to (kept alive for the test's duration).
struct World {
    _inbound: Idp,
    downstream: Idp,
    gateway: TestGateway,
}

/// agent-a: provider `downstream` with `tools.read` only, API key `weather`. agent-b: both
/// providers and both keys. The gateway's own workload declares nothing in `[identity]`.
async fn scoped_world() -> World {
    let inbound = Idp::start().await;
    let downstream = Idp::spawn(&[]).await;
    let provider = |name: &str| {
        format!(
            "[providers.{name}]\nvendor = \"custom\"\ndiscovery_url = \"{}\"\nclient_id = \"{}\"\n\
             client_secret_file = \"downstream.secret\"\ntoken_auth_method = \"client_secret_post\"\n",
            downstream.discovery_url(),
            idp::DOWNSTREAM_CLIENT
        )
    };
    let extra = format!(
        "[vault]\npath = \"vault\"\nkey_file = \"vault.key\"\n\
         [identity]\nconsent_binding = \"app\"\n\
         [[identity.workloads]]\nname = \"agent-a\"\nproviders = [\"downstream\"]\napi_keys = [\"weather\"]\n\
         scopes = {{ downstream = [\"tools.read\"] }}\n\
         allowed_return_urls = [\"{RETURN_URL}\"]\n\
         [[identity.workloads]]\nname = \"agent-b\"\nproviders = [\"downstream\", \"partner\"]\napi_keys = [\"weather\", \"payroll\"]\n\
         [[identity.access_keys]]\naccess_key_id = \"{AGENT_A_KEY}\"\nsecret_access_key_file = \"a.secret\"\nworkloads = [\"agent-a\"]\n\
         [[identity.access_keys]]\naccess_key_id = \"{ANY_KEY}\"\nsecret_access_key_file = \"any.secret\"\n\
         [api_keys.weather]\nkey_file = \"weather.key\"\n\
         [api_keys.payroll]\nkey_file = \"payroll.key\"\n\
         {}{}",
        provider("downstream"),
        provider("partner"),
    );
    let gateway = TestGateway::start(
        &inbound,
        Setup {
            extra: &extra,
            files: vec![
                ("weather.key", WEATHER_KEY.to_string()),
                ("payroll.key", PAYROLL_KEY.to_string()),
                ("a.secret", AGENT_A_SECRET.to_string()),
                ("any.secret", ANY_SECRET.to_string()),
                (
                    "downstream.secret",
                    idp::DOWNSTREAM_CLIENT_SECRET.to_string(),
                ),
                ("vault.key", VAULT_KEY.to_string()),
            ],
            ..Setup::default()
        },
    )
    .await;
    World {
        _inbound: inbound,
        downstream,
        gateway,
    }
}

fn m2m(token: &str, provider: &str, scopes: &[&str]) -> Value {
    json!({
        "workloadIdentityToken": token, "resourceCredentialProviderName": provider,
        "scopes": scopes, "oauth2Flow": "M2M",
    })
}

fn assert_denied(answer: &Answer, names: &[&str]) {
    assert_eq!(
        (answer.status, answer.error_type.as_str()),
        (403, "AccessDeniedException"),
        "{answer:?}"
    );
    for name in names {
        assert!(answer.message().contains(name), "{name:?} in {answer:?}");
    }
    assert!(answer.body.get("accessToken").is_none(), "{answer:?}");
    assert!(answer.body.get("apiKey").is_none(), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_key_for_agent_a_cannot_read_an_api_key_agent_a_does_not_declare() {
    let world = scoped_world().await;
    let base = &world.gateway.base;
    let agent_a = Signer::new(AGENT_A_KEY, AGENT_A_SECRET);
    let wat = agent_a.workload_token(base, "agent-a").await;

    let stolen = agent_a
        .post(
            base,
            "api-key",
            &json!({"workloadIdentityToken": wat, "resourceCredentialProviderName": "payroll"}),
        )
        .await;
    assert_denied(&stolen, &["\"agent-a\"", "\"payroll\"", "api_keys"]);
    assert!(!stolen.body.to_string().contains(PAYROLL_KEY));

    // The key it declares still works.
    let own = agent_a
        .post(
            base,
            "api-key",
            &json!({"workloadIdentityToken": wat, "resourceCredentialProviderName": "weather"}),
        )
        .await;
    assert_eq!(own.status, 200, "{own:?}");
    assert_eq!(own.body["apiKey"], WEATHER_KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateways_own_workload_reads_nothing_its_identity_section_does_not_declare() {
    let world = scoped_world().await;
    let base = &world.gateway.base;
    // A key that may act for every workload picks the gateway's own, which MCP tool calls use.
    let any = Signer::new(ANY_KEY, ANY_SECRET);
    let wat = any.workload_token(base, "portcullis").await;
    for name in ["weather", "payroll"] {
        let answer = any
            .post(
                base,
                "api-key",
                &json!({"workloadIdentityToken": wat, "resourceCredentialProviderName": name}),
            )
            .await;
        assert_denied(&answer, &["\"portcullis\"", name, "[identity]"]);
    }
    let answer = any
        .post(
            base,
            "oauth2/token",
            &m2m(&wat, "downstream", &["tools.read"]),
        )
        .await;
    assert_denied(&answer, &["\"portcullis\"", "\"downstream\""]);
    // agent-b declares payroll: the same key reads it there.
    let wat_b = any.workload_token(base, "agent-b").await;
    let answer = any
        .post(
            base,
            "api-key",
            &json!({"workloadIdentityToken": wat_b, "resourceCredentialProviderName": "payroll"}),
        )
        .await;
    assert_eq!(answer.body["apiKey"], PAYROLL_KEY, "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_key_for_agent_a_cannot_get_m2m_tokens_from_a_provider_or_with_scopes_agent_a_does_not_declare()
 {
    let world = scoped_world().await;
    let base = &world.gateway.base;
    let agent_a = Signer::new(AGENT_A_KEY, AGENT_A_SECRET);
    let wat = agent_a.workload_token(base, "agent-a").await;

    let other_provider = agent_a
        .post(base, "oauth2/token", &m2m(&wat, "partner", &["tools.read"]))
        .await;
    assert_denied(
        &other_provider,
        &["\"agent-a\"", "\"partner\"", "providers"],
    );

    let wider = agent_a
        .post(
            base,
            "oauth2/token",
            &m2m(&wat, "downstream", &["tools.read", "tools.write"]),
        )
        .await;
    assert_denied(&wider, &["\"agent-a\"", "tools.write", "scopes.downstream"]);

    // The scope limit cannot be sidestepped through customParameters.
    let mut smuggled = m2m(&wat, "downstream", &["tools.read"]);
    smuggled["customParameters"] = json!({"scope": "tools.write"});
    let smuggled = agent_a.post(base, "oauth2/token", &smuggled).await;
    assert_eq!(
        (smuggled.status, smuggled.error_type.as_str()),
        (400, "ValidationException"),
        "{smuggled:?}"
    );
    assert!(
        smuggled
            .message()
            .starts_with("customParameters.scope: is an OAuth 2.0 protocol parameter"),
        "{smuggled:?}"
    );

    // What agent-a declares: a real token from the real provider.
    let allowed = agent_a
        .post(
            base,
            "oauth2/token",
            &m2m(&wat, "downstream", &["tools.read"]),
        )
        .await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    let (_, claims) = idp::decode_unverified(allowed.body["accessToken"].as_str().unwrap());
    assert_eq!(claims["iss"], world.downstream.issuer.as_str());
    let granted: Vec<&str> = claims["scope"].as_str().unwrap().split(' ').collect();
    assert!(
        granted.contains(&"tools.read") && !granted.contains(&"tools.write"),
        "{claims}"
    );

    // The refused provider is a working one: agent-b, which declares it, gets a token there.
    let any = Signer::new(ANY_KEY, ANY_SECRET);
    let wat_b = any.workload_token(base, "agent-b").await;
    let partner = any
        .post(
            base,
            "oauth2/token",
            &m2m(&wat_b, "partner", &["tools.write"]),
        )
        .await;
    assert_eq!(partner.status, 200, "{partner:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_federation_with_an_undeclared_provider_is_refused_before_any_consent_starts() {
    let world = scoped_world().await;
    let base = &world.gateway.base;
    let agent_a = Signer::new(AGENT_A_KEY, AGENT_A_SECRET);
    let answer = agent_a
        .post(
            base,
            "GetWorkloadAccessTokenForUserId",
            &json!({"workloadName": "agent-a", "userId": "alice"}),
        )
        .await;
    let wat = answer.body["workloadAccessToken"].as_str().unwrap();
    let request = |provider: &str| {
        json!({
            "workloadIdentityToken": wat, "resourceCredentialProviderName": provider,
            "scopes": ["tools.read"], "oauth2Flow": "USER_FEDERATION",
            "resourceOauth2ReturnUrl": RETURN_URL,
        })
    };
    let refused = agent_a
        .post(base, "oauth2/token", &request("partner"))
        .await;
    assert_denied(&refused, &["\"agent-a\"", "\"partner\""]);
    assert!(
        refused.body.get("authorizationUrl").is_none(),
        "{refused:?}"
    );
    assert!(refused.body.get("sessionUri").is_none(), "{refused:?}");
    // The declared provider starts a consent at the gateway's own connect URL.
    let started = agent_a
        .post(base, "oauth2/token", &request("downstream"))
        .await;
    assert_eq!(started.status, 200, "{started:?}");
    assert_eq!(started.body["sessionStatus"], "IN_PROGRESS");
    let url = started.body["authorizationUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("{base}/oauth2/connect/")), "{url}");
}

/// A gateway with only the identity API configured: `identity` goes into `[identity]`.
async fn signing_gateway(idp: &Idp, identity: &str) -> TestGateway {
    TestGateway::start(
        idp,
        Setup {
            extra: &format!(
                "[vault]\npath = \"vault\"\nkey_file = \"vault.key\"\n[identity]\n{identity}\n\
                 [[identity.workloads]]\nname = \"agent-a\"\n\
                 [[identity.access_keys]]\naccess_key_id = \"{AGENT_A_KEY}\"\nsecret_access_key_file = \"a.secret\"\n"
            ),
            files: vec![
                ("a.secret", AGENT_A_SECRET.to_string()),
                ("vault.key", VAULT_KEY.to_string()),
            ],
            ..Setup::default()
        },
    )
    .await
}

async fn get_workload_token(signer: &Signer, gateway: &TestGateway) -> Answer {
    signer
        .post(
            &gateway.base,
            "GetWorkloadAccessToken",
            &json!({"workloadName": "agent-a"}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_for_another_service_is_refused() {
    let idp = Idp::start().await;
    let gateway = signing_gateway(&idp, "").await;
    let s3 = Signer::new(AGENT_A_KEY, AGENT_A_SECRET).service("s3");
    let answer = get_workload_token(&s3, &gateway).await;
    assert_eq!(
        (answer.status, answer.error_type.as_str()),
        (403, "InvalidSignatureException"),
        "{answer:?}"
    );
    assert_eq!(
        answer.message(),
        "Credential should be scoped to correct service: 'bedrock-agentcore'."
    );
    assert!(answer.body.get("workloadAccessToken").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_for_a_region_outside_allowed_regions_is_refused_and_a_listed_one_accepted()
 {
    let idp = Idp::start().await;
    let signer = Signer::new(AGENT_A_KEY, AGENT_A_SECRET);
    let ireland = signer.clone().region("eu-west-1");

    let virginia_only = signing_gateway(&idp, "allowed_regions = [\"us-east-1\"]").await;
    let refused = get_workload_token(&ireland, &virginia_only).await;
    assert_eq!(
        (refused.status, refused.error_type.as_str()),
        (403, "InvalidSignatureException"),
        "{refused:?}"
    );
    assert_eq!(
        refused.message(),
        "Credential should be scoped to a valid region, not 'eu-west-1'. This gateway accepts: us-east-1."
    );
    assert!(refused.body.get("workloadAccessToken").is_none());
    let accepted = get_workload_token(&signer, &virginia_only).await;
    assert_eq!(accepted.status, 200, "{accepted:?}");

    let both = signing_gateway(&idp, "allowed_regions = [\"us-east-1\", \"eu-west-1\"]").await;
    let accepted = get_workload_token(&ireland, &both).await;
    assert_eq!(accepted.status, 200, "{accepted:?}");

    // No list: any region (the signature still covers it).
    let any_region = signing_gateway(&idp, "").await;
    let accepted = get_workload_token(&signer.clone().region("ap-south-2"), &any_region).await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
}
