//! apit-moodle-sync: keeps Moodle in step with accessplanit.
pub mod app;
pub mod callback;
pub mod check;
pub mod config;
pub mod events;
pub mod http;
pub mod intake;
pub mod jobs_cli;
pub mod metrics;
pub mod moodle;
pub mod retry;
pub mod run;
pub mod secret;
pub mod simulator;
pub mod store;
pub mod sync;
pub mod tenant;
