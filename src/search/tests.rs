use serde_json::{Map, Value, json};

use super::*;

fn schema(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// A small catalog in the shape of the fixture: (name, description, input schema).
fn catalog() -> Vec<(&'static str, &'static str, Map<String, Value>)> {
    vec![
        (
            "github___repos_list_for_user",
            "List repositories for a user. Lists public repositories for the specified user.",
            schema(json!({"properties": {"username": {"type": "string",
                "description": "The handle for the GitHub user account."}}})),
        ),
        (
            "github___issues_create",
            "Create an issue. Any user with pull access to a repository can create an issue.",
            schema(
                json!({"properties": {"title": {"description": "The title of the issue."},
                "body": {"description": "The contents of the issue."}}}),
            ),
        ),
        (
            "github___repos_get",
            "Get a repository. The parent and source objects are present when the repository \
             is a fork.",
            schema(json!({"properties": {"owner": {}, "repo": {}}})),
        ),
        (
            "shipengine___void_label",
            "Void a Label By ID. Void a label by ID to get a refund.",
            schema(json!({"properties": {"label_id": {"description": "Label ID"}}})),
        ),
        (
            "notion___retrieve-a-page",
            "Retrieve a page",
            schema(json!({"properties": {"page_id": {}}})),
        ),
    ]
}

fn index() -> SearchIndex {
    let tools = catalog();
    SearchIndex::build(
        tools
            .iter()
            .map(|(name, description, input_schema)| ToolDoc {
                name,
                description,
                input_schema,
            }),
    )
    .unwrap()
}

fn names(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|hit| hit.name.as_str()).collect()
}

#[test]
fn the_index_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<SearchIndex>();
}

#[test]
fn a_plural_finds_the_singular_through_stemming() {
    let hits = index().search("repositories", 5, |_| true).unwrap();
    assert!(
        names(&hits).contains(&"github___repos_get"),
        "{hits:?} should contain the tool whose description says \"repository\""
    );
}

#[test]
fn words_of_a_split_name_are_found() {
    let hits = index().search("void", 5, |_| true).unwrap();
    assert_eq!(names(&hits), ["shipengine___void_label"]);
    let hits = index().search("retrieve page", 5, |_| true).unwrap();
    assert_eq!(names(&hits)[0], "notion___retrieve-a-page");
}

#[test]
fn the_name_outweighs_a_mention_in_a_description() {
    // Every GitHub tool mentions repositories; the one *named* for creating issues wins.
    let hits = index().search("create issue", 5, |_| true).unwrap();
    assert_eq!(names(&hits)[0], "github___issues_create");
}

#[test]
fn query_syntax_characters_are_plain_text() {
    let index = index();
    for query in [
        "\"create issue",
        "title:issue",
        "(void label",
        "void AND label",
        "label OR -void +refund",
        "repos~2 ^3 [a TO z] * ? \\ / {}",
        "IN [1 2]",
        "\u{0}\u{7f}éü 漢字",
    ] {
        let result = index.search(query, 5, |_| true);
        assert!(result.is_ok(), "{query:?} failed: {result:?}");
    }
    let hits = index
        .search("label:void AND (refund)", 5, |_| true)
        .unwrap();
    assert_eq!(names(&hits)[0], "shipengine___void_label");
}

#[test]
fn an_empty_or_blank_query_is_a_clear_error() {
    let index = index();
    for query in ["", "   ", "\n\t"] {
        let error = index.search(query, 5, |_| true).unwrap_err();
        assert!(matches!(error, SearchError::EmptyQuery), "{error:?}");
        assert_eq!(error.to_string(), "the search query is empty");
    }
}

#[test]
fn a_query_of_only_punctuation_or_stop_words_says_so() {
    let index = index();
    for query in ["?!", "the", "how do I", "\"\"()"] {
        let error = index.search(query, 5, |_| true).unwrap_err();
        assert!(
            matches!(error, SearchError::NoSearchableWords),
            "{query:?}: {error:?}"
        );
    }
}

#[test]
fn a_disallowed_tool_never_appears_and_the_rest_still_fill_the_limit() {
    let index = index();
    let all = index.search("repository", 10, |_| true).unwrap();
    assert!(all.len() >= 3, "{all:?}");
    let best = all[0].name.clone();
    let filtered = index.search("repository", 2, |name| name != best).unwrap();
    assert_eq!(filtered.len(), 2);
    assert!(filtered.iter().all(|hit| hit.name != best));
    assert_eq!(filtered[0].name, all[1].name);
}

#[test]
fn results_are_best_first_and_at_most_limit() {
    let hits = index()
        .search("repository user issue", 2, |_| true)
        .unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits[0].score >= hits[1].score);
}

#[test]
fn zero_limit_an_empty_catalog_and_unknown_words_give_no_hits() {
    assert!(index().search("issue", 0, |_| true).unwrap().is_empty());
    let empty = SearchIndex::build(std::iter::empty()).unwrap();
    assert!(empty.is_empty());
    assert!(empty.search("issue", 5, |_| true).unwrap().is_empty());
    assert!(index().search("zyzzyva", 5, |_| true).unwrap().is_empty());
}

#[test]
fn a_very_long_query_is_bounded_not_refused() {
    let query = (0..10_000).map(|i| format!("word{i} ")).collect::<String>() + "void";
    assert!(index().search(&query, 5, |_| true).is_ok());
}

/// An index of `(name, description)` tools without parameters.
fn index_of(tools: &[(&str, &str)]) -> SearchIndex {
    let empty = Map::new();
    SearchIndex::build(tools.iter().map(|(name, description)| ToolDoc {
        name,
        description,
        input_schema: &empty,
    }))
    .unwrap()
}

#[test]
fn a_word_no_tool_uses_is_stood_in_for_by_its_synonyms() {
    // "cancel" is nowhere in the catalog; ShipEngine says "void".
    let hits = index().search("cancel a label", 5, |_| true).unwrap();
    assert_eq!(names(&hits)[0], "shipengine___void_label");
}

#[test]
fn the_users_own_word_outweighs_its_synonym() {
    let index = index_of(&[
        ("teams_delete_member", "Delete a member from a team"),
        ("teams_remove_member", "Remove a member from a team"),
    ]);
    let hits = index.search("remove member", 5, |_| true).unwrap();
    assert_eq!(
        names(&hits),
        ["teams_remove_member", "teams_delete_member"],
        "both are found, the one saying \"remove\" first: {hits:?}"
    );
}

#[test]
fn stem_completions_join_forms_the_stemmer_keeps_apart() {
    // The stemmer gives "contribut" for "contributed" and "contributor" for "contributors".
    let index = index_of(&[
        ("repos_list_contributors", "List repository contributors"),
        ("repos_list_tags", "List repository tags"),
    ]);
    let hits = index.search("who contributed", 5, |_| true).unwrap();
    assert_eq!(names(&hits), ["repos_list_contributors"]);
}

#[test]
fn matching_more_of_the_query_beats_one_rare_word() {
    let mut tools = vec![
        ("meta_get_octocat", "Get Octocat. The octocat as ASCII art."),
        ("repos_list_for_user", "List repositories for a user."),
    ];
    // Make "octocat" rare and "repositories" / "user" common, as in the real catalog.
    let filler: Vec<(String, String)> = (0..30)
        .map(|i| {
            (
                format!("repos_other_{i}"),
                format!("Other {i} for a user's repository."),
            )
        })
        .collect();
    tools.extend(filler.iter().map(|(n, d)| (n.as_str(), d.as_str())));
    let hits = index_of(&tools)
        .search("list repositories of the user octocat", 5, |_| true)
        .unwrap();
    assert_eq!(names(&hits)[0], "repos_list_for_user", "{hits:?}");
}

#[test]
fn a_camel_case_query_word_is_split_only_when_unknown() {
    let index = index();
    let hits = index.search("reposListForUser", 5, |_| true).unwrap();
    assert_eq!(names(&hits)[0], "github___repos_list_for_user");
    // "GitHub" is a word of the descriptions: it is searched whole, not as "git hub".
    let hits = index.search("GitHub", 5, |_| true).unwrap();
    assert_eq!(hits.len(), 3, "{hits:?}");
    assert!(hits.iter().all(|hit| hit.name.starts_with("github___")));
}

#[test]
fn a_word_in_the_first_sentence_weighs_more_than_the_same_word_later() {
    let index = index_of(&[
        ("tool_a", "Other words come here. Fork a thing."),
        ("tool_b", "Fork a thing. Other words come here."),
    ]);
    let hits = index.search("fork", 5, |_| true).unwrap();
    assert_eq!(names(&hits), ["tool_b", "tool_a"]);
}
