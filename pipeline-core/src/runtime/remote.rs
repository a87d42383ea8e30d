//! The runner of a step served by worker processes over NATS (the
//! `remote` feature): each call is one NATS request to the step's subject,
//! answered by one worker of its queue group. The protocol, shared with
//! `crate::remote` (the worker side), is written down in [`protocol`].

use std::sync::Arc;

use super::executor::Runtimes;
use super::metrics::StepCounters;
use super::options::RemoteUrl;
use super::plan::StepPlan;
use super::runner::StepRunner;
use crate::error::DeployError;
use crate::step::StepFn;

/// What a pipeline and its workers agree on: subjects, headers, codes.
#[cfg(feature = "remote")]
pub(crate) mod protocol {
    /// Requests for node `name` go to `pipeline.step.<name>` (one queue
    /// group of workers per step).
    pub(crate) fn subject(node: &str) -> String {
        format!("pipeline.step.{node}")
    }
    /// Worker `worker`'s own subject for node `name`: pipelines route each
    /// call to the worker they choose (least outstanding calls), and use
    /// [`subject`]'s queue group only while they know of no worker.
    pub(crate) fn direct_subject(node: &str, worker: &str) -> String {
        format!("pipeline.step.{node}.{worker}")
    }
    /// Workers of node `name` announce here that they joined or are
    /// leaving (payload: [`Announce`]).
    pub(crate) fn announce_subject(node: &str) -> String {
        format!("pipeline.workers.{node}")
    }
    /// An announcement on [`announce_subject`].
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    pub(crate) struct Announce {
        /// The worker's direct subject.
        pub(crate) direct: String,
        /// `true`: it is leaving (send it nothing more); `false`: joined.
        pub(crate) leaving: bool,
        /// Its full fingerprint (a pipeline ignores a worker with other
        /// types).
        #[serde(default)]
        pub(crate) fingerprint: String,
    }
    /// How long a leaving worker keeps serving after announcing it, so
    /// that pipelines have stopped sending to it before it unsubscribes.
    pub(crate) const LEAVE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);
    /// Cancellations of calls to `name` (every worker of the step hears
    /// them; the payload is the call id).
    pub(crate) fn cancel_subject(node: &str) -> String {
        format!("pipeline.cancel.{node}")
    }
    /// The NATS service (micro) name of node `name`'s workers, answering
    /// `$SRV.PING/INFO/STATS.<service>`.
    pub(crate) fn service(node: &str) -> String {
        format!("pipeline-{node}")
    }
    // Header names are built once (`from_static`): a `&str` name is
    // validated and copied on every insert and lookup.
    use async_nats::HeaderName;
    /// The request's id (the HTTP ingress's `x-request-id`).
    pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("Pipeline-Request-Id");
    /// Milliseconds the caller still waits, when the request was sent.
    pub(crate) static TIMEOUT_MS: HeaderName = HeaderName::from_static("Pipeline-Timeout-Ms");
    /// This attempt's id, named again by a cancellation.
    pub(crate) static CALL_ID: HeaderName = HeaderName::from_static("Pipeline-Call-Id");
    /// The step's `Wire::fingerprint_digest()` as the pipeline sees it.
    pub(crate) static FINGERPRINT: HeaderName = HeaderName::from_static("Pipeline-Fingerprint");
    /// Service metadata key holding the worker's fingerprint.
    pub(crate) const META_FINGERPRINT: &str = "fingerprint";
    /// Service metadata key holding the worker's direct subject.
    pub(crate) const META_DIRECT: &str = "direct";

    /// `Nats-Service-Error-Code` values a worker answers with.
    pub(crate) mod code {
        /// The inputs could not be decoded.
        pub(crate) const BAD_INPUT: usize = 400;
        /// The worker serves the step with other types.
        pub(crate) const MISMATCH: usize = 409;
        /// The step returned an error (the status is its message chain).
        pub(crate) const STEP_FAILED: usize = 422;
        /// The step panicked (the status is the panic message); the
        /// worker's replica is rebuilt.
        pub(crate) const PANICKED: usize = 500;
        /// Refused before starting (queue full, or the worker is leaving):
        /// the pipeline may retry it on another worker.
        pub(crate) const REFUSED: usize = 503;
        /// The deadline passed before the call could start or finish.
        pub(crate) const DEADLINE: usize = 504;
        /// Anything else that failed on the worker (the status says what).
        pub(crate) const WORKER: usize = 520;
    }
}

/// A node name that can be a NATS subject token and a service name.
pub(crate) fn valid_name(node: &str) -> bool {
    !node.is_empty()
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Starts the runner of a step node served remotely at `url`.
pub(crate) fn start<S: StepFn>(
    plan: &StepPlan,
    url: RemoteUrl,
    counters: Arc<StepCounters>,
    runtimes: &mut Runtimes,
) -> Result<Box<dyn StepRunner<S>>, DeployError> {
    let fail = |message: String| DeployError::Remote {
        step: plan.node,
        message,
        source: None,
    };
    let Some(wire) = S::wire() else {
        return Err(fail(format!(
            "step `{}` is not marked `#[step(remote)]`",
            plan.step
        )));
    };
    if !valid_name(plan.node) {
        return Err(fail(format!(
            "a remote step's node name must be letters, digits, `_` or `-` (it names a NATS subject); \
             got `{}`: rename it with `.named(..)`",
            plan.node
        )));
    }
    #[cfg(feature = "remote")]
    {
        client::RemoteRunner::<S>::start(plan, url, wire, counters, runtimes)
            .map(|r| Box::new(r) as Box<dyn StepRunner<S>>)
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = (wire, counters, runtimes);
        Err(fail(format!(
            "deploy options serve it from `{url}`, but pipeline-core was built without its \
             `remote` feature; enable it (`features = [\"remote\"]`)"
        )))
    }
}

#[cfg(feature = "remote")]
mod client;
