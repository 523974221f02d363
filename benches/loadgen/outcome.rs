//! How a call is judged and counted. A transport or protocol failure is an *error* (by kind),
//! a well-formed answer with the wrong content a *wrong answer*: the two mean different bugs,
//! so they are kept apart all the way to the printed summary and the JSON result.

use std::collections::BTreeMap;

/// Why a call did not count as a good answer.
#[derive(Debug)]
pub enum Failure {
    /// Transport, HTTP status, protocol: the kind goes into the error table.
    Error(String, String),
    /// A well-formed answer whose content is not what was asked for.
    Wrong(String),
}

/// An error of this kind (the key of `error_kinds`), with a detail for the samples.
pub fn err(kind: &str, detail: impl Into<String>) -> Failure {
    Failure::Error(kind.to_string(), detail.into())
}

/// At most 200 characters of a body, for failure samples that stay readable.
pub fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.chars().count() > 200 {
        format!("{}...", text.chars().take(200).collect::<String>())
    } else {
        text.to_string()
    }
}

/// The counts of one connection (merged at the end), with a few failure samples to print.
#[derive(Default)]
pub struct Tally {
    /// HTTP requests made by measured calls.
    pub requests: u64,
    pub ok: u64,
    pub wrong: u64,
    pub errors: BTreeMap<String, u64>,
    pub samples: Vec<String>,
    pub warmup_failures: u64,
}

impl Tally {
    pub fn failure(&mut self, failure: Failure) {
        let line = match failure {
            Failure::Error(kind, detail) => {
                *self.errors.entry(kind.clone()).or_default() += 1;
                format!("error {kind}: {detail}")
            }
            Failure::Wrong(detail) => {
                self.wrong += 1;
                format!("wrong answer: {detail}")
            }
        };
        if self.samples.len() < 5 {
            self.samples.push(line);
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.requests += other.requests;
        self.wrong += other.wrong;
        self.warmup_failures += other.warmup_failures;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for s in other.samples {
            if self.samples.len() < 10 {
                self.samples.push(s);
            }
        }
    }
}
