//! Where the document says a key goes: its security schemes, for a target whose `apiKey`
//! credential names only the key (OpenAPI 3.1.0 section 4.8.27 "Security Scheme Object",
//! section 4.8.30 "Security Requirement Object"; the same in 3.0.3).
//!
//! A target has one credential (DESIGN 2.3), so one scheme is picked for the whole document:
//! the first usable scheme the top-level `security` names, in order; with no usable one named
//! there, the document's only usable scheme. Usable are `apiKey` in a header or the query and
//! `http` with scheme `bearer` (RFC 6750 section 2.1, so the key is sent as
//! `Authorization: Bearer <key>`). Per-operation `security` is not honoured (it would need a
//! credential per tool), nor are `apiKey` in a cookie, `http` `basic`, `oauth2`,
//! `openIdConnect` and `mutualTLS`: an `oauth` credential is always sent as a bearer token,
//! which is what the last two expect.

use serde_json::Value;

use super::document::Document;
use crate::credential::{ApiKeyLocation, KeyPlacement};

/// A scheme that could not be read, with its pointer in the document.
#[derive(Debug, PartialEq, Eq)]
pub struct SchemeProblem {
    pub pointer: String,
    pub message: String,
}

/// The placement the document's schemes give an API key, if they give one.
pub fn key_placement(doc: &Document) -> (Option<KeyPlacement>, Vec<SchemeProblem>) {
    let mut problems = Vec::new();
    let Some(schemes) = doc
        .root
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
    else {
        return (None, problems);
    };
    let mut usable = Vec::new();
    for (name, scheme) in schemes {
        let pointer = format!("/components/securitySchemes/{}", escape(name));
        match doc.follow(scheme) {
            Ok(scheme) => {
                if let Some(placement) = placement(scheme) {
                    usable.push((name.as_str(), placement));
                }
            }
            Err(error) => problems.push(SchemeProblem {
                pointer,
                message: error.to_string(),
            }),
        }
    }
    let required = doc
        .root
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|requirement| requirement.keys());
    for name in required {
        if let Some((_, placement)) = usable.iter().find(|(usable, _)| usable == name) {
            return (Some(placement.clone()), problems);
        }
    }
    let only = match usable.as_slice() {
        [(_, placement)] => Some(placement.clone()),
        _ => None,
    };
    (only, problems)
}

fn placement(scheme: &Value) -> Option<KeyPlacement> {
    let text = |key: &str| scheme.get(key).and_then(Value::as_str);
    match text("type")? {
        "apiKey" => {
            let location = match text("in")? {
                "header" => ApiKeyLocation::Header,
                "query" => ApiKeyLocation::QueryParameter,
                _ => return None,
            };
            Some(KeyPlacement {
                location,
                parameter_name: text("name")?.to_string(),
                prefix: None,
            })
        }
        // Auth scheme names are case-insensitive (RFC 9110 section 11.1).
        "http" if text("scheme")?.eq_ignore_ascii_case("bearer") => Some(KeyPlacement {
            location: ApiKeyLocation::Header,
            parameter_name: "Authorization".into(),
            prefix: Some("Bearer ".into()),
        }),
        _ => None,
    }
}

/// An RFC 6901 reference token.
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn placed(root: Value) -> Option<KeyPlacement> {
        let doc = Document {
            root,
            is_3_0: false,
        };
        let (placement, problems) = key_placement(&doc);
        assert_eq!(problems, vec![]);
        placement
    }

    fn header(name: &str, prefix: Option<&str>) -> Option<KeyPlacement> {
        Some(KeyPlacement {
            location: ApiKeyLocation::Header,
            parameter_name: name.into(),
            prefix: prefix.map(str::to_string),
        })
    }

    #[test]
    fn the_scheme_the_document_requires_wins_over_others() {
        let root = json!({
            "components": {"securitySchemes": {
                "a_query": {"type": "apiKey", "in": "query", "name": "api_key"},
                "b_header": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            }},
            "security": [{"oauth": ["read"]}, {"b_header": []}],
        });
        assert_eq!(placed(root), header("X-Api-Key", None));
    }

    #[test]
    fn the_only_usable_scheme_is_taken_when_none_is_required() {
        let root = json!({"components": {"securitySchemes": {
            "oauth": {"type": "oauth2", "flows": {}},
            "key": {"type": "apiKey", "in": "query", "name": "api_key"},
        }}});
        assert_eq!(
            placed(root),
            Some(KeyPlacement {
                location: ApiKeyLocation::QueryParameter,
                parameter_name: "api_key".into(),
                prefix: None,
            })
        );
    }

    #[test]
    fn http_bearer_puts_the_key_in_authorization_and_two_unrequired_schemes_pick_none() {
        let bearer = json!({"components": {"securitySchemes": {
            "token": {"type": "http", "scheme": "Bearer"},
        }}});
        assert_eq!(placed(bearer), header("Authorization", Some("Bearer ")));
        let two = json!({"components": {"securitySchemes": {
            "a": {"type": "apiKey", "in": "header", "name": "A"},
            "b": {"type": "apiKey", "in": "header", "name": "B"},
        }}});
        assert_eq!(placed(two), None);
        let cookie = json!({"components": {"securitySchemes": {
            "a": {"type": "apiKey", "in": "cookie", "name": "session"},
        }}});
        assert_eq!(placed(cookie), None);
    }

    #[test]
    fn a_scheme_behind_a_ref_is_followed_and_a_broken_one_reported() {
        let root = json!({"components": {
            "securitySchemes": {
                "key": {"$ref": "#/components/x-schemes/key"},
                "broken": {"$ref": "#/components/nothing"},
            },
            "x-schemes": {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}},
        }});
        let doc = Document {
            root,
            is_3_0: false,
        };
        let (placement, problems) = key_placement(&doc);
        assert_eq!(placement, header("X-Key", None));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].pointer, "/components/securitySchemes/broken");
    }
}
