//! The `upspool` binary: command-line dispatch and exit codes (0 ok, 1 runtime failure,
//! 2 usage or configuration error; the client commands add 3, see `client`). Everything else
//! lives in the modules.

mod admin;
mod cli;
mod client;
mod config;
mod identity;
mod logging;
mod malloc_tuning;
mod serve;
mod tls;

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::cli::{Cli, Command};

const RUNTIME_FAILURE: u8 = 1;
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = match config::load(&args, &config::process_env) {
                Ok(c) => c,
                Err(e) => return fail(USAGE_ERROR, &e),
            };
            let tuned = malloc_tuning::apply();
            logging::init(config.log_format, "info");
            tracing::debug!(tuned, "malloc thresholds for buffer reuse");
            match block_on(serve::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(RUNTIME_FAILURE, &format!("{e:#}")),
            }
        }
        Command::Admin(command) => {
            let config = match admin::load_config(&command) {
                Ok(c) => c,
                Err(e) => return fail(USAGE_ERROR, &e),
            };
            logging::init(config.log_format, "warn");
            match block_on(admin::run(command, config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(RUNTIME_FAILURE, &format!("{e:#}")),
            }
        }
        Command::Token(args) => {
            let config = match config::load_admin(&args.common, &config::process_env) {
                Ok(c) => c,
                Err(e) => return fail(USAGE_ERROR, &e),
            };
            let ttl = match config::parse_duration(&args.ttl) {
                Ok(t) => t,
                Err(e) => {
                    return fail(
                        USAGE_ERROR,
                        &format!("invalid value {:?} for --ttl: {e}", args.ttl),
                    )
                }
            };
            logging::init(config.log_format, "warn");
            match token(&args, &config, ttl) {
                Ok(t) => {
                    println!("{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(RUNTIME_FAILURE, &format!("{e:#}")),
            }
        }
        command => client::run(command),
    }
}

/// Mints a token with the data directory's signing key (created if absent).
fn token(args: &cli::TokenArgs, config: &config::Config, ttl: Duration) -> anyhow::Result<String> {
    let list = |s: &Option<String>| -> Vec<String> {
        s.as_deref()
            .unwrap_or("")
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let subject = match (&args.user, &args.app) {
        (Some(upn), _) => identity::Subject::User {
            upn: upn.clone(),
            scopes: list(&args.scopes),
            groups: list(&args.groups),
        },
        (None, Some(name)) => identity::Subject::App {
            name: name.clone(),
            roles: list(&args.roles),
        },
        (None, None) => anyhow::bail!("give --user or --app"),
    };
    let data_dir = std::path::absolute(&config.data_dir)?;
    serve::create_private_dir(&data_dir)?;
    identity::load_or_create(&data_dir)?.mint(&subject, ttl)
}

fn fail(code: u8, message: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("upspool: error: {message}");
    ExitCode::from(code)
}

/// Runs `future` on a multi-threaded runtime. Blocking work still running afterwards (an
/// abandoned file write) gets a few seconds, so that exit is never held up indefinitely.
fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(future);
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}
