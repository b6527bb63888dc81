//! State rules, switches and faults.
