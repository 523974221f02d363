//! `portcullis.toml` exactly as written by the admin (DESIGN 2.2).
//!
//! These types only describe the file's shape; every semantic check (URLs, paths, secrets,
//! cross-references) happens in [`super::validate`], which reports each problem with the key
//! path it concerns. Unknown keys are refused here so that a typo never silently disables a
//! security rule (`allowed_audiences` misspelt would otherwise mean "any audience").

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub inbound: Option<RawInbound>,
    #[serde(default)]
    pub targets: RawTargets,
    #[serde(default)]
    pub vault: RawVault,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub api_keys: BTreeMap<String, RawApiKey>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub search: RawSearch,
    pub policy: Option<RawPolicy>,
    #[serde(default)]
    pub rate_limits: Vec<RawRateLimit>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: Option<u64>,
    pub data_dir: Option<String>,
    pub mcp_session_idle_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInbound {
    pub discovery_url: Option<String>,
    pub issuer: Option<String>,
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub allowed_audiences: Vec<String>,
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    #[serde(default)]
    pub allowed_scopes: Vec<String>,
    pub algorithms: Option<Vec<String>>,
    pub leeway_seconds: Option<u64>,
    #[serde(default)]
    pub claims: Vec<RawClaimRule>,
    pub login: Option<RawLogin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimRule {
    pub name: String,
    pub equals: Option<serde_json::Value>,
    pub contains_any: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogin {
    pub client_id: String,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargets {
    pub dir: Option<String>,
    pub watch: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub tools: Option<String>,
    pub per: Option<String>,
    pub requests_per_second: Option<i64>,
    pub requests_per_minute: Option<i64>,
    pub concurrent: Option<i64>,
    pub shared: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub dir: Option<String>,
    pub mode: Option<String>,
    pub gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    pub enabled: Option<bool>,
    pub max_results: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVault {
    /// `sled` (default) or `postgres` (DESIGN 2.9).
    pub backend: Option<String>,
    pub path: Option<String>,
    pub key_file: Option<String>,
    /// The environment variable holding the PostgreSQL URL.
    pub url_env: Option<String>,
    /// A file holding the PostgreSQL URL.
    pub url_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub workload: Option<String>,
    pub consent_binding: Option<String>,
    #[serde(default)]
    pub allowed_return_urls: Vec<String>,
    #[serde(default)]
    pub access_keys: Vec<RawAccessKey>,
    #[serde(default)]
    pub workloads: Vec<RawWorkload>,
    /// SigV4 credential-scope regions the identity API accepts (empty: any).
    #[serde(default)]
    pub allowed_regions: Vec<String>,
    /// OAuth providers (`[providers.*]` names) that the gateway's own workload may use
    /// through the identity API (MCP tool calls are governed by target files instead).
    #[serde(default)]
    pub providers: Vec<String>,
    /// `[api_keys.*]` names the gateway's own workload may read through the identity API.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Optional per provider: the only scopes the gateway's own workload may ask for.
    #[serde(default)]
    pub scopes: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    pub name: String,
    #[serde(default)]
    pub allowed_return_urls: Vec<String>,
    /// OAuth providers (`[providers.*]` names) it may use through the identity API.
    #[serde(default)]
    pub providers: Vec<String>,
    /// `[api_keys.*]` names it may read through the identity API.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Optional per provider: the only scopes it may ask for.
    #[serde(default)]
    pub scopes: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessKey {
    pub access_key_id: String,
    pub secret_access_key_env: Option<String>,
    pub secret_access_key_file: Option<String>,
    pub workloads: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub vendor: String,
    pub client_id: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<String>,
    pub discovery_url: Option<String>,
    pub protected_resource: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub token_auth_method: Option<String>,
    pub send_resource_indicator: Option<bool>,
    pub resource: Option<String>,
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub key_env: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub log_format: Option<String>,
    pub log_level: Option<String>,
}
