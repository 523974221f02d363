//! [`RawConfig`] -> [`Config`]: every semantic rule, each failure reported with its key path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

use super::raw::{RawClaimRule, RawConfig, RawInbound, RawServer};
use super::{
    ClaimCheck, ClaimRule, Config, InboundConfig, KeySourceConfig, LimitKey, LogFormat,
    PolicyConfig, PolicyMode, Problem, RateLimitRule, SearchConfig, ServerConfig, TargetsConfig,
    TelemetryConfig,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY: u64 = 4 * 1024 * 1024;
const MAX_MCP_SESSION_IDLE_SECONDS: u64 = 86_400;
const MAX_MAX_BODY: u64 = 64 * 1024 * 1024;
const MAX_LEEWAY_SECONDS: u64 = 300;

/// Asymmetric algorithms only: HS* would let anyone holding the verification key mint tokens,
/// and accepting them next to RS* is the classic key-confusion attack (RFC 8725 section 2.1).
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Collects problems while building each section, so all of them are reported at once.
#[derive(Default)]
pub(super) struct Problems(Vec<Problem>);

impl Problems {
    pub(super) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }
}

pub(super) fn validate(raw: RawConfig, base: &Path, dev: bool) -> Result<Config, Vec<Problem>> {
    let mut problems = Problems::default();
    let server = server(&raw.server, base, dev, &mut problems);
    let inbound = match &raw.inbound {
        Some(inbound) => inbound_rules(inbound, &mut problems),
        None if dev => dev_inbound(),
        None => {
            problems.push(
                "inbound",
                "missing: configure the IdP that issues callers' tokens (discovery_url, allowed_audiences), or run with --dev",
            );
            dev_inbound()
        }
    };
    let targets = TargetsConfig {
        dir: resolve(base, raw.targets.dir.as_deref().unwrap_or("targets")),
        watch: raw.targets.watch.unwrap_or(true),
    };
    let telemetry = telemetry(&raw.telemetry, &mut problems);
    let search = search(&raw.search, &mut problems);
    let rate_limits: Vec<RateLimitRule> = raw
        .rate_limits
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| rate_limit(i, rule, &mut problems))
        .collect();
    let policy = raw
        .policy
        .as_ref()
        .map(|raw| policy(raw, base, &mut problems));
    let downstream = super::providers::downstream(&raw, base, dev, &mut problems);
    shared_limits_need_a_shared_store(&rate_limits, raw.vault.backend.as_deref(), &mut problems);

    if problems.0.is_empty() {
        Ok(Config {
            server,
            inbound,
            targets,
            telemetry,
            providers: downstream.providers,
            api_keys: downstream.api_keys,
            identity: downstream.identity,
            vault: downstream.vault,
            search,
            policy,
            rate_limits,
            dev,
        })
    } else {
        Err(problems.0)
    }
}

fn rate_limit(
    i: usize,
    raw: &super::raw::RawRateLimit,
    problems: &mut Problems,
) -> Option<RateLimitRule> {
    let at = |key: &str| format!("rate_limits[{i}].{key}");
    let before = problems.0.len();
    let tools = raw.tools.clone().unwrap_or_else(|| "*".to_string());
    if tools.is_empty() {
        problems.push(at("tools"), "must not be empty (\"*\" covers every tool)");
    }
    let per = match raw.per.as_deref() {
        None | Some("user") => LimitKey::User,
        Some(other) => match other.strip_prefix("claim:") {
            Some(claim) if !claim.is_empty() => LimitKey::Claim(claim.to_string()),
            _ => {
                problems.push(
                    at("per"),
                    format!("unknown key {other:?} (expected \"user\" or \"claim:<name>\")"),
                );
                LimitKey::User
            }
        },
    };
    let positive = |key: &str, value: i64, problems: &mut Problems| match u32::try_from(value) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            problems.push(
                at(key),
                format!("must be a positive whole number (got {value})"),
            );
            None
        }
    };
    let rate = match (raw.requests_per_second, raw.requests_per_minute) {
        (Some(_), Some(_)) => {
            problems.push(
                at("requests_per_minute"),
                "give requests_per_second or requests_per_minute, not both",
            );
            None
        }
        (Some(n), None) => positive("requests_per_second", n, problems)
            .map(|n| (n, std::time::Duration::from_secs(1))),
        (None, Some(n)) => positive("requests_per_minute", n, problems)
            .map(|n| (n, std::time::Duration::from_secs(60))),
        (None, None) => None,
    };
    let concurrent = raw
        .concurrent
        .and_then(|n| positive("concurrent", n, problems));
    if raw.requests_per_second.is_none()
        && raw.requests_per_minute.is_none()
        && raw.concurrent.is_none()
    {
        problems.push(
            format!("rate_limits[{i}]"),
            "limits nothing: give requests_per_second, requests_per_minute or concurrent",
        );
    }
    let shared = raw.shared.unwrap_or(false);
    if shared && rate.is_none() && problems.0.len() == before {
        problems.push(
            at("shared"),
            "shares a rate across replicas: give requests_per_second or requests_per_minute (concurrent counts are per replica)",
        );
    }
    (problems.0.len() == before).then_some(RateLimitRule {
        tools,
        per,
        rate,
        concurrent,
        shared,
    })
}

/// `shared = true` keeps the buckets in the vault's database, which only the PostgreSQL
/// backend offers to several replicas.
fn shared_limits_need_a_shared_store(
    rules: &[RateLimitRule],
    backend: Option<&str>,
    problems: &mut Problems,
) {
    // The raw name: a [vault] section with a problem of its own is reported there, not here.
    if backend == Some("postgres") {
        return;
    }
    for (i, rule) in rules.iter().enumerate() {
        if rule.shared {
            problems.push(
                format!("rate_limits[{i}].shared"),
                "needs [vault] backend = \"postgres\" (the replicas share the buckets there); with sled the gateway is one process and its counts are exact without it",
            );
        }
    }
}

fn policy(raw: &super::raw::RawPolicy, base: &Path, problems: &mut Problems) -> PolicyConfig {
    let mode = match raw.mode.as_deref() {
        None | Some("enforce") => PolicyMode::Enforce,
        Some("log_only") => PolicyMode::LogOnly,
        Some(other) => {
            problems.push(
                "policy.mode",
                format!("unknown mode {other:?} (expected \"enforce\" or \"log_only\")"),
            );
            PolicyMode::Enforce
        }
    };
    let gateway = match raw.gateway.as_deref() {
        Some("") => {
            problems.push("policy.gateway", "must not be empty");
            String::new()
        }
        Some(gateway) => gateway.to_string(),
        None => crate::policy::DEFAULT_GATEWAY.to_string(),
    };
    PolicyConfig {
        dir: resolve(base, raw.dir.as_deref().unwrap_or("policies")),
        mode,
        gateway,
    }
}

fn search(raw: &super::raw::RawSearch, problems: &mut Problems) -> SearchConfig {
    let defaults = SearchConfig::default();
    let max_results = match raw.max_results {
        None => defaults.max_results,
        Some(n) => match usize::try_from(n) {
            Ok(n) if (1..=SearchConfig::MAX_RESULTS_LIMIT).contains(&n) => n,
            _ => {
                problems.push(
                    "search.max_results",
                    format!(
                        "must be between 1 and {} (got {n})",
                        SearchConfig::MAX_RESULTS_LIMIT
                    ),
                );
                defaults.max_results
            }
        },
    };
    SearchConfig {
        enabled: raw.enabled.unwrap_or(defaults.enabled),
        max_results,
    }
}

pub(super) fn resolve(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn server(raw: &RawServer, base: &Path, dev: bool, problems: &mut Problems) -> ServerConfig {
    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen = match SocketAddr::from_str(listen_text) {
        Ok(addr) => addr,
        Err(_) => {
            problems.push(
                "server.listen",
                format!("{listen_text:?} is not an IP:port address (e.g. \"127.0.0.1:8080\")"),
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        }
    };
    if dev && !listen.ip().is_loopback() {
        problems.push(
            "server.listen",
            format!("--dev refuses to bind the non-loopback address {listen}: the development issuer would let anyone on the network mint tokens"),
        );
    }
    let public_url = match raw.public_url.as_deref() {
        None => format!("http://{listen}"),
        Some(text) => match Url::parse(text) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                problems.push("server.public_url", "must be an http:// or https:// URL");
                text.to_string()
            }
            Ok(url) if url.query().is_some() || url.fragment().is_some() => {
                problems.push("server.public_url", "must not have a query or fragment");
                text.to_string()
            }
            Ok(url) => {
                if url.scheme() == "http" && !dev && !is_loopback_host(&url) {
                    problems.push(
                        "server.public_url",
                        "must be https:// unless it points at a loopback address (OAuth 2.1 section 1.5)",
                    );
                }
                url.as_str().trim_end_matches('/').to_string()
            }
            Err(e) => {
                problems.push("server.public_url", format!("not a URL: {e}"));
                text.to_string()
            }
        },
    };
    for (i, origin) in raw.allowed_origins.iter().enumerate() {
        let ok = Url::parse(origin).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.path() == "/"
                && u.query().is_none()
                && !origin.ends_with('/')
        });
        if !ok {
            problems.push(
                format!("server.allowed_origins[{i}]"),
                format!("{origin:?} is not an origin (scheme://host[:port], no path)"),
            );
        }
    }
    let max_body = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
    if max_body == 0 || max_body > MAX_MAX_BODY {
        problems.push(
            "server.max_body_bytes",
            format!("must be between 1 and {MAX_MAX_BODY}"),
        );
    }
    if let Some(idle) = raw.mcp_session_idle_seconds
        && !(1..=MAX_MCP_SESSION_IDLE_SECONDS).contains(&idle)
    {
        problems.push(
            "server.mcp_session_idle_seconds",
            format!("must be between 1 and {MAX_MCP_SESSION_IDLE_SECONDS}"),
        );
    }
    ServerConfig {
        listen,
        public_url,
        allowed_origins: raw.allowed_origins.clone(),
        max_body_bytes: usize::try_from(max_body.clamp(1, MAX_MAX_BODY)).unwrap_or(usize::MAX),
        data_dir: resolve(base, raw.data_dir.as_deref().unwrap_or("data")),
        mcp_session_idle: raw
            .mcp_session_idle_seconds
            .map(|idle| Duration::from_secs(idle.clamp(1, MAX_MCP_SESSION_IDLE_SECONDS))),
    }
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The dev issuer's rules: `portcullis token` mints tokens that satisfy exactly these.
fn dev_inbound() -> InboundConfig {
    InboundConfig {
        keys: KeySourceConfig::DevIssuer,
        allowed_audiences: vec![crate::inbound::DEV_AUDIENCE.to_string()],
        allowed_clients: vec![],
        allowed_scopes: vec![crate::inbound::DEV_SCOPE.to_string()],
        algorithms: vec![Algorithm::ES256],
        leeway_seconds: 60,
        claims: vec![],
    }
}

pub(super) fn https_or_loopback(key: &str, text: &str, problems: &mut Problems) -> Option<Url> {
    match Url::parse(text) {
        Ok(url)
            if url.scheme() == "https" || (url.scheme() == "http" && is_loopback_host(&url)) =>
        {
            Some(url)
        }
        Ok(_) => {
            problems.push(
                key,
                "must be an https:// URL (http:// is only accepted for loopback addresses)",
            );
            None
        }
        Err(e) => {
            problems.push(key, format!("not a URL: {e}"));
            None
        }
    }
}

fn inbound_rules(raw: &RawInbound, problems: &mut Problems) -> InboundConfig {
    let keys = match (&raw.discovery_url, &raw.issuer, &raw.jwks_url) {
        (Some(discovery), issuer, jwks) => {
            let discovery_url = https_or_loopback("inbound.discovery_url", discovery, problems);
            let jwks_url = jwks
                .as_deref()
                .and_then(|j| https_or_loopback("inbound.jwks_url", j, problems));
            discovery_url.map(|discovery_url| KeySourceConfig::Discovery {
                discovery_url,
                issuer: issuer.clone(),
                jwks_url,
            })
        }
        (None, Some(issuer), Some(jwks)) => https_or_loopback("inbound.jwks_url", jwks, problems)
            .map(|jwks_url| KeySourceConfig::Explicit {
                issuer: issuer.clone(),
                jwks_url,
            }),
        (None, _, _) => {
            problems.push(
                "inbound.discovery_url",
                "missing: set discovery_url (or both issuer and jwks_url)",
            );
            None
        }
    };
    if raw.allowed_audiences.is_empty() {
        problems.push(
            "inbound.allowed_audiences",
            "must list at least one audience: MCP authorization requires tokens issued for this server (RFC 8707, RFC 9068 section 4)",
        );
    }
    // The gateway's own ID tokens carry `aud` = the login client id (OIDC Core 1.0 section 2):
    // were it an allowed audience, every ID token the IdP issues for the sign-in would pass as
    // an access token for `/mcp` (issue 9 item 3).
    if let Some(login) = &raw.login
        && raw.allowed_audiences.contains(&login.client_id)
    {
        problems.push(
            "inbound.login.client_id",
            format!(
                "{:?} is also in inbound.allowed_audiences: the gateway's own ID tokens (aud = this client id) would pass as access tokens; give the login client its own id, or allow the resource's audience (e.g. \"<public_url>/mcp\") instead",
                login.client_id
            ),
        );
    }
    let algorithms = match &raw.algorithms {
        None => ASYMMETRIC.to_vec(),
        Some(names) => {
            let mut algorithms = Vec::new();
            for (i, name) in names.iter().enumerate() {
                match Algorithm::from_str(name) {
                    Ok(alg) if ASYMMETRIC.contains(&alg) => algorithms.push(alg),
                    Ok(_) => problems.push(
                        format!("inbound.algorithms[{i}]"),
                        format!("{name} is symmetric: only asymmetric algorithms are accepted (RFC 8725 section 3.1)"),
                    ),
                    Err(_) => problems.push(
                        format!("inbound.algorithms[{i}]"),
                        format!("unknown algorithm {name:?}"),
                    ),
                }
            }
            if names.is_empty() {
                problems.push("inbound.algorithms", "must not be empty");
            }
            algorithms
        }
    };
    let leeway_seconds = raw.leeway_seconds.unwrap_or(60);
    if leeway_seconds > MAX_LEEWAY_SECONDS {
        problems.push(
            "inbound.leeway_seconds",
            format!("{leeway_seconds} is too lenient: at most {MAX_LEEWAY_SECONDS}"),
        );
    }
    let claims = raw
        .claims
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| claim_rule(i, rule, problems))
        .collect();
    InboundConfig {
        keys: keys.unwrap_or(KeySourceConfig::DevIssuer),
        allowed_audiences: raw.allowed_audiences.clone(),
        allowed_clients: raw.allowed_clients.clone(),
        allowed_scopes: raw.allowed_scopes.clone(),
        algorithms,
        leeway_seconds,
        claims,
    }
}

fn claim_rule(i: usize, rule: &RawClaimRule, problems: &mut Problems) -> Option<ClaimRule> {
    let key = format!("inbound.claims[{i}]");
    if rule.name.is_empty() {
        problems.push(format!("{key}.name"), "must not be empty");
        return None;
    }
    let check = match (&rule.equals, &rule.contains_any) {
        (Some(v), None) => ClaimCheck::Equals(v.clone()),
        (None, Some(values)) if !values.is_empty() => ClaimCheck::ContainsAny(values.clone()),
        (None, Some(_)) => {
            problems.push(format!("{key}.contains_any"), "must not be empty");
            return None;
        }
        _ => {
            problems.push(key, "needs exactly one of `equals` or `contains_any`");
            return None;
        }
    };
    Some(ClaimRule {
        name: rule.name.clone(),
        check,
    })
}

fn telemetry(raw: &super::raw::RawTelemetry, problems: &mut Problems) -> TelemetryConfig {
    let log_format = match raw.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            problems.push(
                "telemetry.log_format",
                format!("{other:?} is not one of \"text\", \"json\""),
            );
            LogFormat::Text
        }
    };
    let log_level = raw.log_level.clone().unwrap_or_else(|| "info".to_string());
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        problems.push(
            "telemetry.log_level",
            format!(
                "{log_level:?} is not a tracing filter (e.g. \"info\" or \"portcullis=debug\")"
            ),
        );
    }
    TelemetryConfig {
        log_format,
        log_level,
    }
}
