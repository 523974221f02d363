//! What tools exist? Target files -> an immutable [`Catalog`] snapshot.
//!
//! Owns: target-file parsing and checking (JSON Schema, names, tool schemas), the snapshot and
//! its paging. May use: `targets` (the registry of kinds builds each target's runtime),
//! `credential`. Knows no kind by name.
//!
//! A snapshot is never mutated: reload builds a new one and swaps it in (`arc_swap`), so a
//! `tools/list` or `tools/call` in flight keeps a consistent view. A file that fails to load on
//! reload keeps its last good version, so a half-saved edit does not make tools vanish from
//! every live session; its problems are logged and reported by `portcullis validate`.

mod load;
pub mod model;
mod tool_list;
mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::search::{SearchError, SearchIndex, ToolDoc};
use crate::targets::Transport;

#[cfg(test)]
pub(crate) use load::catalog_tool;
pub use load::{LoadedFile, Problem, load_file};
pub use model::{CatalogTool, TargetEntry};
pub use watch::watch;

/// `tools/list` page size: large enough that most clients need one page, small enough that a
/// 10k-tool catalog does not produce multi-megabyte responses.
pub const PAGE_SIZE: usize = 200;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("invalid cursor: pass the nextCursor of a previous tools/list unchanged")]
    BadCursor,
}

#[derive(Debug, Default)]
pub struct Catalog {
    tools: BTreeMap<String, Arc<CatalogTool>>,
    files: BTreeMap<PathBuf, Arc<LoadedFile>>,
    /// This snapshot's tool-search index (DESIGN 2.11), when [`Catalog::index_for_search`]
    /// built one: it lives and is swapped with the tools it ranks, so a search never names a
    /// tool the snapshot does not hold.
    search: Option<SearchIndex>,
}

impl Catalog {
    /// Loads every target file in `dir`, building targets on `transport`'s shared clients.
    /// Files that fail keep their version from `previous` (if any); all problems are returned
    /// for reporting.
    pub async fn load(
        dir: &Path,
        previous: &Catalog,
        transport: &Transport,
    ) -> (Catalog, Vec<Problem>) {
        let mut problems = Vec::new();
        let paths = match load::target_files(dir) {
            Ok(paths) => paths,
            Err(problem) => {
                problems.push(problem);
                vec![]
            }
        };
        let mut owners = load::TargetOwners::new();
        let mut catalog = Catalog::default();
        for path in paths {
            let loaded = match load::load_file(&path, transport).await {
                Ok(loaded) => {
                    // Skipped tools are reported; the file's other tools serve.
                    problems.extend(loaded.skipped.iter().cloned());
                    Arc::new(loaded)
                }
                Err(mut found) => {
                    problems.append(&mut found);
                    match previous.files.get(&path) {
                        Some(last_good) => {
                            tracing::warn!(file = %path.display(), "keeping the last good version of a target file that no longer loads");
                            last_good.clone()
                        }
                        None => continue,
                    }
                }
            };
            let name = &loaded.target.name;
            if let Some(owner) = owners.get(name) {
                problems.push(Problem {
                    file: path.clone(),
                    pointer: "/name".into(),
                    message: format!("target {name:?} is already defined in {}", owner.display()),
                });
                continue;
            }
            owners.insert(name.clone(), path.clone());
            for tool in &loaded.tools {
                catalog
                    .tools
                    .insert(tool.qualified_name.clone(), tool.clone());
            }
            catalog.files.insert(path, loaded);
        }
        (catalog, problems)
    }

    /// Builds the tool-search index of this snapshot (about 30 ms per 1,000 tools; see
    /// `benches/search.rs`). Called at every load and reload when `[search]` is enabled.
    pub fn index_for_search(&mut self) -> Result<(), SearchError> {
        let index = SearchIndex::build(self.tools.values().map(|tool| ToolDoc {
            name: &tool.qualified_name,
            description: tool.def.description.as_deref().unwrap_or_default(),
            input_schema: &tool.def.input_schema,
        }))?;
        self.search = Some(index);
        Ok(())
    }

    /// The index built by [`Catalog::index_for_search`], if any.
    pub fn search_index(&self) -> Option<&SearchIndex> {
        self.search.as_ref()
    }

    /// The shortest refresh interval any target asks for (DESIGN 2.8 `refreshSeconds`).
    pub fn refresh_interval(&self) -> Option<std::time::Duration> {
        self.targets()
            .filter_map(|target| target.runtime.refresh_every())
            .min()
    }

    /// Whether `other` lists exactly the same tools (names and definitions), so that a refresh
    /// that found no change need not tell every session.
    pub fn same_tools(&self, other: &Catalog) -> bool {
        self.tools.len() == other.tools.len()
            && self
                .tools
                .iter()
                .zip(&other.tools)
                .all(|((a, ta), (b, tb))| a == b && ta.listing == tb.listing)
    }

    pub fn get(&self, qualified_name: &str) -> Option<&Arc<CatalogTool>> {
        self.tools.get(qualified_name)
    }

    pub fn len(&self) -> usize {
        self.tools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    pub fn target_count(&self) -> usize {
        self.files.len()
    }

    pub fn targets(&self) -> impl Iterator<Item = &Arc<TargetEntry>> {
        self.files.values().map(|file| &file.target)
    }

    pub fn tools(&self) -> impl Iterator<Item = &Arc<CatalogTool>> {
        self.tools.values()
    }

    /// One page of tools in name order. The cursor is the last name of the previous page,
    /// so paging stays correct (no repeats, no skips of surviving tools) across a reload.
    pub fn page(
        &self,
        cursor: Option<&str>,
        size: usize,
    ) -> Result<(Vec<&Arc<CatalogTool>>, Option<String>), CatalogError> {
        let after = match cursor {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor)?),
        };
        let range = match &after {
            Some(last) => self.tools.range::<str, _>((
                std::ops::Bound::Excluded(last.as_str()),
                std::ops::Bound::Unbounded,
            )),
            None => self.tools.range::<str, _>(..),
        };
        let page: Vec<&Arc<CatalogTool>> = range.map(|(_, tool)| tool).take(size + 1).collect();
        if page.len() > size {
            let page = page[..size].to_vec();
            let next = page.last().map(|t| encode_cursor(&t.qualified_name));
            Ok((page, next))
        } else {
            Ok((page, None))
        }
    }
}

const CURSOR_PREFIX: &str = "v1:";

fn encode_cursor(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{last}"))
}

fn decode_cursor(cursor: &str) -> Result<String, CatalogError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| CatalogError::BadCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| CatalogError::BadCursor)?;
    text.strip_prefix(CURSOR_PREFIX)
        .map(str::to_string)
        .ok_or(CatalogError::BadCursor)
}

#[cfg(test)]
mod tests;
