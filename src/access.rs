//! Who is asking: the admin token (every tenant) or a named operator whose
//! token sees only some tenants. Shared by the admin API and the console; what
//! a caller may not see answers as if it did not exist.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::config::Config;
use crate::secret::Secret;

/// A configured operator.
pub struct Operator {
    /// `[operators.<name>]`: what the logs and the console show.
    pub name: String,
    token: Secret,
    /// The tenants it sees.
    pub tenants: BTreeSet<String>,
}

/// The credentials that open the admin API and the console.
#[derive(Clone, Default)]
pub struct Access {
    admin: Option<Secret>,
    operators: Arc<Vec<Arc<Operator>>>,
}

/// Who made a request.
#[derive(Clone)]
pub enum Caller {
    /// The admin token: every tenant.
    Admin,
    /// An operator: only its tenants.
    Operator(Arc<Operator>),
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Access {
    /// The admin token and the operators of the configuration.
    pub fn from_config(config: &Config) -> Self {
        Access {
            admin: config.admin_token.clone(),
            operators: Arc::new(
                config
                    .operators
                    .iter()
                    .map(|(name, op)| {
                        Arc::new(Operator {
                            name: name.clone(),
                            token: op.token.clone(),
                            tenants: op.tenants.clone(),
                        })
                    })
                    .collect(),
            ),
        }
    }

    /// True when some token is configured (else nobody can be let in).
    pub fn is_open(&self) -> bool {
        self.admin.is_some() || !self.operators.is_empty()
    }

    /// The caller a presented token belongs to. Every token is compared (in
    /// constant time), so the time taken does not tell which one matched.
    pub fn identify(&self, presented: &[u8]) -> Option<Caller> {
        let mut found = None;
        if let Some(admin) = &self.admin {
            if admin.matches(presented) {
                found = Some(Caller::Admin);
            }
        }
        for op in self.operators.iter() {
            if op.token.matches(presented) && found.is_none() {
                found = Some(Caller::Operator(op.clone()));
            }
        }
        found
    }

    /// The caller of a name, if it is still configured: `admin` needs the admin
    /// token to be set.
    pub fn by_name(&self, name: &str) -> Option<Caller> {
        if name == "admin" {
            return self.admin.as_ref().map(|_| Caller::Admin);
        }
        self.operators
            .iter()
            .find(|op| op.name == name)
            .map(|op| Caller::Operator(op.clone()))
    }

    /// The token of a caller (to bind a session to it: a changed token ends the
    /// sessions signed in with the old one).
    pub fn token_of<'a>(&'a self, caller: &'a Caller) -> Option<&'a Secret> {
        match caller {
            Caller::Admin => self.admin.as_ref(),
            Caller::Operator(op) => Some(&op.token),
        }
    }
}

impl Caller {
    /// `admin` or the operator's name: what the logs say did an action.
    pub fn name(&self) -> &str {
        match self {
            Caller::Admin => "admin",
            Caller::Operator(op) => &op.name,
        }
    }

    /// True when the caller may see (and act on) this tenant's jobs.
    pub fn sees(&self, tenant: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Operator(op) => op.tenants.contains(tenant),
        }
    }

    /// The tenants the caller is limited to; `None` for the admin (all).
    pub fn scope(&self) -> Option<&BTreeSet<String>> {
        match self {
            Caller::Admin => None,
            Caller::Operator(op) => Some(&op.tenants),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        let config = Config::from_toml(
            r#"
            admin_token = "the-admin-token"
            [tenants.acme]
            webhook_secret = "s1"
            moodle_url = "https://m.acme.example"
            moodle_token = "t1"
            category_id = 1
            [tenants.beta]
            webhook_secret = "s2"
            moodle_url = "https://m.beta.example"
            moodle_token = "t2"
            category_id = 1
            [operators.support]
            token = "support-token"
            tenants = ["acme"]
            "#,
        )
        .unwrap();
        Access::from_config(&config)
    }

    #[test]
    fn tokens_name_their_caller_and_scope() {
        let access = access();
        let admin = access.identify(b"the-admin-token").unwrap();
        assert_eq!(admin.name(), "admin");
        assert!(admin.sees("acme") && admin.sees("beta") && admin.scope().is_none());
        let support = access.identify(b"support-token").unwrap();
        assert_eq!(support.name(), "support");
        assert!(support.sees("acme") && !support.sees("beta"));
        assert!(access.identify(b"support-token ").is_none());
        assert!(access.identify(b"").is_none());
        assert_eq!(access.by_name("support").unwrap().name(), "support");
        assert!(access.by_name("gone").is_none());
        assert_eq!(format!("{support:?}"), "support");
    }

    #[test]
    fn without_tokens_nobody_is_let_in() {
        let access = Access::default();
        assert!(!access.is_open());
        assert!(access.identify(b"").is_none());
        assert!(access.by_name("admin").is_none());
    }
}
