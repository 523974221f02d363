//! The `portcullis` command line (DESIGN 2.1). Parsing only: everything else is the library's.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portcullis::catalog::Catalog;
use portcullis::config::{Config, KeySourceConfig};
use portcullis::inbound::{DEV_AUDIENCE, DEV_SCOPE, DevIssuer};

/// mimalloc instead of glibc malloc: every request allocates and frees many small objects
/// (JSON values, headers, futures) on two runtime threads, and glibc's allocator took about
/// 14 % of the gateway's CPU in the issue-5 profile (`_int_free`, `malloc_consolidate`, ...).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Self-hosted MCP gateway with per-user OAuth"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (default: ./portcullis.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Zero-config local run: embedded development issuer, loopback only.
        #[arg(long)]
        dev: bool,
    },
    /// Check the config and every target file; exit 1 listing every problem.
    Validate {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Read the config as `serve --dev` does (no IdP needed, dev-only settings allowed).
        #[arg(long)]
        dev: bool,
    },
    /// Inspect and manage the token vault (sled: stop the gateway first, sled allows one
    /// process; postgres: runs beside live gateways).
    Vault {
        #[command(subcommand)]
        action: VaultAction,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// The vault of a `serve --dev` gateway: read the config as `--dev` does.
        #[arg(long, global = true)]
        dev: bool,
    },
    /// Cedar policy tools (DESIGN 2.10).
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Read the config as `serve --dev` does.
        #[arg(long, global = true)]
        dev: bool,
    },
    /// Print a token signed by the development issuer (the one `serve --dev` trusts).
    Token {
        /// The user the token is for (`sub`).
        #[arg(long)]
        sub: String,
        /// Scopes to grant (repeatable; default: mcp).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Audience (default: portcullis).
        #[arg(long)]
        aud: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum VaultAction {
    /// List linked accounts (never their tokens).
    List {
        /// Only this user (`<issuer>#<subject>`).
        #[arg(long)]
        user: Option<String>,
    },
    /// Forget one user's link to one provider.
    Revoke {
        #[arg(long)]
        user: String,
        #[arg(long)]
        provider: String,
    },
    /// Seal every record with a new key and retire the old one (crash-safe).
    RotateKey,
    /// Copy the sled vault at [vault].path into the PostgreSQL database of [vault] (stop the
    /// sled gateway first; the sled vault is left as it was).
    Migrate {
        #[arg(long, value_enum)]
        from: BackendArg,
        #[arg(long, value_enum)]
        to: BackendArg,
    },
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Print the Cedar schema of the catalog (AgentCore's entity model, one action per tool,
    /// `context.input` typed from its inputSchema): what `validate` checks policies against,
    /// for editors and the Cedar CLI.
    Schema {
        /// Cedar's JSON schema format instead of its schema syntax.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    Sled,
    Postgres,
}

impl From<BackendArg> for portcullis::vault::admin::BackendName {
    fn from(backend: BackendArg) -> Self {
        match backend {
            BackendArg::Sled => Self::Sled,
            BackendArg::Postgres => Self::Postgres,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Serve { config, dev } => serve(config, dev),
        Command::Validate { config, dev } => validate(config, dev),
        Command::Vault {
            action,
            config,
            dev,
        } => vault(config, dev, action),
        Command::Policy {
            action: PolicyAction::Schema { json },
            config,
            dev,
        } => policy_schema(config, dev, json),
        Command::Token {
            sub,
            scopes,
            aud,
            config,
        } => token(config, &sub, scopes, aud),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Message(message)) => {
            eprintln!("portcullis: {message}");
            ExitCode::FAILURE
        }
        Err(Failure::Reported) => ExitCode::FAILURE,
    }
}

/// Why a command failed. Every error type here words itself (with its key path, file or
/// cause); `main` prints it once, prefixed with the program name.
enum Failure {
    Message(String),
    /// The command printed its own report (`validate` lists problems in its own format).
    Reported,
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure::Message(error.to_string())
    }
}

fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, Failure> {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|error| Failure::Message(format!("cannot start the async runtime: {error}")))
}

fn serve(path: Option<PathBuf>, dev: bool) -> Result<(), Failure> {
    let config = Config::load(path.as_deref(), dev)?;
    let _guard = portcullis::telemetry::init_logging(&config.telemetry);
    if dev {
        print_dev_banner(&config);
    }
    runtime(true)?.block_on(portcullis::run(config))?;
    Ok(())
}

fn print_dev_banner(config: &Config) {
    let url = &config.server.public_url;
    eprintln!(
        "\n  *** DEVELOPMENT MODE: not for production ***\n\
         \n  MCP endpoint : {url}/mcp\
         \n  Get a token  : portcullis token --sub alice\
         \n  Try it       : npx @modelcontextprotocol/inspector-cli --cli {url}/mcp --transport http \\\
         \n                   --header \"Authorization: Bearer $(portcullis token --sub alice)\" --method tools/list\
         \n  Targets      : {}\n",
        config.targets.dir.display()
    );
    if !matches!(config.inbound.keys, KeySourceConfig::DevIssuer) {
        eprintln!("  (inbound tokens come from the configured IdP, not the development issuer)\n");
    }
}

/// Prints its report itself: config errors as they are (they already start with the file
/// name), then every target-file problem and a count.
fn validate(path: Option<PathBuf>, dev: bool) -> Result<(), Failure> {
    let config = Config::load(path.as_deref(), dev).map_err(|error| {
        eprintln!("{error}");
        Failure::Reported
    })?;
    let transport = portcullis::transport_for(&config).map_err(|error| {
        eprintln!("error: the HTTP client could not be built: {error}");
        Failure::Reported
    })?;
    let (catalog, problems) = runtime(false)?.block_on(portcullis::load_catalog(
        &config,
        &Catalog::default(),
        &transport,
    ));
    let policy_problems = match &config.policy {
        Some(policy) => {
            match portcullis::policy::Policies::check(policy, portcullis::tool_shapes(&catalog)) {
                Ok((files, count)) => {
                    println!(
                        "ok: {count} policy(ies) in {files} file(s) in {}",
                        policy.dir.display()
                    );
                    vec![]
                }
                Err(problems) => problems,
            }
        }
        None => vec![],
    };
    if problems.is_empty() && policy_problems.is_empty() {
        println!(
            "ok: config valid; {} target(s), {} tool(s) in {}",
            catalog.target_count(),
            catalog.len(),
            config.targets.dir.display()
        );
        return Ok(());
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    for problem in &policy_problems {
        eprintln!("{problem}");
    }
    if !problems.is_empty() {
        eprintln!("{} problem(s) in target files", problems.len());
    }
    if !policy_problems.is_empty() {
        eprintln!("{} problem(s) in policy files", policy_problems.len());
    }
    Err(Failure::Reported)
}

/// Loads the catalog as `validate` does and prints its Cedar schema. Target-file problems go
/// to stderr (their tools are missing from the schema) without failing the command.
fn policy_schema(path: Option<PathBuf>, dev: bool, json: bool) -> Result<(), Failure> {
    let config = Config::load(path.as_deref(), dev)?;
    let transport = portcullis::transport_for(&config)?;
    let (catalog, problems) = runtime(false)?.block_on(portcullis::load_catalog(
        &config,
        &Catalog::default(),
        &transport,
    ));
    for problem in &problems {
        eprintln!("warning: {problem}");
    }
    let shapes = portcullis::tool_shapes(&catalog);
    let text = if json {
        serde_json::to_string_pretty(&portcullis::policy::schema_json(shapes))?
    } else {
        portcullis::policy::schema_text(shapes)?
    };
    println!("{text}");
    Ok(())
}

fn token(
    path: Option<PathBuf>,
    sub: &str,
    mut scopes: Vec<String>,
    aud: Option<String>,
) -> Result<(), Failure> {
    let config = Config::load(path.as_deref(), true)?;
    if scopes.is_empty() {
        scopes.push(DEV_SCOPE.to_string());
    }
    // The key of the `serve --dev` gateway this config describes (its data dir, resolved like
    // every path against the config file's folder); never a fresh one.
    let issuer = DevIssuer::load_existing(&config.server.data_dir, &config.server.public_url)?;
    println!(
        "{}",
        issuer.mint(sub, &scopes, aud.as_deref().unwrap_or(DEV_AUDIENCE))?
    );
    Ok(())
}

fn vault(path: Option<PathBuf>, dev: bool, action: VaultAction) -> Result<(), Failure> {
    let config = Config::load(path.as_deref(), dev)?;
    let output = runtime(false)?.block_on(portcullis::vault::admin::run(
        &config.vault,
        &config.identity.workload,
        action.into(),
    ))?;
    print!("{output}");
    Ok(())
}

impl From<VaultAction> for portcullis::vault::admin::Action {
    fn from(action: VaultAction) -> Self {
        use portcullis::vault::admin::Action;
        match action {
            VaultAction::List { user } => Action::List { user },
            VaultAction::Revoke { user, provider } => Action::Revoke { user, provider },
            VaultAction::RotateKey => Action::RotateKey,
            VaultAction::Migrate { from, to } => Action::Migrate {
                from: from.into(),
                to: to.into(),
            },
        }
    }
}
