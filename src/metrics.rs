//! Prometheus metrics (text format at `/metrics`). Label values are bounded:
//! tenant names come from the configuration, never from the URL as sent, and
//! no job, course or user ID is ever a label.
//!
//! Every family is present from the first scrape (a zero series for the
//! configured tenants, the known kinds, functions and entities), so dashboards
//! and `absent()` alerts can tell "nothing yet" from "not scraped", and
//! `rate()` sees a counter's first increment.

mod process;

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::events::EventKind;
use crate::moodle::CallRecord;
use crate::store::{Entity, JobKind, JobStatus, QueueStat};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    tenant: String,
    kind: String,
    /// `accepted`, `duplicate`, `requeued` or `rejected`.
    outcome: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    tenant: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobRunLabels {
    kind: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    function: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallbackLabels {
    entity: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EntityLabels {
    entity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: String,
}

fn latency_histogram() -> Histogram {
    // 5 ms … ~82 s: Moodle calls range from a few ms to the 30 s timeout.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Every metric the service exports, in one registry per running service.
pub struct Metrics {
    registry: Registry,
    /// `process_*`, unprefixed as every client library names them.
    process: Registry,
    /// Configured tenants: their queue gauges are 0 rather than absent.
    tenants: Vec<String>,
    events: Family<EventLabels, Counter>,
    jobs: Family<JobLabels, Gauge>,
    oldest_queued: Family<TenantLabels, Gauge<f64, AtomicU64>>,
    job_duration: Family<JobRunLabels, Histogram, fn() -> Histogram>,
    moodle_calls: Family<CallLabels, Counter>,
    moodle_latency: Family<FunctionLabels, Histogram, fn() -> Histogram>,
    callbacks: Family<CallbackLabels, Counter>,
    callback_latency: Family<EntityLabels, Histogram, fn() -> Histogram>,
    pruned: Family<TableLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let events = Family::<EventLabels, Counter>::default();
        let jobs = Family::<JobLabels, Gauge>::default();
        let oldest_queued = Family::<TenantLabels, Gauge<f64, AtomicU64>>::default();
        let job_duration: Family<_, _, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let moodle_calls = Family::<CallLabels, Counter>::default();
        let moodle_latency: Family<_, _, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let callbacks = Family::<CallbackLabels, Counter>::default();
        let callback_latency: Family<_, _, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);

        let pruned = Family::<TableLabels, Counter>::default();

        let mut registry = Registry::with_prefix("apit");
        registry.register(
            "events_received",
            "Webhook events received, by tenant, kind, outcome and HTTP status",
            events.clone(),
        );
        registry.register("jobs", "Jobs by tenant and status", jobs.clone());
        registry.register(
            "queue_oldest_age_seconds",
            "Age of the oldest queued job per tenant",
            oldest_queued.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Duration of job attempts, by kind and resulting status",
            job_duration.clone(),
        );
        registry.register(
            "moodle_calls",
            "Moodle web-service calls by function and outcome",
            moodle_calls.clone(),
        );
        registry.register(
            "moodle_call_duration_seconds",
            "Latency of Moodle web-service calls by function",
            moodle_latency.clone(),
        );
        registry.register(
            "callback_calls",
            "Write-back deliveries by entity and outcome",
            callbacks.clone(),
        );
        registry.register(
            "callback_duration_seconds",
            "Latency of write-back deliveries by entity",
            callback_latency.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register(
            "build_info",
            "The running build: always 1, the version as a label",
            build,
        );
        let mut process = Registry::default();
        process.register_collector(Box::new(process::ProcessCollector));
        registry.register(
            "pruned_rows",
            "Rows removed by retention, by table",
            pruned.clone(),
        );
        Metrics {
            registry,
            process,
            tenants: Vec::new(),
            events,
            jobs,
            oldest_queued,
            job_duration,
            moodle_calls,
            moodle_latency,
            callbacks,
            callback_latency,
            pruned,
        }
    }

    /// A registry with a zero series in every family: queue gauges for each of
    /// `tenants`, events accepted per tenant and kind, jobs per kind, Moodle
    /// calls per function the service uses, write-backs per entity.
    pub fn for_tenants(tenants: impl IntoIterator<Item = String>) -> Self {
        let mut metrics = Self::new();
        metrics.tenants = tenants.into_iter().collect();
        for tenant in &metrics.tenants {
            for kind in EventKind::ALL {
                drop(metrics.events.get_or_create(&EventLabels {
                    tenant: tenant.clone(),
                    kind: kind.as_str().into(),
                    outcome: "accepted".into(),
                    status: 202,
                }));
            }
        }
        for kind in JobKind::ALL {
            drop(metrics.job_duration.get_or_create(&JobRunLabels {
                kind: kind.as_str().into(),
                status: JobStatus::Succeeded.as_str().into(),
            }));
        }
        for function in crate::moodle::required_functions(true, true) {
            drop(metrics.moodle_calls.get_or_create(&CallLabels {
                function: function.into(),
                outcome: "ok".into(),
            }));
            drop(metrics.moodle_latency.get_or_create(&FunctionLabels {
                function: function.into(),
            }));
        }
        for entity in Entity::ALL {
            drop(metrics.callbacks.get_or_create(&CallbackLabels {
                entity: entity.as_str().into(),
                outcome: "delivered".into(),
            }));
            drop(metrics.callback_latency.get_or_create(&EntityLabels {
                entity: entity.as_str().into(),
            }));
        }
        metrics
    }

    /// Counts rows removed by retention from `table`.
    pub fn pruned(&self, table: &str, rows: u64) {
        self.pruned
            .get_or_create(&TableLabels {
                table: table.into(),
            })
            .inc_by(rows);
    }

    /// Counts one webhook request. `tenant` and `kind` must already be bounded
    /// (a configured tenant and a known kind, else `unknown`).
    pub fn event(&self, tenant: &str, kind: &str, outcome: &str, status: u16) {
        self.events
            .get_or_create(&EventLabels {
                tenant: tenant.into(),
                kind: kind.into(),
                outcome: outcome.into(),
                status,
            })
            .inc();
    }

    /// Records one finished job attempt and the Moodle calls it made.
    pub fn job_attempt(&self, kind: &str, status: JobStatus, seconds: f64, calls: &[CallRecord]) {
        self.job_duration
            .get_or_create(&JobRunLabels {
                kind: kind.into(),
                status: status.as_str().into(),
            })
            .observe(seconds);
        for call in calls {
            self.moodle_calls
                .get_or_create(&CallLabels {
                    function: call.function.clone(),
                    outcome: call.outcome.clone(),
                })
                .inc();
            self.moodle_latency
                .get_or_create(&FunctionLabels {
                    function: call.function.clone(),
                })
                .observe(call.ms as f64 / 1000.0);
        }
    }

    /// Records one write-back delivery (`delivered`, `retry` or `dead`).
    pub fn callback(&self, entity: &str, outcome: &str, seconds: f64) {
        self.callbacks
            .get_or_create(&CallbackLabels {
                entity: entity.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.callback_latency
            .get_or_create(&EntityLabels {
                entity: entity.into(),
            })
            .observe(seconds);
    }

    /// The text exposition, with queue gauges set from `stats` (read at scrape time).
    pub fn render(&self, stats: &[QueueStat], now: chrono::DateTime<chrono::Utc>) -> String {
        self.jobs.clear();
        self.oldest_queued.clear();
        for tenant in &self.tenants {
            for status in JobStatus::ALL {
                drop(self.jobs.get_or_create(&JobLabels {
                    tenant: tenant.clone(),
                    status: status.as_str().into(),
                }));
            }
            drop(self.oldest_queued.get_or_create(&TenantLabels {
                tenant: tenant.clone(),
            }));
        }
        for s in stats {
            self.jobs
                .get_or_create(&JobLabels {
                    tenant: s.tenant.clone(),
                    status: s.status.as_str().into(),
                })
                .set(s.count as i64);
            if s.status == JobStatus::Queued {
                let age = s
                    .oldest
                    .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                self.oldest_queued
                    .get_or_create(&TenantLabels {
                        tenant: s.tenant.clone(),
                    })
                    .set(age);
            }
        }
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        // Writing to a String cannot fail; a failure would only cut the text short.
        let _ = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &self.process))
            .and_then(|()| encode_eof(&mut out));
        out
    }
}
