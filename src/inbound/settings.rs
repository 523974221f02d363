//! The inbound section of the validated config (`[inbound]`), built by `config` from the raw
//! TOML: where keys come from and which tokens are acceptable (a CUSTOM_JWT authorizer).

use jsonwebtoken::Algorithm;
use url::Url;

/// Where inbound keys come from and which tokens are acceptable.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    pub keys: KeySourceConfig,
    pub allowed_audiences: Vec<String>,
    pub allowed_clients: Vec<String>,
    pub allowed_scopes: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway_seconds: u64,
    pub claims: Vec<ClaimRule>,
}

#[derive(Debug, Clone)]
pub enum KeySourceConfig {
    /// OpenID Connect Discovery 1.0 section 4: issuer and `jwks_uri` are read from the document.
    /// `issuer` / `jwks_url` override what the document says (for IdPs with split hostnames).
    Discovery {
        discovery_url: Url,
        issuer: Option<String>,
        jwks_url: Option<Url>,
    },
    /// No discovery: issuer and JWKS URL given explicitly.
    Explicit { issuer: String, jwks_url: Url },
    /// `--dev`: the gateway's own development issuer at `<public_url>/dev`.
    DevIssuer,
}

/// One `[[inbound.claims]]` rule: the claim must equal a value, or (for arrays and
/// space-separated strings) contain at least one of the listed values.
#[derive(Debug, Clone)]
pub struct ClaimRule {
    pub name: String,
    pub check: ClaimCheck,
}

#[derive(Debug, Clone)]
pub enum ClaimCheck {
    Equals(serde_json::Value),
    ContainsAny(Vec<serde_json::Value>),
}
