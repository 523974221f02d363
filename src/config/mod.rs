//! Configuration: raw TOML -> validated [`Config`] (DESIGN 2.2).
//!
//! Loading never stops at the first mistake: every problem is collected with the key path it
//! concerns (`inbound.allowed_audiences[2]`) so that `portcullis validate` can print all of them
//! at once. Relative paths are resolved against the config file's folder, so the gateway behaves
//! the same whatever directory it is started from.

mod providers;
mod raw;
mod validate;
mod vault;
mod workloads;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::RawConfig;

// Each part's validated section lives with the part that runs it (DESIGN 3: config builds
// them, nothing below config imports config); re-exported here for the config's users.
pub use crate::identity::settings::{
    AccessKeyConfig, ClientAuthMethod, ConsentBinding, IdentityConfig, LoginConfig, ProviderConfig,
    ProviderEndpoints, ProviderGrant, WorkloadConfig, is_region_name, is_workload_name,
};
pub use crate::inbound::{ClaimCheck, ClaimRule, InboundConfig, KeySourceConfig};
pub use crate::limits::{LimitKey, RateLimitRule};
pub use crate::mcp::SearchConfig;
pub use crate::policy::{PolicyConfig, PolicyMode};
pub use crate::vault::{VaultBackend, VaultConfig};

/// A validated configuration. Plain data; the runtime state is built from it in `lib.rs`.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub inbound: InboundConfig,
    pub targets: TargetsConfig,
    pub telemetry: TelemetryConfig,
    /// Downstream OAuth providers by name (`[providers.<name>]`).
    pub providers: std::collections::BTreeMap<String, ProviderConfig>,
    /// Static API keys by name (`[api_keys.<name>]`), for `apiKey` credentials.
    pub api_keys: std::collections::BTreeMap<String, crate::secret::Secret>,
    pub identity: IdentityConfig,
    pub vault: VaultConfig,
    /// `[search]`: the `x_amz_bedrock_agentcore_search` tool (DESIGN 2.11).
    pub search: SearchConfig,
    /// `[policy]`: Cedar policies (DESIGN 2.10); `None` when the section is absent (every
    /// authenticated caller may call every tool).
    pub policy: Option<PolicyConfig>,
    /// `[[rate_limits]]`, in file order (issue 13).
    pub rate_limits: Vec<RateLimitRule>,
    /// Whether `--dev` was given: enables the embedded issuer and loopback-only binding.
    pub dev: bool,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Base for every URL the gateway hands out (resource metadata, consent, callbacks).
    /// Never ends with `/`.
    pub public_url: String,
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub data_dir: PathBuf,
    /// A legacy (2025-x) MCP session with no request in flight and no stream open for this
    /// long is closed in memory (`mcp::session_owner`); with a vault it is restored from there
    /// on its next request. `None`: the default, which depends on that (`mcp::route`).
    pub mcp_session_idle: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct TargetsConfig {
    pub dir: PathBuf,
    pub watch: bool,
}

pub use crate::telemetry::{LogFormat, TelemetryConfig};

/// One problem in the config, with the dotted key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read config file: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{file}: {} problem(s):\n{}", problems.len(), render(problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
    #[error(
        "no config file: {0} does not exist (pass --config FILE, or --dev for a zero-config local run)"
    )]
    Missing(PathBuf),
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The file name looked for when `--config` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "portcullis.toml";

impl Config {
    /// Loads and validates the config. Without an explicit path, `portcullis.toml` in the current
    /// directory is used if it exists; with `dev` and no file at all, dev defaults apply.
    pub fn load(path: Option<&Path>, dev: bool) -> Result<Config, ConfigError> {
        let (file, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        if !file.exists() {
            if dev && !explicit {
                let base = std::env::current_dir().map_err(|source| ConfigError::Read {
                    file: file.clone(),
                    source,
                })?;
                return validate::validate(RawConfig::default(), &base, dev)
                    .map_err(|problems| ConfigError::Invalid { file, problems });
            }
            return Err(ConfigError::Missing(file));
        }
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::from_toml(&text, &file, &base, dev)
    }

    /// Parses and validates TOML text; `file` is only used in messages, `base` resolves paths.
    pub fn from_toml(
        text: &str,
        file: &Path,
        base: &Path,
        dev: bool,
    ) -> Result<Config, ConfigError> {
        let raw = parse(text).map_err(|message| ConfigError::Syntax {
            file: file.to_path_buf(),
            message,
        })?;
        validate::validate(raw, base, dev).map_err(|problems| ConfigError::Invalid {
            file: file.to_path_buf(),
            problems,
        })
    }
}

/// TOML -> [`RawConfig`], naming the key path of a type error (`server.listen: invalid type`)
/// and the line of a syntax error.
fn parse(text: &str) -> Result<RawConfig, String> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner = inner.trim();
        if path.is_empty() || path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

#[cfg(test)]
mod tests;
