//! Black-box tests of the service over HTTP, against the stateful fake Moodle.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod browser;
mod burst;
mod check;
mod concurrent_start;
mod console;
mod demo;
mod deploy_config;
mod edge;
mod grades;
mod healthcheck;
mod ingest;
mod jobs_cli;
mod metrics;
mod moodle_steps;
mod openapi;
mod outage;
mod process;
mod reliability;
mod scope;
mod simulator;
