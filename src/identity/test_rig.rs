//! A scripted token endpoint and an [`Identity`] around it, for unit tests of the refresh and
//! consent logic (`tokens_tests.rs`) and of the tool-call pipeline (`call_tests.rs`): no live
//! provider, every refresh recorded.

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
pub(crate) enum Script {
    Grant(&'static str, Option<&'static str>),
    /// Another replica rotates the link first (writes `access`/`refresh` into the store), then
    /// the provider refuses the old refresh token.
    RotatedElsewhere(&'static str, &'static str),
    InvalidGrant,
}

pub(crate) struct ScriptedEndpoint {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) script: Mutex<VecDeque<Script>>,
    pub(crate) refreshes: Mutex<Vec<String>>,
    /// The extra parameters (RFC 8707 `resource`, custom ones) each refresh was sent with.
    pub(crate) refresh_extras: Mutex<Vec<Vec<(String, String)>>>,
    pub(crate) authorizations: Mutex<Vec<Vec<String>>>,
}

pub(crate) fn granted(access: &str, refresh: Option<&str>) -> Granted {
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
        extra: &[(String, String)],
    ) -> Result<Granted, OAuthError> {
        self.refresh_extras.lock().push(extra.to_vec());
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

pub(crate) fn token(access: &str, refresh: Option<&str>, expires_at: Option<u64>) -> TokenRecord {
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

pub(crate) fn alice() -> Caller {
    Caller {
        issuer: "https://idp.example".into(),
        subject: "alice".into(),
        client_id: None,
        scopes: Arc::from(vec![]),
        expires_at: unix_now() + 3600,
        claims: Default::default(),
    }
}

pub(crate) fn alice_key() -> TokenKey {
    TokenKey::new("portcullis", "https://idp.example#alice", "github")
}

pub(crate) fn credentials() -> Credentials {
    Credentials::Oauth(OAuthCredential {
        provider: "github".into(),
        grant_type: GrantType::AuthorizationCode,
        scopes: vec!["read".into()],
        custom_parameters: BTreeMap::new(),
        resource: None,
    })
}

pub(crate) struct Rig {
    _dir: tempfile::TempDir,
    pub(crate) identity: Arc<Identity>,
    pub(crate) endpoint: Arc<ScriptedEndpoint>,
}

pub(crate) fn rig(script: Vec<Script>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(&dir.path().join("vault"), Keyring::generate().unwrap()).unwrap());
    let endpoint = Arc::new(ScriptedEndpoint {
        store: store.clone(),
        script: Mutex::new(script.into()),
        refreshes: Mutex::default(),
        refresh_extras: Mutex::default(),
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
        scopes: Vec::new(),
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
    pub(crate) async fn link(&self, access: &str, expires_at: u64) {
        self.identity
            .store()
            .put_token(&alice_key(), &token(access, Some("r1"), Some(expires_at)))
            .await
            .unwrap();
    }

    /// Alice's credential for the target, with `tool_scopes`.
    pub(crate) async fn credential(&self, tool_scopes: &[String]) -> Credential {
        self.identity
            .credential_for(&alice(), &credentials(), &request(tool_scopes))
            .await
            .unwrap()
    }

    pub(crate) async fn stored(&self) -> Option<TokenRecord> {
        self.identity.store().get_token(&alice_key()).await.unwrap()
    }
}

pub(crate) fn request(tool_scopes: &[String]) -> CredentialRequest<'_> {
    CredentialRequest {
        tool_scopes,
        resource: None,
        target_resource: None,
        force_authentication: false,
    }
}

pub(crate) fn bearer(credential: Credential) -> String {
    match credential {
        Credential::Ready(Injection::Bearer(token)) => token.expose().to_string(),
        Credential::Ready(_) => panic!("not a bearer token"),
        Credential::NeedsConsent(prompt) => panic!("asked for consent: {}", prompt.url),
    }
}
