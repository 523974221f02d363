//! Who may call what: Cedar policies evaluated as AgentCore Gateway's policy engine does
//! (DESIGN 2.10), with the `cedar-policy` crate, Cedar's reference implementation.
//!
//! The entity model is AgentCore's, so a policy written for AgentCore works unchanged:
//! - principal `AgentCore::OAuthUser::"<sub>"`, whose tags are the access token's claims, each
//!   a String as AgentCore makes them (numbers and booleans as their text, arrays and objects
//!   as their JSON text; a `null` claim is no tag);
//! - action `AgentCore::Action::"<target>___<tool>"`, a member of `AgentCore::Action::"CallTool"`;
//! - resource `AgentCore::Gateway::"<gateway>"` (`[policy] gateway`);
//! - context `{ "input": <the call's arguments> }`.
//!
//! With `[policy]` present everything is denied unless a policy permits it, and a `forbid`
//! wins (Cedar's semantics). `tools/list` leaves out the tools a caller can never be permitted
//! to call: the same request with the context unknown, by Cedar's partial evaluation. A
//! policy set is immutable; a reload swaps in a new one only if every file parses.
//!
//! Owns: loading policy files, the entity model, decisions. May use: `inbound` (the caller
//! and its claims), `telemetry`.

mod cache;
mod entities;
mod load;
mod schema;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::{Authorizer, Decision, PolicySet};
use serde_json::{Map, Value};

use crate::inbound::Caller;
pub use load::PolicyProblem;
pub use schema::{ToolShape, schema_json, schema_text};

/// `[policy]` as validated (DESIGN 2.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// The folder of `*.cedar` files.
    pub dir: PathBuf,
    pub mode: PolicyMode,
    /// The resource's id: `AgentCore::Gateway::"<gateway>"`.
    pub gateway: String,
}

/// Whether decisions are enforced or only logged and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    Enforce,
    /// Nothing is refused; would-be denials are logged and counted (to try policies on live
    /// traffic before enforcing them).
    LogOnly,
}

impl PolicyMode {
    pub fn label(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::LogOnly => "log_only",
        }
    }
}

/// The default resource id when `[policy] gateway` is not set.
pub const DEFAULT_GATEWAY: &str = "portcullis";

/// One decision about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What Cedar decided.
    pub permitted: bool,
    /// Whether the call may go ahead (always, in `log_only` mode).
    pub proceed: bool,
    /// The policies that decided (the satisfied permits, or the forbids that won), by id.
    pub policies: Vec<String>,
}

struct Loaded {
    set: PolicySet,
    files: usize,
    /// Whether a permit's action scope reaches every tool (no action, or a group).
    permit_for_all: bool,
    /// The tools a permit names in its action scope. With neither, a tool is denied whatever
    /// the caller and the input, which listing checks before building anything.
    permitted_by_name: HashSet<String>,
    /// The tools any policy names in its action scope.
    named: HashSet<String>,
    /// The slice of every tool no policy names: the policies scoped to no action or a group.
    general: Arc<PolicySet>,
    /// Whether no condition in `general` reads `action`: then its answer is the same for every
    /// tool it is the slice of, and a listing evaluates it once instead of once per tool.
    general_ignores_action: bool,
    /// Each named tool's slice of `set`: the policies whose action scope can match it. A
    /// policy scoped `action == X` cannot decide a call of another tool, so leaving it out
    /// changes no decision; it makes one decision cost the few policies about that tool
    /// instead of all. Filled on first use per tool; a reload starts a new `Loaded`.
    slices: parking_lot::Mutex<HashMap<String, Arc<PolicySet>>>,
}

impl Loaded {
    fn new(set: PolicySet, files: usize) -> Loaded {
        let mut permit_for_all = false;
        let mut permitted_by_name = HashSet::new();
        let mut named = HashSet::new();
        let mut general = PolicySet::new();
        let mut general_ignores_action = true;
        for policy in set.policies() {
            let scope = policy.action_constraint();
            let tools = entities::named_tools(&scope);
            if policy.effect() == cedar_policy::Effect::Permit {
                match &tools {
                    Some(tools) => permitted_by_name.extend(tools.iter().cloned()),
                    None => permit_for_all = true,
                }
            }
            named.extend(tools.into_iter().flatten());
            // No tool is named "": what matches it matches every tool no policy names.
            if entities::scope_may_match(&scope, "") {
                general_ignores_action &= !entities::condition_reads_action(policy);
                // Ids are unique in `set`, so adding to a fresh set cannot clash.
                let _ = general.add(policy.clone());
            }
        }
        Loaded {
            set,
            files,
            permit_for_all,
            permitted_by_name,
            named,
            general: Arc::new(general),
            general_ignores_action,
            slices: parking_lot::Mutex::default(),
        }
    }

    /// Whether some permit can apply to `tool` (else it is denied outright).
    fn has_permit(&self, tool: &str) -> bool {
        self.permit_for_all || self.permitted_by_name.contains(tool)
    }

    fn slice(&self, tool: &str) -> Arc<PolicySet> {
        if !self.named.contains(tool) {
            return self.general.clone();
        }
        if let Some(slice) = self.slices.lock().get(tool) {
            return slice.clone();
        }
        let mut set = PolicySet::new();
        for policy in self.set.policies() {
            if entities::scope_may_match(&policy.action_constraint(), tool) {
                let _ = set.add(policy.clone());
            }
        }
        let slice = Arc::new(set);
        // Bounded by the names in the policy files.
        self.slices.lock().insert(tool.to_string(), slice.clone());
        slice
    }
}

/// The policies in force, hot-swappable.
pub struct Policies {
    config: PolicyConfig,
    current: ArcSwap<Loaded>,
    authorizer: Authorizer,
    entities: cache::EntityCache,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field("config", &self.config)
            .field("policies", &self.current.load().set.policies().count())
            .finish_non_exhaustive()
    }
}

impl Policies {
    /// Loads `config.dir`. Any problem is an error: a gateway does not start with policies it
    /// cannot read (everything would be denied, silently).
    pub fn load(config: PolicyConfig) -> Result<Policies, Vec<PolicyProblem>> {
        let (set, files) = load::load_dir(&config.dir)?;
        Ok(Policies {
            config,
            current: ArcSwap::from_pointee(Loaded::new(set, files)),
            authorizer: Authorizer::new(),
            entities: cache::EntityCache::default(),
        })
    }

    /// Checks the policy files of `config` without building anything, and against the Cedar
    /// schema of `tools` (the catalog): for `validate`, which fails on any problem.
    pub fn check<'a>(
        config: &PolicyConfig,
        tools: impl IntoIterator<Item = ToolShape<'a>>,
    ) -> Result<(usize, usize), Vec<PolicyProblem>> {
        let (set, files) = load::load_dir(&config.dir)?;
        let problems = Self::against_schema(&config.dir, tools);
        if problems.is_empty() {
            Ok((files, set.policies().count()))
        } else {
            Err(problems)
        }
    }

    /// The problems of the policy files against the Cedar schema of `tools`. `serve` logs
    /// them as warnings at start and after every reload: a policy about a tool that is gone
    /// for now (its target file broken) must not take every other decision down with it.
    pub fn validate<'a>(
        &self,
        tools: impl IntoIterator<Item = ToolShape<'a>>,
    ) -> Vec<PolicyProblem> {
        Self::against_schema(&self.config.dir, tools)
    }

    fn against_schema<'a>(
        dir: &std::path::Path,
        tools: impl IntoIterator<Item = ToolShape<'a>>,
    ) -> Vec<PolicyProblem> {
        match schema::schema(tools) {
            Ok(schema) => load::validate_dir(dir, &schema),
            Err(message) => vec![PolicyProblem {
                file: dir.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("the catalog's Cedar schema cannot be built: {message}"),
            }],
        }
    }

    /// Re-reads the folder. On any problem the policies in force stay, and the problems are
    /// returned for the log.
    pub fn reload(&self) -> Result<usize, Vec<PolicyProblem>> {
        let (set, files) = load::load_dir(&self.config.dir)?;
        let count = set.policies().count();
        self.current.store(Arc::new(Loaded::new(set, files)));
        Ok(count)
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// How many files and policies are in force.
    pub fn size(&self) -> (usize, usize) {
        let loaded = self.current.load();
        (loaded.files, loaded.set.policies().count())
    }

    /// Decides one `tools/call` of `tool`, whose inputSchema types `context.input` (see
    /// [`schema`]), logging and counting the decision.
    pub fn authorize(
        &self,
        caller: &Caller,
        tool: ToolShape<'_>,
        input: &Map<String, Value>,
    ) -> Verdict {
        let loaded = self.current.load();
        let decided = if loaded.has_permit(tool.name) {
            self.decide(&loaded.slice(tool.name), caller, tool, input)
        } else {
            // No permit can apply: denied whatever the input, without building anything.
            Ok((false, vec![]))
        };
        let (permitted, policies) = decided.unwrap_or_else(|reason| {
            tracing::warn!(%reason, tool = tool.name, "the call cannot be put to the policies; denied");
            (false, vec![])
        });
        let verdict = Verdict {
            permitted,
            proceed: permitted || self.config.mode == PolicyMode::LogOnly,
            policies,
        };
        crate::telemetry::policy_decided(
            &caller.issuer,
            &caller.subject,
            tool.name,
            verdict.permitted,
            &verdict.policies,
            self.config.mode.label(),
        );
        verdict
    }

    /// Cedar's decision on the call and the policies that made it.
    fn decide(
        &self,
        slice: &PolicySet,
        caller: &Caller,
        tool: ToolShape<'_>,
        input: &Map<String, Value>,
    ) -> Result<(bool, Vec<String>), String> {
        let entities = self.entities.get(caller, tool.name, &self.config.gateway)?;
        let input = schema::input_expression(tool.input_schema, input)?;
        let request = entities.request(Some(input))?;
        let response = self
            .authorizer
            .is_authorized(&request, slice, &entities.entities);
        for error in response.diagnostics().errors() {
            // A policy that errs is skipped by Cedar (it neither permits nor forbids).
            tracing::warn!(%error, tool = tool.name, "a Cedar policy failed to evaluate");
        }
        let policies = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        Ok((response.decision() == Decision::Allow, policies))
    }

    /// Whether `caller` could be permitted to call `tool` with some arguments: the request
    /// with the context unknown is not denied outright. In `log_only` mode every tool is
    /// listed.
    pub fn may_list(&self, caller: &Caller, tool: &str) -> bool {
        self.listable(caller, &[tool]) == [true]
    }

    /// [`Policies::may_list`] for many tools at once (a `tools/list` page): tools no permit
    /// names cost one set lookup; the others one partial evaluation on entities built once.
    pub fn listable(&self, caller: &Caller, tools: &[&str]) -> Vec<bool> {
        if self.config.mode == PolicyMode::LogOnly {
            return vec![true; tools.len()];
        }
        let loaded = self.current.load();
        let mut listable = vec![false; tools.len()];
        let candidates: Vec<(usize, &str)> = tools
            .iter()
            .enumerate()
            .filter(|(_, tool)| loaded.has_permit(tool))
            .map(|(at, tool)| (at, *tool))
            .collect();
        if candidates.is_empty() {
            return listable;
        }
        // Tools no policy names share the general slice; when no condition reads `action`,
        // one of them stands for all (its answer is theirs), so only it needs an entity and
        // an evaluation.
        type Tools<'a> = Vec<(usize, &'a str)>;
        let (evaluated, represented): (Tools, Tools) = if loaded.general_ignores_action {
            let (named, general): (Vec<_>, Vec<_>) = candidates
                .into_iter()
                .partition(|(_, tool)| loaded.named.contains(*tool));
            let mut general = general.into_iter();
            let representative = general.next();
            (
                named.into_iter().chain(representative).collect(),
                general.collect(),
            )
        } else {
            (candidates, vec![])
        };
        let names: Vec<&str> = evaluated.iter().map(|(_, tool)| *tool).collect();
        match entities::listing(caller, &names, &self.config.gateway) {
            Ok((entities, requests)) => {
                let mut general = false;
                for ((at, tool), request) in evaluated.into_iter().zip(requests) {
                    let slice = loaded.slice(tool);
                    let response = self
                        .authorizer
                        .is_authorized_partial(&request, &slice, &entities);
                    listable[at] = response.decision() != Some(Decision::Deny);
                    if Arc::ptr_eq(&slice, &loaded.general) {
                        general = listable[at];
                    }
                }
                for (at, _) in represented {
                    listable[at] = general;
                }
            }
            Err(reason) => {
                tracing::warn!(%reason, "the listing cannot be put to the policies; nothing listed");
            }
        }
        listable
    }
}

#[cfg(test)]
mod tests;
