#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `portcullis vault list | revoke | rotate-key` on a real sled vault.

mod support {
    pub mod binary;
    pub mod gateway;
    pub mod idp;
}

use portcullis::vault::{Keyring, Secret, SledStore, Store, TokenKey, TokenRecord};
use support::binary::run;
use support::gateway::write_private;

const KEY: &str = "c2VjcmV0LXZhdWx0LWtleS0zMi1ieXRlcy1sb25nISE=";
const CONFIG: &str = r#"
[inbound]
discovery_url = "https://idp.example.com/.well-known/openid-configuration"
allowed_audiences = ["portcullis"]
[vault]
path = "vault"
key_file = "vault.key"
"#;

fn key(user: &str, provider: &str) -> TokenKey {
    TokenKey {
        workload: "portcullis".into(),
        user: format!("https://idp.example.com#{user}"),
        provider: provider.into(),
    }
}

async fn seeded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("portcullis.toml"), CONFIG).unwrap();
    write_private(&dir.path().join("vault.key"), KEY);
    let store = SledStore::open(
        &dir.path().join("vault"),
        Keyring::from_env_base64(KEY).unwrap(),
    )
    .unwrap();
    for (user, provider) in [("alice", "github"), ("alice", "google"), ("bob", "github")] {
        let record = TokenRecord {
            access_token: Secret::new(format!("gho_{user}_{provider}_SECRET")),
            refresh_token: Some(Secret::new(format!("ghr_{user}_SECRET"))),
            token_type: "Bearer".into(),
            expires_at: Some(4_000_000_000),
            scopes: vec!["repo".into()],
            obtained_at: 1,
            refreshed_at: None,
        };
        store
            .put_token(&key(user, provider), &record)
            .await
            .unwrap();
    }
    dir
}

#[tokio::test]
async fn list_shows_links_but_never_tokens() {
    let dir = seeded().await;
    let (code, out, err) = run(
        &["vault", "list", "--config", "portcullis.toml"],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("https://idp.example.com#alice"), "{out}");
    assert!(out.contains("google"), "{out}");
    assert!(out.contains("3 link(s)"), "{out}");
    assert!(!out.contains("SECRET"), "{out}");
    let (_, out, _) = run(
        &[
            "vault",
            "list",
            "--user",
            "https://idp.example.com#bob",
            "--config",
            "portcullis.toml",
        ],
        dir.path(),
    );
    assert!(out.contains("1 link(s)"), "{out}");
}

#[tokio::test]
async fn revoke_forgets_exactly_one_link() {
    let dir = seeded().await;
    let revoke = [
        "vault",
        "revoke",
        "--user",
        "https://idp.example.com#alice",
        "--provider",
        "github",
        "--config",
        "portcullis.toml",
    ];
    let (code, out, err) = run(&revoke, dir.path());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked"), "{out}");
    let (code, _, err) = run(&revoke, dir.path());
    assert_eq!(code, 1);
    assert!(err.contains("no link"), "{err}");
    let (_, out, _) = run(
        &["vault", "list", "--config", "portcullis.toml"],
        dir.path(),
    );
    assert!(out.contains("2 link(s)"), "{out}");
}

#[tokio::test]
async fn rotate_key_reseals_everything_and_retires_the_old_key() {
    let dir = seeded().await;
    let (code, out, err) = run(
        &["vault", "rotate-key", "--config", "portcullis.toml"],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("re-sealed 4 record(s)"), "{out}");
    let new_key_file = std::fs::read_to_string(dir.path().join("vault.key")).unwrap();
    assert!(!new_key_file.contains(KEY));
    assert!(
        SledStore::open(
            &dir.path().join("vault"),
            Keyring::from_env_base64(KEY).unwrap()
        )
        .is_err()
    );
    let store = SledStore::open(
        &dir.path().join("vault"),
        Keyring::load_file(&dir.path().join("vault.key")).unwrap(),
    )
    .unwrap();
    let record = store
        .get_token(&key("bob", "github"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.access_token.expose(), "gho_bob_github_SECRET");
}

#[tokio::test]
async fn a_world_readable_key_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = seeded().await;
    std::fs::set_permissions(
        dir.path().join("vault.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, _, err) = run(
        &["vault", "list", "--config", "portcullis.toml"],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("chmod 600"), "{err}");
}

/// The vault of a `serve --dev` gateway: its config needs no IdP and may use dev-only settings,
/// so `vault` must read it as `--dev` does when asked to.
#[tokio::test]
async fn a_dev_gateways_vault_is_listed_with_dev() {
    let dir = seeded().await;
    std::fs::write(
        dir.path().join("portcullis.toml"),
        "[identity]\nconsent_binding = \"none\"\n[vault]\npath = \"vault\"\nkey_file = \"vault.key\"\n",
    )
    .unwrap();
    let (code, _, err) = run(
        &["vault", "list", "--config", "portcullis.toml"],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("only allowed with --dev"), "{err}");
    let (code, out, err) = run(
        &["vault", "list", "--dev", "--config", "portcullis.toml"],
        dir.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 link(s)"), "{out}");
    assert!(!out.contains("SECRET"), "{out}");
}
