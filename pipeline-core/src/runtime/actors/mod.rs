//! Actors mode: long-lived replicas, each with its own state and a bounded
//! mailbox, behind a least-outstanding-work router.
//!
//! | file | owns |
//! | --- | --- |
//! | `runner.rs` | the actors runner: a pool and its autoscaler |
//! | `pool.rs` | the replica set, routing, adding and draining replicas |
//! | `mailbox.rs` | a replica's bounded queue and its depth gauge |
//! | `worker.rs` | one replica: build, answer calls, rebuild after a panic |
//! | `batch.rs` | a replica answering calls in batches |
//!
//! Autoscaling decisions are `runtime/autoscale.rs`'s; they reach the pool
//! through its `Scale` trait.

mod batch;
mod mailbox;
mod pool;
mod runner;
mod worker;

pub(crate) use runner::ActorRunner;
