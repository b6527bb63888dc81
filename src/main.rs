//! CLI entry: `serve` (default) and `check`; more commands arrive with their issues.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use apit_moodle_sync::{app, check, config::Config};

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
    /// Preflight each tenant's Moodle and write-back target, changing nothing.
    ///
    /// Prints one row per check (✓ passed, ✗ failed with its fix, - not run, i info).
    /// Exit status: 0 when every check passes, 1 when one fails, 2 when the
    /// configuration cannot be used.
    Check {
        /// Only this tenant (its name in [tenants.<name>]).
        #[arg(long, value_name = "T")]
        tenant: Option<String>,
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// The configuration is unusable (also clap's own status for bad arguments).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("apit-moodle-sync: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("apit-moodle-sync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            app::init_tracing(config.log_format);
            match runtime.block_on(app::serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("apit-moodle-sync: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        // No tracing subscriber: the report is the whole output.
        Command::Check { tenant, json } => {
            match runtime.block_on(check::check_config(&config, tenant.as_deref())) {
                Ok(summary) => {
                    if json {
                        match serde_json::to_string_pretty(&summary) {
                            Ok(text) => println!("{text}"),
                            Err(e) => {
                                eprintln!("apit-moodle-sync: cannot encode the report: {e}");
                                return ExitCode::FAILURE;
                            }
                        }
                    } else {
                        print!("{summary}");
                    }
                    if summary.ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("apit-moodle-sync: {e}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
    }
}
