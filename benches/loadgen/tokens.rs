//! The bearer tokens the load clients send: one token repeated (the common case, and what a
//! gateway's token cache sees), or a pool of distinct tokens minted up front with the gateway's
//! dev issuer key (scenario 4: the cost of validating a token the gateway has never seen).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use clap::Args;
use http::HeaderValue;

use crate::BoxError;

#[derive(Args, Clone)]
pub struct TokenArgs {
    /// Bearer token sent with every request.
    #[arg(long)]
    token: Option<String>,
    /// File holding the bearer token (whitespace trimmed).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Mint this many distinct tokens up front with the gateway's dev issuer key and use a new
    /// one for each request (wrapping around, counted as `token_reuses`, if they run out).
    #[arg(long)]
    fresh_tokens: Option<usize>,
    /// The gateway's data_dir (where the dev issuer key lives), for --fresh-tokens.
    #[arg(long)]
    dev_data_dir: Option<PathBuf>,
    /// The gateway's public_url, for --fresh-tokens (the issuer is <public_url>/dev).
    #[arg(long)]
    public_url: Option<String>,
}

/// The bearer tokens: one repeated, or a pool of distinct ones used round-robin.
pub struct Tokens {
    values: Vec<HeaderValue>,
    next: AtomicUsize,
}

impl Tokens {
    /// The `Authorization` value for the next request (None: send none).
    pub fn get(&self) -> Option<HeaderValue> {
        match self.values.len() {
            0 => None,
            1 => Some(self.values[0].clone()),
            n => Some(self.values[self.next.fetch_add(1, Ordering::Relaxed) % n].clone()),
        }
    }

    /// How many distinct tokens there are (0: no --token, --token-file or --fresh-tokens).
    pub fn distinct(&self) -> usize {
        self.values.len()
    }

    /// How many times a token was handed out again after the pool ran out.
    pub fn reuses(&self) -> u64 {
        let used = self.next.load(Ordering::Relaxed);
        let n = self.values.len();
        if n > 1 {
            used.saturating_sub(n) as u64
        } else {
            0
        }
    }
}

/// `Bearer <token>` as a header value (the token trimmed, as read from a file).
pub fn bearer(token: &str) -> Result<HeaderValue, BoxError> {
    Ok(HeaderValue::from_maybe_shared(Bytes::from(format!(
        "Bearer {}",
        token.trim()
    )))?)
}

pub fn load_tokens(args: &TokenArgs) -> Result<Tokens, BoxError> {
    let mut values = Vec::new();
    if let Some(n) = args.fresh_tokens {
        values = mint(args, n)?;
    } else if let Some(token) = &args.token {
        values.push(bearer(token)?);
    } else if let Some(path) = &args.token_file {
        values.push(bearer(&std::fs::read_to_string(path)?)?);
    }
    Ok(Tokens {
        values,
        next: AtomicUsize::new(0),
    })
}

/// `n` distinct dev tokens (subjects `bench-user-<i>`), minted on all cores: signing 100k
/// tokens one by one would take longer than the measurement.
fn mint(args: &TokenArgs, n: usize) -> Result<Vec<HeaderValue>, BoxError> {
    let data_dir = args
        .dev_data_dir
        .as_ref()
        .ok_or("--fresh-tokens needs --dev-data-dir")?;
    let public_url = args
        .public_url
        .as_ref()
        .ok_or("--fresh-tokens needs --public-url")?;
    let issuer = portcullis::inbound::DevIssuer::load_or_create(data_dir, public_url)?;
    let scopes = vec![portcullis::inbound::DEV_SCOPE.to_string()];
    let started = Instant::now();
    let workers = std::thread::available_parallelism().map_or(1, |p| p.get());
    let chunk = n.div_ceil(workers.max(1)).max(1);
    let minted: Result<Vec<Vec<HeaderValue>>, BoxError> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                let issuer = &issuer;
                let scopes = &scopes;
                scope.spawn(move || -> Result<Vec<HeaderValue>, BoxError> {
                    (start..(start + chunk).min(n))
                        .map(|i| {
                            let token = issuer.mint(
                                &format!("bench-user-{i}"),
                                scopes,
                                portcullis::inbound::DEV_AUDIENCE,
                            )?;
                            bearer(&token)
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| BoxError::from("minting thread panicked"))?
            })
            .collect()
    });
    let values: Vec<HeaderValue> = minted?.into_iter().flatten().collect();
    eprintln!(
        "minted {} distinct tokens in {:.2} s",
        values.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(values)
}
