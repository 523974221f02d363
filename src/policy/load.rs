//! `*.cedar` files -> one Cedar policy set, every problem with its file, line and column.
//!
//! Each policy is named `<file>#<n>` (its position in the file, from 0) unless it carries an
//! `@id("...")` annotation, the convention AgentCore's policy engine and the Cedar CLI share;
//! the name is what audit lines and `log_only` counts report. Templates are refused: a gateway
//! has nothing to link them with.

use std::path::{Path, PathBuf};

use cedar_policy::{PolicyId, PolicySet};
use miette::Diagnostic;

/// A problem in a policy file, located the way an editor jumps to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    pub file: PathBuf,
    /// 1-based; 0 when the problem concerns the file as a whole.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// The `*.cedar` files directly in `dir`, sorted by name.
fn policy_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyProblem> {
    let entries = std::fs::read_dir(dir).map_err(|e| PolicyProblem {
        file: dir.to_path_buf(),
        line: 0,
        column: 0,
        message: format!("cannot read the policy folder: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|e| e == "cedar"))
        .collect();
    files.sort();
    Ok(files)
}

/// Loads every policy file in `dir` into one set. All problems are returned together; any
/// problem means the set must not be used (the caller keeps the last good one).
pub fn load_dir(dir: &Path) -> Result<(PolicySet, usize), Vec<PolicyProblem>> {
    let files = policy_files(dir).map_err(|p| vec![p])?;
    let mut set = PolicySet::new();
    let mut problems = Vec::new();
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                problems.push(at_file(file, format!("cannot read: {e}")));
                continue;
            }
        };
        if let Err(mut found) = add_file(&mut set, file, &text) {
            problems.append(&mut found);
        }
    }
    if problems.is_empty() {
        Ok((set, files.len()))
    } else {
        Err(problems)
    }
}

fn at_file(file: &Path, message: String) -> PolicyProblem {
    PolicyProblem {
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        message,
    }
}

/// Parses one file's text into `set`.
pub fn add_file(set: &mut PolicySet, file: &Path, text: &str) -> Result<(), Vec<PolicyProblem>> {
    let parsed: PolicySet = text.parse().map_err(|errors: cedar_policy::ParseErrors| {
        errors
            .iter()
            .map(|error| located(file, text, error))
            .collect::<Vec<_>>()
    })?;
    let mut problems = Vec::new();
    if parsed.templates().next().is_some() {
        problems.push(at_file(
            file,
            "policy templates are not supported: write each policy out".into(),
        ));
    }
    for policy in named(file, &parsed) {
        let id = policy.id().clone();
        if let Err(error) = set.add(policy) {
            problems.push(at_file(
                file,
                format!(
                    "policy {:?}: {error} (two policies share this @id)",
                    id.to_string()
                ),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A file's policies under the names audit lines use: `@id("...")`, or `<file>#<n>`.
fn named(file: &Path, parsed: &PolicySet) -> Vec<cedar_policy::Policy> {
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    parsed
        .policies()
        .enumerate()
        .map(|(index, policy)| {
            let id = policy
                .annotation("id")
                .map_or_else(|| format!("{name}#{index}"), str::to_string);
            policy.new_id(PolicyId::new(&id))
        })
        .collect()
}

/// Checks every policy file in `dir` against `schema` (Cedar's strict validation): a policy
/// naming a tool the catalog lacks, reading an input the tool does not take, or comparing a
/// value with the wrong type. Each problem with its file, line and column. Files that do not
/// parse are [`load_dir`]'s to report and are skipped here.
pub fn validate_dir(dir: &Path, schema: &cedar_policy::Schema) -> Vec<PolicyProblem> {
    let files = match policy_files(dir) {
        Ok(files) => files,
        Err(problem) => return vec![problem],
    };
    let validator = cedar_policy::Validator::new(schema.clone());
    let mut problems = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let Ok(parsed) = text.parse::<PolicySet>() else {
            continue;
        };
        let mut set = PolicySet::new();
        for policy in named(file, &parsed) {
            // A clash of ids is load_dir's to report; the first one is validated.
            let _ = set.add(policy);
        }
        let result = validator.validate(&set, cedar_policy::ValidationMode::Strict);
        problems.extend(
            result
                .validation_errors()
                .map(|error| located(file, &text, error)),
        );
    }
    problems
}

/// A parse error with the line and column of its first label (Cedar reports byte offsets).
fn located(file: &Path, text: &str, error: &dyn Diagnostic) -> PolicyProblem {
    let offset = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset());
    let (line, column) = offset.map_or((0, 0), |offset| line_and_column(text, offset));
    let mut message = error.to_string();
    if let Some(help) = error.help() {
        message.push_str(&format!(" ({help})"));
    }
    PolicyProblem {
        file: file.to_path_buf(),
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last| last.chars().count())
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_names_file_line_and_column() {
        let mut set = PolicySet::new();
        let text = "permit(principal, action, resource);\n\npermit(principal, action resource);\n";
        let problems = add_file(&mut set, Path::new("p/a.cedar"), text).unwrap_err();
        assert_eq!(problems[0].file, Path::new("p/a.cedar"));
        assert_eq!(problems[0].line, 3, "{problems:?}");
        assert!(problems[0].column > 1, "{problems:?}");
        assert!(
            problems[0].to_string().starts_with("p/a.cedar:3:"),
            "{problems:?}"
        );
    }

    #[test]
    fn policies_are_named_by_id_annotation_or_position() {
        let mut set = PolicySet::new();
        let text = "@id(\"finance-refunds\")\npermit(principal, action, resource);\nforbid(principal, action, resource) when { false };\n";
        add_file(&mut set, Path::new("dir/refunds.cedar"), text).unwrap();
        let mut ids: Vec<String> = set.policies().map(|p| p.id().to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["finance-refunds", "refunds.cedar#1"]);
        // The same @id twice is refused, naming it.
        let problems = add_file(&mut set, Path::new("dir/again.cedar"), text).unwrap_err();
        assert!(
            problems[0].message.contains("finance-refunds"),
            "{problems:?}"
        );
    }

    #[test]
    fn templates_are_refused() {
        let mut set = PolicySet::new();
        let problems = add_file(
            &mut set,
            Path::new("t.cedar"),
            "permit(principal == ?principal, action, resource);",
        )
        .unwrap_err();
        assert!(problems[0].message.contains("templates"), "{problems:?}");
    }

    #[test]
    fn lines_and_columns_count_characters() {
        assert_eq!(line_and_column("ab\ncdé\nx", 0), (1, 1));
        assert_eq!(line_and_column("ab\ncdé\nx", 3), (2, 1));
        assert_eq!(line_and_column("ab\ncdé\nx", 8), (3, 1));
        assert_eq!(line_and_column("ab\ncdé\nx", 7), (2, 4));
    }
}
