//! `[[identity.workloads]]`, `[[identity.access_keys]]` and `identity.allowed_regions`: who may
//! call the identity API (DESIGN 2.7) and what each workload may use through it.
//!
//! Deny by default. A workload uses, through the identity API, only the OAuth providers and
//! API keys it names (`providers`, `api_keys`), optionally only some scopes per provider
//! (`scopes`), the way an IAM policy lists the credential-provider resources an AgentCore
//! workload may use. Without the lists an access key limited to one workload could read every
//! `[api_keys.*]` secret and get client-credentials tokens from every provider (issue 9,
//! item 8). The gateway's own workload (`identity.workload`) takes its lists from `[identity]`
//! for the identity API; its MCP tool calls are not restricted by them, target files say what
//! those use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use url::Url;

use super::providers::read_secret;
use super::raw::RawConfig;
use super::validate::{Problems, https_or_loopback};
use super::{AccessKeyConfig, ProviderGrant, WorkloadConfig, is_region_name, is_workload_name};

/// The lists a workload's grants are read from (`[identity]` or one `[[identity.workloads]]`).
struct RawGrantLists<'a> {
    providers: &'a [String],
    api_keys: &'a [String],
    scopes: &'a BTreeMap<String, Vec<String>>,
}

/// The gateway's own workload plus `[[identity.workloads]]`, names unique, each with the
/// providers and API keys it may use. Names are checked against the config as written, so a
/// provider whose own section has a problem is reported once, there.
pub(super) fn workloads(
    raw: &RawConfig,
    own: &str,
    own_urls: &[Url],
    problems: &mut Problems,
) -> BTreeMap<String, WorkloadConfig> {
    let identity = &raw.identity;
    let own_lists = RawGrantLists {
        providers: &identity.providers,
        api_keys: &identity.api_keys,
        scopes: &identity.scopes,
    };
    let (providers, api_keys) = grants("identity", &own_lists, raw, problems);
    let mut workloads = BTreeMap::new();
    workloads.insert(
        own.to_string(),
        WorkloadConfig {
            name: own.to_string(),
            allowed_return_urls: own_urls.to_vec(),
            providers,
            api_keys,
        },
    );
    for (i, workload) in identity.workloads.iter().enumerate() {
        let key = format!("identity.workloads[{i}]");
        if !is_workload_name(&workload.name) {
            problems.push(
                format!("{key}.name"),
                format!(
                    "{:?}: workload names are 3-255 of [A-Za-z0-9_.-] (AgentCore WorkloadIdentityNameType)",
                    workload.name
                ),
            );
            continue;
        }
        if workloads.contains_key(&workload.name) {
            problems.push(
                format!("{key}.name"),
                format!(
                    "{:?} is already defined (identity.workload is a workload too; set its return URLs in identity.allowed_return_urls)",
                    workload.name
                ),
            );
            continue;
        }
        let urls = return_urls(
            &format!("{key}.allowed_return_urls"),
            &workload.allowed_return_urls,
            problems,
        );
        let lists = RawGrantLists {
            providers: &workload.providers,
            api_keys: &workload.api_keys,
            scopes: &workload.scopes,
        };
        let (providers, api_keys) = grants(&key, &lists, raw, problems);
        workloads.insert(
            workload.name.clone(),
            WorkloadConfig {
                name: workload.name.clone(),
                allowed_return_urls: urls,
                providers,
                api_keys,
            },
        );
    }
    workloads
}

/// `<key>.providers`, `<key>.api_keys` and `<key>.scopes`: every name configured, none twice,
/// scope limits only for listed providers and made of RFC 6749 section 3.3 scope tokens.
fn grants(
    key: &str,
    lists: &RawGrantLists<'_>,
    raw: &RawConfig,
    problems: &mut Problems,
) -> (BTreeMap<String, ProviderGrant>, BTreeSet<String>) {
    let mut providers = BTreeMap::new();
    for (j, name) in lists.providers.iter().enumerate() {
        let at = format!("{key}.providers[{j}]");
        if !raw.providers.contains_key(name) {
            problems.push(
                at,
                format!("{name:?} is not a configured provider (no [providers.{name}])"),
            );
        } else if providers
            .insert(name.clone(), ProviderGrant::default())
            .is_some()
        {
            problems.push(at, format!("{name:?} is listed twice"));
        }
    }
    for (name, scopes) in lists.scopes {
        let at = format!("{key}.scopes.{name}");
        if !lists.providers.contains(name) {
            problems.push(
                at,
                format!("{name:?} is not in {key}.providers: list the provider there first"),
            );
            continue;
        }
        for (k, scope) in scopes.iter().enumerate() {
            if !is_scope_token(scope) {
                problems.push(
                    format!("{at}[{k}]"),
                    format!(
                        "{scope:?} is not a scope token (RFC 6749 section 3.3: visible ASCII, no spaces, quotes or backslashes)"
                    ),
                );
            }
        }
        if let Some(grant) = providers.get_mut(name) {
            grant.scopes = Some(scopes.iter().cloned().collect());
        }
    }
    let mut api_keys = BTreeSet::new();
    for (j, name) in lists.api_keys.iter().enumerate() {
        let at = format!("{key}.api_keys[{j}]");
        if !raw.api_keys.contains_key(name) {
            problems.push(
                at,
                format!("{name:?} is not a configured API key (no [api_keys.{name}])"),
            );
        } else if !api_keys.insert(name.clone()) {
            problems.push(at, format!("{name:?} is listed twice"));
        }
    }
    (providers, api_keys)
}

/// RFC 6749 section 3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

pub(super) fn return_urls(key: &str, texts: &[String], problems: &mut Problems) -> Vec<Url> {
    texts
        .iter()
        .enumerate()
        .filter_map(|(i, text)| https_or_loopback(&format!("{key}[{i}]"), text, problems))
        .collect()
}

/// `identity.allowed_regions`: AWS region names (`us-east-1`, `us-gov-west-1`). The SigV4
/// credential scope names a region; AWS endpoints refuse a scope for another region, and so
/// does the identity API when this list is not empty.
pub(super) fn allowed_regions(raw: &[String], problems: &mut Problems) -> Vec<String> {
    let mut regions: Vec<String> = Vec::new();
    for (i, region) in raw.iter().enumerate() {
        let at = format!("identity.allowed_regions[{i}]");
        if !is_region_name(region) {
            problems.push(
                at,
                format!("{region:?} is not an AWS region name (like \"us-east-1\")"),
            );
        } else if regions.contains(region) {
            problems.push(at, format!("{region:?} is listed twice"));
        } else {
            regions.push(region.clone());
        }
    }
    regions
}

/// `[[identity.access_keys]]`: unique ids, secrets read now, workload lists that name
/// configured workloads.
pub(super) fn access_keys(
    raw: &RawConfig,
    base: &Path,
    workloads: &BTreeMap<String, WorkloadConfig>,
    problems: &mut Problems,
) -> Vec<AccessKeyConfig> {
    let mut keys: Vec<AccessKeyConfig> = Vec::new();
    for (i, access_key) in raw.identity.access_keys.iter().enumerate() {
        let key = format!("identity.access_keys[{i}]");
        let id = &access_key.access_key_id;
        // The id travels in the SigV4 credential scope, which is `/`-separated.
        if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            problems.push(
                format!("{key}.access_key_id"),
                "1-128 letters and digits (e.g. \"AKIAPORTCULLIS0AGENT1\")",
            );
        } else if keys.iter().any(|k| &k.access_key_id == id) {
            problems.push(
                format!("{key}.access_key_id"),
                format!("{id:?} is listed twice"),
            );
        }
        if let Some(list) = &access_key.workloads {
            for (j, name) in list.iter().enumerate() {
                if !workloads.contains_key(name) {
                    problems.push(
                        format!("{key}.workloads[{j}]"),
                        format!("{name:?} is not a configured workload (identity.workload or [[identity.workloads]])"),
                    );
                }
            }
        }
        if let Some(secret) = read_secret(
            &key,
            "secret_access_key",
            access_key.secret_access_key_env.as_deref(),
            access_key.secret_access_key_file.as_deref(),
            base,
            problems,
        ) {
            keys.push(AccessKeyConfig {
                access_key_id: id.clone(),
                secret_access_key: secret,
                workloads: access_key.workloads.clone(),
            });
        }
    }
    keys
}
