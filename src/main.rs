//! CLI entry: `serve` (default); more commands arrive with their issues.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use apit_moodle_sync::{app, config::Config};

/// Keeps Moodle in step with accessplanit.
#[derive(Parser)]
#[command(name = "apit-moodle-sync", version, about)]
struct Cli {
    /// Configuration file (else APIT_CONFIG, else ./apit-moodle-sync.toml).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: HTTP API, worker and write-backs (the default).
    Serve,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("apit-moodle-sync: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("apit-moodle-sync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            app::init_tracing(config.log_format);
            runtime.block_on(app::serve(config))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("apit-moodle-sync: {e:#}");
            ExitCode::FAILURE
        }
    }
}
