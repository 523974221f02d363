//! TLS to the server: `sslmode` asks for it, and the certificate is always verified.

use super::*;

/// Whether the store's own connection to the server is encrypted (`pg_stat_ssl`).
async fn uses_tls(store: &PostgresStore) -> bool {
    store
        .raw_client()
        .await
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sslmode_verify_full_connects_over_verified_tls_and_an_unknown_ca_is_refused() {
    let (cluster, ca) = tokio::task::spawn_blocking(Cluster::start_tls)
        .await
        .unwrap();
    let cluster = Arc::new(cluster);
    let database = {
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.database())
            .await
            .unwrap()
    };
    let with_query = |query: &str| {
        DatabaseUrl::parse(&Secret::new(format!(
            "postgres://portcullis_test:{PASSWORD}@127.0.0.1:{}/{database}{query}",
            cluster.port()
        )))
        .unwrap()
    };
    let verified = with_query(&format!(
        "?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ));
    assert_eq!(verified.tls(), TlsMode::Verified);
    let dir = tempfile::tempdir().unwrap();
    let file = key_file(&dir);
    let keyring = || Keyring::load_file(&file).unwrap();
    let store = PostgresStore::open(&verified, keyring()).await.unwrap();
    assert!(uses_tls(&store).await);
    store
        .put_consent(RecordKind::Consent, "s", &session("over tls"))
        .await
        .unwrap();

    // `require` verifies too: without the test CA (only the system roots) the handshake fails.
    let error = PostgresStore::open(&with_query("?sslmode=require"), keyring())
        .await
        .unwrap_err();
    assert!(matches!(error, VaultError::Unavailable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(!message.contains(PASSWORD), "{message}");

    // Without sslmode the same server is reached in plaintext.
    let plain = PostgresStore::open(&with_query(""), keyring())
        .await
        .unwrap();
    assert!(!uses_tls(&plain).await);
    assert!(
        plain
            .get_consent(RecordKind::Consent, "s")
            .await
            .unwrap()
            .is_some()
    );
}
