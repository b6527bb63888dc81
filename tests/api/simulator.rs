//! `apit-moodle-sync simulate-moodle` as a process: the tenant it prints passes `check`,
//! and what it is told to lack shows as `check`'s documented ✗ rows.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_apit-moodle-sync");

/// The simulator process and what it printed.
struct Simulator {
    child: Child,
    lines: Receiver<String>,
    /// The `[tenants.demo]` section it printed, as printed.
    tenant: String,
}

impl Simulator {
    /// Starts `simulate-moodle` on a free loopback port with `args` and reads its banner.
    fn start(args: &[&str]) -> Simulator {
        let mut child = Command::new(BIN)
            .args(["simulate-moodle", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the binary runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut simulator = Simulator {
            child,
            lines,
            tenant: String::new(),
        };
        let mut printed = Vec::new();
        loop {
            let line = simulator.next_line(&printed);
            if line == "[tenants.demo]" || !simulator.tenant.is_empty() {
                simulator.tenant.push_str(&line);
                simulator.tenant.push('\n');
            }
            let done = line.starts_with("role_id = ");
            printed.push(line);
            if done {
                return simulator;
            }
        }
    }

    fn next_line(&self, so_far: &[String]) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("simulate-moodle printed no more ({e}):\n{so_far:?}"))
    }

    /// `check` run on a configuration made of the printed tenant and nothing else but a
    /// database URL: its exit code and table.
    fn check(&self, dir: &Path) -> (i32, String) {
        let config = dir.join("config.toml");
        let db = format!("sqlite://{}", dir.join("unused.db").display());
        std::fs::write(
            &config,
            format!("database_url = \"{db}\"\n\n{}", self.tenant),
        )
        .unwrap();
        let output = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("check")
            .env_remove("APIT_CONFIG")
            .output()
            .expect("the binary runs");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!stdout.contains("panicked") && !stderr.contains("panicked"));
        (output.status.code().expect("exited"), stdout)
    }

    /// Stops it with SIGTERM, as a service manager would; how it exited and its last words.
    fn stop(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "SIGTERM did not stop it");
            std::thread::sleep(Duration::from_millis(20));
        };
        let rest: Vec<String> = self.lines.try_iter().collect();
        (status, rest.join("\n"))
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The table row of `name` (mark, name, detail), e.g. `"✗ web-service functions  …"`.
fn row<'a>(table: &'a str, name: &str) -> &'a str {
    table
        .lines()
        .map(str::trim_start)
        .find(|l| {
            let mut chars = l.chars();
            chars.next();
            chars
                .as_str()
                .strip_prefix(' ')
                .and_then(|rest| rest.strip_prefix(name))
                .is_some_and(|rest| rest.starts_with("  "))
        })
        .unwrap_or_else(|| panic!("no row {name} in:\n{table}"))
}

/// The fix printed under the row of `name`.
fn fix<'a>(table: &'a str, name: &str) -> &'a str {
    let found = row(table, name);
    let mut lines = table.lines().map(str::trim_start);
    lines.find(|l| *l == found);
    lines
        .next()
        .and_then(|l| l.strip_prefix("fix: "))
        .unwrap_or_else(|| panic!("no fix under {name} in:\n{table}"))
}

#[test]
fn the_printed_tenant_passes_check_against_the_plain_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let simulator = Simulator::start(&["--latency", "5ms"]);
    assert!(
        simulator
            .tenant
            .contains("moodle_url = \"http://127.0.0.1:"),
        "{}",
        simulator.tenant
    );
    let (code, table) = simulator.check(dir.path());
    assert_eq!(code, 0, "{table}");
    assert!(!table.contains('✗'), "{table}");
    assert!(table.contains("all checks passed"), "{table}");
    for name in [
        "Moodle site",
        "token",
        "site address",
        "web-service functions",
        "course category 5",
        "enrolment role 5",
        "users by idnumber",
        "users by email",
    ] {
        assert!(row(&table, name).starts_with('✓'), "{name}: {table}");
    }

    let (status, last) = simulator.stop();
    assert!(status.success(), "{status:?}");
    assert!(last.contains("stopped"), "{last}");
}

#[test]
fn a_function_dropped_from_the_service_fails_check_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let simulator = Simulator::start(&["--drop-function", "enrol_manual_enrol_users"]);
    let (code, table) = simulator.check(dir.path());
    assert_eq!(code, 1, "{table}");
    let functions = row(&table, "web-service functions");
    assert!(functions.starts_with('✗'), "{table}");
    assert!(
        functions.ends_with("missing from the token's service: enrol_manual_enrol_users"),
        "{table}"
    );
    assert_eq!(
        fix(&table, "web-service functions"),
        "add the function enrol_manual_enrol_users to the External Service used by this token \
         (Site administration › Server › Web services › External services › Functions)"
    );
    assert!(
        row(&table, "enrolment role 5").starts_with("- "),
        "checked with that function, so not run: {table}"
    );
    assert_eq!(table.matches('✗').count(), 1, "{table}");
}

#[test]
fn a_capability_the_role_lacks_fails_check_with_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let simulator = Simulator::start(&["--lack-capability", "moodle/user:viewalldetails"]);
    let (code, table) = simulator.check(dir.path());
    assert_eq!(code, 1, "{table}");
    let idnumber = row(&table, "users by idnumber");
    assert!(idnumber.starts_with('✗'), "{table}");
    assert!(idnumber.contains("without its username"), "{table}");
    assert_eq!(
        fix(&table, "users by idnumber"),
        "give the integration user's role moodle/user:viewalldetails at system level (Site \
         administration › Users › Permissions › Define roles)"
    );
    assert!(row(&table, "users by email").starts_with('✓'), "{table}");
    assert_eq!(table.matches('✗').count(), 1, "{table}");
}
