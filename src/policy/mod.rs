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

mod entities;
mod load;
mod schema;

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use cedar_policy::{Authorizer, Decision, PolicySet, Request};
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
    /// Each tool's slice of `set`: the policies whose action scope can match it. A policy
    /// scoped `action == X` cannot decide a call of another tool, so leaving it out changes no
    /// decision; it makes one decision cost the few policies about that tool instead of all.
    /// Filled on first use per tool; a reload starts a new `Loaded`.
    slices: parking_lot::Mutex<std::collections::HashMap<String, Arc<Slice>>>,
}

/// The policies that may apply to one tool.
struct Slice {
    set: PolicySet,
    /// Whether any of them permits: without one, the call is denied whatever the input.
    has_permit: bool,
}

impl Loaded {
    fn new(set: PolicySet, files: usize) -> Loaded {
        Loaded {
            set,
            files,
            slices: parking_lot::Mutex::default(),
        }
    }

    fn slice(&self, tool: &str) -> Arc<Slice> {
        if let Some(slice) = self.slices.lock().get(tool) {
            return slice.clone();
        }
        let mut set = PolicySet::new();
        let mut has_permit = false;
        for policy in self.set.policies() {
            if entities::scope_may_match(&policy.action_constraint(), tool) {
                has_permit |= policy.effect() == cedar_policy::Effect::Permit;
                // Ids are unique in `self.set`, so adding to a fresh set cannot clash.
                let _ = set.add(policy.clone());
            }
        }
        let slice = Arc::new(Slice { set, has_permit });
        let mut slices = self.slices.lock();
        // Bounded by the catalog's tool names in practice; a guard against unbounded names.
        if slices.len() > 100_000 {
            slices.clear();
        }
        slices.insert(tool.to_string(), slice.clone());
        slice
    }
}

/// The policies in force, hot-swappable.
pub struct Policies {
    config: PolicyConfig,
    current: ArcSwap<Loaded>,
    authorizer: Authorizer,
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

    /// Decides one `tools/call` of `tool`, whose inputSchema is `input_schema` (it types
    /// `context.input`, see [`schema`]), logging and counting the decision.
    pub fn authorize(
        &self,
        caller: &Caller,
        tool: ToolShape<'_>,
        input: &Map<String, Value>,
    ) -> Verdict {
        let ToolShape {
            name: tool,
            input_schema,
        } = tool;
        let slice = self.current.load().slice(tool);
        let input = schema::typed_input(input_schema, input);
        let verdict = match entities::request(caller, tool, &self.config.gateway, Some(input)) {
            Ok((request, entities)) => {
                let response = self
                    .authorizer
                    .is_authorized(&request, &slice.set, &entities);
                for error in response.diagnostics().errors() {
                    // A policy that errs is skipped by Cedar (it neither permits nor forbids).
                    tracing::warn!(%error, tool, "a Cedar policy failed to evaluate");
                }
                let permitted = response.decision() == Decision::Allow;
                Verdict {
                    permitted,
                    proceed: permitted || self.config.mode == PolicyMode::LogOnly,
                    policies: response
                        .diagnostics()
                        .reason()
                        .map(ToString::to_string)
                        .collect(),
                }
            }
            Err(reason) => {
                tracing::warn!(%reason, tool, "the call cannot be put to the policies; denied");
                Verdict {
                    permitted: false,
                    proceed: self.config.mode == PolicyMode::LogOnly,
                    policies: vec![],
                }
            }
        };
        crate::telemetry::policy_decided(
            &caller.issuer,
            &caller.subject,
            tool,
            verdict.permitted,
            &verdict.policies,
            self.config.mode.label(),
        );
        verdict
    }

    /// Whether `caller` could be permitted to call `tool` with some arguments: the request
    /// with the context unknown is not denied outright. In `log_only` mode every tool is
    /// listed.
    pub fn may_list(&self, caller: &Caller, tool: &str) -> bool {
        if self.config.mode == PolicyMode::LogOnly {
            return true;
        }
        let slice = self.current.load().slice(tool);
        if !slice.has_permit {
            return false;
        }
        match entities::request(caller, tool, &self.config.gateway, None) {
            Ok((request, entities)) => self.may_permit(&request, &slice.set, &entities),
            Err(_) => false,
        }
    }

    /// [`Policies::may_list`] for many tools at once (a `tools/list` page): the entities are
    /// built once, each tool costs one partial evaluation.
    pub fn listable(&self, caller: &Caller, tools: &[&str]) -> Vec<bool> {
        if self.config.mode == PolicyMode::LogOnly {
            return vec![true; tools.len()];
        }
        let loaded = self.current.load();
        let slices: Vec<Arc<Slice>> = tools.iter().map(|tool| loaded.slice(tool)).collect();
        // Tools no permit can reach are out without building anything.
        let candidates: Vec<&str> = tools
            .iter()
            .zip(&slices)
            .filter(|(_, slice)| slice.has_permit)
            .map(|(tool, _)| *tool)
            .collect();
        if candidates.is_empty() {
            return vec![false; tools.len()];
        }
        match entities::listing(caller, &candidates, &self.config.gateway) {
            Ok((entities, requests)) => {
                let mut requests = requests.into_iter();
                slices
                    .iter()
                    .map(|slice| {
                        slice.has_permit
                            && requests.next().is_some_and(|request| {
                                self.may_permit(&request, &slice.set, &entities)
                            })
                    })
                    .collect()
            }
            Err(reason) => {
                tracing::warn!(%reason, "the listing cannot be put to the policies; nothing listed");
                vec![false; tools.len()]
            }
        }
    }

    fn may_permit(
        &self,
        request: &Request,
        set: &PolicySet,
        entities: &cedar_policy::Entities,
    ) -> bool {
        let response = self
            .authorizer
            .is_authorized_partial(request, set, entities);
        response.decision() != Some(Decision::Deny)
    }
}

#[cfg(test)]
mod tests;
