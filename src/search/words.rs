//! The text a tool is found by (its name split into words, the first sentence of its
//! description, the names and descriptions of its parameters), the words of a query, and the
//! word lists both are matched through. Pure string work, no index, so each rule is
//! unit-tested on its own.

use serde_json::{Map, Value};

/// How deep [`parameter_text`] follows nested `properties` / `items`. Real API schemas nest a
/// few levels (GitHub's `labels[].name`); deeper levels rarely name what a tool does, and a
/// bound keeps a hostile or generated schema from costing unbounded work at index time.
pub const MAX_SCHEMA_DEPTH: usize = 4;

/// At most this many parameters of one tool are indexed, for the same reason.
pub const MAX_PARAMETERS: usize = 256;

/// Splits a tool or parameter name into lower-case words separated by spaces:
/// `github___repos_list_for_user` -> `github repos list for user`, `listForUser` ->
/// `list for user`, `HTMLParser2` -> `html parser 2`.
///
/// Why: names are where a tool says what it does most densely, but `repos_list_for_user` is
/// one token to a word tokenizer that keeps `_`, and camelCase is one token to every tokenizer.
pub fn split_name(name: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for chunk in name.split(|c: char| !c.is_alphanumeric()) {
        let chars: Vec<char> = chunk.chars().collect();
        let mut word = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let previous = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1).copied();
            let boundary = match previous {
                None => false,
                // `listFor`: lower then upper.
                Some(p) if p.is_lowercase() && c.is_uppercase() => true,
                // `HTMLParser`: the last capital of a run starts the next word.
                Some(p) if p.is_uppercase() && c.is_uppercase() => {
                    next.is_some_and(char::is_lowercase)
                }
                // `v2`, `2fa`: letters and digits are separate words.
                Some(p) => p.is_ascii_digit() != c.is_ascii_digit(),
            };
            if boundary && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            word.extend(c.to_lowercase());
        }
        if !word.is_empty() {
            words.push(word);
        }
    }
    words.join(" ")
}

/// Short forms that API names use for words their descriptions and their users spell out
/// (GitHub's `repos/`, `orgs/`, `pulls/`; ShipEngine's `_id`). Each is indexed and queried
/// with its long form added, so "repositories" finds `repos_list_for_user` through its name.
/// The pairs are read off the fixture documents' own operation ids and summaries.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("repo", "repository"),
    ("repos", "repositories"),
    ("org", "organization"),
    ("orgs", "organizations"),
    ("pulls", "pull requests"),
    ("pr", "pull request"),
    ("prs", "pull requests"),
    ("env", "environment"),
    ("envs", "environments"),
    ("config", "configuration"),
    ("auth", "authorization"),
    // GitHub names "the authenticated user" what a user calls "me" / "my".
    ("authenticated", "me my"),
];

/// `text` with the long form of every known abbreviation appended (see [`ABBREVIATIONS`]).
/// Used on both sides, names at index time and the query at search time, so either spelling
/// matches either.
pub fn with_long_forms(text: &str) -> String {
    let mut out = text.to_string();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let lower = word.to_lowercase();
        if let Some((_, long)) = ABBREVIATIONS.iter().find(|(short, _)| *short == lower) {
            out.push(' ');
            out.push_str(long);
        }
    }
    out
}

/// The name field's text: [`split_name`] plus long forms, each word once. Why once: a name
/// that repeats a word (`codespaces_get_codespaces_for_user`) says no more about it than one
/// that does not, and BM25 would otherwise rank it higher for that word.
pub fn name_words(name: &str) -> String {
    let all = with_long_forms(&split_name(name));
    let mut words: Vec<&str> = Vec::new();
    for word in all.split(' ').filter(|w| !w.is_empty()) {
        if !words.contains(&word) {
            words.push(word);
        }
    }
    words.join(" ")
}

/// The first sentence of a description: most API documents (and MCP tool definitions made from
/// them) open with a summary ("Create a commit status."), and what follows is detail, so
/// the summary is indexed in a field of its own that weighs more.
pub fn first_sentence(description: &str) -> &str {
    let description = description.trim_start();
    let end = description
        .char_indices()
        .find(|&(i, c)| {
            c == '\n' || (c == '.' && description[i + 1..].starts_with(char::is_whitespace))
        })
        .map_or(description.len(), |(i, _)| i);
    &description[..end]
}

/// The words of a query, lower case, split at everything but letters and digits (so digits
/// stay with their letters, `oauth2`, as in descriptions). Each comes with the parts a
/// camelCase word splits into like a tool name, for when the whole word is unknown (a model
/// may pass `listForUser`, and also "GitHub").
pub fn query_words(text: &str) -> Vec<(String, Vec<String>)> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|word| {
            let camel = word
                .chars()
                .zip(word.chars().skip(1))
                .any(|(a, b)| a.is_lowercase() && b.is_uppercase());
            let parts = if camel {
                split_name(word).split(' ').map(str::to_string).collect()
            } else {
                Vec::new()
            };
            (word.to_lowercase(), parts)
        })
        .collect()
}

/// Words that API documents and the people asking for a tool use for the same thing. A query
/// word also matches the other words of its groups (at a lower weight, see `query.rs`); the
/// groups are compared by stem, so "visited" finds the "visit" group.
///
/// Why a list: BM25 only matches the words it is given, and the commonest miss is a user's verb
/// that the API spells differently ("add" / `create`, "remove" / `delete`, "cancel" / `void`).
/// Each group joins words that these documents themselves use for one operation or thing
/// (GitHub's `add_labels` and `create_label`, Notion's "append" and `post_page`, ShipEngine's
/// `void_label` and `cancel_shipments`); general API vocabulary, not the wording of a test.
#[rustfmt::skip]
pub const SYNONYMS: &[&[&str]] = &[
    // The verbs of operation names.
    &["create", "add", "new", "make", "post", "insert", "append", "register", "open", "submit",
      "generate", "spin"],
    &["delete", "remove", "destroy", "drop", "erase", "purge", "clear", "kick"],
    &["get", "retrieve", "fetch", "read", "show", "view", "see", "lookup", "look", "describe"],
    &["list", "show", "all", "enumerate", "browse"],
    &["update", "edit", "change", "modify", "patch", "set", "rename", "replace"],
    &["search", "find", "query", "lookup", "filter"],
    &["start", "trigger", "run", "launch", "dispatch", "begin"],
    &["stop", "cancel", "halt", "abort", "void", "terminate"],
    &["upload", "attach", "put"],
    &["save", "store", "set"],
    &["grant", "give", "allow", "add"],
    &["follow", "watch", "subscribe", "subscription"],
    &["notify", "notified", "notification", "webhook"],
    &["review", "approve"],
    // Qualities and quantities.
    &["latest", "newest", "recent", "last", "current"],
    &["batch", "bulk", "many", "multiple"],
    &["count", "total", "number", "many"],
    &["remaining", "left", "quota", "limit"],
    &["statistics", "stats", "metrics", "analytics", "insights", "usage"],
    // Things.
    &["user", "person", "people", "someone", "account"],
    &["authenticated", "logged", "signed"],
    &["member", "membership", "belong"],
    &["permission", "access", "role"],
    &["issue", "bug", "ticket"],
    &["secret", "credential", "password", "leaked"],
    &["balance", "funds", "money"],
    &["view", "visit", "visitor", "traffic"],
    &["branch", "ref", "reference"],
    &["check", "ci", "build", "workflow"],
];

/// The searchable text of an input schema: parameter names (split into words) in the first
/// string, parameter descriptions in the second. Walks `properties` recursively, through
/// `items` and `allOf` / `anyOf` / `oneOf`, down to [`MAX_SCHEMA_DEPTH`] levels and at most
/// [`MAX_PARAMETERS`] parameters.
pub fn parameter_text(schema: &Map<String, Value>) -> (String, String) {
    let mut walk = Walk {
        names: String::new(),
        descriptions: String::new(),
        seen: 0,
    };
    walk.schema(schema, 0);
    (walk.names, walk.descriptions)
}

struct Walk {
    names: String,
    descriptions: String,
    seen: usize,
}

impl Walk {
    fn schema(&mut self, schema: &Map<String, Value>, depth: usize) {
        if depth >= MAX_SCHEMA_DEPTH {
            return;
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (name, property) in properties {
                if self.seen >= MAX_PARAMETERS {
                    return;
                }
                self.seen += 1;
                push_words(&mut self.names, &split_name(name));
                if let Value::Object(property) = property {
                    if let Some(Value::String(description)) = property.get("description") {
                        push_words(&mut self.descriptions, description);
                    }
                    self.schema(property, depth + 1);
                }
            }
        }
        if let Some(Value::Object(items)) = schema.get("items") {
            self.schema(items, depth + 1);
        }
        for combinator in ["allOf", "anyOf", "oneOf"] {
            if let Some(Value::Array(parts)) = schema.get(combinator) {
                for part in parts {
                    if let Value::Object(part) = part {
                        self.schema(part, depth + 1);
                    }
                }
            }
        }
    }
}

fn push_words(out: &mut String, words: &str) {
    if !out.is_empty() {
        out.push_str(" \n ");
    }
    out.push_str(words);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_names_with_the_target_prefix_split_into_words() {
        assert_eq!(
            split_name("github___repos_list_for_user"),
            "github repos list for user"
        );
    }

    #[test]
    fn camel_case_and_acronyms_split_where_a_reader_would() {
        assert_eq!(split_name("listForUser"), "list for user");
        assert_eq!(split_name("getHTMLPage"), "get html page");
        assert_eq!(split_name("HTMLParser2"), "html parser 2");
        assert_eq!(
            split_name("notion___retrieve-a-page"),
            "notion retrieve a page"
        );
    }

    #[test]
    fn names_without_separators_and_empty_names_stay_whole() {
        assert_eq!(split_name("search"), "search");
        assert_eq!(split_name(""), "");
        assert_eq!(split_name("___"), "");
    }

    #[test]
    fn abbreviations_gain_their_long_form_and_other_words_are_left_alone() {
        assert_eq!(
            with_long_forms("list org repos"),
            "list org repos organization repositories"
        );
        assert_eq!(with_long_forms("create issue"), "create issue");
    }

    #[test]
    fn a_name_repeats_no_word_even_with_long_forms() {
        assert_eq!(
            name_words("github___codespaces_get_codespaces_for_repo"),
            "github codespaces get for repo repository"
        );
    }

    #[test]
    fn the_first_sentence_ends_at_a_full_stop_before_a_space_or_at_a_line_break() {
        assert_eq!(
            first_sentence("Create a status. Users with push access can."),
            "Create a status"
        );
        assert_eq!(first_sentence("  Uses v1.2 of it\nmore"), "Uses v1.2 of it");
        assert_eq!(first_sentence("Retrieve a page"), "Retrieve a page");
        assert_eq!(first_sentence(""), "");
    }

    #[test]
    fn query_words_split_punctuation_and_camel_case_but_not_digits() {
        let words = query_words("listForUser: repos_get (oauth2) GitHub Über-Größe");
        let whole: Vec<&str> = words.iter().map(|(word, _)| word.as_str()).collect();
        assert_eq!(
            whole,
            [
                "listforuser",
                "repos",
                "get",
                "oauth2",
                "github",
                "über",
                "größe"
            ]
        );
        assert_eq!(words[0].1, ["list", "for", "user"]);
        assert_eq!(words[4].1, ["git", "hub"]);
        assert!(words[1].1.is_empty() && words[5].1.is_empty());
    }

    #[test]
    fn synonym_groups_are_lower_case_single_words() {
        for word in SYNONYMS.iter().flat_map(|group| group.iter()) {
            assert!(
                word.chars().all(|c| c.is_ascii_lowercase()),
                "{word:?} would never match a query word"
            );
        }
    }

    #[test]
    fn parameter_text_walks_nested_properties_and_items() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "owner": {"type": "string", "description": "The account owner."},
                "labels": {"type": "array", "items": {"type": "object", "properties": {
                    "labelName": {"type": "string", "description": "Name of the label."}
                }}}
            }
        });
        let (names, descriptions) = parameter_text(schema.as_object().unwrap());
        assert!(
            names.contains("owner") && names.contains("label name"),
            "{names}"
        );
        assert!(
            descriptions.contains("Name of the label."),
            "{descriptions}"
        );
    }

    #[test]
    fn parameter_text_stops_at_the_depth_bound() {
        let mut schema = serde_json::json!({"description": "deepest"});
        for level in 0..10 {
            schema = serde_json::json!({"properties": {format!("level{level}"): schema}});
        }
        let (names, descriptions) = parameter_text(schema.as_object().unwrap());
        assert_eq!(names.matches("level").count(), MAX_SCHEMA_DEPTH);
        assert!(descriptions.is_empty());
    }
}
