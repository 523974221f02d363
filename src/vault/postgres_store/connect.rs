//! The database URL (`[vault].url_env` / `url_file`, DESIGN 2.9), TLS, the connection pool, and
//! how driver errors become [`VaultError`]s without a password in them (DESIGN 3.2 invariant 5).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::config::{Host, SslMode};

use crate::secret::Secret;
use crate::vault::VaultError;

/// Connections per replica: each vault operation is one short statement (or one short
/// transaction), so a few connections serve many concurrent requests.
pub(super) const POOL_SIZE: usize = 16;
/// How long a request waits for a pooled connection, a new connection, or a recycle check
/// before the store is reported unavailable (rather than hanging the request).
pub(super) const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// How the connection is protected, from the URL's `sslmode` (libpq's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No `sslmode`, or `sslmode=disable`: plaintext (a local socket or a private network).
    Disable,
    /// `require`, `verify-ca` or `verify-full`: TLS, and the server certificate is always
    /// verified, chain and host name (libpq's `require` skips verification; this store never
    /// does, so the three are one mode here).
    Verified,
}

/// A parsed `postgres://user:password@host:port/db` URL. The original text stays in a
/// [`Secret`]; `Debug` and [`DatabaseUrl::describe`] show host, port and database only.
#[derive(Clone)]
pub struct DatabaseUrl {
    url: Secret,
    config: tokio_postgres::Config,
    tls: TlsMode,
    /// `sslrootcert=<file>`: PEM certificates trusted in addition to the system's.
    root_cert: Option<PathBuf>,
    described: String,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseUrl")
            .field("store", &self.described)
            .field("tls", &self.tls)
            .field("url", &self.url)
            .finish()
    }
}

impl DatabaseUrl {
    /// Parses the URL. Errors say what is wrong without repeating the URL (it holds the
    /// password), e.g. `sslmode "prefer" is not supported (use disable, require, verify-ca or
    /// verify-full)`.
    pub fn parse(url: &Secret) -> Result<DatabaseUrl, String> {
        let text = url.expose().trim();
        let mut parsed = url::Url::parse(text)
            .map_err(|e| format!("not a postgres://user:password@host:port/database URL ({e})"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "the URL scheme must be postgres:// or postgresql://, not {}://",
                parsed.scheme()
            ));
        }
        let mut tls = TlsMode::Disable;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for (name, value) in parsed.query_pairs() {
            match name.as_ref() {
                "sslmode" => {
                    tls = match value.as_ref() {
                        "disable" => TlsMode::Disable,
                        "require" | "verify-ca" | "verify-full" => TlsMode::Verified,
                        other => {
                            return Err(format!(
                                "sslmode \"{other}\" is not supported (use disable, require, verify-ca or verify-full)"
                            ));
                        }
                    }
                }
                "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
                _ => kept.push((name.into_owned(), value.into_owned())),
            }
        }
        // The driver gets the URL without the two TLS options it does not know (`verify-full`)
        // or that this module handles (`sslrootcert`).
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
        let mut config = tokio_postgres::Config::from_str(parsed.as_str())
            .map_err(|e| format!("invalid database URL: {e}"))?;
        if config.get_hosts().is_empty() {
            return Err("the URL names no host".to_string());
        }
        if config.get_dbname().is_none() {
            return Err(
                "the URL names no database (postgres://user:password@host/database)".into(),
            );
        }
        config.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Verified => SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(POOL_TIMEOUT);
        }
        config.application_name("portcullis");
        let described = describe(&config);
        Ok(DatabaseUrl {
            url: url.clone(),
            config,
            tls,
            root_cert,
            described,
        })
    }

    /// `postgres 127.0.0.1:5432/portcullis`: how errors and logs name the store.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// The TLS mode the URL asked for.
    pub fn tls(&self) -> TlsMode {
        self.tls
    }

    /// The driver's view of the URL: the token-change listener's own connection, and tests
    /// that connect beside the store.
    pub(super) fn driver_config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config
                .get_ports()
                .get(i)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    format!(
        "postgres {}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or_default()
    )
}

/// Builds a pool of at most `size` connections, where a caller waits up to `wait` for one. No
/// connection is made here: the first `get` connects.
pub(super) fn pool(url: &DatabaseUrl, size: usize, wait: Duration) -> Result<Pool, VaultError> {
    // Verified recycling runs an empty query before a pooled connection is handed out: after a
    // database restart or failover, stale connections are dropped and new ones made instead of
    // failing one request each.
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Verified,
    };
    let manager = match url.tls {
        TlsMode::Disable => {
            Manager::from_config(url.config.clone(), tokio_postgres::NoTls, manager_config)
        }
        TlsMode::Verified => Manager::from_config(
            url.config.clone(),
            tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(url)?),
            manager_config,
        ),
    };
    Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(wait))
        .create_timeout(Some(POOL_TIMEOUT))
        .recycle_timeout(Some(POOL_TIMEOUT))
        .build()
        .map_err(|e| VaultError::Open {
            path: PathBuf::from(url.describe()),
            reason: e.to_string(),
        })
}

/// rustls with the aws-lc-rs provider (the crate's one crypto library), trusting the system's
/// roots and `sslrootcert` when given.
pub(super) fn tls_config(url: &DatabaseUrl) -> Result<rustls::ClientConfig, VaultError> {
    let open_error = |reason: String| VaultError::Open {
        path: PathBuf::from(url.describe()),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(file) = &url.root_cert {
        let certs = CertificateDer::pem_file_iter(file)
            .map_err(|e| open_error(format!("sslrootcert {}: {e}", file.display())))?;
        for cert in certs {
            let cert =
                cert.map_err(|e| open_error(format!("sslrootcert {}: {e}", file.display())))?;
            roots
                .add(cert)
                .map_err(|e| open_error(format!("sslrootcert {}: {e}", file.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(open_error(
            "TLS was asked for (sslmode) but no trusted root certificate was found; set sslrootcert"
                .to_string(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| open_error(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// How a driver error becomes a [`VaultError`]: no server answer (refused, lost, timed out)
/// is [`VaultError::Unavailable`]; an answer that is an error is [`VaultError::Storage`] with
/// the server's code and message (never its `DETAIL`, which may quote a value).
pub(super) fn driver_error(store: &str, error: &tokio_postgres::Error) -> VaultError {
    match error.as_db_error() {
        Some(db) => VaultError::Storage {
            backend: "postgres",
            reason: format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        },
        None => VaultError::Unavailable {
            store: store.to_string(),
            reason: error.to_string(),
        },
    }
}

/// The same for the pool's errors: a wait that timed out or a closed pool is "unavailable".
pub(super) fn pool_error(store: &str, error: &PoolError) -> VaultError {
    match error {
        PoolError::Backend(error) => driver_error(store, error),
        PoolError::Timeout(kind) => VaultError::Unavailable {
            store: store.to_string(),
            reason: format!("no database connection within {POOL_TIMEOUT:?} ({kind:?})"),
        },
        PoolError::Closed => VaultError::Unavailable {
            store: store.to_string(),
            reason: "the connection pool is closed".to_string(),
        },
        other => VaultError::Storage {
            backend: "postgres",
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<DatabaseUrl, String> {
        DatabaseUrl::parse(&Secret::new(url))
    }

    #[test]
    fn a_url_is_described_and_debugged_without_its_password() {
        let url = parse("postgres://gw:hunter2-pw@db.internal:6543/vault").unwrap();
        assert_eq!(url.describe(), "postgres db.internal:6543/vault");
        assert_eq!(url.tls(), TlsMode::Disable);
        let debug = format!("{url:?}");
        assert!(!debug.contains("hunter2-pw"), "{debug}");
        assert!(debug.contains("db.internal:6543/vault"), "{debug}");
    }

    #[test]
    fn sslmode_require_and_verify_full_ask_for_verified_tls() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let url = parse(&format!("postgres://gw:pw@db/vault?sslmode={mode}")).unwrap();
            assert_eq!(url.tls(), TlsMode::Verified, "{mode}");
        }
        let url = parse("postgresql://gw:pw@db/vault?sslmode=disable&connect_timeout=3").unwrap();
        assert_eq!(url.tls(), TlsMode::Disable);
        assert_eq!(
            url.driver_config().get_connect_timeout(),
            Some(&Duration::from_secs(3))
        );
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_the_password() {
        for bad in [
            "mysql://gw:s3cret-pw@db/vault",
            "postgres://gw:s3cret-pw@db/vault?sslmode=prefer",
            "postgres://gw:s3cret-pw@db/vault?nonsense=1",
            "postgres://gw:s3cret-pw@db",
            "not a url s3cret-pw",
        ] {
            let error = parse(bad).unwrap_err();
            assert!(!error.contains("s3cret-pw"), "{bad}: {error}");
        }
    }
}
