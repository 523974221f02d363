//! `[providers.*]`, `[api_keys.*]`, `[identity]` and `[vault]`: the downstream side of the
//! config. Vendor presets fill endpoints and quirks so that admins write only client ids.

use std::collections::BTreeMap;
use std::path::Path;

use url::Url;

use super::raw::{RawConfig, RawProvider};
use super::validate::{Problems, https_or_loopback, resolve};
use super::workloads::{access_keys, allowed_regions, return_urls, workloads};
use super::{
    ClientAuthMethod, ConsentBinding, IdentityConfig, LoginConfig, ProviderConfig,
    ProviderEndpoints, VaultConfig,
};
use crate::secret::Secret;

struct Preset {
    authorization: &'static str,
    token: &'static str,
    auth_method: ClientAuthMethod,
    resource: bool,
    extra: &'static [(&'static str, &'static str)],
}

/// Endpoints and quirks of well-known providers, from each vendor's OAuth documentation.
/// Vendors whose endpoints depend on the tenant's domain need `discovery_url`.
fn preset(vendor: &str) -> Option<Option<Preset>> {
    use ClientAuthMethod::{ClientSecretBasic as Basic, ClientSecretPost as Post};
    let fixed = |authorization, token, auth_method, resource, extra| {
        Some(Some(Preset {
            authorization,
            token,
            auth_method,
            resource,
            extra,
        }))
    };
    match vendor {
        // GitHub ignores RFC 8707 and answers unknown parameters with errors on some apps.
        "github" => fixed(
            "https://github.com/login/oauth/authorize",
            "https://github.com/login/oauth/access_token",
            Post,
            false,
            &[],
        ),
        // Google issues refresh tokens only with access_type=offline (and prompt=consent on re-consent).
        "google" => fixed(
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
            Post,
            false,
            &[("access_type", "offline"), ("prompt", "consent")],
        ),
        "microsoft" => fixed(
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            Post,
            false,
            &[],
        ),
        "slack" => fixed(
            "https://slack.com/oauth/v2/authorize",
            "https://slack.com/api/oauth.v2.access",
            Post,
            false,
            &[],
        ),
        // Atlassian 3LO needs audience=api.atlassian.com and prompt=consent.
        "atlassian" => fixed(
            "https://auth.atlassian.com/authorize",
            "https://auth.atlassian.com/oauth/token",
            Post,
            false,
            &[("audience", "api.atlassian.com"), ("prompt", "consent")],
        ),
        "salesforce" => fixed(
            "https://login.salesforce.com/services/oauth2/authorize",
            "https://login.salesforce.com/services/oauth2/token",
            Basic,
            false,
            &[],
        ),
        // Tenant-specific: the admin gives the tenant's discovery_url.
        "okta" | "auth0" | "cognito" | "custom" => Some(None),
        _ => None,
    }
}

const KNOWN_VENDORS: &str =
    "github, google, microsoft, slack, atlassian, salesforce, okta, auth0, cognito, custom";

/// Reads a secret named by `<name>_env` or `<name>_file` (exactly one must be set).
pub(super) fn read_secret(
    key: &str,
    name: &str,
    env: Option<&str>,
    file: Option<&str>,
    base: &Path,
    problems: &mut Problems,
) -> Option<Secret> {
    match (env, file) {
        (Some(_), Some(_)) => {
            problems.push(key, format!("set only one of {name}_env and {name}_file"));
            None
        }
        (None, None) => {
            problems.push(key, format!("missing {name}_env or {name}_file"));
            None
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(value) if !value.trim().is_empty() => Some(Secret::new(value.trim().to_string())),
            _ => {
                problems.push(
                    format!("{key}.{name}_env"),
                    format!("environment variable {var} is not set"),
                );
                None
            }
        },
        (None, Some(path)) => {
            let path = resolve(base, path);
            match std::fs::read_to_string(&path) {
                Ok(value) if !value.trim().is_empty() => {
                    Some(Secret::new(value.trim().to_string()))
                }
                Ok(_) => {
                    problems.push(
                        format!("{key}.{name}_file"),
                        format!("{} is empty", path.display()),
                    );
                    None
                }
                Err(e) => {
                    problems.push(
                        format!("{key}.{name}_file"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    None
                }
            }
        }
    }
}

fn provider(
    name: &str,
    raw: &RawProvider,
    base: &Path,
    problems: &mut Problems,
) -> Option<ProviderConfig> {
    let key = format!("providers.{name}");
    let Some(preset) = preset(&raw.vendor) else {
        problems.push(
            format!("{key}.vendor"),
            format!("unknown vendor {:?}; one of {KNOWN_VENDORS}", raw.vendor),
        );
        return None;
    };
    let client_id = match &raw.client_id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => {
            problems.push(format!("{key}.client_id"), "missing");
            return None;
        }
    };
    let client_secret = read_secret(
        &key,
        "client_secret",
        raw.client_secret_env.as_deref(),
        raw.client_secret_file.as_deref(),
        base,
        problems,
    )?;
    let explicit = match (&raw.authorization_endpoint, &raw.token_endpoint) {
        (Some(a), Some(t)) => {
            let a = https_or_loopback(&format!("{key}.authorization_endpoint"), a, problems);
            let t = https_or_loopback(&format!("{key}.token_endpoint"), t, problems);
            Some((a?, t?))
        }
        (None, None) => None,
        _ => {
            problems.push(
                &key,
                "set both authorization_endpoint and token_endpoint, or neither",
            );
            return None;
        }
    };
    let protected_resource = match &raw.protected_resource {
        Some(url) => Some(https_or_loopback(
            &format!("{key}.protected_resource"),
            url,
            problems,
        )?),
        None => None,
    };
    let endpoints = match (
        &raw.discovery_url,
        explicit,
        protected_resource.clone(),
        &preset,
    ) {
        (Some(url), None, None, _) => ProviderEndpoints::Discovery(https_or_loopback(
            &format!("{key}.discovery_url"),
            url,
            problems,
        )?),
        (None, Some((authorization, token)), None, _) => ProviderEndpoints::Explicit {
            authorization,
            token,
        },
        (None, None, Some(resource), _) => ProviderEndpoints::ProtectedResource(resource),
        (None, None, None, Some(p)) => ProviderEndpoints::Explicit {
            authorization: Url::parse(p.authorization).ok()?,
            token: Url::parse(p.token).ok()?,
        },
        (None, None, None, None) => {
            problems.push(
                format!("{key}.discovery_url"),
                format!(
                    "vendor {:?} needs the tenant's discovery_url, its protected_resource \
                     (an MCP server's URL) or both endpoints",
                    raw.vendor
                ),
            );
            return None;
        }
        _ => {
            problems.push(
                &key,
                "set one of discovery_url, protected_resource or the endpoints",
            );
            return None;
        }
    };
    let auth_method = match raw.token_auth_method.as_deref() {
        None => preset
            .as_ref()
            .map_or(ClientAuthMethod::ClientSecretBasic, |p| p.auth_method),
        Some("client_secret_basic") => ClientAuthMethod::ClientSecretBasic,
        Some("client_secret_post") => ClientAuthMethod::ClientSecretPost,
        Some(other) => {
            problems.push(
                format!("{key}.token_auth_method"),
                format!("{other:?} is not one of \"client_secret_basic\", \"client_secret_post\""),
            );
            ClientAuthMethod::ClientSecretBasic
        }
    };
    let mut extra: BTreeMap<String, String> = preset
        .as_ref()
        .map(|p| {
            p.extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    extra.extend(raw.extra_authorize_params.clone());
    Some(ProviderConfig {
        name: name.to_string(),
        vendor: raw.vendor.clone(),
        client_id,
        client_secret,
        endpoints,
        scopes: raw.scopes.clone(),
        auth_method,
        send_resource_indicator: raw
            .send_resource_indicator
            .unwrap_or_else(|| preset.as_ref().is_none_or(|p| p.resource)),
        // A protected resource's own URL is the resource its tokens are for (RFC 9728 section
        // 1, RFC 8707), unless `resource` says otherwise.
        resource: match raw.resource.as_deref() {
            Some(resource) => resource_indicator(&format!("{key}.resource"), resource, problems),
            None => protected_resource.map(String::from),
        },
        extra_authorize_params: extra,
    })
}

/// RFC 8707 section 2: a resource indicator is an absolute URI without a fragment.
fn resource_indicator(key: &str, value: &str, problems: &mut Problems) -> Option<String> {
    match Url::parse(value) {
        Ok(url) if url.fragment().is_none() => Some(value.to_string()),
        Ok(_) => {
            problems.push(key, "an RFC 8707 resource must not have a fragment (#...)");
            None
        }
        Err(error) => {
            problems.push(
                key,
                format!("{value:?} is not an absolute URI (RFC 8707 section 2): {error}"),
            );
            None
        }
    }
}

pub(super) struct Downstream {
    pub providers: BTreeMap<String, ProviderConfig>,
    pub api_keys: BTreeMap<String, Secret>,
    pub identity: IdentityConfig,
    pub vault: VaultConfig,
}

pub(super) fn downstream(
    raw: &RawConfig,
    base: &Path,
    dev: bool,
    problems: &mut Problems,
) -> Downstream {
    let mut providers = BTreeMap::new();
    for (name, raw_provider) in &raw.providers {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            || name.len() > 64
        {
            problems.push(
                format!("providers.{name}"),
                "provider names are 1-64 of [0-9A-Za-z_-]",
            );
            continue;
        }
        if let Some(p) = provider(name, raw_provider, base, problems) {
            providers.insert(name.clone(), p);
        }
    }
    let mut api_keys = BTreeMap::new();
    for (name, raw_key) in &raw.api_keys {
        if let Some(secret) = read_secret(
            &format!("api_keys.{name}"),
            "key",
            raw_key.key_env.as_deref(),
            raw_key.key_file.as_deref(),
            base,
            problems,
        ) {
            api_keys.insert(name.clone(), secret);
        }
    }
    let consent_binding = match raw.identity.consent_binding.as_deref() {
        None if dev
            && raw
                .inbound
                .as_ref()
                .and_then(|i| i.login.as_ref())
                .is_none() =>
        {
            ConsentBinding::None
        }
        None | Some("login") => ConsentBinding::Login,
        Some("app") => ConsentBinding::App,
        Some("none") if dev => ConsentBinding::None,
        Some("none") => {
            problems.push(
                "identity.consent_binding",
                "\"none\" lets whoever opens a consent URL link their account to the caller's identity: only allowed with --dev",
            );
            ConsentBinding::None
        }
        Some(other) => {
            problems.push(
                "identity.consent_binding",
                format!("{other:?} is not one of \"login\", \"app\", \"none\""),
            );
            ConsentBinding::Login
        }
    };
    let login = raw
        .inbound
        .as_ref()
        .and_then(|i| i.login.as_ref())
        .map(|login| LoginConfig {
            client_id: login.client_id.clone(),
            client_secret: match (&login.client_secret_env, &login.client_secret_file) {
                (None, None) => None,
                (env, file) => read_secret(
                    "inbound.login",
                    "client_secret",
                    env.as_deref(),
                    file.as_deref(),
                    base,
                    problems,
                ),
            },
        });
    if consent_binding == ConsentBinding::Login && login.is_none() && !providers.is_empty() {
        problems.push(
            "inbound.login",
            "consent_binding = \"login\" needs [inbound.login] (the gateway's own OIDC client) to sign browsers in",
        );
    }
    let allowed_return_urls = return_urls(
        "identity.allowed_return_urls",
        &raw.identity.allowed_return_urls,
        problems,
    );
    let workload = raw
        .identity
        .workload
        .clone()
        .unwrap_or_else(|| "portcullis".to_string());
    if workload.is_empty() || workload.len() > 255 || workload.contains('/') {
        problems.push("identity.workload", "1-255 characters, no `/`");
    }
    let workloads = workloads(raw, &workload, &allowed_return_urls, problems);
    let access_keys = access_keys(raw, base, &workloads, problems);
    let allowed_regions = allowed_regions(&raw.identity.allowed_regions, problems);
    let data_dir = resolve(base, raw.server.data_dir.as_deref().unwrap_or("data"));
    let vault = super::vault::vault(&raw.vault, base, &data_dir, problems);
    Downstream {
        providers,
        api_keys,
        identity: IdentityConfig {
            workload,
            consent_binding,
            allowed_return_urls,
            login,
            workloads,
            access_keys,
            allowed_regions,
        },
        vault,
    }
}
