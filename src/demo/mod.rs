//! `apit-moodle-sync demo`: the whole product in one process, with no Moodle to set up.
//!
//! It starts the real service ([`app::run`], the same wiring `serve` uses) on a SQLite
//! store, the [Moodle simulator](crate::simulator) on loopback and a small write-back
//! receiver that prints what it gets; configures tenant `acme` against both with README's
//! throwaway secrets; then tells a short story over HTTP exactly as accessplanit would
//! (`story`) and prints, step by step, what each event did in Moodle and what was
//! written back, with the `curl` line that replays it. Then it keeps running for the
//! reader's own events until Ctrl-C (or stops at once with `--exit-after-story`).
//!
//! The module is compiled into the binary but nothing of it runs unless the `demo`
//! command is given: `serve` neither starts nor allocates any of it, so the service's
//! start-up and memory are what they were. Everything listens on loopback only, because
//! its tokens are printed and well known.

mod output;
mod receiver;
mod story;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::app;
use crate::config::Config;
use crate::simulator::{CATEGORY, MoodleSimulator, ROLE_STUDENT, SimulatorOptions};
use crate::store;
use output::Style;
use receiver::Receiver;

/// The demo tenant: README's, so its curl examples work unchanged.
pub const TENANT: &str = "acme";
/// README's webhook secret (`S=` in "Sending events").
pub const WEBHOOK_SECRET: &str = "change-me-webhook-secret";
/// README's admin token (`A=` in "Admin API").
pub const ADMIN_TOKEN: &str = "change-me-admin-token";
/// What the service sends the demo's write-back receiver.
pub const CALLBACK_TOKEN: &str = "demo-callback-token";

/// `apit-moodle-sync demo`'s flags.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The service's address; README's curl examples use the default (port 0: any free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The simulated Moodle's address (port 0: any free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub moodle_listen: SocketAddr,
    /// The write-back receiver's address (port 0: any free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub receiver_listen: SocketAddr,
    /// Keep the service's SQLite store in this new file (default: a temporary file,
    /// removed at exit). It must not exist: the simulated Moodle starts empty every run.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Stop once the story is told instead of running on (for tests and scripts).
    #[arg(long)]
    pub exit_after_story: bool,
    /// After the story, write the simulated Moodle's state (courses, users, enrolments,
    /// grades), the write-backs received and the story's jobs to PATH as JSON.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

/// Runs the demo until Ctrl-C or SIGTERM (or the end of the story with
/// `--exit-after-story`). An error says plainly what went wrong; the caller exits non-zero.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    init_logs();
    for (flag, addr) in [
        ("--listen", args.listen),
        ("--moodle-listen", args.moodle_listen),
        ("--receiver-listen", args.receiver_listen),
    ] {
        if !addr.ip().is_loopback() {
            bail!(
                "{flag} {addr}: the demo listens on loopback only (127.0.0.1 or [::1]), since \
                 its tokens are printed and well known"
            );
        }
    }
    let db = DemoDb::new(args.db.as_deref())?;
    let result = run_with(&args, &db, Style::detect()).await;
    db.remove();
    result
}

/// Logs go to stderr, at `warn` unless `RUST_LOG` says otherwise, so the story on stdout
/// reads clean. The configuration's warnings are left out: they are about the demo's own
/// loopback set-up (plain http to the simulator).
fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,apit_moodle_sync::app=error"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run_with(args: &DemoArgs, db: &DemoDb, style: Style) -> anyhow::Result<()> {
    let moodle = MoodleSimulator::start_on(
        args.moodle_listen,
        SimulatorOptions {
            // It may run for long: calls are not kept.
            record_calls: false,
            ..SimulatorOptions::default()
        },
    )
    .await
    .context("cannot start the simulated Moodle (--moodle-listen)")?;
    let receiver = Receiver::start(args.receiver_listen, CALLBACK_TOKEN, style).await?;
    let listener = TcpListener::bind(args.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (--listen): is the service or another demo running there? \
             Choose another address, e.g. --listen 127.0.0.1:0",
            args.listen
        )
    })?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let config = Config::from_toml(&config_toml(addr, db, &moodle, &receiver))
        .context("the demo's configuration is invalid")?;
    let store = store::connect(&config.database_url)
        .await
        .with_context(|| format!("cannot open the demo's store {}", db.path.display()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut service = tokio::spawn(app::run(config, store, listener, async move {
        let _ = stopped.await;
    }));
    let signal = app::shutdown_signal();
    tokio::pin!(signal);

    print_intro(style, &base, db, &moodle, &receiver);
    let stage = story::Stage {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            // Everything is on loopback: an HTTP_PROXY in the environment must not apply.
            .no_proxy()
            .build()
            .context("cannot build an HTTP client")?,
        base: base.clone(),
        moodle: &moodle,
        receiver: &receiver,
        style,
    };
    let told = tokio::select! {
        told = story::tell(&stage) => Some(told),
        _ = &mut signal => None,
        ended = &mut service => return Err(service_ended(ended)),
    };
    let result = match told {
        None => {
            println!("\ninterrupted: stopping");
            Ok(())
        }
        Some(Err(e)) => Err(e),
        Some(Ok(told)) => {
            finish_story(args, style, &stage, &told).await?;
            if args.exit_after_story {
                Ok(())
            } else {
                print_running(style, &stage).await;
                receiver.go_live();
                tokio::select! {
                    _ = &mut signal => {
                        println!("\nCtrl-C: stopping");
                        Ok(())
                    }
                    ended = &mut service => return Err(service_ended(ended)),
                }
            }
        }
    };
    let _ = stop.send(());
    let ended = service.await;
    println!("stopped: the service, the simulated Moodle and the write-back receiver");
    match ended {
        Ok(Ok(())) => result,
        Ok(Err(e)) => result.and(Err(e.context("the service stopped with an error"))),
        Err(e) => result.and(Err(anyhow::anyhow!("the service task failed: {e}"))),
    }
}

/// The service stopped before it was asked to.
fn service_ended(ended: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Error {
    match ended {
        Ok(Err(e)) => e.context("the service stopped"),
        Ok(Ok(())) => anyhow::anyhow!("the service stopped by itself"),
        Err(e) => anyhow::anyhow!("the service task failed: {e}"),
    }
}

/// The demo's configuration: tenant `acme` against the simulator and the receiver.
fn config_toml(
    listen: SocketAddr,
    db: &DemoDb,
    moodle: &MoodleSimulator,
    receiver: &Receiver,
) -> String {
    let database_url = format!("sqlite://{}", db.path.display());
    format!(
        r#"listen = "{listen}"
database_url = {database_url}
admin_token = "{ADMIN_TOKEN}"

[worker]
poll_interval = "100ms"

[retry]
initial_backoff = "1s"
max_backoff = "30s"

[tenants.{TENANT}]
webhook_secret = "{WEBHOOK_SECRET}"
moodle_url = "{moodle_url}"
moodle_token = "{token}"
category_id = {CATEGORY}
role_id = {ROLE_STUDENT}
moodle_timeout = "10s"

[tenants.{TENANT}.callback]
kind = "webhook"
url = "{callback}"
bearer_token = "{CALLBACK_TOKEN}"

[tenants.{TENANT}.grades]
poll_interval = "0s"
"#,
        database_url = toml_string(&database_url),
        moodle_url = moodle.url(),
        token = moodle.token(),
        callback = receiver.url(),
    )
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn print_intro(
    style: Style,
    base: &str,
    db: &DemoDb,
    moodle: &MoodleSimulator,
    receiver: &Receiver,
) {
    let s = style;
    println!(
        "{}",
        s.bold(
            "apit-moodle-sync demo: the service, a simulated Moodle 4.5 site and a write-back \
             receiver, in this one process"
        )
    );
    println!();
    let kept = if db.temporary.is_some() {
        "a temporary file, removed at exit; --db PATH keeps one"
    } else {
        "kept after exit"
    };
    let rows = [
        (
            "service",
            format!(
                "{base}  tenant {TENANT} · webhook secret {WEBHOOK_SECRET} · admin token {ADMIN_TOKEN}"
            ),
        ),
        ("store", format!("SQLite {} ({kept})", db.path.display())),
        (
            "simulated Moodle",
            format!(
                "{}  token {} · category {CATEGORY} · student role {ROLE_STUDENT}",
                moodle.url(),
                moodle.token()
            ),
        ),
        (
            "write-back receiver",
            format!(
                "{}  callback.kind = \"webhook\" · bearer {CALLBACK_TOKEN}",
                receiver.url()
            ),
        ),
    ];
    for (name, value) in rows {
        println!("  {} {value}", s.dim(&format!("{name:<20}")));
    }
    println!();
}

/// After the story: one line of what it made, and the summary file if asked for.
async fn finish_story(
    args: &DemoArgs,
    style: Style,
    stage: &story::Stage<'_>,
    told: &[story::Told],
) -> anyhow::Result<()> {
    let summary = summary(stage, told);
    let count = |key: &str| summary[key].as_array().map_or(0, Vec::len);
    let suspended = summary["enrolments"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["suspended"] == true).count());
    println!(
        "{} In Moodle: {} course, {} users, {} enrolments ({suspended} suspended), {} scores; \
         {} write-backs received.",
        style.bold("The story is told."),
        count("courses"),
        count("users"),
        count("enrolments"),
        count("grades"),
        count("writebacks"),
    );
    if let Some(path) = &args.summary_json {
        let text = serde_json::to_string_pretty(&summary)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write --summary-json {}", path.display()))?;
    }
    Ok(())
}

/// The simulated Moodle's state, the write-backs received and the story's jobs.
fn summary(stage: &story::Stage<'_>, told: &[story::Told]) -> Value {
    let moodle = stage.moodle;
    let courses: Vec<Value> = moodle
        .courses()
        .iter()
        .map(|c| {
            json!({"id": c.id, "idnumber": c.idnumber, "shortname": c.shortname,
                   "fullname": c.fullname, "category": c.category,
                   "startdate": c.startdate, "enddate": c.enddate, "visible": c.visible})
        })
        .collect();
    let users: Vec<Value> = moodle
        .users()
        .iter()
        .map(|u| {
            json!({"id": u.id, "idnumber": u.idnumber, "username": u.username, "email": u.email,
                   "firstname": u.firstname, "lastname": u.lastname})
        })
        .collect();
    let enrolments: Vec<Value> = moodle
        .enrolments()
        .iter()
        .map(|e| {
            json!({"courseid": e.courseid, "userid": e.userid, "roleids": e.roleids,
                   "suspended": e.suspended})
        })
        .collect();
    let grades: Vec<Value> = moodle
        .enrolments()
        .iter()
        .filter_map(|e| {
            let grade = moodle.grade(e.courseid, e.userid)?;
            Some(json!({"courseid": e.courseid, "userid": e.userid, "grade": grade}))
        })
        .collect();
    json!({
        "service": stage.base,
        "moodle": moodle.url(),
        "courses": courses,
        "users": users,
        "enrolments": enrolments,
        "grades": grades,
        "writebacks": stage.receiver.received(),
        "jobs": told,
    })
}

/// What to do next, with the URLs; the console's only if it answers.
async fn print_running(style: Style, stage: &story::Stage<'_>) {
    let s = style;
    let base = &stage.base;
    println!();
    println!(
        "{}",
        s.bold("Still running: send your own events (README \"Sending events\").")
    );
    let moodle_url = stage.moodle.url();
    let token = stage.moodle.token();
    let mut rows = vec![
        (
            "events",
            format!(
                "S={WEBHOOK_SECRET}; U={base}/v1/tenants/{TENANT}/events   (then README's curl lines)"
            ),
        ),
        (
            "admin",
            format!("A={ADMIN_TOKEN}; H={base}   (README \"Admin API\")"),
        ),
        (
            "jobs",
            output::curl_get(&format!("{base}/v1/jobs"), ADMIN_TOKEN),
        ),
        ("metrics", format!("{base}/metrics")),
        (
            "simulated Moodle",
            format!(
                "curl -sS {moodle_url}/webservice/rest/server.php -d wstoken={token} \
                 -d moodlewsrestformat=json -d wsfunction=core_course_get_courses_by_field"
            ),
        ),
    ];
    if console_answers(stage).await {
        rows.push(("console", format!("{base}/console/")));
    }
    for (name, value) in rows {
        println!("  {} {value}", s.dim(&format!("{name:<17}")));
    }
    println!("  Write-backs are printed here as they arrive. Ctrl-C stops everything.");
}

/// True when this build serves the operator console.
async fn console_answers(stage: &story::Stage<'_>) -> bool {
    let url = format!("{}/console/", stage.base);
    match stage.http.get(url).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// The demo's SQLite file: a new named one, or one in a temporary directory.
struct DemoDb {
    path: PathBuf,
    /// The temporary directory to remove at exit.
    temporary: Option<PathBuf>,
}

impl DemoDb {
    fn new(named: Option<&Path>) -> anyhow::Result<DemoDb> {
        if let Some(path) = named {
            if path.exists() {
                bail!(
                    "--db {}: the file exists. The simulated Moodle starts empty on every run, \
                     so a store kept from an earlier run would point at courses and users that \
                     are gone: remove it or name a new file",
                    path.display()
                );
            }
            let text = path.to_string_lossy();
            if text.contains(['?', '#']) {
                bail!("--db {text}: the path may not contain '?' or '#'");
            }
            return Ok(DemoDb {
                path: path.to_path_buf(),
                temporary: None,
            });
        }
        let dir = std::env::temp_dir().join(format!(
            "apit-moodle-sync-demo-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot create a temporary directory {}", dir.display()))?;
        Ok(DemoDb {
            path: dir.join("demo.db"),
            temporary: Some(dir),
        })
    }

    /// Removes the temporary store (a named one is kept).
    fn remove(&self) {
        if let Some(dir) = &self.temporary {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::toml_string;

    #[test]
    fn a_path_is_a_toml_string() {
        assert_eq!(
            toml_string(r#"sqlite://C:\a "b""#),
            r#""sqlite://C:\\a \"b\"""#
        );
    }
}
