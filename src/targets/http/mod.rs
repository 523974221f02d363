//! HTTP targets: arguments -> one request (DESIGN 2.3 "HTTP mapping") -> tool result.
//!
//! Path parameters are single segments, percent-encoded per RFC 3986 section 3.3 with every
//! character outside `unreserved` escaped; values that are empty, `.`, `..` or contain `/`
//! are refused outright, because some servers decode `%2F` and `%2E%2E` before routing and
//! the model must never be able to reach a path the admin did not declare.

mod route;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

pub use self::route::{HttpRoute, PathPart, parse_path_template};
use super::{
    BoxFuture, BuildInput, Invocation, Kind, Refusal, SpecProblems, Target, TargetError, ToolCall,
    ToolSource, body_result, error_result, escape_pointer, excerpt,
};
use crate::body::read_limited;
use crate::credential::{ApiKeyLocation, Injection};

/// The registry entry: `"http": {...}` in a target file, `"http": {...}` on each tool.
pub const KIND: Kind = Kind {
    key: "http",
    tool_key: Some("http"),
    tools: ToolSource::File,
    build,
};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Headers a target file may not set, statically or from arguments: credentials belong in
/// `credentials` (never inline in a committed file), and framing headers are the client's job.
pub const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
];

/// The `http` section of a target file, as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpSpec {
    base_url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout_ms: Option<u64>,
    max_response_bytes: Option<u64>,
}

/// An HTTP target with its tools' routes, indexed like its tools.
pub struct HttpTarget {
    /// Parsed once at load, so that a call only sets the path and query instead of re-parsing
    /// (and IDNA-mapping) the whole URL.
    base: Url,
    headers: HeaderMap,
    timeout: Duration,
    max_response_bytes: usize,
    routes: Vec<HttpRoute>,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Static header values may be sensitive to the admin (tenant ids); names only.
        f.debug_struct("HttpTarget")
            .field("base", &self.base.as_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

fn challenge_of(headers: &http::HeaderMap) -> Option<String> {
    super::printable_challenge(headers.get(http::header::WWW_AUTHENTICATE)?.to_str().ok()?)
}

/// RFC 3986 section 2.3 unreserved characters stay; everything else is escaped.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The one pooled client for all HTTP targets: connections are reused per host (keep-alive).
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        // Targets are admin-declared; following redirects would let a target bounce the
        // request (and any injected credential) to a host nobody declared.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Builds an HTTP target; the OpenAPI kind builds through it too, with generated mappings.
pub fn build(input: &BuildInput<'_>, problems: &mut SpecProblems) -> Option<Arc<dyn Target>> {
    let spec: HttpSpec = super::section(input.section, problems)?;
    let base = base_url(&spec.base_url, problems);
    let headers = static_headers(&spec.headers, problems);
    let routes: Vec<Option<HttpRoute>> = input
        .tools
        .iter()
        .enumerate()
        .map(|(index, tool)| route::tool_route(index, tool, problems))
        .collect();
    if !problems.is_empty() {
        return None;
    }
    Some(Arc::new(HttpTarget {
        base: base?,
        headers,
        timeout: spec
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_TIMEOUT),
        max_response_bytes: spec
            .max_response_bytes
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES),
        routes: routes.into_iter().collect::<Option<Vec<_>>>()?,
        client: input.transport.http.clone(),
    }))
}

/// An http(s) URL without query or fragment; tool paths (which start with `/`) are appended.
fn base_url(text: &str, problems: &mut SpecProblems) -> Option<Url> {
    match Url::parse(text) {
        Ok(url) if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") => {
            problems.in_section("/baseUrl", "must be an http or https URL");
            None
        }
        Ok(url) if url.query().is_none() && url.fragment().is_none() => Some(url),
        Ok(_) => {
            problems.in_section("/baseUrl", "must not have a query or fragment");
            None
        }
        Err(e) => {
            problems.in_section("/baseUrl", format!("not a URL: {e}"));
            None
        }
    }
}

fn static_headers(spec: &BTreeMap<String, String>, problems: &mut SpecProblems) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in spec {
        let pointer = format!("/headers/{}", escape_pointer(name));
        match (HeaderName::from_str(name), HeaderValue::from_str(value)) {
            (Ok(name), _) if RESERVED_HEADERS.contains(&name.as_str()) => problems.in_section(
                pointer,
                format!(
                    "{name} may not be set here: credentials go in `credentials`, never inline"
                ),
            ),
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            (Err(_), _) => problems.in_section(pointer, "not a valid header name"),
            (_, Err(_)) => problems.in_section(pointer, "not a valid header value"),
        }
    }
    headers
}

impl Target for HttpTarget {
    fn invoke<'a>(
        &'a self,
        call: &'a ToolCall<'a>,
        credential: Option<&'a Injection>,
    ) -> BoxFuture<'a, Result<Invocation, TargetError>> {
        Box::pin(self.call(call, credential))
    }
}

impl HttpTarget {
    async fn call(
        &self,
        call: &ToolCall<'_>,
        credential: Option<&Injection>,
    ) -> Result<Invocation, TargetError> {
        let route = self
            .routes
            .get(call.tool)
            .ok_or(TargetError::NoSuchTool(call.tool))?;
        let request = inject(self.build(route, call.args)?, credential)?;
        let response = tokio::time::timeout(self.timeout, request.send())
            .await
            .map_err(|_| TargetError::Timeout(self.timeout.as_millis()))?
            .map_err(|e| {
                if e.is_timeout() {
                    TargetError::Timeout(self.timeout.as_millis())
                } else {
                    TargetError::Unreachable(describe(&e))
                }
            })?;
        let status = response.status();
        // RFC 6750 section 3.1: 401 is the resource server refusing the token it was sent.
        let credential_refused = (status == http::StatusCode::UNAUTHORIZED && credential.is_some())
            .then(|| Refusal {
                challenge: challenge_of(response.headers()),
            });
        let is_json = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        let body = tokio::time::timeout(
            self.timeout,
            read_limited(response, self.max_response_bytes),
        )
        .await
        .map_err(|_| TargetError::Timeout(self.timeout.as_millis()))??;
        let result = if status.as_u16() >= 400 {
            error_result(format!("HTTP {status}: {}", excerpt(&body)))
        } else {
            body_result(&body, is_json)
        };
        Ok(Invocation {
            result,
            credential_refused,
        })
    }

    fn build(
        &self,
        route: &HttpRoute,
        args: &Map<String, Value>,
    ) -> Result<reqwest::RequestBuilder, TargetError> {
        let mut path = self.base.path().trim_end_matches('/').to_string();
        for part in &route.path {
            match part {
                PathPart::Literal(text) => path.push_str(text),
                PathPart::Param(name) => {
                    let value = scalar(name, args.get(name))?;
                    if value.is_empty() || value == "." || value == ".." || value.contains('/') {
                        return Err(TargetError::BadArgument {
                            name: name.clone(),
                            problem: "must be a single path segment (not empty, `.`, `..`, and without `/`)".into(),
                        });
                    }
                    path.extend(utf8_percent_encode(&value, SEGMENT));
                }
            }
        }
        let mut url = self.base.clone();
        url.set_path(&path);
        if route
            .query
            .iter()
            .any(|name| !matches!(args.get(name), None | Some(Value::Null)))
        {
            let mut pairs = url.query_pairs_mut();
            for name in &route.query {
                match args.get(name) {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(items)) => {
                        for item in items {
                            pairs.append_pair(name, &scalar(name, Some(item))?);
                        }
                    }
                    Some(value) => {
                        pairs.append_pair(name, &scalar(name, Some(value))?);
                    }
                }
            }
        }
        let mut request = self
            .client
            .request(route.method.clone(), url)
            .headers(self.headers.clone());
        for (arg, header) in &route.headers {
            if let Some(value) = args.get(arg).filter(|v| !v.is_null()) {
                let value = HeaderValue::from_str(&scalar(arg, Some(value))?).map_err(|_| {
                    TargetError::BadArgument {
                        name: arg.clone(),
                        problem: "is not a valid header value".into(),
                    }
                })?;
                request = request.header(header.clone(), value);
            }
        }
        if let (true, Some(name)) = (route.has_body, &route.body) {
            if let Some(body) = args.get(name) {
                request = request.json(body);
            }
        } else if route.has_body {
            let mapped: Vec<&str> = route.mapped_args().collect();
            let body: Map<String, Value> = args
                .iter()
                .filter(|(k, _)| !mapped.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            request = request.json(&body);
        }
        Ok(request)
    }
}

/// Puts the downstream credential on the request. Header values are marked sensitive so that
/// no HTTP-layer debug output can print them.
fn inject(
    request: reqwest::RequestBuilder,
    credential: Option<&Injection>,
) -> Result<reqwest::RequestBuilder, TargetError> {
    let header = |value: String| {
        HeaderValue::from_str(&value)
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| {
                TargetError::Credential("the credential is not a valid header value".into())
            })
    };
    Ok(match credential {
        None => request,
        Some(Injection::Bearer(token)) => request.header(
            http::header::AUTHORIZATION,
            header(format!("Bearer {}", token.expose()))?,
        ),
        Some(Injection::ApiKey {
            location: ApiKeyLocation::Header,
            name,
            value,
        }) => {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| TargetError::Credential(format!("{name:?} is not a header name")))?;
            request.header(name, header(value.expose().to_string())?)
        }
        Some(Injection::ApiKey {
            location: ApiKeyLocation::QueryParameter,
            name,
            value,
        }) => request.query(&[(name.as_str(), value.expose())]),
    })
}

/// Strings as they are; numbers and booleans in their JSON form; anything else is refused.
fn scalar(name: &str, value: Option<&Value>) -> Result<String, TargetError> {
    match value {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        None => Err(TargetError::BadArgument {
            name: name.to_string(),
            problem: "is required by the request mapping".into(),
        }),
        Some(_) => Err(TargetError::BadArgument {
            name: name.to_string(),
            problem: "must be a string, number or boolean here".into(),
        }),
    }
}

/// `application/json` and any `+json` structured syntax suffix (RFC 6839 section 3.1).
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A transport error without its URL (which may carry query arguments) and without secrets.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connection failed"
    } else if error.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use serde_json::json;

    fn target() -> HttpTarget {
        HttpTarget {
            base: Url::parse("http://127.0.0.1:9/api").unwrap(),
            headers: HeaderMap::new(),
            timeout: Duration::from_secs(1),
            max_response_bytes: 1024,
            routes: vec![],
            client: client().unwrap(),
        }
    }

    fn route(path: &str, method: Method) -> HttpRoute {
        HttpRoute {
            has_body: matches!(method, Method::POST),
            body: None,
            method,
            path: parse_path_template(path).unwrap(),
            query: vec!["q".into()],
            headers: vec![],
        }
    }

    fn url_of(path: &str, args: serde_json::Value) -> Result<String, TargetError> {
        let request = target().build(&route(path, Method::GET), args.as_object().unwrap())?;
        Ok(request.build().unwrap().url().to_string())
    }
    #[test]
    fn path_parameters_are_encoded_as_one_segment() {
        assert_eq!(
            url_of("/users/{owner}/repos", json!({"owner": "a b?#%"})).unwrap(),
            "http://127.0.0.1:9/api/users/a%20b%3F%23%25/repos"
        );
    }

    #[test]
    fn traversal_and_slashes_are_refused() {
        for bad in ["..", ".", "", "a/b", "../etc"] {
            assert!(
                matches!(
                    url_of("/users/{owner}", json!({"owner": bad})),
                    Err(TargetError::BadArgument { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn query_arrays_repeat_and_numbers_keep_json_form() {
        assert_eq!(
            url_of("/s", json!({"q": [1, "x y"]})).unwrap(),
            "http://127.0.0.1:9/api/s?q=1&q=x+y"
        );
    }

    #[test]
    fn json_media_types_are_recognised() {
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type("application/problem+json"));
        assert!(!is_json_media_type("text/plain"));
    }
}
