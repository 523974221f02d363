//! [`SharedBuckets`] on PostgreSQL: one call of the `portcullis_take_tokens` function
//! (migration 2), one round trip per admitted or refused call.

use std::time::Duration;

use super::PostgresStore;
use crate::vault::VaultError;
use crate::vault::buckets::{BucketEmpty, BucketTake, SharedBuckets};

/// Buckets untouched this long are full again (windows are a second or a minute) and go in
/// the purge.
pub(super) const IDLE_BUCKET_SECONDS: f64 = 3600.0;

#[async_trait::async_trait]
impl SharedBuckets for PostgresStore {
    async fn take_tokens(
        &self,
        buckets: &[BucketTake],
    ) -> Result<Result<(), BucketEmpty>, VaultError> {
        // Sorted by key, so every replica locks rows in one order (no deadlock); positions are
        // mapped back for the answer.
        let mut order: Vec<usize> = (0..buckets.len()).collect();
        order.sort_by_key(|&i| buckets[i].key);
        let keys: Vec<Vec<u8>> = order.iter().map(|&i| buckets[i].key.to_vec()).collect();
        let capacities: Vec<f64> = order.iter().map(|&i| buckets[i].capacity).collect();
        let rates: Vec<f64> = order.iter().map(|&i| buckets[i].per_second).collect();
        let row = self
            .query_opt(
                "SELECT portcullis_take_tokens($1, $2, $3)",
                &[&keys, &capacities, &rates],
            )
            .await?;
        let answer: Vec<f64> = row.map(|row| row.get(0)).unwrap_or_default();
        match answer.as_slice() {
            [] => Ok(Ok(())),
            // The 1-based position in the sorted request, and the seconds until a token.
            [position, seconds] if *position >= 1.0 && (*position as usize) <= order.len() => {
                Ok(Err(BucketEmpty {
                    index: order[*position as usize - 1],
                    retry_after: Duration::from_secs_f64(seconds.clamp(0.0, 86_400.0)),
                }))
            }
            other => Err(VaultError::Storage {
                backend: "postgres",
                reason: format!("portcullis_take_tokens answered {other:?}"),
            }),
        }
    }
}
