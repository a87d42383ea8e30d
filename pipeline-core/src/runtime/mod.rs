//! How a step runs. Below the graph: this module knows steps
//! (`crate::step`) and evaluation (`crate::eval`), never graphs or
//! pipelines.
//!
//! | file | owns |
//! | --- | --- |
//! | `plan.rs` | the deploy plan: mode, replicas, devices, queue bound, autoscaling per step node, and every check of a setting |
//! | `options.rs` | deploy options, from code or a TOML / JSON file |
//! | `runner.rs` | the `StepRunner` trait every mode implements, and starting the one a plan names |
//! | `local.rs`, `tasks.rs`, `actors/` | one runner per mode |
//! | `admission.rs` | backpressure: bounded queues, refusing a call with `Overloaded` |
//! | `autoscale.rs` | replica targets from load, and the controller applying them |
//! | `metrics.rs` | per-node live counters |
//! | `call_stats.rs` | what every step call counts (starts, latency), per thread, with no locked instruction |
//! | `executor.rs` | which tokio runtime the work runs on |

mod actors;
mod admission;
mod autoscale;
mod call_stats;
mod closing;
mod executor;
mod local;
mod metrics;
mod options;
mod plan;
mod remote;
mod runner;
mod tasks;

pub use admission::DEFAULT_QUEUE_BOUND;
pub(crate) use closing::Closing;
pub(crate) use executor::{OwnedRuntime, Runtimes};
pub(crate) use metrics::{CallGuard, StepCounters};
pub use metrics::{HistogramSnapshot, StepMetrics, BATCH_BUCKETS, LATENCY_BUCKETS};
pub use options::{AutoscaleOptions, DeployOptions, RemoteUrl, StepOptions};
pub(crate) use plan::{check_names, cuda_device_count, plan, StepPlan};
#[cfg(feature = "remote")]
pub(crate) use remote::{protocol, valid_name as remote_name};
pub(crate) use runner::{start, Run, RunCx, StepRunner};
