//! Refresh locks across replicas (`locks.rs`): one holder per link among every store on the
//! database, released on drop and when the holder's connection dies.

use super::*;

/// `(granted, waiting)` advisory locks on the server, as `pg_locks` shows them.
async fn advisory_locks(store: &PostgresStore) -> (i64, i64) {
    let client = store.raw_client().await;
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted)
             FROM pg_locks WHERE locktype = 'advisory'
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Waits (bounded) until the server's advisory locks are `expected`: the condition the test
/// goes on from, instead of a guess at how long the other side takes.
async fn until_locks(store: &PostgresStore, expected: (i64, i64)) {
    for _ in 0..1000 {
        if advisory_locks(store).await == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!(
        "advisory locks stayed {:?}, expected {expected:?}",
        advisory_locks(store).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_lock_keeps_other_replicas_out_of_that_link_until_it_is_dropped() {
    let (_cluster, _dir, a, b) = two_replicas().await;
    let alice = TokenKey::new("w", "alice", "github");
    let bob = TokenKey::new("w", "bob", "github");

    let held = a.lock_refresh(&alice).await.unwrap();
    // Another link is not held up by alice's.
    drop(b.lock_refresh(&bob).await.unwrap());
    until_locks(&a, (1, 0)).await;

    let waiting = {
        let (b, alice) = (b.clone(), alice.clone());
        tokio::spawn(async move { b.lock_refresh(&alice).await.unwrap() })
    };
    until_locks(&a, (1, 1)).await;
    assert!(
        !waiting.is_finished(),
        "b got alice's lock while a holds it"
    );

    drop(held);
    let now_b = waiting.await.unwrap();
    until_locks(&a, (1, 0)).await;
    drop(now_b);
    // Released, and the connections went back to their pool holding nothing.
    until_locks(&a, (0, 0)).await;
    drop(a.lock_refresh(&alice).await.unwrap());
    until_locks(&a, (0, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_that_dies_holding_a_refresh_lock_frees_it() {
    let (cluster, _dir, a, b) = two_replicas().await;
    let alice = TokenKey::new("w", "alice", "github");
    let held = a.lock_refresh(&alice).await.unwrap();
    let waiting = {
        let (b, alice) = (b.clone(), alice.clone());
        tokio::spawn(async move { b.lock_refresh(&alice).await.unwrap() })
    };
    until_locks(&a, (1, 1)).await;
    // The holder's connection ends as a killed process's would.
    let database = a.describe().rsplit('/').next().unwrap().to_string();
    let cluster2 = cluster.clone();
    tokio::task::spawn_blocking(move || {
        cluster2.superuser_sql(
            &database,
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
    })
    .await
    .unwrap();
    let lock = waiting.await.unwrap();
    assert!(format!("{lock:?}").contains("shared"));
    drop(held); // its connection is gone: the unlock fails and the connection is discarded
}
