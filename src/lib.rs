//! apit-moodle-sync: keeps Moodle in step with accessplanit.
pub mod app;
pub mod callback;
pub mod check;
pub mod config;
pub mod events;
pub mod http;
pub mod jobs_cli;
pub mod metrics;
pub mod moodle;
pub mod poller;
pub mod retry;
pub mod simulator;
pub mod store;
pub mod sync;
pub mod tenant;
pub mod worker;
