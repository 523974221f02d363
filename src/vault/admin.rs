//! `portcullis vault list | revoke | rotate-key`: the admin's view of the vault, on whichever
//! backend `[vault]` names. Output never contains a token or a key.
//!
//! With `backend = "postgres"` the commands run beside live gateways (the database has no
//! single-process lock as the sled folder has); `rotate-key` then needs the other replicas
//! restarted with the new key file (see `postgres_store/maintenance.rs`).

use std::fmt::Write;

use super::{
    KEY_ENV, PostgresStore, TokenKey, VaultBackend, VaultConfig, VaultError, load_keyring,
    open_sled_vault, open_vault,
};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("no link {0}")]
    NoSuchLink(String),
    #[error(
        "the key comes from {KEY_ENV}; rotate-key rewrites the key file, so unset the variable and use vault.key_file"
    )]
    KeyFromEnvironment,
    #[error("only `migrate --from sled --to postgres` is supported")]
    UnsupportedMigration,
    #[error(
        "migrate copies [vault].path into the PostgreSQL database of [vault]: set backend = \"postgres\" and url_env or url_file"
    )]
    MigrateNeedsPostgres,
    #[error("there is no sled vault at {0}")]
    NoSledVault(String),
}

/// A backend named on the command line (`migrate --from sled --to postgres`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendName {
    Sled,
    Postgres,
}

pub enum Action {
    List { user: Option<String> },
    Revoke { user: String, provider: String },
    RotateKey,
    Migrate { from: BackendName, to: BackendName },
}

fn when(unix: Option<u64>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match unix {
        None => "-".into(),
        Some(t) if t <= now => "expired".into(),
        Some(t) => format!("in {}m", (t - now) / 60),
    }
}

/// Runs one admin action on the vault of `vault` and returns what to print; `workload` is the
/// gateway's own workload (the one `revoke` acts in).
pub async fn run(
    vault: &VaultConfig,
    workload: &str,
    action: Action,
) -> Result<String, AdminError> {
    let env_key = std::env::var(KEY_ENV).ok();
    // Rotation writes the new key next to the old one in the key file: it needs the file.
    if matches!(action, Action::RotateKey) && env_key.is_some() {
        return Err(AdminError::KeyFromEnvironment);
    }
    if let Action::Migrate { from, to } = action {
        return migrate(vault, env_key, from, to).await;
    }
    let vault_store = open_vault(vault, env_key, false).await?;
    let store = vault_store.as_store();
    match action {
        Action::List { user } => {
            let links = store.list_tokens(user.as_deref()).await?;
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{:<14} {:<40} {:<14} {:<10} {:<8} SCOPES",
                "WORKLOAD", "USER", "PROVIDER", "EXPIRES", "REFRESH"
            );
            for (key, meta) in &links {
                let _ = writeln!(
                    out,
                    "{:<14} {:<40} {:<14} {:<10} {:<8} {}",
                    key.workload,
                    key.user,
                    key.provider,
                    when(meta.expires_at),
                    if meta.has_refresh_token { "yes" } else { "no" },
                    meta.scopes.join(" ")
                );
            }
            let _ = writeln!(out, "{} link(s)", links.len());
            Ok(out)
        }
        Action::Revoke { user, provider } => {
            let key = TokenKey {
                workload: workload.to_string(),
                user,
                provider,
            };
            if store.delete_token(&key).await? {
                Ok(format!("revoked {key}\n"))
            } else {
                Err(AdminError::NoSuchLink(key.to_string()))
            }
        }
        Action::RotateKey => {
            // Crash-safe: both keys on disk, every record re-sealed and flushed, then the old
            // key retired (see `keyring`).
            let rotation = vault_store.rotate_key(&vault.key_file).await?;
            Ok(format!(
                "re-sealed {} record(s) with key {}; retired key(s) {:?} from {}\n",
                rotation.resealed,
                rotation.new_key_id,
                rotation.old_key_ids,
                vault.key_file.display()
            ))
        }
        Action::Migrate { .. } => Err(AdminError::UnsupportedMigration),
    }
}

/// `migrate --from sled --to postgres`: copies the sled vault at `[vault].path` into the
/// configured database, sealed envelopes as they are (`postgres_store/migrate.rs`), with the
/// same vault key. The sled vault is left untouched; the gateway using it must be stopped
/// (sled allows one process).
async fn migrate(
    vault: &VaultConfig,
    env_key: Option<String>,
    from: BackendName,
    to: BackendName,
) -> Result<String, AdminError> {
    if (from, to) != (BackendName::Sled, BackendName::Postgres) {
        return Err(AdminError::UnsupportedMigration);
    }
    let VaultBackend::Postgres(url) = &vault.backend else {
        return Err(AdminError::MigrateNeedsPostgres);
    };
    if !vault.path.join("db").exists() {
        return Err(AdminError::NoSledVault(vault.path.display().to_string()));
    }
    let sled = open_sled_vault(&vault.path, Some(&vault.key_file), env_key.clone(), false).await?;
    let records = sled.export_records().await?;
    sled.close().await?;
    let key_file = vault.key_file.clone();
    let path = vault.path.clone();
    let keyring =
        tokio::task::spawn_blocking(move || load_keyring(&path, Some(&key_file), env_key, false))
            .await
            .map_err(|e| VaultError::Task(e.to_string()))??;
    let postgres = PostgresStore::open(url, keyring).await?;
    let report = postgres.import_records(&records).await?;
    Ok(format!(
        "copied {} token(s), {} consent record(s) and {} API key(s) from {} to {}; kept {} record(s) the database already held; skipped {} expired consent record(s)\n",
        report.tokens,
        report.consents,
        report.api_keys,
        vault.path.display(),
        postgres.describe(),
        report.kept,
        report.expired
    ))
}
