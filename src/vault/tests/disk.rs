//! Secrets never on disk or in `Debug` (DESIGN 3.2 invariant 5).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};

use super::*;

#[test]
fn debug_output_never_shows_secrets() {
    let record = token("gho_DEBUG_ACCESS", Some("ghr_DEBUG_REFRESH"));
    let shown = format!("{record:?} {record:#?}");
    assert!(!shown.contains("gho_DEBUG_ACCESS"), "{shown}");
    assert!(!shown.contains("ghr_DEBUG_REFRESH"), "{shown}");
    assert!(shown.contains("[redacted]"));

    let secret = Secret::new("sk_DEBUG");
    assert!(!format!("{secret:?} {secret}").contains("sk_DEBUG"));

    let material = STANDARD.encode([42u8; 32]);
    let keyring = Keyring::from_env_base64(&material).unwrap();
    let shown = format!("{keyring:?} {keyring:#?}");
    assert!(!shown.contains(&material), "{shown}");
    assert!(!shown.contains("42"), "{shown}");

    let consent = ConsentRecord::new(b"pkce_DEBUG_VERIFIER".to_vec(), 5);
    let shown = format!("{consent:?}");
    assert!(!shown.contains("pkce_DEBUG_VERIFIER"), "{shown}");
    assert!(!shown.contains("112, 107"), "{shown}"); // not as a byte list either

    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("v"), keyring).unwrap();
    let shown = format!("{store:?}");
    assert!(!shown.contains(&material), "{shown}");
}

/// DESIGN: no plaintext token ever touches disk.
#[tokio::test]
async fn no_plaintext_secret_touches_disk() {
    let secrets = [
        "gho_GREP_ACCESS_7f3a9c1e5b",
        "ghr_GREP_REFRESH_2d8e4b6a0c",
        "PKCE_GREP_VERIFIER_9b1d3f5e7a",
        "WK_GREP_API_KEY_4c6e8a0b2d",
    ];
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    for i in 0..50 {
        store
            .put_token(
                &key(&format!("user{i}"), "github"),
                &token(secrets[0], Some(secrets[1])),
            )
            .await
            .unwrap();
    }
    store
        .put_consent(
            RecordKind::Consent,
            "c",
            &ConsentRecord::new(secrets[2].as_bytes().to_vec(), far_future()),
        )
        .await
        .unwrap();
    store
        .put_api_key("w", "weather", &Secret::new(secrets[3]))
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_no_secret_on_disk(&fx.vault, &secrets);
    drop(store);
    assert_no_secret_on_disk(&fx.vault, &secrets);
}

/// Control for the test above: the scan does find a secret written in plain text (sled does
/// not compress or otherwise hide it), so its silence means something.
#[tokio::test]
async fn the_disk_scan_finds_a_plaintext_secret_written_raw() {
    let fx = Fixture::new();
    let store = fx.open().unwrap();
    let secret = "RAW_CONTROL_SECRET_5e7a9c1b3d";
    let raw = format!("{{\"access_token\":\"{}\"}}", STANDARD.encode(secret));
    store
        .raw_tree("meta")
        .unwrap()
        .insert(b"raw", raw.as_bytes())
        .unwrap();
    store.flush().await.unwrap();
    drop(store);
    let found = std::panic::catch_unwind(|| assert_no_secret_on_disk(&fx.vault, &[secret]));
    assert!(found.is_err());
}

fn assert_no_secret_on_disk(dir: &Path, secrets: &[&str]) {
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    assert!(!files.is_empty());
    let needles: Vec<(String, Vec<u8>)> = secrets
        .iter()
        .flat_map(|secret| {
            encodings(secret)
                .into_iter()
                .map(move |n| (secret.to_string(), n))
        })
        .collect();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for (secret, needle) in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{secret} found in {} as {:?}",
                file.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

/// The secret as raw bytes, hex, and standard and URL-safe base64 at each of the three
/// alignments it could have inside a longer base64 text (edge characters dropped).
fn encodings(secret: &str) -> Vec<Vec<u8>> {
    let mut needles = vec![
        secret.as_bytes().to_vec(),
        secret
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_bytes(),
    ];
    for shift in 0..3 {
        let mut shifted = vec![0u8; shift];
        shifted.extend_from_slice(secret.as_bytes());
        for engine in [&STANDARD, &URL_SAFE] {
            let encoded = engine.encode(&shifted);
            // Skip the characters mixing in the shift bytes or the padding.
            let inner = &encoded.as_bytes()[4..encoded.len() - 4];
            needles.push(inner.to_vec());
        }
    }
    needles
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}
