//! Logs, metrics and the audit trail.
//!
//! Log lines are written in batches by a background thread ([`log_writer`]) so that neither
//! a slow terminal or log shipper nor the per-call audit line stalls a tool call. Metrics carry
//! no user identifiers (they are unbounded and personal); the audit event per tool call does,
//! in the log only.
//!
//! Owns: the log writer, the audit line, the metric names. Takes labels and plain strings,
//! never another module's types, so that every module may call it and it calls none.

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

mod audit;
mod log_writer;

pub use log_writer::FlushGuard;

/// The `[telemetry]` section, validated by `config`.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    pub log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. Keep the guard alive: dropping it flushes and stops the
/// writer thread. `RUST_LOG`, when set, overrides the configured level.
pub fn init_logging(config: &TelemetryConfig) -> FlushGuard {
    let (writer, guard) = log_writer::BatchingWriter::spawn(std::io::stderr());
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(configured_filter(&config.log_level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    audit::install(writer.clone(), config.log_format);
    // Colour only for a terminal (and never with NO_COLOR set): escape codes in a log file or
    // a log shipper's input are noise.
    // No ANSI colours, ever: the writer escapes every control character a caller could put in
    // a field (ESC included), so colour codes would come out as text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer);
    // A subscriber may already be installed (tests embedding the gateway); that is fine.
    let _ = match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    guard
}

/// The configured filter, with rmcp held at `warn` unless the filter names it: rmcp logs every
/// stateless request's lifecycle at INFO ("Service initialized ..." with the whole client info,
/// "serve finished") inside an INFO span — three formatted lines and a span per tool call that
/// say nothing the audit line does not, at about a tenth of the gateway's CPU (issue 5).
fn configured_filter(log_level: &str) -> String {
    if log_level.contains("rmcp") {
        log_level.to_string()
    } else {
        format!("{log_level},rmcp=warn")
    }
}

/// Installs the Prometheus recorder once per process and returns the handle `/metrics` renders.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<PrometheusHandle>> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// Drains the recorder's histograms every few seconds. They keep every sample until drained
/// (`PrometheusBuilder::install_recorder` leaves that to the caller), so without this a
/// gateway nobody scrapes would grow by about 20 bytes per tool call, without bound: found
/// in issue 5 as RSS rising ~1.3 MiB per 55k calls. 5 s is the exporter's own default.
pub async fn run_metrics_upkeep() {
    let Some(handle) = metrics_handle() else {
        return;
    };
    let mut every = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The audit event and metrics for one tool call. `outcome` is a bounded label.
pub fn tool_called(
    issuer: &str,
    subject: &str,
    tool: &str,
    outcome: &'static str,
    elapsed: Duration,
) {
    audit::record(&audit::ToolCallRecord {
        issuer,
        subject,
        tool,
        outcome,
        elapsed,
    });
    metrics::counter!("portcullis_tool_calls_total", "tool" => tool.to_string(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("portcullis_tool_call_seconds", "outcome" => outcome)
        .record(elapsed.as_secs_f64());
}

/// One Cedar decision (DESIGN 2.10): an audit line naming the policies that decided, and a
/// count by decision and mode (`log_only` would-be denials are counted as `deny`).
pub fn policy_decided(
    issuer: &str,
    subject: &str,
    tool: &str,
    permitted: bool,
    policies: &[String],
    mode: &'static str,
) {
    let decision = if permitted { "allow" } else { "deny" };
    tracing::info!(
        target: "portcullis::audit",
        issuer,
        subject,
        tool,
        decision,
        mode,
        policies = %policies.join(","),
        "policy"
    );
    metrics::counter!("portcullis_policy_decisions_total", "decision" => decision, "mode" => mode)
        .increment(1);
}

/// A call refused by rate-limit rule `rule` (its position in the config: a bounded label).
pub fn rate_limited(rule: usize) {
    metrics::counter!("portcullis_rate_limited_total", "rule" => rule.to_string()).increment(1);
}

/// A request refused by the authentication layer; `reason` is a bounded label.
pub fn auth_refused(reason: &'static str) {
    metrics::counter!("portcullis_auth_refused_total", "reason" => reason).increment(1);
}

pub fn token_refreshed(provider: &str, outcome: &'static str) {
    metrics::counter!("portcullis_token_refresh_total", "provider" => provider.to_string(), "outcome" => outcome)
        .increment(1);
}

pub fn consent_started(provider: &str) {
    metrics::counter!("portcullis_consent_started_total", "provider" => provider.to_string())
        .increment(1);
}

pub fn consent_completed(provider: &str) {
    metrics::counter!("portcullis_consent_completed_total", "provider" => provider.to_string())
        .increment(1);
}

pub fn consent_refused(reason: &'static str) {
    metrics::counter!("portcullis_consent_refused_total", "reason" => reason).increment(1);
}

/// An idle sweep of legacy MCP sessions: how many it closed, how many are left in memory.
pub fn mcp_sessions_swept(closed: usize, in_memory: usize) {
    metrics::counter!("portcullis_mcp_sessions_closed_idle_total")
        .increment(u64::try_from(closed).unwrap_or(u64::MAX));
    #[allow(clippy::cast_precision_loss)] // a session count is far below 2^52
    metrics::gauge!("portcullis_mcp_sessions_in_memory").set(in_memory as f64);
}

#[cfg(test)]
mod tests {
    use super::configured_filter;

    #[test]
    fn rmcp_is_quiet_unless_asked_for() {
        assert_eq!(configured_filter("info"), "info,rmcp=warn");
        assert_eq!(
            configured_filter("debug,hyper=info"),
            "debug,hyper=info,rmcp=warn"
        );
        assert_eq!(configured_filter("info,rmcp=debug"), "info,rmcp=debug");
    }
}
