//! Tenants at run time: each one's configuration, Moodle client and callback client.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use crate::callback::{self, Callback};
use crate::config::{Config, TenantConfig};
use crate::moodle::{ClientBuildError, MoodleClient, Pacing};

/// One accessplanit customer and the clients for its Moodle and its write-backs.
pub struct Tenant {
    pub name: String,
    pub config: TenantConfig,
    /// Shared by every job of the tenant; holds its `max_concurrency` limit.
    pub moodle: MoodleClient,
    /// `None` when `callback.kind = "none"`.
    pub callback: Option<Arc<dyn Callback>>,
}

/// Every configured tenant, by the name used in URLs.
#[derive(Clone, Default)]
pub struct Tenants(Arc<BTreeMap<String, Arc<Tenant>>>);

impl Tenants {
    /// Builds the clients of every tenant in the configuration.
    pub fn from_config(config: &Config) -> Result<Self, ClientBuildError> {
        let mut map = BTreeMap::new();
        for (name, t) in &config.tenants {
            let moodle = MoodleClient::new(
                &t.moodle_url,
                t.moodle_token().expose().to_string().into(),
                t.moodle_timeout,
                t.max_concurrency,
            )?
            .with_pacing(Pacing {
                batch_window: t.batch_window,
                max_calls_per_second: NonZeroU32::new(t.max_calls_per_second),
            });
            let tenant = Tenant {
                name: name.clone(),
                config: t.clone(),
                moodle,
                callback: callback::from_config(&t.callback),
            };
            map.insert(name.clone(), Arc::new(tenant));
        }
        Ok(Tenants(Arc::new(map)))
    }

    /// The tenant named in a URL.
    pub fn get(&self, name: &str) -> Option<&Arc<Tenant>> {
        self.0.get(name)
    }

    /// Every tenant, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.0.values()
    }
}
