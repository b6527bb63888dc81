//! Injected faults: what can go wrong between the client and Moodle.

/// A way for the next call(s) to fail, to test the client's error handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A proxy in front of Moodle answers 503 (HTML); Moodle never sees the call.
    Http503,
    /// The request is accepted and never answered, so the client's timeout must fire.
    Hang,
    /// The TCP connection is reset without an answer.
    Reset,
    /// Moodle answers the `dmlwriteexception` envelope (a deadlock, say); nothing is written.
    DmlWrite,
    /// The call is carried out and committed, then the answer is lost behind a 503.
    AfterCommit503,
}
