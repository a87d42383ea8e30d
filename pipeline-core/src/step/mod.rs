//! The contract between `#[step]` and everything else: what a step is
//! ([`StepInfo`]), the context a replica is built with ([`ReplicaContext`])
//! and the hidden [`StepFn`] the macro implements. This is the bottom layer:
//! it imports nothing else of the crate but errors, and owns no
//! scheduling (that is `runtime`) and no graph (that is `graph`).

mod contract;
mod device;
mod info;
mod stream;
mod wire;

pub use contract::{clone_init, ready_output, IntoStepError, StepFn, StepOutput};
pub use device::{Device, ReplicaContext};
pub use info::{AutoscalePolicy, BatchPolicy, Mode, Placement, StepInfo, StepKind};
pub(crate) use stream::{Drained, Driver};
pub use stream::{ItemStream, Probe, Pump, PumpOfStream, PumpOfValue};
pub use wire::{wire_type, Wire, WireError, WireFns, WireTuple, WireType, WIRE_FORMAT};
