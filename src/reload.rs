//! What serves: the catalog loaded from the target files with its credential references
//! checked against the config, and the policies checked against the catalog's Cedar schema.
//! `serve` starts with what this returns, reloads swap it in and `portcullis validate`
//! reports its problems; one spelling of "load, check, log" for all three.

use crate::catalog::{self, Catalog};
use crate::config::Config;
use crate::credential;
use crate::policy;
use crate::targets::Transport;

/// Starts the background work of a snapshot's targets, once it serves.
pub(crate) fn activate(catalog: &Catalog) {
    for target in catalog.targets() {
        target.runtime.activate();
    }
}

/// The catalog's tools as the Cedar schema sees them (DESIGN 2.10).
pub fn tool_shapes(catalog: &Catalog) -> impl Iterator<Item = policy::ToolShape<'_>> {
    catalog.tools().map(|tool| policy::ToolShape {
        name: &tool.qualified_name,
        input_schema: &tool.listing.input_schema,
    })
}

/// Logs every policy that fails Cedar's validation against the catalog's schema. A warning,
/// not a refusal: a policy about a tool that is gone for now must not stop every other
/// decision; `portcullis validate` fails on the same problems.
pub(crate) fn warn_policy_schema_problems(policies: &policy::Policies, catalog: &Catalog) {
    for problem in policies.validate(tool_shapes(catalog)) {
        tracing::warn!(%problem, "a policy does not validate against the catalog's Cedar schema");
    }
}

pub(crate) fn render_policy_problems(problems: &[policy::PolicyProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads the target files (failed files keep their version from `previous`) and checks every
/// credential reference against the config: what `serve` starts with, reload swaps in and
/// `portcullis validate` reports.
pub async fn load_catalog(
    config: &Config,
    previous: &Catalog,
    transport: &Transport,
) -> (Catalog, Vec<catalog::Problem>) {
    let (mut catalog, mut problems) = Catalog::load(&config.targets.dir, previous, transport).await;
    problems.extend(unknown_credential_references(config, &catalog));
    if config.search.enabled
        && let Err(error) = catalog.index_for_search()
    {
        // The tools still serve; the search tool says it is unavailable.
        problems.push(catalog::Problem {
            file: config.targets.dir.clone(),
            pointer: String::new(),
            message: format!("the tool-search index could not be built: {error}"),
        });
    }
    (catalog, problems)
}

pub(crate) fn log_catalog(catalog: &Catalog, problems: &[catalog::Problem], message: &'static str) {
    for problem in problems {
        tracing::warn!(%problem, "target file problem");
    }
    tracing::info!(
        targets = catalog.target_count(),
        tools = catalog.len(),
        "{message}"
    );
}

/// Targets whose credentials name a provider or API key that the config does not define:
/// reported by `portcullis validate` and logged at load, so the mistake shows before a call.
fn unknown_credential_references(config: &Config, catalog: &Catalog) -> Vec<catalog::Problem> {
    catalog
        .targets()
        .filter_map(|target| {
            let (pointer, name, known, section) = match target.credentials.as_ref()? {
                credential::Credentials::Oauth(oauth) => (
                    "/credentials/oauth/provider",
                    &oauth.provider,
                    config.providers.contains_key(&oauth.provider),
                    "[providers]",
                ),
                credential::Credentials::ApiKey(key) => (
                    "/credentials/apiKey/provider",
                    &key.provider,
                    config.api_keys.contains_key(&key.provider),
                    "[api_keys]",
                ),
            };
            (!known).then(|| catalog::Problem {
                file: target.file.clone(),
                pointer: pointer.to_string(),
                message: format!("{name:?} is not configured in {section} of the config"),
            })
        })
        .collect()
}
