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
    // validated and copied on every insert and lookup. A request carries
    // `Pipeline-Call` and, when the call has a request id,
    // `Pipeline-Request-Id`.
    use async_nats::HeaderName;
    /// The request's id (the HTTP ingress's `x-request-id`), when it has
    /// one.
    pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static("Pipeline-Request-Id");
    /// Every call's own header, [`CallHeader`]: its id, its time left and
    /// the step's fingerprint digest.
    pub(crate) static CALL: HeaderName = HeaderName::from_static("Pipeline-Call");

    /// What the `Pipeline-Call` header of a request says, written
    /// `<call id> <timeout ms> <digest>`: this attempt's id (named again by
    /// a cancellation), the milliseconds the caller still waits (rounded
    /// up) and the step's `Wire::fingerprint_digest()` as the pipeline sees
    /// it.
    ///
    /// One header, not three: async-nats parses each header of a message
    /// into an allocated name and value and hashes it into a map, on both
    /// sides, and three headers cost a remote call about a third of its
    /// throughput at 64 calls in flight (`benches/remote.rs`), one about a
    /// tenth.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct CallHeader<'a> {
        pub(crate) call_id: &'a str,
        pub(crate) timeout_ms: u64,
        pub(crate) digest: &'a str,
    }

    impl<'a> CallHeader<'a> {
        /// The header's value for attempt `number` of a pipeline whose
        /// call ids start with `prefix` (the id is `prefix.number`, see
        /// [`call_id`]). Written by hand: `format!` cost a remote call
        /// about a tenth of its caller's instructions (`benches/remote.rs`
        /// under callgrind).
        pub(crate) fn write(prefix: &str, number: u64, timeout_ms: u64, digest: &str) -> String {
            let (mut n, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
            let parts = [
                prefix,
                ".",
                n.format(number),
                " ",
                t.format(timeout_ms),
                " ",
                digest,
            ];
            let mut value = String::with_capacity(parts.iter().map(|p| p.len()).sum());
            for part in parts {
                value.push_str(part);
            }
            value
        }

        /// Reads a header's value; `None` if it is not three fields
        /// separated by single spaces, the second a number, the first at
        /// most [`MAX_CALL_ID`] bytes.
        pub(crate) fn parse(value: &'a str) -> Option<CallHeader<'a>> {
            let (call_id, rest) = value.split_once(' ')?;
            let (timeout_ms, digest) = rest.split_once(' ')?;
            if call_id.is_empty()
                || call_id.len() > MAX_CALL_ID
                || digest.is_empty()
                || digest.contains(' ')
            {
                return None;
            }
            let timeout_ms = timeout_ms.parse().ok()?;
            Some(CallHeader {
                call_id,
                timeout_ms,
                digest,
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::CallHeader;

        #[test]
        fn a_call_header_reads_back_what_was_written() {
            let call = CallHeader {
                call_id: "Zq3xK9.17",
                timeout_ms: 60_000,
                digest: "0123456789abcdef",
            };
            let written = CallHeader::write("Zq3xK9", 17, 60_000, "0123456789abcdef");
            assert_eq!(written, "Zq3xK9.17 60000 0123456789abcdef");
            assert_eq!(CallHeader::parse(&written), Some(call));
            assert_eq!(super::call_id("Zq3xK9", 17), call.call_id);
            let most = CallHeader::write("Zq3xK9", u64::MAX, u64::MAX, "d");
            assert_eq!(
                CallHeader::parse(&most).map(|c| (c.call_id.len(), c.timeout_ms)),
                Some(("Zq3xK9.".len() + u64::MAX.to_string().len(), u64::MAX))
            );
        }

        #[test]
        fn a_malformed_call_header_is_refused() {
            for bad in [
                "",
                "id",
                "id 10",
                "id 10 ",
                "id ten digest",
                "id -1 digest",
                "id 10 digest more",
                " 10 digest",
                "id  10 digest",
            ] {
                assert_eq!(CallHeader::parse(bad), None, "{bad:?}");
            }
        }
    }
    /// The id of attempt `number` of a pipeline whose call ids start with
    /// `prefix` (what [`CallHeader::write`] writes first).
    pub(crate) fn call_id(prefix: &str, number: u64) -> String {
        format!("{prefix}.{number}")
    }

    /// Service metadata key holding the worker's fingerprint.
    /// The longest call id a worker takes (a pipeline's are at most 31
    /// bytes: 10 random characters, a dot, a count): a cancellation naming
    /// a longer one is ignored, so the book of early cancellations stays
    /// small whatever a client sends.
    pub(crate) const MAX_CALL_ID: usize = 64;

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
