//! CLI entry: `serve` (the default), `check`, `jobs`, `simulate-moodle` and `demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use apit_moodle_sync::config::Config;
use apit_moodle_sync::jobs_cli::{self, AdminClient, ListFilter};
use apit_moodle_sync::secret::Secret;
use apit_moodle_sync::{app, check, demo, simulator};

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
    /// Inspect and retry jobs of a running service through its admin API.
    Jobs(JobsArgs),
    /// Run a simulated Moodle 4.5 site alone (for trying configurations, `check`, load tests).
    ///
    /// It answers like the real Moodle the tests were recorded from, keeps its state in
    /// memory, and prints at start a [tenants.demo] section to paste into a configuration.
    /// Runs until Ctrl-C or SIGTERM.
    SimulateMoodle(SimulateArgs),
    /// See it work with no Moodle: the service, a simulated Moodle and a write-back receiver
    /// in one process, a scripted story told over HTTP step by step, then left running for
    /// your own events (README's curl examples) until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Exit 0 when the service answers 200 at URL (container health checks; the image has no curl).
    Healthcheck {
        #[arg(
            long,
            env = "APIT_HEALTHCHECK_URL",
            default_value = "http://127.0.0.1:8080/healthz"
        )]
        url: String,
    },
}

#[derive(Args)]
struct SimulateArgs {
    /// The address to listen on (port 0: any free port; the URL printed says which).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8090")]
    listen: std::net::SocketAddr,
    /// The token the site accepts (32 lowercase hex characters); default: a random one.
    #[arg(long, value_name = "HEX", value_parser = simulator::token_value)]
    token: Option<String>,
    /// How long every web-service call waits before it is answered, e.g. 50ms.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    latency: std::time::Duration,
    /// Make calls fail: [FUNCTION=]KIND[xN]. KIND: 503 (a proxy's 503, nothing done), hang
    /// (never answered), reset (connection reset), dmlwrite (Moodle's dmlwriteexception,
    /// nothing written), 503-after-commit (done, then the answer is lost). Without FUNCTION
    /// any call; xN: the next N matching calls, else all. Repeatable; the first rule that
    /// matches a call applies. E.g. --fault core_user_create_users=503x2
    #[arg(long, value_name = "SPEC")]
    fault: Vec<simulator::FaultSpec>,
    /// Leave a function out of the token's service (its calls get accessexception). Repeatable.
    #[arg(long, value_name = "NAME", value_parser = simulator::function_value)]
    drop_function: Vec<String>,
    /// Take a capability from the token user's role, e.g. moodle/user:viewalldetails. Repeatable.
    #[arg(long, value_name = "CAP", value_parser = simulator::capability_value)]
    lack_capability: Vec<String>,
    /// PHP's max_input_vars: request variables past it are dropped.
    #[arg(long, value_name = "N", default_value_t = simulator::DEFAULT_MAX_INPUT_VARS)]
    max_input_vars: usize,
}

impl From<SimulateArgs> for simulator::SimulatorOptions {
    fn from(a: SimulateArgs) -> Self {
        simulator::SimulatorOptions {
            token: a.token,
            latency: a.latency,
            faults: a.fault,
            drop_functions: a.drop_function,
            lack_capabilities: a.lack_capability,
            max_input_vars: a.max_input_vars,
            // It may run for long: calls are not kept.
            record_calls: false,
        }
    }
}

/// The configuration is unusable (also clap's own status for bad arguments).
const EXIT_USAGE: u8 = 2;

#[derive(Args)]
struct JobsArgs {
    /// The service's address.
    #[arg(long, env = "APIT_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A file holding the admin token (else APIT_ADMIN_TOKEN).
    #[arg(long, value_name = "PATH")]
    admin_token_file: Option<PathBuf>,
    #[command(subcommand)]
    command: JobsCommand,
}

#[derive(Args)]
struct Filter {
    #[arg(long)]
    tenant: Option<String>,
    /// queued, running, succeeded, skipped, failed or dead.
    #[arg(long)]
    status: Option<String>,
    /// course-saved, course-date-changed, booking-created, booking-cancelled.
    #[arg(long)]
    kind: Option<String>,
    /// An accessplanit booking, user or course ID the job mentions.
    #[arg(long = "ref", value_name = "ID")]
    reference: Option<String>,
}

impl From<Filter> for ListFilter {
    fn from(f: Filter) -> Self {
        ListFilter {
            tenant: f.tenant,
            status: f.status,
            kind: f.kind,
            reference: f.reference,
            limit: None,
        }
    }
}

#[derive(Subcommand)]
enum JobsCommand {
    /// List jobs, newest first.
    List {
        #[command(flatten)]
        filter: Filter,
        /// At most this many (0 = all).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show a job: its event, every attempt with its Moodle calls, the error and fix.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Re-queue a failed or dead job, or every job matching --status (and filters).
    Retry {
        /// The job to retry (or use --status for a bulk retry).
        id: Option<String>,
        #[command(flatten)]
        filter: Filter,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("apit-moodle-sync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let load = |path: Option<&std::path::Path>| {
        Config::load(path).map_err(|e| {
            eprintln!("apit-moodle-sync: {e}");
            ExitCode::from(EXIT_USAGE)
        })
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let config = match load(cli.config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            app::init_tracing(config.log_format);
            runtime.block_on(app::serve(config))
        }
        // No tracing subscriber: the report is the whole output.
        Command::Check { tenant, json } => {
            let config = match load(cli.config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            return match runtime.block_on(check::check_config(&config, tenant.as_deref())) {
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
            };
        }
        Command::Healthcheck { url } => {
            return match runtime.block_on(apit_moodle_sync::healthcheck::probe(&url)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("apit-moodle-sync: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Jobs(args) => runtime.block_on(jobs(args)),
        Command::SimulateMoodle(args) => runtime
            .block_on(simulator::run_standalone(
                args.listen,
                args.into(),
                app::shutdown_signal(),
            ))
            .map_err(Into::into),
        Command::Demo(args) => runtime.block_on(demo::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apit-moodle-sync: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The admin token: `--admin-token-file`, else `APIT_ADMIN_TOKEN`.
fn admin_token(file: Option<&PathBuf>) -> anyhow::Result<Secret> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        return Ok(Secret::new(text.trim()));
    }
    std::env::var("APIT_ADMIN_TOKEN")
        .map(Secret::new)
        .map_err(|_| {
            anyhow::anyhow!("give the admin token with --admin-token-file or APIT_ADMIN_TOKEN")
        })
}

async fn jobs(args: JobsArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.url, admin_token(args.admin_token_file.as_ref())?);
    match args.command {
        JobsCommand::List {
            filter,
            limit,
            json,
        } => {
            let filter = ListFilter {
                limit: (limit > 0).then_some(limit),
                ..filter.into()
            };
            let jobs = client.list(&filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else {
                print!("{}", jobs_cli::render_list(&jobs));
            }
        }
        JobsCommand::Show { id, json } => {
            let job = client.show(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print!("{}", jobs_cli::render_show(&job));
            }
        }
        JobsCommand::Retry { id: Some(id), .. } => {
            let job = client.retry(&id).await?;
            println!("job {id} is {}", job["status"].as_str().unwrap_or("queued"));
        }
        JobsCommand::Retry { id: None, filter } => {
            let filter: ListFilter = filter.into();
            if !matches!(filter.status.as_deref(), Some("failed" | "dead")) {
                anyhow::bail!("give a job id, or --status failed|dead for a bulk retry");
            }
            let jobs = client.list(&filter).await?;
            let mut requeued = 0;
            for job in &jobs {
                let id = job["job_id"].as_str().unwrap_or_default();
                match client.retry(id).await {
                    Ok(_) => requeued += 1,
                    Err(e) => eprintln!("job {id}: {e}"),
                }
            }
            println!("re-queued {requeued} of {} job(s)", jobs.len());
        }
    }
    Ok(())
}
