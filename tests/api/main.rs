//! Black-box tests of the service over HTTP, against the stateful fake Moodle.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod check;
mod ingest;
mod moodle_steps;
mod openapi;
mod process;
mod reliability;
