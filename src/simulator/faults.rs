//! Injected faults: what can go wrong between the client and Moodle, and the rules that
//! say which calls get them.

use std::fmt;
use std::str::FromStr;

use super::functions::FUNCTIONS;
use super::options::function_value;

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

/// Each fault with the name [`FaultSpec`] gives it.
const NAMES: &[(Fault, &str)] = &[
    (Fault::Http503, "503"),
    (Fault::Hang, "hang"),
    (Fault::Reset, "reset"),
    (Fault::DmlWrite, "dmlwrite"),
    (Fault::AfterCommit503, "503-after-commit"),
];

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = NAMES
            .iter()
            .find(|(x, _)| x == self)
            .map_or("?", |(_, n)| n);
        f.write_str(name)
    }
}

/// A fault rule as written on the command line: `[FUNCTION=]KIND[xN]`.
///
/// `KIND` is `503`, `hang`, `reset`, `dmlwrite` or `503-after-commit` (see [`Fault`]);
/// without `FUNCTION` it applies to calls of any function; with `xN` to the next `N`
/// matching calls, without it to every one. `core_user_create_users=503x2` fails the next
/// two user creations behind a proxy 503.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpec {
    /// The `wsfunction` it applies to (`None`: any).
    pub function: Option<String>,
    /// What happens to the call.
    pub fault: Fault,
    /// How many matching calls get it (`None`: all of them).
    pub times: Option<usize>,
}

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (function, rest) = match s.split_once('=') {
            Some((f, rest)) => (Some(f), rest),
            None => (None, s),
        };
        if let Some(f) = function {
            function_value(f)?;
        }
        let (kind, times) = match rest.rsplit_once('x') {
            Some((kind, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                match n.parse::<usize>() {
                    Ok(n) if n > 0 => (kind, Some(n)),
                    _ => return Err(format!("{n} is not a number of calls (1 or more)")),
                }
            }
            _ => (rest, None),
        };
        let Some((fault, _)) = NAMES.iter().find(|(_, n)| *n == kind) else {
            let kinds: Vec<&str> = NAMES.iter().map(|(_, n)| *n).collect();
            return Err(format!(
                "{kind:?} is not a fault (use one of {}; as [FUNCTION=]KIND[xN])",
                kinds.join(", ")
            ));
        };
        Ok(FaultSpec {
            function: function.map(Into::into),
            fault: *fault,
            times,
        })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(function) = &self.function {
            write!(f, "{function}=")?;
        }
        write!(f, "{}", self.fault)?;
        match self.times {
            Some(n) => write!(f, "x{n}"),
            None => Ok(()),
        }
    }
}

/// The functions the simulator implements, for messages.
pub(super) fn function_names() -> String {
    let names: Vec<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
    names.join(", ")
}

/// A pending fault: `remaining` more calls of `function` (any when `None`) get it.
pub(super) struct FaultRule {
    pub(super) function: Option<String>,
    pub(super) remaining: usize,
    pub(super) fault: Fault,
}

impl From<&FaultSpec> for FaultRule {
    fn from(spec: &FaultSpec) -> Self {
        FaultRule {
            function: spec.function.clone(),
            // Every call: more than any simulator will ever be sent.
            remaining: spec.times.unwrap_or(usize::MAX),
            fault: spec.fault,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Fault, FaultSpec};

    #[test]
    fn fault_specs_read_and_print_the_same() {
        for (text, function, fault, times) in [
            ("503", None, Fault::Http503, None),
            (
                "core_user_create_users=503x2",
                Some("core_user_create_users"),
                Fault::Http503,
                Some(2),
            ),
            ("hangx1", None, Fault::Hang, Some(1)),
            ("reset", None, Fault::Reset, None),
            (
                "enrol_manual_enrol_users=dmlwrite",
                Some("enrol_manual_enrol_users"),
                Fault::DmlWrite,
                None,
            ),
            ("503-after-commitx3", None, Fault::AfterCommit503, Some(3)),
        ] {
            let spec: FaultSpec = text.parse().unwrap();
            let expected = FaultSpec {
                function: function.map(Into::into),
                fault,
                times,
            };
            assert_eq!(spec, expected, "{text}");
            assert_eq!(spec.to_string(), text);
        }
    }

    #[test]
    fn bad_fault_specs_say_what_is_wrong() {
        let error = |s: &str| s.parse::<FaultSpec>().unwrap_err();
        assert!(error("core_nothing=503").contains("no function core_nothing"));
        assert!(error("500").contains("\"500\" is not a fault"));
        assert!(error("503x0").contains("0 is not a number of calls"));
        assert!(error("").contains("is not a fault"));
    }
}
