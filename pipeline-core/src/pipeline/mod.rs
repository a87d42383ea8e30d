//! The deployed pipeline, the top of the core: deploying a graph
//! (`deploy.rs`, the [`Deploy`] extension trait), calling and shutting it
//! down (`calls.rs`), and what it reports about itself (`report.rs`). Only
//! the edges (`http`, remote workers) sit above it.

mod calls;
mod deploy;
mod report;
mod stream;

pub use calls::Pipeline;
pub use deploy::Deploy;
pub use report::{Health, StepHealth, StepReport};
