//! Serving steps from worker processes (the `remote` feature): a
//! [`Worker`] connects to a NATS server and serves chosen
//! `#[step(remote)]` steps, each as one NATS service endpoint (queue group
//! per step; `$SRV.PING/INFO/STATS` answered), with the same actor runner
//! as in a pipeline (replicas, batching, devices, panic rebuilds). A
//! pipeline deployed with [`DeployOptions::remote`](crate::DeployOptions::remote)
//! sends those steps' calls there. The README's "Remote steps" section
//! walks through it and lists the semantics.
//!
//! | file | owns |
//! | --- | --- |
//! | `worker.rs` | the worker: serving, answering, cancelling, draining on SIGTERM |

mod worker;

pub use worker::Worker;
