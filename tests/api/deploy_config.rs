//! The configurations shipped in deploy/ (Compose's TOML and the Kubernetes
//! ConfigMap) load as the service would load them, with their secrets read
//! from files, and say what the manifests around them expect.

use std::path::Path;

use apit_moodle_sync::config::Config;

/// `toml` with every secret path under `mount` pointed at a file in a temporary
/// directory holding a plausible value; then loaded and validated.
fn load_with_secrets(toml: &str, mount: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let mut text = toml.to_owned();
    for line in toml.lines().filter(|l| l.contains("_file = ")) {
        let Some((_, rest)) = line.split_once(mount) else {
            continue;
        };
        let name = rest.trim_start_matches('/').split('"').next().unwrap();
        let value = if name == "database_url" {
            "postgres://apit:pw@db:5432/apit"
        } else {
            "0123456789abcdef0123456789abcdef"
        };
        std::fs::write(dir.path().join(name), format!("{value}\n")).unwrap();
    }
    text = text.replace(mount, &dir.path().display().to_string());
    Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"))
}

fn deploy(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(path),
    )
    .unwrap()
}

#[test]
fn the_compose_configuration_loads_with_its_secret_files() {
    let c = load_with_secrets(&deploy("compose/apit-moodle-sync.toml"), "/run/secrets");
    assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
    assert!(
        c.database_url.starts_with("postgres://"),
        "two replicas share PostgreSQL"
    );
    assert!(c.admin_token.is_some());
    // Docker waits stop_grace_period (45s) before SIGKILL.
    assert!(c.worker.shutdown_timeout.as_secs() < 45);
    let compose = deploy("docker-compose.yml");
    assert!(compose.contains("stop_grace_period: 45s"), "{compose}");
}

#[test]
fn the_kubernetes_configmap_loads_and_the_grace_period_outlasts_the_drain() {
    let configmap: serde_yaml::Value =
        serde_yaml::from_str(&deploy("kubernetes/configmap.yaml")).unwrap();
    let toml = configmap["data"]["apit-moodle-sync.toml"].as_str().unwrap();
    let c = load_with_secrets(toml, "/var/run/secrets/apit-moodle-sync");
    assert!(c.database_url.starts_with("postgres://"));
    assert_eq!(c.tenants.len(), 1);

    let deployment: serde_yaml::Value =
        serde_yaml::from_str(&deploy("kubernetes/deployment.yaml")).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > c.worker.shutdown_timeout.as_secs(), "{grace}s");
    // The secrets the TOML reads are the keys of the Secret, mounted where it reads them.
    let secret: serde_yaml::Value =
        serde_yaml::from_str(&deploy("kubernetes/secret.yaml")).unwrap();
    for line in toml.lines().filter(|l| l.contains("_file")) {
        let name = line.rsplit('/').next().unwrap().trim_end_matches('"');
        assert!(
            secret["stringData"][name].is_string(),
            "{name} is not in secret.yaml"
        );
    }
    let mounts = pod["containers"][0]["volumeMounts"].as_sequence().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m["mountPath"] == "/var/run/secrets/apit-moodle-sync")
    );
}
