//! Identity API requests (DESIGN 2.7) through the HTTP surface, SigV4-signed the way an AWS SDK
//! signs them (service `bedrock-agentcore`).
#![allow(dead_code)]

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::Value;

/// An identity API answer: HTTP status, `x-amzn-ErrorType` (empty on success), JSON body.
#[derive(Debug)]
pub struct ApiAnswer {
    pub status: u16,
    pub error_type: String,
    pub body: Value,
}

impl ApiAnswer {
    /// The error `message` (empty on success).
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

/// POSTs `body` to `<base>/identities/<operation>`, signed with the access key `key_id`/`secret`.
pub async fn post(
    base: &str,
    operation: &str,
    body: &Value,
    key_id: &str,
    secret: &str,
) -> ApiAnswer {
    let url = format!("{base}/identities/{operation}");
    let body = serde_json::to_vec(body).unwrap();
    let parsed = url::Url::parse(base).unwrap();
    let host = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap());
    let identity =
        aws_credential_types::Credentials::new(key_id, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock-agentcore")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [
        ("content-type", "application/json"),
        ("host", host.as_str()),
    ];
    let signable = SignableRequest::new(
        "POST",
        url.clone(),
        headers.iter().copied(),
        SignableBody::Bytes(&body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    ApiAnswer {
        status,
        error_type,
        body: response.json().await.unwrap(),
    }
}
