//! apit-moodle-sync: keeps Moodle in step with accessplanit.
pub mod events;
pub mod moodle;
pub mod store;
