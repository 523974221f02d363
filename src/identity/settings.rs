//! The identity sections of the validated config (`[identity]`, `[providers.*]`,
//! `[[identity.workloads]]`, `[[identity.access_keys]]`), built by `config` from the raw TOML.
//! They live here, with the part that runs them, so that nothing below `config` imports it.

use std::collections::{BTreeMap, BTreeSet};

use url::Url;

use crate::inbound::InboundConfig;
use crate::secret::Secret;

/// The parts of the validated config the identity module runs on, borrowed from it: each
/// part is built from its own sections, never from the whole config.
#[derive(Debug, Clone, Copy)]
pub struct IdentitySections<'a> {
    pub identity: &'a IdentityConfig,
    pub providers: &'a BTreeMap<String, ProviderConfig>,
    pub api_keys: &'a BTreeMap<String, Secret>,
    /// For the gateway's own sign-in (the inbound IdP) and the identity API's user tokens.
    pub inbound: &'a InboundConfig,
    /// `server.public_url`: base of the callback and connect URLs.
    pub public_url: &'a str,
}

/// How the gateway authenticates to a token endpoint (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
}

/// Where a provider's endpoints come from.
#[derive(Debug, Clone)]
pub enum ProviderEndpoints {
    /// OIDC Discovery / RFC 8414 metadata, fetched on first use.
    Discovery(Url),
    /// The RFC 9728 metadata of this protected resource (an MCP server's URL) names the
    /// authorization server, whose RFC 8414 / OIDC metadata gives the endpoints; fetched on
    /// first use (the MCP authorization spec's "Authorization Server Discovery").
    ProtectedResource(Url),
    Explicit {
        authorization: Url,
        token: Url,
    },
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub name: String,
    pub vendor: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub endpoints: ProviderEndpoints,
    /// Scopes always requested, in addition to what targets ask for.
    pub scopes: Vec<String>,
    pub auth_method: ClientAuthMethod,
    /// Whether RFC 8707 `resource` may be sent at all; some IdPs reject the parameter.
    pub send_resource_indicator: bool,
    /// The RFC 8707 resource asked for when a credential names none (DESIGN 2.3): the
    /// identifier the provider's APIs check `aud` against. `None`: no `resource` is sent.
    pub resource: Option<String>,
    pub extra_authorize_params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentBinding {
    /// The connect page signs the browser in with the inbound IdP: same issuer + subject only.
    Login,
    /// The app completes the session through CompleteResourceTokenAuth (identity API).
    App,
    /// Whoever opens the link completes it (`--dev` only).
    None,
}

#[derive(Debug, Clone)]
pub struct LoginConfig {
    pub client_id: String,
    pub client_secret: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The gateway's own workload: MCP tool calls store and read tokens under it.
    pub workload: String,
    pub consent_binding: ConsentBinding,
    /// The gateway's own workload's return URLs (also in `workloads[workload]`).
    pub allowed_return_urls: Vec<Url>,
    pub login: Option<LoginConfig>,
    /// Every workload the identity API knows, by name: the gateway's own (`workload` with
    /// `allowed_return_urls`) and each `[[identity.workloads]]`.
    pub workloads: BTreeMap<String, WorkloadConfig>,
    /// SigV4 credentials accepted by the identity API, secrets resolved.
    pub access_keys: Vec<AccessKeyConfig>,
    /// Regions a SigV4 credential scope may name (`identity.allowed_regions`); empty: any.
    pub allowed_regions: Vec<String>,
}

/// A workload identity (AgentCore `WorkloadIdentity`): its name, the URLs its consents may
/// return the browser to (`allowedResourceOauth2ReturnUrls`), and what it may use through
/// the identity API.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub name: String,
    pub allowed_return_urls: Vec<Url>,
    /// OAuth providers it may use (GetResourceOauth2Token, `M2M` and `USER_FEDERATION`).
    pub providers: BTreeMap<String, ProviderGrant>,
    /// `[api_keys.*]` names it may read (GetResourceApiKey).
    pub api_keys: BTreeSet<String>,
}

impl WorkloadConfig {
    /// What this workload may ask provider `name` for; `None`: it may not use it at all.
    pub fn provider(&self, name: &str) -> Option<&ProviderGrant> {
        self.providers.get(name)
    }

    pub fn may_read_api_key(&self, name: &str) -> bool {
        self.api_keys.contains(name)
    }
}

/// What one workload may ask one provider for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderGrant {
    /// `None`: any scopes; otherwise the only scopes it may request.
    pub scopes: Option<BTreeSet<String>>,
}

impl ProviderGrant {
    /// The requested scopes this grant does not cover, in request order.
    pub fn scopes_not_granted<'a>(&self, requested: &'a [String]) -> Vec<&'a str> {
        match &self.scopes {
            None => Vec::new(),
            Some(allowed) => requested
                .iter()
                .filter(|scope| !allowed.contains(*scope))
                .map(String::as_str)
                .collect(),
        }
    }
}

/// One `[[identity.access_keys]]`: an AWS-style access key pair (SigV4) and, optionally, the
/// workloads it may act for (like an IAM policy's resource list). `Debug` redacts the secret.
#[derive(Debug, Clone)]
pub struct AccessKeyConfig {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    /// `None`: every workload.
    pub workloads: Option<Vec<String>>,
}

impl AccessKeyConfig {
    pub fn may_act_for(&self, workload: &str) -> bool {
        self.workloads
            .as_ref()
            .is_none_or(|list| list.iter().any(|w| w == workload))
    }
}

/// AgentCore `WorkloadIdentityNameType`: 3-255 of `[A-Za-z0-9_.-]`.
pub fn is_workload_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Lowercase letters, digits and inner hyphens, starting with a letter, at most 64 long.
pub fn is_region_name(region: &str) -> bool {
    (1..=64).contains(&region.len())
        && region.starts_with(|c: char| c.is_ascii_lowercase())
        && !region.ends_with('-')
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
