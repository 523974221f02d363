//! `loadgen oauth-provider`: a minimal OAuth 2.0 authorization server for scenario 2, so that
//! the gateway's vault is filled by a real consent flow rather than written by hand.
//! `GET /authorize` approves at once (redirects back with a code, the state and `iss`);
//! `POST /token` exchanges the code (PKCE S256 and client credentials checked) or a refresh
//! token. bench/run counts the grant lines it prints: a refresh would mean a 401 happened.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::BoxError;
use crate::serve::{HttpResponse, health_or_not_found, read_body, reply, serve};

#[derive(Args)]
pub struct OauthProviderArgs {
    #[arg(long, default_value = "127.0.0.1:18082")]
    listen: SocketAddr,
    /// The only client allowed (checked at /authorize and /token).
    #[arg(long)]
    client_id: String,
    /// File holding that client's secret (whitespace trimmed); client_secret_basic or _post.
    #[arg(long)]
    client_secret_file: PathBuf,
    /// File holding the access token every grant returns (whitespace trimmed).
    #[arg(long)]
    access_token_file: PathBuf,
    /// `expires_in` of every access token, seconds.
    #[arg(long, default_value_t = 86_400)]
    expires_in: u64,
}

/// How long an authorization code can be exchanged (RFC 6749 section 4.1.2: short-lived).
const CODE_TTL: Duration = Duration::from_secs(120);

/// What `/authorize` promised about a code, checked again when it is exchanged.
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: Option<String>,
    issued: Instant,
}

/// The provider's fixed answers (one client, one access token) and its outstanding codes.
struct OauthServer {
    issuer: String,
    client_id: String,
    client_secret: String,
    access_token: String,
    refresh_token: String,
    expires_in: u64,
    codes: parking_lot::Mutex<HashMap<String, PendingCode>>,
}

fn read_trimmed(path: &PathBuf) -> Result<String, BoxError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()).into());
    }
    Ok(text.to_string())
}

/// 32 random bytes, base64url.
fn random_string() -> Result<String, BoxError> {
    use aws_lc_rs::rand::SecureRandom;
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "no randomness")?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub async fn run(args: OauthProviderArgs) -> Result<(), BoxError> {
    let listener = TcpListener::bind(args.listen).await?;
    let local = listener.local_addr()?;
    let provider = Arc::new(OauthServer {
        issuer: format!("http://{local}"),
        client_id: args.client_id.clone(),
        client_secret: read_trimmed(&args.client_secret_file)?,
        access_token: read_trimmed(&args.access_token_file)?,
        refresh_token: random_string()?,
        expires_in: args.expires_in,
        codes: parking_lot::Mutex::new(HashMap::new()),
    });
    println!("oauth-provider listening on {local}");
    serve(listener, "oauth-provider", move |request| {
        oauth_service(request, provider.clone())
    })
    .await;
    Ok(())
}

async fn oauth_service(request: Request<Incoming>, provider: Arc<OauthServer>) -> HttpResponse {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/authorize") => {
            let query = request.uri().query().unwrap_or("").to_string();
            authorize(&provider, &query)
        }
        (&Method::POST, "/token") => {
            let basic = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match read_body(request).await {
                Ok(body) => token_endpoint(&provider, basic.as_deref(), &body),
                Err(bad) => bad,
            }
        }
        _ => health_or_not_found(&request),
    }
}

/// First value of each parameter of an `application/x-www-form-urlencoded` text.
fn form_params(text: &[u8]) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(text) {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
}

/// `GET /authorize`: the user approves at once. The request must be a valid authorization
/// code request of the one client with PKCE S256 (RFC 6749 section 4.1.1, RFC 7636 section 4.3);
/// the answer redirects to `redirect_uri` with the code, the state and the RFC 9207 `iss`.
fn authorize(provider: &OauthServer, query: &str) -> HttpResponse {
    let params = form_params(query.as_bytes());
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let refuse = |reason: &str| {
        eprintln!("oauth-provider: /authorize refused: {reason}");
        reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            format!("authorization refused: {reason}\n"),
        )
    };
    if get("response_type") != Some("code") {
        return refuse("response_type must be code");
    }
    if get("client_id") != Some(provider.client_id.as_str()) {
        return refuse("unknown client_id");
    }
    let Some(redirect_uri) = get("redirect_uri") else {
        return refuse("missing redirect_uri");
    };
    let Ok(mut location) = url::Url::parse(redirect_uri) else {
        return refuse("redirect_uri is not a URL");
    };
    if !matches!(location.scheme(), "http" | "https") || location.fragment().is_some() {
        return refuse("redirect_uri must be an http(s) URL without fragment");
    }
    let Some(state) = get("state") else {
        return refuse("missing state");
    };
    if get("code_challenge_method") != Some("S256") {
        return refuse("code_challenge_method must be S256");
    }
    let Some(challenge) = get("code_challenge").filter(|c| c.len() == 43) else {
        return refuse("missing or malformed code_challenge");
    };
    let Ok(code) = random_string() else {
        return refuse("no randomness");
    };
    {
        let mut codes = provider.codes.lock();
        codes.retain(|_, pending| pending.issued.elapsed() < CODE_TTL);
        codes.insert(
            code.clone(),
            PendingCode {
                client_id: provider.client_id.clone(),
                redirect_uri: redirect_uri.to_string(),
                code_challenge: challenge.to_string(),
                scope: get("scope").map(str::to_string),
                issued: Instant::now(),
            },
        );
    }
    location
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state)
        .append_pair("iss", &provider.issuer);
    let mut response = reply(StatusCode::FOUND, "text/plain", String::new());
    match HeaderValue::from_str(location.as_str()) {
        Ok(value) => {
            response.headers_mut().insert(http::header::LOCATION, value);
            response
        }
        Err(_) => refuse("redirect_uri cannot be a header value"),
    }
}

/// A token endpoint answer: JSON that no cache may keep (RFC 6749 section 5.1).
fn token_json(status: StatusCode, body: &Value) -> HttpResponse {
    let mut response = reply(status, "application/json", body.to_string());
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

/// A token endpoint error (RFC 6749 section 5.2); a failed client authentication is a 401
/// with the Basic challenge.
fn token_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    eprintln!("oauth-provider: /token refused: {error}: {description}");
    let mut response = token_json(
        status,
        &json!({"error": error, "error_description": description}),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oauth-provider\""),
        );
    }
    response
}

/// The client's id and secret: HTTP Basic (RFC 6749 section 2.3.1, both form-urlencoded
/// first) or `client_id` / `client_secret` in the body.
fn client_credentials(
    basic: Option<&str>,
    params: &HashMap<String, String>,
) -> Option<(String, String)> {
    use base64::Engine;
    if let Some(encoded) = basic.and_then(|h| h.strip_prefix("Basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        let unescape = |part: &str| {
            url::form_urlencoded::parse(format!("x={part}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((unescape(id)?, unescape(secret)?));
    }
    Some((
        params.get("client_id")?.clone(),
        params.get("client_secret")?.clone(),
    ))
}

/// `POST /token`: `authorization_code` (single-use code, same redirect_uri, PKCE S256 verifier)
/// or `refresh_token`; the client must authenticate.
fn token_endpoint(provider: &OauthServer, basic: Option<&str>, body: &[u8]) -> HttpResponse {
    use base64::Engine;
    let params = form_params(body);
    let authenticated = client_credentials(basic, &params).is_some_and(|(id, secret)| {
        id == provider.client_id
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                secret.as_bytes(),
                provider.client_secret.as_bytes(),
            )
            .is_ok()
    });
    if !authenticated {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
    }
    let get = |name: &str| params.get(name).map(String::as_str);
    let scope = match get("grant_type") {
        Some("authorization_code") => {
            let pending = get("code").and_then(|code| provider.codes.lock().remove(code));
            let Some(pending) = pending.filter(|p| p.issued.elapsed() < CODE_TTL) else {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown, expired or already used code",
                );
            };
            if pending.client_id != provider.client_id
                || get("redirect_uri") != Some(pending.redirect_uri.as_str())
            {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "redirect_uri or client differs from the authorization request",
                );
            }
            let verifier = get("code_verifier").unwrap_or("");
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()),
            );
            if !(43..=128).contains(&verifier.len()) || computed != pending.code_challenge {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            println!("oauth-provider: authorization_code grant");
            pending.scope
        }
        Some("refresh_token") => {
            if get("refresh_token") != Some(provider.refresh_token.as_str()) {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown refresh token",
                );
            }
            println!("oauth-provider: refresh_token grant");
            get("scope").map(str::to_string)
        }
        _ => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "authorization_code or refresh_token",
            );
        }
    };
    let mut body = json!({
        "access_token": provider.access_token,
        "token_type": "Bearer",
        "expires_in": provider.expires_in,
        "refresh_token": provider.refresh_token,
    });
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    token_json(StatusCode::OK, &body)
}
