//! Black-box tests of the service over HTTP, against the stateful fake Moodle.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod check;
mod concurrent_start;
mod deploy_config;
mod grades;
mod healthcheck;
mod ingest;
mod jobs_cli;
mod metrics;
mod moodle_steps;
mod openapi;
mod process;
mod reliability;
mod simulator;
