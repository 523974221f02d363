//! From a model's free text to a tantivy query, built from analyzed words (never parsed, so no
//! text is query syntax).
//!
//! Each query word becomes one clause that scores a tool by the word's best match in it: the
//! word itself, its long form, completions of its stem, or a synonym, in the field where it
//! weighs most (a disjunction max, not a sum: a word found in the name and again in the
//! description and in three parameters is still one word of the request). The clauses add up,
//! plus a fixed bonus per word a tool contains at all, so that matching more of the request
//! beats matching one rare word very well ("octocat" in `meta_get_octocat` should not outrank
//! the tool that lists a user's repositories).
//!
//! The weights below were tuned on `tests/fixtures/search/queries.json` and checked on
//! `queries_holdout.json`, written afterwards (see `tests/search_relevance.rs`).

use tantivy::Term;
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, DisjunctionMaxQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;

use super::SearchError;
use super::words;

/// A query longer than this many words is cut: a model's query is a sentence, and the bound
/// keeps a pasted document from costing a scan per word.
const MAX_QUERY_WORDS: usize = 64;

/// The weight of a synonym of a word the catalog uses: the user's own word, where a tool has
/// it, says more than a word we think means the same.
const SYNONYM_WEIGHT: f32 = 0.5;

/// The weight of a synonym of a word no tool uses ("kick" a member out): the synonyms are then
/// the only way the word can count, so they stand in for it fully.
const STAND_IN_WEIGHT: f32 = 1.0;

/// Completions: a stem of at least `COMPLETION_MIN` characters also matches the index terms
/// that start with its first `COMPLETION_PREFIX` characters, at `COMPLETION_WEIGHT`, at most
/// `MAX_COMPLETIONS` of them. Why: the English stemmer leaves related forms apart
/// ("contributed" -> `contribut`, "contributors" -> `contributor`; "register" / "registration";
/// "star" / "stargazers"), and prefixes join them.
const COMPLETION_MIN: usize = 4;
const COMPLETION_PREFIX: usize = 6;
const COMPLETION_WEIGHT: f32 = 0.5;
const MAX_COMPLETIONS: usize = 10;

/// The score a tool gets for each query word it contains at full weight, in any field (see the
/// module documentation). About a third of a good name match (field boost 2 times a BM25
/// score of 4 to 6).
const COVERAGE_BONUS: f32 = 3.0;

/// What a [`super::SearchIndex`] keeps to turn text into queries.
pub(super) struct Lexicon {
    analyzer: TextAnalyzer,
    /// Every term of the index's text fields, sorted: whether a word is known, and prefix
    /// completion.
    vocabulary: Vec<String>,
    /// [`words::SYNONYMS`], each group with its members' stems.
    synonyms: Vec<(&'static [&'static str], Vec<String>)>,
}

impl Lexicon {
    pub(super) fn new(analyzer: TextAnalyzer, mut vocabulary: Vec<String>) -> Lexicon {
        vocabulary.sort_unstable();
        vocabulary.dedup();
        let mut lexicon = Lexicon {
            analyzer,
            vocabulary,
            synonyms: Vec::new(),
        };
        lexicon.synonyms = words::SYNONYMS
            .iter()
            .map(|group| {
                let stems = group.iter().flat_map(|word| lexicon.stems(word)).collect();
                (*group, stems)
            })
            .collect();
        lexicon
    }

    /// `text` through the index's analyzer: lower case, stop words removed, stemmed.
    fn stems(&self, text: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut stems: Vec<String> = Vec::new();
        while stream.advance() {
            let stem = &stream.token().text;
            if !stems.contains(stem) {
                stems.push(stem.clone());
            }
        }
        stems
    }

    fn known(&self, stem: &str) -> bool {
        self.vocabulary
            .binary_search_by(|term| term.as_str().cmp(stem))
            .is_ok()
    }

    fn completions<'a>(&'a self, stem: &str) -> impl Iterator<Item = &'a String> + 'a {
        let prefix: String = if stem.chars().count() >= COMPLETION_MIN {
            stem.chars().take(COMPLETION_PREFIX).collect()
        } else {
            String::new()
        };
        let start = if prefix.is_empty() {
            self.vocabulary.len()
        } else {
            self.vocabulary
                .partition_point(|term| term.as_str() < prefix.as_str())
        };
        self.vocabulary[start..]
            .iter()
            .take_while(move |term| term.starts_with(&prefix))
            .take(MAX_COMPLETIONS)
    }

    /// The terms one query word (whose own stems are `own`) matches, with their weights (1 for
    /// the word itself and its long forms).
    fn alternatives(&self, word: &str, own: &[String]) -> Vec<(String, f32)> {
        let mut alternatives: Vec<(String, f32)> = Vec::new();
        let mut add = |term: &str, weight: f32| {
            if !alternatives.iter().any(|(known, _)| known == term) {
                alternatives.push((term.to_string(), weight));
            }
        };
        for stem in self.stems(&words::with_long_forms(word)) {
            add(&stem, 1.0);
        }
        for stem in own {
            for completion in self.completions(stem) {
                add(completion, COMPLETION_WEIGHT);
            }
        }
        let weight = if own.iter().any(|stem| self.known(stem)) {
            SYNONYM_WEIGHT
        } else {
            STAND_IN_WEIGHT
        };
        for (group, stems) in &self.synonyms {
            if group.contains(&word) || own.iter().any(|stem| stems.contains(stem)) {
                for stem in stems {
                    add(stem, weight);
                }
            }
        }
        alternatives
    }

    /// The query for `text` over `fields` (each with its boost).
    pub(super) fn query(
        &self,
        text: &str,
        fields: &[(Field, f32)],
    ) -> Result<BooleanQuery, SearchError> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut seen: Vec<Vec<String>> = Vec::new();
        let mut words = Vec::new();
        // Bounded work for any text: at most this many words are looked at.
        for (word, parts) in words::query_words(text)
            .into_iter()
            .take(4 * MAX_QUERY_WORDS)
        {
            if parts.is_empty() || self.stems(&word).iter().any(|stem| self.known(stem)) {
                words.push(word);
            } else {
                words.extend(parts);
            }
        }
        for word in words {
            let own = self.stems(&word);
            // A stop word, or a word already asked for ("list ... lists").
            if own.is_empty() || seen.contains(&own) {
                continue;
            }
            let alternatives = self.alternatives(&word, &own);
            seen.push(own);
            let mut best: Vec<Box<dyn Query>> = Vec::new();
            let mut present: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for (term, weight) in &alternatives {
                for &(field, boost) in fields {
                    let term = Term::from_field_text(field, term);
                    let scored = TermQuery::new(term.clone(), IndexRecordOption::WithFreqs);
                    best.push(Box::new(BoostQuery::new(Box::new(scored), boost * weight)));
                    if *weight >= 1.0 {
                        let exists = TermQuery::new(term, IndexRecordOption::Basic);
                        present.push((Occur::Should, Box::new(exists)));
                    }
                }
            }
            clauses.push((Occur::Should, Box::new(DisjunctionMaxQuery::new(best))));
            if !present.is_empty() {
                let any = BooleanQuery::new(present);
                let bonus = ConstScoreQuery::new(Box::new(any), COVERAGE_BONUS);
                clauses.push((Occur::Should, Box::new(bonus)));
            }
            if seen.len() == MAX_QUERY_WORDS {
                break;
            }
        }
        if clauses.is_empty() {
            return Err(SearchError::NoSearchableWords);
        }
        Ok(BooleanQuery::new(clauses))
    }
}
