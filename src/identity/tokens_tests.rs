//! The refresh and consent logic of `tokens.rs` against a scripted token endpoint: single
//! flight, rotation, the `invalid_grant` re-read, union scopes, a downstream 401 (DESIGN 3.1).
//! The live-IdP integration tests (`tests/consent_flow.rs`) cover the same paths end to end.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use super::oauth::{AuthorizationRequest, Granted, OAuthError, TokenEndpoint};
use super::providers::{Endpoints, Provider};
use super::settings::{ClientAuthMethod, ProviderConfig, ProviderEndpoints};
use super::{Credential, CredentialRequest, Identity};
use crate::credential::Injection;
use crate::credential::{Credentials, GrantType, OAuthCredential};
use crate::inbound::Caller;
use crate::vault::{Keyring, Secret, SledStore, Store, TokenKey, TokenRecord, unix_now};

/// What the scripted endpoint does on a refresh.
enum Script {
    Grant(&'static str, Option<&'static str>),
    /// Another replica rotates the link first (writes `access`/`refresh` into the store), then
    /// the provider refuses the old refresh token.
    RotatedElsewhere(&'static str, &'static str),
    InvalidGrant,
}

struct ScriptedEndpoint {
    store: Arc<dyn Store>,
    script: Mutex<VecDeque<Script>>,
    refreshes: Mutex<Vec<String>>,
    authorizations: Mutex<Vec<Vec<String>>>,
}

fn granted(access: &str, refresh: Option<&str>) -> Granted {
    Granted {
        access_token: Secret::new(access),
        refresh_token: refresh.map(Secret::new),
        token_type: "Bearer".into(),
        expires_in: Some(3600),
        scopes: None,
    }
}

#[async_trait::async_trait]
impl TokenEndpoint for ScriptedEndpoint {
    fn authorization_request(
        &self,
        state: &str,
        scopes: &[String],
        _extra: &[(String, String)],
    ) -> AuthorizationRequest {
        self.authorizations.lock().push(scopes.to_vec());
        AuthorizationRequest {
            url: url::Url::parse(&format!("https://provider.example/authorize?state={state}"))
                .unwrap(),
            pkce_verifier: Secret::new("verifier"),
        }
    }

    async fn exchange_code(
        &self,
        _code: &str,
        _pkce_verifier: &Secret,
        _extra: &[(String, String)],
    ) -> Result<Granted, OAuthError> {
        Err(OAuthError::Transport("not scripted".into()))
    }

    async fn client_credentials(
        &self,
        _scopes: &[String],
        _extra: &[(String, String)],
    ) -> Result<Granted, OAuthError> {
        Err(OAuthError::Transport("not scripted".into()))
    }

    async fn refresh(
        &self,
        refresh_token: &Secret,
        _extra: &[(String, String)],
    ) -> Result<Granted, OAuthError> {
        self.refreshes
            .lock()
            .push(refresh_token.expose().to_string());
        // Give concurrent callers every chance to pile up behind the single flight.
        tokio::task::yield_now().await;
        let next = self.script.lock().pop_front();
        match next {
            Some(Script::Grant(access, refresh)) => Ok(granted(access, refresh)),
            Some(Script::RotatedElsewhere(access, refresh)) => {
                let mut record = token("old", Some(refresh), Some(unix_now() + 3600));
                record.access_token = Secret::new(access);
                self.store.put_token(&alice_key(), &record).await.unwrap();
                Err(OAuthError::InvalidGrant)
            }
            Some(Script::InvalidGrant) => Err(OAuthError::InvalidGrant),
            None => Err(OAuthError::Transport("no more scripted answers".into())),
        }
    }
}

fn token(access: &str, refresh: Option<&str>, expires_at: Option<u64>) -> TokenRecord {
    TokenRecord {
        access_token: Secret::new(access),
        refresh_token: refresh.map(Secret::new),
        token_type: "Bearer".into(),
        expires_at,
        scopes: vec!["read".into()],
        obtained_at: unix_now() - 7200,
        refreshed_at: None,
    }
}

fn alice() -> Caller {
    Caller {
        issuer: "https://idp.example".into(),
        subject: "alice".into(),
        client_id: None,
        scopes: Arc::from(vec![]),
        expires_at: unix_now() + 3600,
    }
}

fn alice_key() -> TokenKey {
    TokenKey::new("portcullis", "https://idp.example#alice", "github")
}

fn credentials() -> Credentials {
    Credentials::Oauth(OAuthCredential {
        provider: "github".into(),
        grant_type: GrantType::AuthorizationCode,
        scopes: vec!["read".into()],
        custom_parameters: BTreeMap::new(),
        resource: None,
    })
}

struct Rig {
    _dir: tempfile::TempDir,
    identity: Arc<Identity>,
    endpoint: Arc<ScriptedEndpoint>,
}

fn rig(script: Vec<Script>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&dir.path().join("vault"), Keyring::generate().unwrap()).unwrap());
    let endpoint = Arc::new(ScriptedEndpoint {
        store: store.clone(),
        script: Mutex::new(script.into()),
        refreshes: Mutex::default(),
        authorizations: Mutex::default(),
    });
    let config = ProviderConfig {
        name: "github".into(),
        vendor: "custom".into(),
        client_id: "client".into(),
        client_secret: Secret::new("secret"),
        endpoints: ProviderEndpoints::Explicit {
            authorization: url::Url::parse("https://provider.example/authorize").unwrap(),
            token: url::Url::parse("https://provider.example/token").unwrap(),
        },
        scopes: vec![],
        auth_method: ClientAuthMethod::ClientSecretBasic,
        send_resource_indicator: true,
        resource: None,
        extra_authorize_params: BTreeMap::new(),
    };
    let endpoints = Endpoints {
        authorization: url::Url::parse("https://provider.example/authorize").unwrap(),
        token: url::Url::parse("https://provider.example/token").unwrap(),
        issuer: None,
    };
    let provider = Provider::with_endpoint(config, endpoints, endpoint.clone());
    Rig {
        _dir: dir,
        identity: Arc::new(Identity::for_tests(store, vec![provider])),
        endpoint,
    }
}

impl Rig {
    /// Stores alice's link: `access` expiring at `expires_at`, refresh token `r1`.
    async fn link(&self, access: &str, expires_at: u64) {
        self.identity
            .store()
            .put_token(&alice_key(), &token(access, Some("r1"), Some(expires_at)))
            .await
            .unwrap();
    }

    /// Alice's credential for the target, with `tool_scopes`.
    async fn credential(&self, tool_scopes: &[String]) -> Credential {
        self.identity
            .credential_for(&alice(), &credentials(), &request(tool_scopes))
            .await
            .unwrap()
    }

    async fn stored(&self) -> Option<TokenRecord> {
        self.identity.store().get_token(&alice_key()).await.unwrap()
    }
}

fn request(tool_scopes: &[String]) -> CredentialRequest<'_> {
    CredentialRequest {
        tool_scopes,
        resource: None,
        target_resource: None,
        force_authentication: false,
    }
}

fn bearer(credential: Credential) -> String {
    match credential {
        Credential::Ready(Injection::Bearer(token)) => token.expose().to_string(),
        Credential::Ready(_) => panic!("not a bearer token"),
        Credential::NeedsConsent(prompt) => panic!("asked for consent: {}", prompt.url),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_token_is_refreshed_once_for_100_concurrent_calls() {
    let rig = rig(vec![Script::Grant("fresh", Some("rotated"))]);
    rig.link("stale", unix_now() - 1).await;
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let identity = rig.identity.clone();
            tokio::spawn(async move {
                identity
                    .credential_for(&alice(), &credentials(), &request(&[]))
                    .await
                    .map(bearer)
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap(), "fresh");
    }
    assert_eq!(*rig.endpoint.refreshes.lock(), ["r1"]);
    // The rotated refresh token was stored (before the new access token was handed out).
    let stored = rig.stored().await.unwrap();
    assert_eq!(
        stored.refresh_token.as_ref().map(Secret::expose),
        Some("rotated")
    );
    assert_eq!(stored.access_token.expose(), "fresh");
    assert!(stored.refreshed_at.is_some());
}

#[tokio::test]
async fn a_provider_that_does_not_rotate_keeps_the_old_refresh_token() {
    let rig = rig(vec![Script::Grant("fresh", None)]);
    rig.link("stale", unix_now() - 1).await;
    let credential = rig.credential(&[]).await;
    assert_eq!(bearer(credential), "fresh");
    let stored = rig.stored().await.unwrap();
    assert_eq!(
        stored.refresh_token.as_ref().map(Secret::expose),
        Some("r1")
    );
}

#[tokio::test]
async fn invalid_grant_re_reads_and_uses_a_token_another_replica_rotated() {
    let rig = rig(vec![Script::RotatedElsewhere("from-elsewhere", "r2")]);
    rig.link("stale", unix_now() - 1).await;
    let credential = rig.credential(&[]).await;
    assert_eq!(bearer(credential), "from-elsewhere");
    assert!(rig.stored().await.is_some());
}

#[tokio::test]
async fn invalid_grant_with_nothing_newer_drops_the_link_and_asks_for_consent() {
    let rig = rig(vec![Script::InvalidGrant]);
    rig.link("stale", unix_now() - 1).await;
    let credential = rig.credential(&[]).await;
    let Credential::NeedsConsent(prompt) = credential else {
        panic!("expected a consent prompt");
    };
    assert!(
        prompt
            .url
            .starts_with("https://gw.example.com/oauth2/connect/")
    );
    assert!(rig.stored().await.is_none());
}

#[tokio::test]
async fn a_tool_needing_more_scopes_asks_for_the_union() {
    let rig = rig(vec![]);
    rig.link("t", unix_now() + 3600).await;
    let more = ["write".to_string()];
    let credential = rig.credential(&more).await;
    assert!(matches!(credential, Credential::NeedsConsent(_)));
    assert_eq!(*rig.endpoint.authorizations.lock(), [vec!["read", "write"]]);
    assert!(rig.endpoint.refreshes.lock().is_empty());
}

#[tokio::test]
async fn a_401_refreshes_a_token_that_still_looks_fresh_and_only_once() {
    let rig = rig(vec![Script::Grant("after-401", Some("r2"))]);
    rig.link("refused", unix_now() + 3600).await;
    let fresh = rig
        .identity
        .after_unauthorized(
            &alice(),
            &credentials(),
            &Secret::new("refused"),
            &request(&[]),
        )
        .await
        .unwrap();
    assert_eq!(bearer(fresh), "after-401");
    // A second 401 report for the token already replaced does not refresh again.
    let again = rig
        .identity
        .after_unauthorized(
            &alice(),
            &credentials(),
            &Secret::new("refused"),
            &request(&[]),
        )
        .await
        .unwrap();
    assert_eq!(bearer(again), "after-401");
    assert_eq!(rig.endpoint.refreshes.lock().len(), 1);
}
