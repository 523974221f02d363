//! Rate-limit buckets shared by every replica of a gateway (issue 13: "with the PostgreSQL
//! store, limits can be shared across replicas").
//!
//! The vault's database is the one place every replica already reaches, so a backend that
//! several replicas share offers its buckets here; the embedded sled store does not (one
//! process, whose own counts are already exact). The rate-limit rules stay in `limits`: this
//! is only the atomic "take one token from each of these buckets, or from none".

use std::time::Duration;

use super::VaultError;

/// One bucket a call must take a token from.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketTake {
    /// Opaque and stable across replicas: the same rule and caller give the same key.
    pub key: [u8; 32],
    /// Tokens when full (one window's calls).
    pub capacity: f64,
    /// Tokens added per second.
    pub per_second: f64,
}

/// Why a take failed: the first bucket (by position in the request) without a token, and how
/// long until it has one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketEmpty {
    pub index: usize,
    pub retry_after: Duration,
}

#[async_trait::async_trait]
pub trait SharedBuckets: Send + Sync + 'static {
    /// Takes one token from every bucket, atomically across all replicas, or none at all.
    async fn take_tokens(
        &self,
        buckets: &[BucketTake],
    ) -> Result<Result<(), BucketEmpty>, VaultError>;
}
