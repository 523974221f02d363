//! Token-endpoint conversations with one downstream provider, on the `oauth2` crate:
//! authorization requests with PKCE S256 (RFC 7636 section 4.2), code exchange, client
//! credentials (RFC 6749 section 4.4) and refresh (section 6).

use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};

use super::settings::ClientAuthMethod;
use crate::secret::Secret;

const TOKEN_TIMEOUT: Duration = Duration::from_secs(15);
const MAX_TOKEN_RESPONSE_BYTES: usize = 256 * 1024;

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// RFC 6749 section 5.2 `invalid_grant`: the code or refresh token is dead.
    #[error("the provider refused the grant (invalid_grant)")]
    InvalidGrant,
    #[error("the provider answered {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("token endpoint unreachable or malformed answer: {0}")]
    Transport(String),
    #[error("provider endpoint misconfigured: {0}")]
    Config(String),
}

/// What a token endpoint granted.
pub struct Granted {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub token_type: String,
    pub expires_in: Option<u64>,
    /// Scopes the provider says it granted (RFC 6749 section 5.1), if it says.
    pub scopes: Option<Vec<String>>,
}

/// A prepared authorization request: the URL to send the browser to, and the PKCE verifier to
/// keep server side.
pub struct AuthorizationRequest {
    pub url: url::Url,
    pub pkce_verifier: Secret,
}

/// A provider's authorization and token endpoints, as the flows see them. The one real
/// implementation is [`OAuthClient`]; unit tests script one, so that refresh, rotation,
/// `invalid_grant` and consent logic are tested without a live authorization server.
#[async_trait::async_trait]
pub trait TokenEndpoint: Send + Sync {
    /// The authorization URL for `state`, with a fresh PKCE S256 challenge.
    fn authorization_request(
        &self,
        state: &str,
        scopes: &[String],
        extra: &[(String, String)],
    ) -> AuthorizationRequest;

    /// RFC 6749 section 4.1.3 with the RFC 7636 `code_verifier`.
    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &Secret,
        extra: &[(String, String)],
    ) -> Result<Granted, OAuthError>;

    /// RFC 6749 section 4.4.
    async fn client_credentials(
        &self,
        scopes: &[String],
        extra: &[(String, String)],
    ) -> Result<Granted, OAuthError>;

    /// RFC 6749 section 6.
    async fn refresh(
        &self,
        refresh_token: &Secret,
        extra: &[(String, String)],
    ) -> Result<Granted, OAuthError>;
}

pub struct OAuthClient {
    client: Client,
    http: Http,
}

/// The `oauth2` crate's HTTP seam, on our pooled reqwest client (no redirects, bounded body).
/// A named type rather than a closure so the returned future owns its client and is `Send`.
struct Http(reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for Http {
    type Error = TransportError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, TransportError>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        let client = self.0.clone();
        Box::pin(send(client, request))
    }
}

impl OAuthClient {
    pub fn new(
        http: reqwest::Client,
        client_id: &str,
        client_secret: &Secret,
        auth_method: ClientAuthMethod,
        authorization: &url::Url,
        token: &url::Url,
        redirect: &str,
    ) -> Result<OAuthClient, OAuthError> {
        let redirect = RedirectUrl::new(redirect.to_string())
            .map_err(|e| OAuthError::Config(e.to_string()))?;
        let client = BasicClient::new(ClientId::new(client_id.to_string()))
            .set_client_secret(ClientSecret::new(client_secret.expose().to_string()))
            .set_auth_uri(AuthUrl::from_url(authorization.clone()))
            .set_token_uri(TokenUrl::from_url(token.clone()))
            .set_redirect_uri(redirect)
            .set_auth_type(match auth_method {
                ClientAuthMethod::ClientSecretBasic => AuthType::BasicAuth,
                ClientAuthMethod::ClientSecretPost => AuthType::RequestBody,
            });
        Ok(OAuthClient {
            client,
            http: Http(http),
        })
    }
}

#[async_trait::async_trait]
impl TokenEndpoint for OAuthClient {
    /// The authorization URL for `state`, with a fresh PKCE S256 challenge.
    fn authorization_request(
        &self,
        state: &str,
        scopes: &[String],
        extra: &[(String, String)],
    ) -> AuthorizationRequest {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_string();
        let mut request = self
            .client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
            .set_pkce_challenge(challenge);
        for (name, value) in extra {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        let (url, _) = request.url();
        AuthorizationRequest {
            url,
            pkce_verifier: Secret::new(verifier.secret().clone()),
        }
    }

    async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &Secret,
        extra: &[(String, String)],
    ) -> Result<Granted, OAuthError> {
        let mut request = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_string()));
        for (name, value) in extra {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        granted(request.request_async(&self.http).await)
    }

    async fn client_credentials(
        &self,
        scopes: &[String],
        extra: &[(String, String)],
    ) -> Result<Granted, OAuthError> {
        let mut request = self
            .client
            .exchange_client_credentials()
            .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())));
        for (name, value) in extra {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        granted(request.request_async(&self.http).await)
    }

    async fn refresh(
        &self,
        refresh_token: &Secret,
        extra: &[(String, String)],
    ) -> Result<Granted, OAuthError> {
        let token = RefreshToken::new(refresh_token.expose().to_string());
        let mut request = self.client.exchange_refresh_token(&token);
        for (name, value) in extra {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        granted(request.request_async(&self.http).await)
    }
}

async fn send(http: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, TransportError> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .timeout(TOKEN_TIMEOUT)
        .send()
        .await
        .map_err(|e| TransportError(e.without_url().to_string()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = crate::body::read_limited(response, MAX_TOKEN_RESPONSE_BYTES)
        .await
        .map_err(|e| TransportError(e.to_string()))?;
    let mut out = http::Response::builder().status(status);
    if let Some(h) = out.headers_mut() {
        *h = headers;
    }
    out.body(body).map_err(|e| TransportError(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(String);

type TokenResult = Result<
    BasicTokenResponse,
    RequestTokenError<TransportError, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
>;

fn granted(result: TokenResult) -> Result<Granted, OAuthError> {
    match result {
        Ok(response) => Ok(Granted {
            access_token: Secret::new(response.access_token().secret().clone()),
            refresh_token: response
                .refresh_token()
                .map(|t| Secret::new(t.secret().clone())),
            token_type: response.token_type().as_ref().to_string(),
            expires_in: response.expires_in().map(|d| d.as_secs()),
            scopes: response
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect()),
        }),
        Err(RequestTokenError::ServerResponse(error)) => match error.error() {
            BasicErrorResponseType::InvalidGrant => Err(OAuthError::InvalidGrant),
            other => Err(OAuthError::Refused {
                error: other.as_ref().to_string(),
                description: error.error_description().cloned(),
            }),
        },
        Err(RequestTokenError::Request(e)) => Err(OAuthError::Transport(e.to_string())),
        Err(RequestTokenError::Parse(e, _)) => Err(OAuthError::Transport(format!(
            "unparsable token response: {e}"
        ))),
        Err(RequestTokenError::Other(e)) => Err(OAuthError::Transport(e)),
    }
}
