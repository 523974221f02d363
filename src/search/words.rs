//! The text a tool is found by: its name split into words, and the names and descriptions of
//! its parameters. Pure string work, no index, so each rule is unit-tested on its own.

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
    // GitHub names "the authenticated user" what a user calls "my" / "me".
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
