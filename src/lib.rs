//! Portcullis: a self-hosted MCP gateway with per-user OAuth.
//!
//! This file assembles the runtime from a validated [`config::Config`]: the inbound verifier,
//! the catalog (with hot reload), the call pipeline and the axum router. Each module below
//! owns one question; see DESIGN.md section 3 for the map.

#![forbid(unsafe_code)]

pub mod body;
pub mod call;
pub mod catalog;
pub mod config;
pub mod credential;
mod dev;
pub mod identity;
pub mod inbound;
pub mod limits;
pub mod mcp;
pub mod policy;
mod reload;
mod routes;
pub mod search;
pub mod secret;
pub mod targets;
pub mod telemetry;
pub mod vault;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::call::CallPipeline;
use crate::catalog::Catalog;
use crate::config::{Config, KeySourceConfig};
use crate::inbound::es256::Es256Key;
use crate::inbound::{AuthLayerState, DevIssuer, KeyStore, Verifier};
use crate::mcp::{McpState, SessionRegistry};
use crate::targets::Transport;

use reload::{activate, log_catalog, render_policy_problems, warn_policy_schema_problems};
pub use reload::{load_catalog, tool_shapes};

/// The assembled parts. Each router gets only its own part (the MCP surface [`McpState`],
/// the browser routes and the identity API their `Identity`, the operational routes
/// [`routes::OpsState`]); this struct is what `lib.rs` and tests hold.
pub struct GatewayState {
    pub config: Config,
    pub catalog: Arc<ArcSwap<Catalog>>,
    /// The clients every target is built on, kept for reloads.
    pub transport: Transport,
    pub mcp: Arc<McpState>,
    pub keys: Arc<KeyStore>,
    pub dev_issuer: Option<Arc<DevIssuer>>,
    /// Per-user downstream credentials; `None` when no provider, API key or identity API
    /// access key is configured.
    pub identity: Option<Arc<identity::Identity>>,
    /// The AgentCore-compatible identity API; `None` without `[[identity.access_keys]]`.
    pub identity_api: Option<Arc<identity::api::IdentityApi>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    DevIssuer(#[from] inbound::DevIssuerError),
    #[error(transparent)]
    Vault(#[from] vault::VaultError),
    #[error("identity API signing key: {0}")]
    WorkloadTokenKey(#[from] inbound::es256::KeyFileError),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
    #[error("the policy files have {} problem(s):\n{}", .0.len(), render_policy_problems(.0))]
    Policy(Vec<policy::PolicyProblem>),
    #[error("cannot watch the folder {dir}: {source}")]
    Watch {
        dir: String,
        #[source]
        source: notify::Error,
    },
}

impl GatewayState {
    /// Re-reads the policy files; a folder with a problem keeps the policies in force.
    pub fn reload_policies(&self) {
        let Some(policies) = self.mcp.pipeline.policies() else {
            return;
        };
        match policies.reload() {
            Ok(count) => {
                tracing::info!(policies = count, "policies reloaded");
                warn_policy_schema_problems(policies, &self.catalog.load());
            }
            Err(problems) => {
                for problem in &problems {
                    tracing::warn!(%problem, "policy file problem; the policies in force stay");
                }
            }
        }
    }

    /// Lists discovered tools again (`refreshSeconds`): the catalog is reloaded, and live
    /// sessions are told only if the tools changed.
    pub async fn refresh_catalog(&self) {
        self.swap_catalog(false, "catalog refreshed").await;
    }

    /// Reloads the catalog from disk, swaps it in and tells live sessions.
    pub async fn reload_catalog(&self) {
        self.swap_catalog(true, "catalog reloaded").await;
    }

    /// Loads a new catalog over the current one and tells live sessions; with `always` false,
    /// an unchanged tool list changes nothing (not even the log).
    async fn swap_catalog(&self, always: bool, message: &'static str) {
        let previous = self.catalog.load_full();
        let (catalog, problems) = load_catalog(&self.config, &previous, &self.transport).await;
        if !always && catalog.same_tools(&previous) {
            return;
        }
        log_catalog(&catalog, &problems, message);
        if let Some(policies) = self.mcp.pipeline.policies() {
            warn_policy_schema_problems(policies, &catalog);
        }
        activate(&catalog);
        self.catalog.store(Arc::new(catalog));
        self.mcp.sessions.notify_tools_changed().await;
    }
}

/// A gateway ready to serve: its router and shared state.
pub struct Gateway {
    pub state: Arc<GatewayState>,
    router: Router,
    shutdown: CancellationToken,
}

impl Gateway {
    /// Builds everything that does not need the network: keys are fetched in the background
    /// (and `/readyz` says so until they are loaded).
    pub async fn build(config: Config) -> Result<Gateway, StartError> {
        // Install the recorder before anything counts, so no early event is lost.
        let _ = telemetry::metrics_handle();
        let http = identity_provider_client()?;
        let (keys, dev_issuer) = match &config.inbound.keys {
            KeySourceConfig::DevIssuer => {
                let issuer = Arc::new(DevIssuer::load_or_create(
                    &config.server.data_dir,
                    &config.server.public_url,
                )?);
                let keys = KeyStore::fixed(
                    issuer.issuer().to_string(),
                    issuer.kid().to_string(),
                    issuer.verify_key()?,
                );
                (Arc::new(keys), Some(issuer))
            }
            source => (Arc::new(KeyStore::remote(source, http.clone())), None),
        };
        let needs_identity = !(config.providers.is_empty()
            && config.api_keys.is_empty()
            && config.identity.access_keys.is_empty());
        let needs_shared_buckets = config.rate_limits.iter().any(|rule| rule.shared);
        let vault = if needs_identity || needs_shared_buckets {
            // "Never starts without a key" (DESIGN 2.2): opening fails without one.
            Some(
                vault::open_vault(
                    &config.vault,
                    std::env::var(vault::KEY_ENV).ok(),
                    config.dev,
                )
                .await?,
            )
        } else {
            None
        };
        let shared_buckets = vault
            .as_ref()
            .filter(|_| needs_shared_buckets)
            .and_then(vault::Vault::shared_buckets);
        let identity = match vault {
            Some(vault) if needs_identity => Some(Arc::new(identity::Identity::new(
                identity_sections(&config),
                vault.into_store(),
                keys.clone(),
                http.clone(),
            ))),
            _ => None,
        };
        // Loaded once the gateway's own credentials exist: an MCP server may be listed with them.
        let mut transport = Transport::new()?;
        transport.own_credentials = identity
            .as_ref()
            .map(|identity| identity.service().clone() as Arc<dyn credential::TargetCredentials>);
        let (catalog, problems) = load_catalog(&config, &Catalog::default(), &transport).await;
        log_catalog(&catalog, &problems, "catalog loaded");
        let identity_api = match &identity {
            Some(identity) if !config.identity.access_keys.is_empty() => {
                let key = signing_key(
                    identity.store(),
                    &config.server.data_dir,
                    identity::api::WORKLOAD_TOKEN_KEY,
                )
                .await?;
                identity::api::IdentityApi::new(
                    identity_sections(&config),
                    identity.clone(),
                    keys.clone(),
                    key,
                )?
                .map(Arc::new)
            }
            _ => None,
        };
        let policies = match &config.policy {
            Some(policy) => {
                let policies =
                    policy::Policies::load(policy.clone()).map_err(StartError::Policy)?;
                let (files, count) = policies.size();
                tracing::info!(
                    files,
                    policies = count,
                    mode = policy.mode.label(),
                    "policies loaded"
                );
                warn_policy_schema_problems(&policies, &catalog);
                Some(Arc::new(policies))
            }
            None => None,
        };
        let pipeline = CallPipeline::new(
            identity.clone(),
            policies,
            limits::RateLimits::new(config.rate_limits.clone(), shared_buckets),
            "portcullis".to_string(),
        );
        let catalog = Arc::new(ArcSwap::from_pointee(catalog));
        let mcp = Arc::new(McpState {
            catalog: catalog.clone(),
            pipeline,
            sessions: SessionRegistry::default(),
            search: config.search,
        });
        let state = Arc::new(GatewayState {
            config,
            catalog,
            transport,
            mcp,
            keys,
            dev_issuer,
            identity,
            identity_api,
        });
        let shutdown = CancellationToken::new();
        let router = router(&state, &shutdown);
        Ok(Gateway {
            state,
            router,
            shutdown,
        })
    }

    /// Serves on `listener` until `shutdown` completes. Starts the JWKS refresh and, if
    /// configured, the targets-folder watcher.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        activate(&self.state.catalog.load());
        let refresher = tokio::spawn(self.state.keys.clone().run_refresh_loop());
        let metrics_upkeep = tokio::spawn(telemetry::run_metrics_upkeep());
        let purger = self
            .state
            .identity
            .as_ref()
            .map(|identity| tokio::spawn(purge_expired_records(identity.store().clone())));
        let _watcher = if self.state.config.targets.watch {
            let state = self.state.clone();
            Some(on_change(&self.state.config.targets.dir, move || {
                let state = state.clone();
                async move { state.reload_catalog().await }
            })?)
        } else {
            None
        };
        // Discovered tools are listed again as often as the most eager target asks; with none,
        // the loop only looks again after a while (a reload may add one).
        let refresh_state = self.state.clone();
        let refresher_of_tools = tokio::spawn(async move {
            let changed = refresh_state.transport.tools_changed.clone();
            loop {
                let every = refresh_state.catalog.load().refresh_interval();
                tokio::select! {
                    () = tokio::time::sleep(every.unwrap_or(std::time::Duration::from_secs(60))) => {
                        if every.is_none() {
                            continue;
                        }
                    }
                    // An MCP server said its tools changed.
                    () = changed.notified() => {}
                }
                refresh_state.refresh_catalog().await;
            }
        });
        let _policy_watcher = match self.state.mcp.pipeline.policies() {
            Some(policies) => {
                let state = self.state.clone();
                Some(on_change(&policies.config().dir, move || {
                    state.reload_policies();
                    std::future::ready(())
                })?)
            }
            None => None,
        };
        let cancel = self.shutdown.clone();
        // TCP_NODELAY: a multi-segment response (a 200-tool page, an SSE stream) must not wait
        // on Nagle's algorithm for the client's delayed ACK (a 40 ms stall per response).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "could not set TCP_NODELAY");
            }
        });
        let result = axum::serve(listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                cancel.cancel();
            })
            .await
            .map_err(StartError::Serve);
        refresher.abort();
        refresher_of_tools.abort();
        metrics_upkeep.abort();
        if let Some(purger) = purger {
            purger.abort();
        }
        result
    }
}

/// Runs `reload` after every change under `dir` (debounced by [`catalog::watch`]) until the
/// returned watcher is dropped.
fn on_change<F, Fut>(
    dir: &std::path::Path,
    mut reload: F,
) -> Result<notify::RecommendedWatcher, StartError>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (watcher, mut changes) = catalog::watch(dir).map_err(|source| StartError::Watch {
        dir: dir.display().to_string(),
        source,
    })?;
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            reload().await;
        }
    });
    Ok(watcher)
}

/// The client for discovery, JWKS and token endpoints. No redirects: a token request must never
/// be bounced to a host nobody configured (OAuth 2.0 Security BCP section 4.11).
fn identity_provider_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The clients targets are built on, for a catalog loaded outside a running gateway
/// (`portcullis validate`): with the config's own credentials, so that an MCP server that
/// needs an API key or client credentials is listed as `serve` would list it.
pub fn transport_for(config: &Config) -> Result<Transport, reqwest::Error> {
    let mut transport = Transport::new()?;
    if !(config.providers.is_empty() && config.api_keys.is_empty()) {
        let service =
            identity::service_credentials(&identity_sections(config), &identity_provider_client()?);
        transport.own_credentials = Some(Arc::new(service));
    }
    Ok(transport)
}

/// Binds `config.server.listen` and serves until Ctrl-C / SIGTERM.
pub async fn run(config: Config) -> Result<(), StartError> {
    let addr = config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let gateway = Gateway::build(config).await?;
    tracing::info!(%addr, "listening");
    gateway.serve(listener, shutdown_signal()).await
}

/// How often expired consent sessions, `state` indexes and browser sessions are removed.
const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Removes expired records on a timer, so that nothing a request creates outlives its expiry
/// on disk (DESIGN 3.2 invariant 9).
async fn purge_expired_records(store: Arc<dyn vault::Store>) {
    let mut ticks = tokio::time::interval(PURGE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.purge_expired(vault::unix_now()).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired vault records purged"),
            Err(error) => tracing::warn!(%error, "purging expired vault records failed"),
        }
    }
}

/// An ES256 key every replica signs with (DESIGN 2.9): in the store when it is shared, where
/// the replica that starts first puts the one it generated, else `<data_dir>/<name>` as for
/// one process.
async fn signing_key(
    store: &Arc<dyn vault::Store>,
    data_dir: &std::path::Path,
    name: &str,
) -> Result<Es256Key, StartError> {
    if !store.is_shared() {
        return Ok(Es256Key::load_or_create(&data_dir.join(name))?);
    }
    let candidate = Es256Key::generate_pkcs8()?;
    let stored = store.shared_secret(name, Some(&candidate)).await?;
    let bad = || inbound::es256::KeyFileError::BadStoredKey {
        name: name.to_string(),
    };
    let pkcs8 = stored.ok_or_else(bad)?;
    Ok(Es256Key::from_pkcs8(&pkcs8).ok_or_else(bad)?)
}

/// The config sections the identity module is built from.
fn identity_sections(config: &Config) -> identity::settings::IdentitySections<'_> {
    identity::settings::IdentitySections {
        identity: &config.identity,
        providers: &config.providers,
        api_keys: &config.api_keys,
        inbound: &config.inbound,
        public_url: &config.server.public_url,
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

fn router(state: &Arc<GatewayState>, shutdown: &CancellationToken) -> Router {
    let server = &state.config.server;
    let auth = Arc::new(AuthLayerState {
        verifier: Verifier::new(&state.config.inbound, state.keys.clone()),
        public_url: server.public_url.clone(),
        resource_path: mcp::PATH,
    });
    let mcp = mcp::route::route(
        state.mcp.clone(),
        state
            .identity
            .as_ref()
            .map(|identity| identity.store().clone()),
        mcp::route::McpRouteConfig {
            max_body_bytes: server.max_body_bytes,
            session_idle: server.mcp_session_idle,
            allowed_hosts: allowed_hosts(state),
            allowed_origins: allowed_origins(state),
            auth,
        },
        shutdown,
    );

    let ops = Arc::new(routes::OpsState {
        keys: state.keys.clone(),
        catalog: state.catalog.clone(),
        store: state.identity.as_ref().map(|i| i.store().clone()),
        public_url: server.public_url.clone(),
        scopes: state.config.inbound.allowed_scopes.clone(),
    });
    let ops = Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(routes::resource_metadata_root),
        )
        .route(
            &inbound::metadata_path(mcp::PATH),
            get(routes::resource_metadata_mcp),
        )
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .with_state(ops);
    let mut router = Router::new()
        .merge(mcp)
        .merge(ops)
        .merge(identity::routes::routes(state.identity.clone()))
        .merge(identity::api::routes(state.identity_api.clone()));
    if state.config.dev {
        router = router.merge(dev::routes(state.dev_issuer.clone()));
    }
    // Unknown paths are a plain 404, whatever layers the routers above carry.
    router.fallback(|| async { http::StatusCode::NOT_FOUND })
}

/// DNS-rebinding protection (MCP 2025-06-18 "Security Warning"): the Host must be the public
/// one or a loopback name.
fn allowed_hosts(state: &GatewayState) -> Vec<String> {
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "[::1]".to_string(),
    ];
    if let Ok(url) = url::Url::parse(&state.config.server.public_url)
        && let Some(host) = url.host_str()
    {
        hosts.push(host.to_string());
    }
    hosts.push(state.config.server.listen.ip().to_string());
    hosts
}

/// Browsers may call only from the gateway's own origin and the configured ones.
fn allowed_origins(state: &GatewayState) -> Vec<String> {
    let mut origins = state.config.server.allowed_origins.clone();
    if let Ok(url) = url::Url::parse(&state.config.server.public_url) {
        origins.push(url.origin().ascii_serialization());
    }
    origins
}
