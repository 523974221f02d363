//! Is an answer right? A fast gateway that answers wrongly must not look good, so every
//! answer is checked against what was asked: HTTP 200, a JSON-RPC `result` for our `id`
//! (JSON or SSE), `isError` not true, and the echoed `n` equal to the `n` sent.

use serde_json::Value;

use crate::net::Reply;
use crate::outcome::{Failure, err, excerpt};

/// The JSON-RPC message answering request `id`, from a JSON or an SSE (`data:` lines) body.
pub fn json_rpc_reply(reply: &Reply, id: u64) -> Result<Value, Failure> {
    reply.expect_ok()?;
    let message = if reply.content_type.starts_with("text/event-stream") {
        let mut found = None;
        for line in reply.body.split(|b| *b == b'\n') {
            let Some(data) = line.strip_prefix(b"data:") else {
                continue;
            };
            let data = data.trim_ascii();
            if data.is_empty() {
                continue; // SSE priming event
            }
            let value: Value = serde_json::from_slice(data)
                .map_err(|e| err("malformed", format!("SSE data is not JSON: {e}")))?;
            if value.get("id").and_then(Value::as_u64) == Some(id) {
                found = Some(value);
                break;
            }
        }
        found.ok_or_else(|| {
            err(
                "malformed",
                format!(
                    "no JSON-RPC message with id {id} in the SSE stream: {}",
                    excerpt(&reply.body)
                ),
            )
        })?
    } else if reply.content_type.starts_with("application/json") {
        json_body(reply)?
    } else {
        return Err(err(
            "malformed",
            format!("unexpected content-type {:?}", reply.content_type),
        ));
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(err("malformed", "not a JSON-RPC 2.0 message"));
    }
    if message.get("id").and_then(Value::as_u64) != Some(id) {
        return Err(Failure::Wrong(format!(
            "answer for id {:?}, expected {id}",
            message.get("id")
        )));
    }
    if let Some(error) = message.get("error") {
        return Err(err("jsonrpc-error", error.to_string()));
    }
    match message {
        Value::Object(mut map) => map
            .remove("result")
            .ok_or_else(|| err("no-result", "JSON-RPC answer without result")),
        _ => Err(err("malformed", "JSON-RPC message is not an object")),
    }
}

fn json_body(reply: &Reply) -> Result<Value, Failure> {
    serde_json::from_slice(&reply.body)
        .map_err(|e| err("malformed", format!("body is not JSON: {e}")))
}

/// `direct`: the backend must answer 200 with the JSON it was sent, `{"n": n}`.
pub fn check_direct_echo(reply: &Reply, n: u64) -> Result<(), Failure> {
    reply.expect_ok()?;
    if json_body(reply)?.get("n").and_then(Value::as_u64) == Some(n) {
        Ok(())
    } else {
        Err(Failure::Wrong(format!(
            "sent n={n}, got {}",
            excerpt(&reply.body)
        )))
    }
}

/// A tools/call result must echo `n` in structuredContent (and not be an error). With
/// `accept_text_json`, a result without structuredContent may carry it instead as a JSON object
/// in a text content block (servers that wrap a REST answer as text).
pub fn check_echo_result(result: &Value, n: u64, accept_text_json: bool) -> Result<(), Failure> {
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        return Err(err("tool-error", excerpt(result.to_string().as_bytes())));
    }
    match result.get("structuredContent") {
        None if accept_text_json => check_text_json_echo(result, n)?,
        structured => {
            let got = structured.and_then(|s| s.get("n"));
            if got.and_then(Value::as_u64) != Some(n) {
                return Err(Failure::Wrong(format!(
                    "sent n={n}, structuredContent.n = {got:?}"
                )));
            }
        }
    }
    let text_ok = result
        .get("content")
        .and_then(Value::as_array)
        .is_some_and(|blocks| !blocks.is_empty());
    if !text_ok {
        return Err(Failure::Wrong("result without content blocks".into()));
    }
    Ok(())
}

/// The echoed `n` in the first text content block that holds a JSON object: it must equal `n`.
fn check_text_json_echo(result: &Value, n: u64) -> Result<(), Failure> {
    let blocks = result
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| Failure::Wrong("no structuredContent and no content blocks".into()))?;
    let echoed = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .find_map(|text| match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        });
    let Some(echoed) = echoed else {
        return Err(Failure::Wrong(format!(
            "no structuredContent and no text block with a JSON object: {}",
            excerpt(result.to_string().as_bytes())
        )));
    };
    let got = echoed.get("n");
    if got.and_then(Value::as_u64) != Some(n) {
        return Err(Failure::Wrong(format!(
            "sent n={n}, text content JSON n = {got:?}"
        )));
    }
    Ok(())
}

/// A tools/list page: the tools it lists, each with a name.
pub fn listed_tools(result: &Value) -> Result<&[Value], Failure> {
    let Some(tools) = result.get("tools").and_then(Value::as_array) else {
        return Err(Failure::Wrong("tools/list result without tools".into()));
    };
    if tools.iter().any(|t| {
        t.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    }) {
        return Err(Failure::Wrong("a listed tool has no name".into()));
    }
    Ok(tools)
}

/// A whole tools/list listing (all pages): `count` tools, as many as expected, or any number
/// but zero.
pub fn check_listing(count: usize, expect_tools: Option<usize>) -> Result<(), Failure> {
    match expect_tools {
        Some(expected) if expected != count => Err(Failure::Wrong(format!(
            "listing has {count} tools, expected {expected}"
        ))),
        None if count == 0 => Err(Failure::Wrong("empty listing".into())),
        _ => Ok(()),
    }
}
