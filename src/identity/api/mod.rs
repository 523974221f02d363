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
//! Errors are [`ApiError`]s; `edge::identity_api_error` is the one place that turns them
//! into restJson1 error responses (`x-amzn-ErrorType` header, `{"message"}` body).

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

pub use sigv4::{SERVICE as SIGNING_NAME, SigV4Error};
pub use workload_token::{WorkloadTokenError, WorkloadTokens};

use super::{Identity, IdentityError};
use crate::identity::settings::{AccessKeyConfig, IdentitySections, WorkloadConfig};
use crate::inbound::{KeyStore, Verifier};

/// The largest request body read (the biggest member, `userToken`, is at most 128 KiB).
const MAX_BODY_BYTES: usize = 512 * 1024;

/// `ValidationExceptionReason` values this gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationReason {
    CannotParse,
    FieldValidationFailed,
}

impl ValidationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationReason::CannotParse => "CannotParse",
            ValidationReason::FieldValidationFailed => "FieldValidationFailed",
        }
    }
}

/// Everything an identity API request can fail with. Messages name the member at fault and
/// never carry a token, a secret or a signature (DESIGN 3.2 invariant 5).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Authentication(#[from] SigV4Error),
    #[error("{message}")]
    Validation {
        reason: ValidationReason,
        /// The member at fault, for `fieldList`.
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    UnknownOperation(String),
}

impl ApiError {
    /// `<field>: <problem>`, reason `FieldValidationFailed`.
    pub fn field(field: &str, problem: impl std::fmt::Display) -> ApiError {
        ApiError::Validation {
            reason: ValidationReason::FieldValidationFailed,
            field: Some(field.to_string()),
            message: format!("{field}: {problem}"),
        }
    }

    pub fn cannot_parse(message: impl Into<String>) -> ApiError {
        ApiError::Validation {
            reason: ValidationReason::CannotParse,
            field: None,
            message: message.into(),
        }
    }

    /// The restJson1 error type (`x-amzn-ErrorType`) and HTTP status. The authentication
    /// types are the ones AWS front ends answer with (botocore's model does not list them,
    /// so clients see them as `ClientError` codes); the rest are the model's error shapes.
    pub fn error_type(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Authentication(SigV4Error::Missing) => {
                (StatusCode::FORBIDDEN, "MissingAuthenticationTokenException")
            }
            ApiError::Authentication(SigV4Error::Incomplete(_)) => {
                (StatusCode::FORBIDDEN, "IncompleteSignatureException")
            }
            ApiError::Authentication(SigV4Error::UnknownAccessKey) => {
                (StatusCode::FORBIDDEN, "UnrecognizedClientException")
            }
            ApiError::Authentication(SigV4Error::Invalid(_)) => {
                (StatusCode::FORBIDDEN, "InvalidSignatureException")
            }
            ApiError::Validation { .. } => (StatusCode::BAD_REQUEST, "ValidationException"),
            ApiError::AccessDenied(_) => (StatusCode::FORBIDDEN, "AccessDeniedException"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "UnauthorizedException"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException"),
            ApiError::UnknownOperation(_) => (StatusCode::NOT_FOUND, "UnknownOperationException"),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> ApiError {
        match error {
            IdentityError::UnknownProvider(name) => ApiError::NotFound(format!(
                "resourceCredentialProviderName: no OAuth2 credential provider {name:?} is configured ([providers.{name}])"
            )),
            IdentityError::UnknownApiKey(name) => ApiError::NotFound(format!(
                "resourceCredentialProviderName: no API key {name:?} is configured ([api_keys.{name}])"
            )),
            IdentityError::SessionNotFound(_) => ApiError::NotFound(
                "sessionUri: no live session (unknown, expired, failed or already used)".into(),
            ),
            error @ IdentityError::SessionOfAnother(_) => {
                ApiError::AccessDenied(format!("sessionUri: {error}"))
            }
            error @ IdentityError::SessionNotAuthorized => ApiError::field("sessionUri", error),
            error @ IdentityError::BrowserMismatch => ApiError::AccessDenied(error.to_string()),
            error @ (IdentityError::Provider { .. } | IdentityError::Internal(_)) => {
                ApiError::Internal(error.to_string())
            }
            IdentityError::Vault(error) => {
                tracing::error!(%error, "identity API: vault error");
                ApiError::Internal("the token vault failed; see the gateway's log".into())
            }
        }
    }
}

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
    ) -> Result<Option<IdentityApi>, crate::inbound::es256::KeyFileError> {
        let settings = sections.identity;
        if settings.access_keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(IdentityApi {
            identity,
            tokens: WorkloadTokens::load_or_create(sections.data_dir, sections.public_url)?,
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
/// the answer (errors through `edge::identity_api_error`).
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
            crate::edge::identity_api_error(&error, &request_id)
        }
    }
}
