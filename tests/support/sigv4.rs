//! Identity API requests through the real HTTP surface, SigV4-signed the way the AWS SDKs sign
//! them (the `aws-sigv4` signer), with the credential scope's region and service chosen by
//! the test.
#![allow(dead_code)]

use std::time::SystemTime;

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::Value;

/// The AgentCore data plane's signing name (botocore model `signingName`).
pub const SERVICE: &str = "bedrock-agentcore";

/// An access key pair and the credential scope it signs for.
#[derive(Clone)]
pub struct Signer {
    pub access_key_id: String,
    pub secret: String,
    pub region: String,
    pub service: String,
}

/// What the identity API answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// `x-amzn-ErrorType`, empty on success.
    pub error_type: String,
    pub body: Value,
}

impl Answer {
    /// The error's `message`, or "" on success.
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

impl Signer {
    /// Signs for `us-east-1` and `bedrock-agentcore`, like a boto3 client with that region.
    pub fn new(access_key_id: &str, secret: &str) -> Signer {
        Signer {
            access_key_id: access_key_id.to_string(),
            secret: secret.to_string(),
            region: "us-east-1".to_string(),
            service: SERVICE.to_string(),
        }
    }

    pub fn region(mut self, region: &str) -> Signer {
        self.region = region.to_string();
        self
    }

    pub fn service(mut self, service: &str) -> Signer {
        self.service = service.to_string();
        self
    }

    /// `POST <base>/identities/<operation>` with the JSON `body`, signed now.
    pub async fn post(&self, base: &str, operation: &str, body: &Value) -> Answer {
        let url = format!("{base}/identities/{operation}");
        let body = serde_json::to_vec(body).unwrap();
        let parsed = url::Url::parse(base).unwrap();
        let host = format!(
            "{}:{}",
            parsed.host_str().unwrap(),
            parsed.port_or_known_default().unwrap()
        );
        let identity = aws_credential_types::Credentials::new(
            &self.access_key_id,
            &self.secret,
            None,
            None,
            "test",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
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
        Answer {
            status,
            error_type,
            body: response.json().await.unwrap(),
        }
    }

    /// GetWorkloadAccessToken (no user) for `workload`; panics unless it is granted.
    pub async fn workload_token(&self, base: &str, workload: &str) -> String {
        let answer = self
            .post(
                base,
                "GetWorkloadAccessToken",
                &serde_json::json!({"workloadName": workload}),
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["workloadAccessToken"]
            .as_str()
            .unwrap()
            .to_string()
    }
}
