//! The identity API's errors and their one restJson1 mapping (Smithy "AWS restJson1 protocol",
//! error serialization).

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use super::SigV4Error;
use crate::identity::IdentityError;

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

/// The identity API's errors as restJson1 (Smithy "AWS restJson1 protocol", error
/// serialization): the status of the error shape, the shape's name in `x-amzn-ErrorType`
/// (botocore reads the code from this header), and a JSON body with `message`; a
/// ValidationException also carries `reason` and `fieldList` as the model defines them.
pub fn error_response(error: &ApiError, request_id: &str) -> Response {
    let (status, error_type) = error.error_type();
    let body = match error {
        ApiError::Validation {
            reason,
            field,
            message,
        } => {
            let fields: Vec<serde_json::Value> = field
                .iter()
                .map(|name| {
                    let problem = message
                        .strip_prefix(&format!("{name}: "))
                        .unwrap_or(message);
                    json!({"name": name, "message": problem})
                })
                .collect();
            json!({"message": message, "reason": reason.as_str(), "fieldList": fields})
        }
        other => json!({"message": other.to_string()}),
    };
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-amzn-errortype",
        http::HeaderValue::from_static(error_type),
    );
    if let Ok(value) = http::HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}
