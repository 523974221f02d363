#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The module map keeps its arrows one way (DESIGN section 3): every `crate::<module>` path
//! under `src/` must point at a module in a lower layer than the file's own. A path that
//! points up (or sideways, which is how cycles start) fails this test with its file and line.
//!
//! The layers, top to bottom. Inside a module anything goes; between modules only downward.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// (module, layer). Lower layers are used by higher ones, never the other way round.
const LAYERS: &[(&str, u8)] = &[
    ("main", 0),
    // lib.rs assembles the parts; its router helpers live beside it.
    ("lib", 1),
    ("routes", 1),
    ("reload", 1),
    ("dev", 1),
    // Raw TOML -> each part's own validated section.
    ("config", 2),
    // The surfaces: MCP and the identity API's routes sit in their modules' own layers.
    ("mcp", 3),
    // The one tool-call pipeline.
    ("call", 4),
    // What tools exist (target files -> targets through the registry of kinds).
    ("catalog", 5),
    // Who may call what.
    ("policy", 6),
    // How much: per-caller rate limits.
    ("limits", 6),
    // How a tool runs.
    ("targets", 7),
    // On whose behalf: providers, consent, tokens, the identity API.
    ("identity", 8),
    // Who is calling: inbound tokens (also verifies the identity API's user tokens).
    ("inbound", 9),
    // Where secrets live.
    ("vault", 10),
    // Tracing, metrics, audit: labels in, nothing out.
    ("telemetry", 11),
    // Small shared leaves: what a target receives, a bounded body reader...
    ("credential", 12),
    ("body", 12),
    // Tool search: ranks what it is given, knows nothing of catalogs or callers.
    ("search", 12),
    // ...and the secret string they are made of.
    ("secret", 13),
];

fn layer_of(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a source file belongs to (`src/identity/api/mod.rs` -> `identity`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    let first = first.to_str().unwrap();
    first.strip_suffix(".rs").unwrap_or(first).to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every module named by a `crate::<module>` path on `line` (in `use` items and in code),
/// ignoring comments.
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        // `portcullis_crate::x` or `$crate::x` are not ours.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            found.extend(
                inner
                    .split(',')
                    .map(|p| p.trim().split("::").next().unwrap_or("").trim().to_string())
                    .filter(|p| !p.is_empty()),
            );
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push(name);
        }
    }
    found
}

/// Multi-line `use crate::{...}` groups are joined so their members are seen.
fn joined_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        if let Some((start, mut joined)) = pending.take() {
            joined.push_str(line.trim());
            if line.contains("};") {
                lines.push((start, joined));
            } else {
                pending = Some((start, joined));
            }
            continue;
        }
        if line.trim_start().starts_with("use crate::{") && !line.contains("};") {
            pending = Some((index + 1, line.trim().to_string()));
        } else {
            lines.push((index + 1, line.to_string()));
        }
    }
    lines
}

fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    for file in files {
        let own = module_of(src, &file);
        let Some(own_layer) = layer_of(&own) else {
            problems.push(format!(
                "{}: module {own:?} has no layer in tests/module_arrows.rs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (line_number, line) in joined_lines(&text) {
            for target in crate_paths(&line) {
                if target == own || target == "self" || target == "super" {
                    continue;
                }
                match layer_of(&target) {
                    Some(layer) if layer > own_layer => {}
                    Some(layer) => problems.push(format!(
                        "{}:{line_number}: {own} (layer {own_layer}) uses {target} (layer {layer}): {}",
                        file.strip_prefix(src.parent().unwrap()).unwrap().display(),
                        line.trim()
                    )),
                    None => problems.push(format!(
                        "{}:{line_number}: {target:?} is not a module of the map",
                        file.display()
                    )),
                }
            }
        }
    }
    problems
}

#[test]
fn every_arrow_between_modules_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let problems = violations(&src);
    assert!(
        problems.is_empty(),
        "{} arrows point up or sideways:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_guard_sees_grouped_and_inline_paths_and_ignores_comments() {
    assert_eq!(
        crate_paths("use crate::{call::Outcome, vault::Secret};"),
        ["call", "vault"]
    );
    assert_eq!(
        crate_paths("    crate::telemetry::tool_called(x);"),
        ["telemetry"]
    );
    assert!(crate_paths("// see crate::call for the pipeline").is_empty());
    assert!(crate_paths("$crate::x").is_empty());
}

#[test]
fn a_back_arrow_is_reported_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("vault")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod vault;\nuse crate::vault::Store;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("vault").join("mod.rs"),
        "//! The vault.\nuse crate::call::Outcome;\n",
    )
    .unwrap();
    let problems = violations(&src);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("vault/mod.rs:2: vault (layer 10) uses call (layer 4)"),
        "{}",
        problems[0]
    );
}

/// Keeps the layer table honest: every top-level module of `src/` has a layer.
#[test]
fn every_module_of_src_is_in_the_layer_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, ()> = BTreeMap::new();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in files {
        modules.insert(module_of(&src, &file), ());
    }
    let missing: Vec<&String> = modules.keys().filter(|m| layer_of(m).is_none()).collect();
    assert!(missing.is_empty(), "modules without a layer: {missing:?}");
}
