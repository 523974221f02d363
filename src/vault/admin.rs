//! `portcullis vault list | revoke | rotate-key`: the admin's view of the vault. Output never
//! contains a token or a key.

use std::fmt::Write;

use super::{Keyring, SledStore, Store, TokenKey, VAULT_KEY_ENV, VaultError, open_vault};
use crate::config::Config;

pub enum Action {
    List { user: Option<String> },
    Revoke { user: String, provider: String },
    RotateKey,
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

/// Runs one admin action and returns what to print.
pub async fn run(config: &Config, action: Action) -> Result<String, VaultError> {
    let env_key = std::env::var(VAULT_KEY_ENV).ok();
    match action {
        Action::List { user } => {
            let store = open_vault(
                &config.vault.path,
                Some(&config.vault.key_file),
                env_key,
                false,
            )
            .await?;
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
            let store = open_vault(
                &config.vault.path,
                Some(&config.vault.key_file),
                env_key,
                false,
            )
            .await?;
            let key = TokenKey {
                workload: config.identity.workload.clone(),
                user,
                provider,
            };
            if store.delete_token(&key).await? {
                Ok(format!("revoked {key}\n"))
            } else {
                Err(VaultError::Storage(format!("no link {key}")))
            }
        }
        Action::RotateKey => {
            if env_key.is_some() {
                return Err(VaultError::Key(format!(
                    "the key comes from {VAULT_KEY_ENV}; rotate-key rewrites the key file, so unset the variable and use vault.key_file"
                )));
            }
            let file = &config.vault.key_file;
            let old = Keyring::load_file(file)?;
            // 1. Both keys on disk before any record changes.
            let both = old.with_new_key()?;
            both.write_file(file)?;
            // 2. Every record sealed with the new key, flushed.
            let store = SledStore::open(&config.vault.path, Keyring::load_file(file)?)?;
            let resealed = store.reseal_all().await?;
            drop(store);
            // 3. Only now retire the old key.
            both.current_only().write_file(file)?;
            Ok(format!(
                "re-sealed {resealed} record(s) with key {}; the old key is retired from {}\n",
                both.current_id(),
                file.display()
            ))
        }
    }
}
