//! How a simulator is set up when it starts, and why it may fail to.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::DEFAULT_MAX_INPUT_VARS;
use super::faults::{FaultRule, FaultSpec, function_names};
use super::functions::FUNCTIONS;
use super::site::{CAPABILITIES, Site};

/// The set-up of a simulator started with [`start_on`]; the switches and seeding methods
/// change it later.
///
/// [`start_on`]: super::MoodleSimulator::start_on
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// The token the site accepts (32 lowercase hex characters); `None`: a random one.
    pub token: Option<String>,
    /// How long every web-service call waits before it is handled.
    pub latency: Duration,
    /// Fault rules, the first matching one applying to a call.
    pub faults: Vec<FaultSpec>,
    /// Functions left out of the token's service (calls get `accessexception`).
    pub drop_functions: Vec<String>,
    /// Capabilities the token user's role lacks.
    pub lack_capabilities: Vec<String>,
    /// PHP's `max_input_vars`.
    pub max_input_vars: usize,
    /// Keep every call for [`MoodleSimulator::calls`](super::MoodleSimulator::calls); a
    /// simulator that runs for long turns this off so its memory stays flat.
    pub record_calls: bool,
}

impl Default for SimulatorOptions {
    /// A random token, no latency, no faults, every function and capability, PHP's
    /// default `max_input_vars`, calls recorded.
    fn default() -> Self {
        SimulatorOptions {
            token: None,
            latency: Duration::ZERO,
            faults: Vec::new(),
            drop_functions: Vec::new(),
            lack_capabilities: Vec::new(),
            max_input_vars: DEFAULT_MAX_INPUT_VARS,
            record_calls: true,
        }
    }
}

/// Why a simulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// The address could not be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// An option names something the simulator does not have.
    #[error("{0}")]
    Invalid(String),
}

impl SimulatorOptions {
    /// Checks every name and the token, so that nothing is silently ignored.
    pub(super) fn check(&self) -> Result<(), SimulatorError> {
        let invalid = SimulatorError::Invalid;
        if let Some(token) = &self.token {
            token_value(token).map_err(invalid)?;
        }
        for name in &self.drop_functions {
            function_value(name).map_err(invalid)?;
        }
        for capability in &self.lack_capabilities {
            capability_value(capability).map_err(invalid)?;
        }
        for spec in &self.faults {
            if let Some(name) = &spec.function {
                function_value(name).map_err(invalid)?;
            }
        }
        Ok(())
    }

    /// Sets a freshly seeded site up as asked.
    pub(super) fn apply(&self, site: &mut Site) {
        let cfg = &mut site.cfg;
        cfg.latency = self.latency;
        cfg.max_input_vars = self.max_input_vars;
        cfg.record_calls = self.record_calls;
        cfg.service
            .retain(|f| !self.drop_functions.iter().any(|d| d == f));
        cfg.lacking.extend(self.lack_capabilities.iter().cloned());
        site.faults.extend(self.faults.iter().map(FaultRule::from));
    }
}

/// `s` if it can be a Moodle token (32 lowercase hex characters); for argument parsers.
pub fn token_value(s: &str) -> Result<String, String> {
    if s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(s.into())
    } else {
        Err("a Moodle token is 32 lowercase hexadecimal characters".into())
    }
}

/// `s` if it is a function the simulator implements; for argument parsers.
pub fn function_value(s: &str) -> Result<String, String> {
    if FUNCTIONS.iter().any(|f| f.name == s) {
        Ok(s.into())
    } else {
        Err(format!(
            "the simulator has no function {s} (it has {})",
            function_names()
        ))
    }
}

/// `s` if it is a capability the simulator models; for argument parsers.
pub fn capability_value(s: &str) -> Result<String, String> {
    if CAPABILITIES.iter().any(|(c, _)| *c == s) {
        Ok(s.into())
    } else {
        let names: Vec<&str> = CAPABILITIES.iter().map(|(c, _)| *c).collect();
        Err(format!(
            "the simulator does not model the capability {s} (it models {})",
            names.join(", ")
        ))
    }
}
