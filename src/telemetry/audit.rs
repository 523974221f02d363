//! The audit trail: one line per tool call, naming who (issuer + subject), what (tool), how it
//! ended and how long it took. Never a token, argument or result.
//!
//! The line is formatted here rather than by `tracing_subscriber::fmt`: its generic field
//! visitors and per-event span bookkeeping cost ~6 us a call, 8 % of the gateway's CPU in the
//! issue-5 profile, where this costs well under one. The shape matches the log format the
//! operator chose (`log_format`), so the audit lines sit in the same stream as the rest of the
//! log, and they obey the same filter (`portcullis::audit` at INFO: `RUST_LOG` or `log_level`
//! can silence them).
//!
//! User-controlled values (the `sub` claim, tool names) are escaped: JSON lines through
//! serde_json, text lines with Rust's string escaping whenever a value holds anything but
//! printable ASCII without spaces or quotes, so no subject can forge a log line.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use super::LogFormat;
use super::log_writer::BatchingWriter;

/// Where audit lines go once logging is initialised; before that (or in tests that install
/// their own subscriber) they are ordinary `tracing` events.
static SINK: OnceLock<(BatchingWriter, LogFormat)> = OnceLock::new();

pub(super) fn install(writer: BatchingWriter, format: LogFormat) {
    let _ = SINK.set((writer, format));
}

/// One finished tool call.
pub struct ToolCallRecord<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub tool: &'a str,
    pub outcome: &'static str,
    pub elapsed: Duration,
}

pub fn record(call: &ToolCallRecord<'_>) {
    if !tracing::enabled!(target: "portcullis::audit", tracing::Level::INFO) {
        return;
    }
    let elapsed_us = u64::try_from(call.elapsed.as_micros()).unwrap_or(u64::MAX);
    let Some((writer, format)) = SINK.get() else {
        tracing::info!(
            target: "portcullis::audit",
            issuer = call.issuer,
            subject = call.subject,
            tool = call.tool,
            outcome = call.outcome,
            elapsed_us,
            "tools/call"
        );
        return;
    };
    let line = format_line(call, elapsed_us, *format, &now_rfc3339());
    // The batching writer never fails (it drops and counts when full).
    let _ = writer.make_writer().write_all(line.as_bytes());
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The line, in the shape `tracing_subscriber::fmt` gives other events of that format.
fn format_line(
    call: &ToolCallRecord<'_>,
    elapsed_us: u64,
    format: LogFormat,
    timestamp: &str,
) -> String {
    match format {
        LogFormat::Json => {
            let line = JsonLine {
                timestamp,
                level: "INFO",
                fields: JsonFields {
                    message: "tools/call",
                    issuer: call.issuer,
                    subject: call.subject,
                    tool: call.tool,
                    outcome: call.outcome,
                    elapsed_us,
                },
                target: "portcullis::audit",
            };
            // Serialising borrowed strings and a number cannot fail.
            let mut text = serde_json::to_string(&line).unwrap_or_default();
            text.push('\n');
            text
        }
        LogFormat::Text => {
            let mut text = String::with_capacity(160);
            let _ = write!(
                text,
                "{timestamp}  INFO portcullis::audit: tools/call issuer={} subject={} tool={} outcome={} elapsed_us={elapsed_us}",
                Quoted(call.issuer),
                Quoted(call.subject),
                Quoted(call.tool),
                call.outcome,
            );
            text.push('\n');
            text
        }
    }
}

/// `tracing_subscriber`'s JSON event shape.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    timestamp: &'a str,
    level: &'static str,
    fields: JsonFields<'a>,
    target: &'static str,
}

#[derive(serde::Serialize)]
struct JsonFields<'a> {
    message: &'static str,
    issuer: &'a str,
    subject: &'a str,
    tool: &'a str,
    outcome: &'static str,
    elapsed_us: u64,
}

/// A value as is when it is plain (printable ASCII, no spaces, quotes or `=`), otherwise as a
/// Rust string literal, so that newlines and look-alike `key=value` pairs cannot be injected.
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain = !self.0.is_empty()
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\');
        if plain {
            f.write_str(self.0)
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<'a>(subject: &'a str) -> ToolCallRecord<'a> {
        ToolCallRecord {
            issuer: "https://idp.example.com",
            subject,
            tool: "github___list_issues",
            outcome: "ok",
            elapsed: Duration::from_micros(1234),
        }
    }

    #[test]
    fn text_lines_are_one_line_whatever_the_subject() {
        let line = format_line(&call("alice"), 1234, LogFormat::Text, "T");
        assert_eq!(
            line,
            "T  INFO portcullis::audit: tools/call issuer=https://idp.example.com subject=alice tool=github___list_issues outcome=ok elapsed_us=1234\n"
        );
        let forged = format_line(
            &call("eve\nT  INFO portcullis::audit: tools/call subject=admin"),
            1,
            LogFormat::Text,
            "T",
        );
        assert_eq!(forged.matches('\n').count(), 1, "{forged}");
        assert!(forged.contains(r#"subject="eve\nT  INFO"#), "{forged}");
        let spaced = format_line(&call("a b=c"), 1, LogFormat::Text, "T");
        assert!(spaced.contains(r#"subject="a b=c" tool="#), "{spaced}");
    }

    #[test]
    fn json_lines_parse_and_carry_every_field() {
        let line = format_line(&call("al\"ice\n"), 1234, LogFormat::Json, "T");
        assert_eq!(line.matches('\n').count(), 1);
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["target"], "portcullis::audit");
        assert_eq!(value["fields"]["subject"], "al\"ice\n");
        assert_eq!(value["fields"]["tool"], "github___list_issues");
        assert_eq!(value["fields"]["outcome"], "ok");
        assert_eq!(value["fields"]["elapsed_us"], 1234);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let now = now_rfc3339();
        assert!(chrono::DateTime::parse_from_rfc3339(&now).is_ok(), "{now}");
        assert!(now.ends_with('Z'));
    }
}
