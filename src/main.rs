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
    /// Inspect and manage the token vault (stop the gateway first: sled allows one process).
    Vault {
        #[command(subcommand)]
        action: VaultAction,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// The vault of a `serve --dev` gateway: read the config as `--dev` does.
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, dev } => serve(config, dev),
        Command::Validate { config, dev } => validate(config, dev),
        Command::Vault {
            action,
            config,
            dev,
        } => vault(config, dev, action),
        Command::Token {
            sub,
            scopes,
            aud,
            config,
        } => token(config, &sub, scopes, aud),
    }
}

fn serve(path: Option<PathBuf>, dev: bool) -> ExitCode {
    let config = match Config::load(path.as_deref(), dev) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("portcullis: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _guard = portcullis::telemetry::init_logging(&config.telemetry);
    if dev {
        print_dev_banner(&config);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portcullis: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(portcullis::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portcullis: {error}");
            ExitCode::FAILURE
        }
    }
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

fn validate(path: Option<PathBuf>, dev: bool) -> ExitCode {
    let config = match Config::load(path.as_deref(), dev) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let (catalog, mut problems) = Catalog::load(&config.targets.dir, &Catalog::default());
    problems.extend(portcullis::identity::unknown_credential_references(
        &config, &catalog,
    ));
    if problems.is_empty() {
        println!(
            "ok: config valid; {} target(s), {} tool(s) in {}",
            catalog.target_count(),
            catalog.len(),
            config.targets.dir.display()
        );
        ExitCode::SUCCESS
    } else {
        for problem in &problems {
            eprintln!("{problem}");
        }
        eprintln!("{} problem(s) in target files", problems.len());
        ExitCode::FAILURE
    }
}

fn token(
    path: Option<PathBuf>,
    sub: &str,
    mut scopes: Vec<String>,
    aud: Option<String>,
) -> ExitCode {
    let config = match Config::load(path.as_deref(), true) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("portcullis: {error}");
            return ExitCode::FAILURE;
        }
    };
    if scopes.is_empty() {
        scopes.push(DEV_SCOPE.to_string());
    }
    let minted = DevIssuer::load_or_create(&config.server.data_dir, &config.server.public_url)
        .and_then(|issuer| issuer.mint(sub, &scopes, aud.as_deref().unwrap_or(DEV_AUDIENCE)));
    match minted {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("portcullis: {error}");
            ExitCode::FAILURE
        }
    }
}

fn vault(path: Option<PathBuf>, dev: bool, action: VaultAction) -> ExitCode {
    let config = match Config::load(path.as_deref(), dev) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("portcullis: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portcullis: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(portcullis::vault::admin::run(&config, action.into())) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("portcullis: {error}");
            ExitCode::FAILURE
        }
    }
}

impl From<VaultAction> for portcullis::vault::admin::Action {
    fn from(action: VaultAction) -> Self {
        use portcullis::vault::admin::Action;
        match action {
            VaultAction::List { user } => Action::List { user },
            VaultAction::Revoke { user, provider } => Action::Revoke { user, provider },
            VaultAction::RotateKey => Action::RotateKey,
        }
    }
}
