//! Tool search (DESIGN 2.11): ranks the tools of a catalog for a natural-language query, so
//! that `x_amz_bedrock_agentcore_search` can hand a model the few tools worth reading instead
//! of the whole list.
//!
//! BM25 (tantivy) over an in-RAM index with one document per tool. Each tool is indexed in
//! five fields, weighted by how much each says about what the tool does (see [`FIELDS`]):
//! its name split into words, the first sentence of its description, the whole description,
//! its parameter names and its parameter descriptions. Text and query go through the same
//! analyzer (words, lower case, English stop words, English Snowball stemming), so
//! "repositories" finds "repository"; the query side adds abbreviations' long forms, stem
//! completions and synonyms, and rewards matching more of the query's words (`query.rs`).
//!
//! This module is a leaf: it knows nothing of catalogs, callers or policies. The caller passes
//! tool definitions in and an `allowed` predicate per search, which is applied before the
//! results are cut to `limit` (a caller never sees a tool it may not call, and still gets
//! `limit` results when that many are allowed).

mod query;
mod words;

use serde_json::{Map, Value};
use tantivy::collector::TopDocs;
use tantivy::schema::{FAST, Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{DocAddress, Index, IndexWriter, ReloadPolicy, Searcher, TantivyDocument};

pub use words::split_name;

/// One tool as the index sees it: borrowed from the caller's catalog for the time of
/// [`SearchIndex::build`] (nothing but the name is kept).
#[derive(Debug, Clone, Copy)]
pub struct ToolDoc<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub input_schema: &'a Map<String, Value>,
}

/// One result: the tool's name and its score (BM25 plus a bonus per query word matched;
/// higher is better, comparable only within one search).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub name: String,
    pub score: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the search query is empty")]
    EmptyQuery,
    #[error(
        "the search query has no searchable words (only punctuation or common words such as \
         \"the\"); describe what the tool should do"
    )]
    NoSearchableWords,
    #[error("the search index failed while {during}: {source}")]
    Index {
        during: &'static str,
        #[source]
        source: tantivy::TantivyError,
    },
}

/// The name of our analyzer in tantivy's tokenizer registry.
const ANALYZER: &str = "portcullis_en";

/// Field name and boost. Names and summaries weigh most: `issues_create` / "Create an issue"
/// say what a tool does in two words, while the rest of a description and the parameters also
/// mention what a tool merely touches ("the repository"). Tuned on `tests/fixtures/search`
/// (issue 13) and checked on its held-out queries.
const FIELDS: [(&str, f32); 5] = [
    ("name", 2.0),
    ("summary", 2.0),
    ("description", 0.5),
    ("parameter_names", 0.5),
    ("parameter_descriptions", 0.3),
];

/// tantivy's smallest indexing memory budget per thread; a catalog of 10,000 tools fits.
const WRITER_MEMORY: usize = 15_000_000;

/// Words that carry no meaning in a request for a tool: Lucene's English stop words (as
/// tantivy ships them), the way people ask ("how do I ...", "I want to ..."), and the
/// pronouns and function words of Snowball's English list. Not "me", "my": they are how a
/// user says "the authenticated user" (see `words::ABBREVIATIONS`); not "all", "many",
/// "left", which the synonym groups give a meaning.
#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with", "how", "do", "does", "i", "can", "want", "please",
    "what", "which", "should", "would", "could", "need", "some", "using", "via", "myself", "we",
    "our", "ours", "ourselves", "you", "your", "yours", "he", "him", "his", "she", "her", "its",
    "them", "who", "whom", "those", "am", "were", "been", "being", "have", "has", "had", "having",
    "did", "doing", "because", "until", "while", "about", "against", "through", "during", "from",
    "again", "further", "once", "here", "when", "where", "why", "any", "both", "each", "few",
    "nor", "only", "same", "so", "than", "too", "very", "much", "already", "anyone", "something",
    "way", "back", "up", "out",
];

/// The text fields, in the order of [`FIELDS`], with their boosts.
type TextFields = [(Field, f32); 5];

/// The search index of one catalog snapshot. Immutable once built (a new catalog builds a new
/// index), `Send + Sync`, so one `Arc<SearchIndex>` serves every session.
pub struct SearchIndex {
    searcher: Searcher,
    lexicon: query::Lexicon,
    fields: TextFields,
    /// Tool names by ordinal (the `ordinal` fast field of each document).
    names: Vec<String>,
    /// `ordinals[segment][doc]`: the tool ordinal of each document, read once at build time
    /// so that a search maps its hits to names without touching the index again.
    ordinals: Vec<Vec<u32>>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("tools", &self.names.len())
            .finish_non_exhaustive()
    }
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| (*w).to_string()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Every term of the text fields, for the query side's "is this word known" and completions.
fn vocabulary(searcher: &Searcher, fields: &TextFields) -> Result<Vec<String>, SearchError> {
    let mut vocabulary = Vec::new();
    for segment in searcher.segment_readers() {
        for &(field, _) in fields {
            let inverted = segment
                .inverted_index(field)
                .map_err(engine("reading the terms"))?;
            let mut terms = inverted
                .terms()
                .stream()
                .map_err(|source| SearchError::Index {
                    during: "reading the terms",
                    source: source.into(),
                })?;
            while terms.advance() {
                if let Ok(term) = std::str::from_utf8(terms.key()) {
                    vocabulary.push(term.to_string());
                }
            }
        }
    }
    Ok(vocabulary)
}

fn engine(during: &'static str) -> impl FnOnce(tantivy::TantivyError) -> SearchError {
    move |source| SearchError::Index { during, source }
}

impl SearchIndex {
    /// Indexes `tools`. Fails only if tantivy does (out of memory, for instance); an empty
    /// list gives an index that finds nothing.
    pub fn build<'a>(
        tools: impl IntoIterator<Item = ToolDoc<'a>>,
    ) -> Result<SearchIndex, SearchError> {
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                // BM25 needs term frequencies; no phrase queries, so no positions.
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let mut schema = Schema::builder();
        let fields: TextFields =
            FIELDS.map(|(name, boost)| (schema.add_text_field(name, text.clone()), boost));
        let ordinal = schema.add_u64_field("ordinal", FAST);
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(ANALYZER, analyzer());

        let mut writer: IndexWriter<TantivyDocument> = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .map_err(engine("creating the writer"))?;
        let mut names = Vec::new();
        let [
            name,
            summary,
            description,
            parameter_names,
            parameter_descriptions,
        ] = fields.map(|(field, _)| field);
        for tool in tools {
            let (names_text, descriptions_text) = words::parameter_text(tool.input_schema);
            let mut document = TantivyDocument::default();
            document.add_text(name, words::name_words(tool.name));
            document.add_text(summary, words::first_sentence(tool.description));
            document.add_text(description, tool.description);
            document.add_text(parameter_names, names_text);
            document.add_text(parameter_descriptions, descriptions_text);
            document.add_u64(ordinal, names.len() as u64);
            writer
                .add_document(document)
                .map_err(engine("adding a tool"))?;
            names.push(tool.name.to_string());
        }
        writer.commit().map_err(engine("committing"))?;

        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(engine("opening the reader"))?;
        let searcher = reader.searcher();
        let ordinals = searcher
            .segment_readers()
            .iter()
            .map(|segment| {
                let column = segment
                    .fast_fields()
                    .u64("ordinal")
                    .map_err(engine("reading tool ordinals"))?;
                Ok((0..segment.max_doc())
                    .map(|doc| column.first(doc).unwrap_or(u64::MAX) as u32)
                    .collect())
            })
            .collect::<Result<Vec<Vec<u32>>, SearchError>>()?;
        let vocabulary = vocabulary(&searcher, &fields)?;
        Ok(SearchIndex {
            searcher,
            lexicon: query::Lexicon::new(
                index.tokenizers().get(ANALYZER).unwrap_or_else(analyzer),
                vocabulary,
            ),
            fields,
            names,
            ordinals,
        })
    }

    /// How many tools the index holds.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The `limit` best tools for `query` among those `allowed` accepts, best first.
    ///
    /// `query` is free text from a model and is never parsed as query syntax: it is cut into
    /// words, each analyzed like the index and looked up in every field (`query.rs`), so
    /// quotes, colons, parentheses or `AND` are just text. `allowed` is asked only about
    /// candidates, best first, until `limit` are accepted (a policy check per tool of a large
    /// catalog would cost more than the search).
    pub fn search(
        &self,
        query: &str,
        limit: usize,
        allowed: impl Fn(&str) -> bool,
    ) -> Result<Vec<Hit>, SearchError> {
        if query.trim().is_empty() {
            return Err(SearchError::EmptyQuery);
        }
        let query = self.lexicon.query(query, &self.fields)?;
        if limit == 0 || self.names.is_empty() {
            return Ok(Vec::new());
        }
        let mut hits = Vec::with_capacity(limit);
        let mut checked = 0;
        // Ask for a few more than `limit`, and for more again only if the filter refused
        // enough of them; ties are broken by document order, so each round extends the last.
        let mut wanted = limit.saturating_mul(2).max(16).min(self.names.len());
        loop {
            let top = self
                .searcher
                .search(&query, &TopDocs::with_limit(wanted).order_by_score())
                .map_err(engine("searching"))?;
            for (score, address) in top.iter().skip(checked) {
                checked += 1;
                let Some(name) = self.name_of(*address) else {
                    continue;
                };
                if allowed(name) {
                    hits.push(Hit {
                        name: name.to_string(),
                        score: *score,
                    });
                    if hits.len() == limit {
                        return Ok(hits);
                    }
                }
            }
            if top.len() < wanted || wanted == self.names.len() {
                return Ok(hits);
            }
            wanted = wanted.saturating_mul(4).min(self.names.len());
        }
    }

    fn name_of(&self, address: DocAddress) -> Option<&str> {
        let ordinal = *self
            .ordinals
            .get(address.segment_ord as usize)?
            .get(address.doc_id as usize)?;
        self.names.get(ordinal as usize).map(String::as_str)
    }
}

#[cfg(test)]
mod tests;
