//! The downstream credential a target declares, and what the gateway hands a target to put on
//! its request (DESIGN 2.3 "credentials").
//!
//! A leaf: the catalog reads declarations from target files, `identity` turns a declaration into
//! an [`Injection`] for one caller, and `targets` put the injection on the wire. None of them
//! needs the others to name these types.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::secret::Secret;

/// At most one downstream credential per target (DESIGN 2.3).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Credentials {
    Oauth(OAuthCredential),
    ApiKey(ApiKeyCredential),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OAuthCredential {
    pub provider: String,
    pub grant_type: GrantType,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    /// RFC 8707 resource indicator (DESIGN 2.3); `None` falls back to the provider's.
    #[serde(default)]
    pub resource: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCredential {
    pub provider: String,
    /// Where the key goes. Required, except on an OpenAPI target, whose document's security
    /// scheme can say it ([`KeyPlacement`]); the catalog refuses a target left without one.
    #[serde(default)]
    pub location: Option<ApiKeyLocation>,
    #[serde(default)]
    pub parameter_name: Option<String>,
    pub prefix: Option<String>,
}

/// Where an API key goes on a request, as an OpenAPI document's security scheme says
/// (OpenAPI 3.1.0 section 4.8.27: `apiKey` in a header or the query, or `http` `bearer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPlacement {
    pub location: ApiKeyLocation,
    pub parameter_name: String,
    pub prefix: Option<String>,
}

impl ApiKeyCredential {
    /// Takes the placement from `placement` unless the target file says where the key goes
    /// (what the admin wrote wins over the document).
    pub fn place(&mut self, placement: &KeyPlacement) {
        if self.location.is_none() && self.parameter_name.is_none() {
            self.location = Some(placement.location);
            self.parameter_name = Some(placement.parameter_name.clone());
            if self.prefix.is_none() {
                self.prefix.clone_from(&placement.prefix);
            }
        }
    }

    /// Whether the key has somewhere to go.
    pub fn is_placed(&self) -> bool {
        self.location.is_some() && self.parameter_name.is_some()
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApiKeyLocation {
    Header,
    QueryParameter,
}

impl Credentials {
    /// The `[providers]` or `[api_keys]` entry the declaration names.
    pub fn provider(&self) -> &str {
        match self {
            Credentials::Oauth(oauth) => &oauth.provider,
            Credentials::ApiKey(api_key) => &api_key.provider,
        }
    }
}

/// What to put on the downstream request. A target receives one; it never fetches one.
#[derive(Debug, Clone)]
pub enum Injection {
    /// RFC 6750 section 2.1 `Authorization: Bearer`.
    Bearer(Secret),
    ApiKey {
        location: ApiKeyLocation,
        name: String,
        value: Secret,
    },
}

/// A boxed, sendable future (what [`TargetCredentials`] returns, so it stays object-safe).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The gateway's own credential for a target, with no user involved: an API key or a
/// client-credentials token (DESIGN 2.8: an MCP server's tools are "discovered ... with the
/// target's own credential (none, API key or client credentials)"). `identity` implements it;
/// a target that lists its own tools receives it and so needs nothing of `identity`.
pub trait TargetCredentials: Send + Sync + std::fmt::Debug {
    /// The credential `credentials` declares, for the RFC 8707 `resource` of the target. An
    /// error says why there is none (an `AUTHORIZATION_CODE` credential is always a user's).
    fn own_credential<'a>(
        &'a self,
        credentials: &'a Credentials,
        resource: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Injection, String>>;
}
