//! The simulator on its own, as `apit-moodle-sync simulate-moodle` runs it: started, its
//! address and token printed as a tenant to paste, then kept running until told to stop.

use std::future::Future;
use std::net::SocketAddr;

use super::{CATEGORY, MoodleSimulator, ROLE_STUDENT, SimulatorError, SimulatorOptions};

/// Runs a simulator on `addr` until `shutdown` resolves, after printing on stdout what a
/// tenant needs to use it (a ready-to-paste `[tenants.demo]` section).
pub async fn run_standalone(
    addr: SocketAddr,
    options: SimulatorOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimulatorError> {
    let setup = describe(&options);
    let moodle = MoodleSimulator::start_on(addr, options).await?;
    print!("{}", banner(&moodle.url(), &moodle.token(), &setup));
    shutdown.await;
    println!("simulated Moodle at {} stopped", moodle.url());
    Ok(())
}

/// One line per option that differs from a plain site.
fn describe(options: &SimulatorOptions) -> Vec<String> {
    let mut lines = Vec::new();
    if !options.latency.is_zero() {
        let latency = humantime::format_duration(options.latency);
        lines.push(format!("every call waits {latency}"));
    }
    if !options.faults.is_empty() {
        let faults: Vec<String> = options.faults.iter().map(ToString::to_string).collect();
        lines.push(format!("faults: {}", faults.join(", ")));
    }
    if !options.drop_functions.is_empty() {
        let names = options.drop_functions.join(", ");
        lines.push(format!("not in the token's service: {names}"));
    }
    if !options.lack_capabilities.is_empty() {
        let names = options.lack_capabilities.join(", ");
        lines.push(format!("the token user's role lacks: {names}"));
    }
    lines.push(format!("PHP max_input_vars = {}", options.max_input_vars));
    lines
}

fn banner(url: &str, token: &str, setup: &[String]) -> String {
    let mut text = format!("Simulated Moodle 4.5 site at {url} (Ctrl-C stops it)\n");
    for line in setup {
        text.push_str(&format!("  {line}\n"));
    }
    text.push_str(&format!(
        "\nPoint a tenant at it: paste this into the service's configuration (the webhook \
         secret is yours to choose).\n\n\
         [tenants.demo]\n\
         webhook_secret = \"change-me-webhook-secret\"\n\
         moodle_url = \"{url}\"\n\
         moodle_token = \"{token}\"\n\
         category_id = {CATEGORY}\n\
         role_id = {ROLE_STUDENT}\n\n\
         The site starts with categories 1 and {CATEGORY}, the admin (user 2) and the token's \
         user (3), and keeps everything in memory until it stops.\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{banner, describe};
    use crate::simulator::SimulatorOptions;

    #[test]
    fn the_banner_is_a_tenant_ready_to_paste() {
        let options = SimulatorOptions {
            latency: Duration::from_millis(50),
            faults: vec!["core_user_create_users=503x2".parse().unwrap()],
            drop_functions: vec!["enrol_manual_enrol_users".into()],
            ..SimulatorOptions::default()
        };
        let text = banner(
            "http://127.0.0.1:8090",
            "0123456789abcdef0123456789abcdef",
            &describe(&options),
        );
        assert!(text.contains("  every call waits 50ms\n"), "{text}");
        assert!(
            text.contains("  faults: core_user_create_users=503x2\n"),
            "{text}"
        );
        assert!(text.contains("  not in the token's service: enrol_manual_enrol_users\n"));
        let section = text
            .split("\n\n")
            .find(|p| p.starts_with("[tenants.demo]"))
            .unwrap();
        assert_eq!(
            section,
            "[tenants.demo]\nwebhook_secret = \"change-me-webhook-secret\"\nmoodle_url = \
             \"http://127.0.0.1:8090\"\nmoodle_token = \"0123456789abcdef0123456789abcdef\"\n\
             category_id = 5\nrole_id = 5"
        );
    }
}
