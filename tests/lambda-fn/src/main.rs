//! Test function for Portcullis's Lambda targets (DESIGN 2.3 "Lambda contract").
//!
//! The event is the bare tool arguments object:
//! - `{"fail": true}` -> a function error "asked to fail";
//! - `{"mcp": true}`  -> an MCP-shaped result the gateway must pass through unchanged;
//! - anything else    -> `{"echo": <event>, "function": "portcullis-test-fn"}`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    // One line per invocation in the `cargo lambda watch` log.
    eprintln!(
        "portcullis-test-fn: request {} event {payload}",
        context.request_id
    );
    if payload.get("fail") == Some(&Value::Bool(true)) {
        return Err("asked to fail".into());
    }
    if payload.get("mcp") == Some(&Value::Bool(true)) {
        return Ok(json!({"content": [{"type": "text", "text": "from a real lambda"}]}));
    }
    Ok(json!({"echo": payload, "function": "portcullis-test-fn"}))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
