//! The identity API (DESIGN 2.7): the AgentCore Identity data plane, restJson1, so that the
//! unmodified boto3 `bedrock-agentcore` client and the `bedrock-agentcore` SDK work with
//! `endpoint_url` pointed at the gateway.
//!
//! - `wire`: request shapes and the model's constraints;
//! - `sigv4`: every request is SigV4-verified against `[[identity.access_keys]]`, its
//!   credential scope against the service name and `identity.allowed_regions`;
//! - `workload_token`: the gateway-signed workload access tokens;
//! - `handlers`: the six operations, on top of [`Identity`], each limited to what the
//!   workload may use (`providers`, `api_keys`, `scopes` of its `[[identity.workloads]]`).
//!
//! Errors are [`ApiError`]s; `errors::error_response` is the one place that turns them into
//! restJson1 error responses (`x-amzn-ErrorType` header, `{"message"}` body).

mod errors;
mod handlers;
mod sigv4;
mod wire;
mod workload_token;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::StatusCode;

pub use errors::{ApiError, ValidationReason};
pub use sigv4::{SERVICE as SIGNING_NAME, SigV4Error};
pub use workload_token::{KEY_FILE as WORKLOAD_TOKEN_KEY, WorkloadTokenError, WorkloadTokens};

use super::Identity;
use crate::identity::settings::{AccessKeyConfig, IdentitySections, WorkloadConfig};
use crate::inbound::{KeyStore, Verifier};

/// The largest request body read (the biggest member, `userToken`, is at most 128 KiB).
const MAX_BODY_BYTES: usize = 512 * 1024;

impl From<WorkloadTokenError> for ApiError {
    fn from(error: WorkloadTokenError) -> ApiError {
        match error {
            WorkloadTokenError::Invalid(_) => ApiError::Unauthorized(error.to_string()),
            WorkloadTokenError::Sign(_) => ApiError::Internal(error.to_string()),
        }
    }
}

/// What the identity API needs at run time.
pub struct IdentityApi {
    identity: Arc<Identity>,
    tokens: WorkloadTokens,
    /// The inbound rules, for `GetWorkloadAccessTokenForJWT` and `userIdentifier.userToken`.
    verifier: Verifier,
    access_keys: Vec<AccessKeyConfig>,
    /// `identity.workload`, whose grants are written in `[identity]`.
    own_workload: String,
    /// `identity.allowed_regions`: the SigV4 credential-scope regions accepted (empty: any).
    allowed_regions: Vec<String>,
    workloads: BTreeMap<String, WorkloadConfig>,
}

impl IdentityApi {
    /// `None` without access keys: then every request is refused as unsigned or unknown.
    pub fn new(
        sections: IdentitySections<'_>,
        identity: Arc<Identity>,
        keys: Arc<KeyStore>,
        signing_key: crate::inbound::es256::Es256Key,
    ) -> Result<Option<IdentityApi>, crate::inbound::es256::KeyFileError> {
        let settings = sections.identity;
        if settings.access_keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(IdentityApi {
            identity,
            tokens: WorkloadTokens::new(signing_key, sections.public_url)?,
            verifier: Verifier::new(sections.inbound, keys),
            access_keys: settings.access_keys.clone(),
            own_workload: settings.workload.clone(),
            allowed_regions: settings.allowed_regions.clone(),
            workloads: settings.workloads.clone(),
        }))
    }
}

/// `/identities/*`; without `[[identity.access_keys]]` every request is refused as signed with
/// an unknown key.
pub fn routes(api: Option<Arc<IdentityApi>>) -> Router {
    Router::new()
        .route("/identities/{*operation}", any(dispatch))
        .with_state(api)
}

/// Every `/identities/*` request: read the body, verify SigV4, run the operation, and shape
/// the answer (errors through `errors::error_response`).
async fn dispatch(State(api): State<Option<Arc<IdentityApi>>>, request: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (mut parts, body) = request.into_parts();
    // HTTP/2 carries the host in `:authority`, which SigV4 signs as `host`.
    if !parts.headers.contains_key(http::header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(value) = http::HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(http::header::HOST, value);
    }
    let path = parts.uri.path().to_string();
    let result = async {
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError::cannot_parse(format!(
                    "request body: unreadable or larger than {MAX_BODY_BYTES} bytes"
                ))
            })?;
        let api = api.as_deref();
        let accepted = sigv4::AcceptedCredentials {
            keys: api.map_or(&[][..], |api| api.access_keys.as_slice()),
            regions: api.map_or(&[][..], |api| api.allowed_regions.as_slice()),
        };
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or(path.as_str(), |pq| pq.as_str());
        let key = sigv4::verify(
            accepted,
            parts.method.as_str(),
            path_and_query,
            &parts.headers,
            &body,
            SystemTime::now(),
        )?;
        let api = api.ok_or(ApiError::Authentication(SigV4Error::UnknownAccessKey))?;
        if parts.method != http::Method::POST {
            return Err(ApiError::UnknownOperation(format!(
                "{} {path} is not an operation of this API (every operation is a POST)",
                parts.method
            )));
        }
        handlers::run(api, key, &path, &body).await
    }
    .await;
    match result {
        Ok(body) => {
            tracing::info!(operation = %path, "identity API request served");
            let mut response = (StatusCode::OK, axum::Json(body)).into_response();
            if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                response.headers_mut().insert("x-amzn-requestid", value);
            }
            response
        }
        Err(error) => {
            let (_, error_type) = error.error_type();
            tracing::info!(operation = %path, error_type, %error, "identity API request refused");
            errors::error_response(&error, &request_id)
        }
    }
}
