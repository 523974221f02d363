//! `[vault]`: the backend (DESIGN 2.9), where its data lives, and the key file (DESIGN 2.2).

use std::path::Path;

use super::providers::read_secret;
use super::raw::RawVault;
use super::validate::{Problems, resolve};
use crate::vault::{DatabaseUrl, VaultBackend, VaultConfig};

/// Validates `[vault]`. A PostgreSQL URL is read (from `url_env` or `url_file`) and parsed
/// here, so that `portcullis validate` reports a missing variable or a bad URL with its key
/// path; the URL itself (it holds the password) never appears in a problem.
pub(super) fn vault(
    raw: &RawVault,
    base: &Path,
    data_dir: &Path,
    problems: &mut Problems,
) -> VaultConfig {
    let backend = match raw.backend.as_deref().unwrap_or("sled") {
        "sled" => {
            for (set, key) in [
                (raw.url_env.is_some(), "vault.url_env"),
                (raw.url_file.is_some(), "vault.url_file"),
            ] {
                if set {
                    problems.push(key, "only used with backend = \"postgres\"");
                }
            }
            VaultBackend::Sled
        }
        "postgres" => {
            if raw.url_env.is_none() && raw.url_file.is_none() {
                problems.push(
                    "vault",
                    "backend = \"postgres\" needs url_env or url_file (a postgres://user:password@host:port/database URL)",
                );
                VaultBackend::Sled
            } else {
                let url = read_secret(
                    "vault",
                    "url",
                    raw.url_env.as_deref(),
                    raw.url_file.as_deref(),
                    base,
                    problems,
                );
                let key = if raw.url_env.is_some() {
                    "vault.url_env"
                } else {
                    "vault.url_file"
                };
                match url.map(|url| DatabaseUrl::parse(&url)) {
                    Some(Ok(url)) => VaultBackend::Postgres(Box::new(url)),
                    Some(Err(reason)) => {
                        problems.push(key, reason);
                        VaultBackend::Sled
                    }
                    None => VaultBackend::Sled,
                }
            }
        }
        other => {
            problems.push(
                "vault.backend",
                format!("unknown backend {other:?} (expected sled or postgres)"),
            );
            VaultBackend::Sled
        }
    };
    VaultConfig {
        backend,
        path: raw
            .path
            .as_deref()
            .map_or_else(|| data_dir.join("vault"), |p| resolve(base, p)),
        key_file: raw
            .key_file
            .as_deref()
            .map_or_else(|| data_dir.join("vault.key"), |p| resolve(base, p)),
    }
}
