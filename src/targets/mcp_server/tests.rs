use serde_json::json;

use super::*;
use crate::secret::Secret;

fn problems_of(section: serde_json::Value) -> Vec<(String, String)> {
    let mut problems = SpecProblems::default();
    assert!(check(&section, &mut problems).is_none());
    problems.section
}

#[test]
fn user_tokens_travel_only_on_https_or_loopback() {
    let mut problems = SpecProblems::default();
    for url in [
        "https://notes.example.com/mcp",
        "http://127.0.0.1:9000/mcp",
        "http://localhost/mcp",
        "http://[::1]:8080/mcp",
    ] {
        assert!(
            check(&json!({"url": url}), &mut problems).is_some(),
            "{url}"
        );
    }
    let found = problems_of(json!({"url": "http://notes.example.com/mcp"}));
    assert_eq!(found[0].0, "/url");
    assert!(found[0].1.contains("https://"), "{found:?}");
    assert_eq!(problems_of(json!({"url": "not a url"}))[0].0, "/url");
    let unknown = problems_of(json!({"url": "https://a.example/mcp", "forwardToken": true}));
    assert!(unknown[0].1.contains("forwardToken"), "{unknown:?}");
    let checked = check(
        &json!({"url": "https://a.example/mcp", "passthrough": true}),
        &mut problems,
    );
    assert!(checked.is_some_and(|c| c.passthrough));
}

#[test]
fn defaults_apply_when_the_file_is_silent() {
    let mut problems = SpecProblems::default();
    let checked = check(&json!({"url": "https://a.example/mcp"}), &mut problems).unwrap();
    assert_eq!(checked.timeout, DEFAULT_TIMEOUT);
    assert_eq!(checked.max_sessions, DEFAULT_MAX_SESSIONS);
    let checked = check(
        &json!({"url": "https://a.example/mcp", "timeoutMs": 250, "maxSessions": 3}),
        &mut problems,
    )
    .unwrap();
    assert_eq!(
        (checked.timeout, checked.max_sessions),
        (Duration::from_millis(250), 3)
    );
}

#[test]
fn a_session_serves_only_the_credential_it_was_opened_with() {
    let bearer = |t: &str| Injection::Bearer(Secret::new(t));
    let key = |v: &str| Injection::ApiKey {
        location: crate::credential::ApiKeyLocation::Header,
        name: "x-api-key".into(),
        value: Secret::new(v),
    };
    assert!(sessions::same_credential(None, None));
    assert!(sessions::same_credential(
        Some(&bearer("a")),
        Some(&bearer("a"))
    ));
    assert!(!sessions::same_credential(
        Some(&bearer("a")),
        Some(&bearer("b"))
    ));
    assert!(!sessions::same_credential(Some(&bearer("a")), None));
    assert!(sessions::same_credential(Some(&key("k")), Some(&key("k"))));
    assert!(!sessions::same_credential(Some(&key("k")), Some(&key("j"))));
    assert!(!sessions::same_credential(
        Some(&key("a")),
        Some(&bearer("a"))
    ));
}
