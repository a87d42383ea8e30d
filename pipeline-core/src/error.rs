//! Errors of the two layers a user meets: building a pipeline ([`DeployError`])
//! and calling it ([`PipelineError`]).
//!
//! Each error's `Display` says what happened at its own layer and nothing
//! more; the cause is reached through `source()` only, so a chain printer
//! (`anyhow`'s `{:#}`, the HTTP error body) prints every cause once.

use std::error::Error as StdError;
use std::sync::Arc;

/// The error type a step may return, boxed. Any `E: Into<BoxError>` works as a
/// step's error (`std::io::Error`, `String`, `anyhow::Error`, your own enum).
///
/// ```
/// let e: pipeline_core::BoxError = "weights not found".into();
/// assert_eq!(e.to_string(), "weights not found");
/// ```
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why one call of a [`Pipeline`](crate::Pipeline) failed.
///
/// Cheap to clone: a failure inside a shared (fan-out) node reaches every
/// consumer of that node.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn parse(s: String) -> Result<i64, std::num::ParseIntError> {
///     s.parse()
/// }
///
/// let p = parse(Input::<String>::new()).deploy()?;
/// let err = p.call("x".to_string()).unwrap_err();
/// assert_eq!(err.step(), Some("parse"));
/// assert_eq!(err.to_string(), "step `parse` failed");
/// let cause = std::error::Error::source(&err).unwrap();
/// assert_eq!(cause.to_string(), "invalid digit found in string");
/// # Ok::<(), pipeline_core::DeployError>(())
/// ```
// Not derived with thiserror: `source()` of a step failure must be the
// step's own error (so it downcasts to the step's type), not the
// `StepError` wrapper that holds it, which `#[source]` would return.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PipelineError {
    /// A step returned `Err`. `std::error::Error::source` gives the step's
    /// own error, which downcasts to its type.
    Step {
        /// The step's name.
        step: &'static str,
        /// The step's own error.
        error: StepError,
    },
    /// A route node got a key that none of its branches handles and it has no
    /// `otherwise` branch.
    NoBranch {
        /// The route's label (its key node's name).
        route: String,
        /// The key, as `Debug` prints it.
        key: String,
    },
    /// A step's queue was full: the call was refused at once.
    Overloaded {
        /// The step whose queue was full.
        step: &'static str,
    },
    /// A step panicked while handling this call. Its replica is rebuilt;
    /// other calls are unaffected.
    Panicked {
        /// The step's name.
        step: &'static str,
        /// The panic message.
        message: String,
    },
    /// The call's deadline passed before it finished.
    DeadlineExceeded {
        /// The deadline the call was given.
        after: std::time::Duration,
    },
    /// The pipeline is shutting down and takes no new calls.
    ShuttingDown,
    /// A replica stopped before answering (the pipeline is being dropped).
    ReplicaLost {
        /// The step's name.
        step: &'static str,
    },
    /// The blocking [`Pipeline::call`](crate::Pipeline::call) was used on a
    /// thread that runs an async runtime, where blocking would stall it.
    BlockingCallInAsyncContext,
    /// A remote step has no worker serving it now (NATS: no responders),
    /// or none that took the call after the retries (all full or leaving).
    Unavailable {
        /// The remote step.
        step: &'static str,
        /// What the transport said.
        reason: String,
    },
    /// A remote step's encoded inputs (or a worker's answer) exceed what
    /// the NATS server carries in one message; refused before sending.
    PayloadTooLarge {
        /// The remote step.
        step: &'static str,
        /// The message's size, bytes.
        size: usize,
        /// The server's `max_payload`, bytes.
        limit: usize,
    },
    /// The pipeline could not start its async runtime.
    Runtime(Arc<std::io::Error>),
    /// A broken internal invariant: please report it.
    Internal(&'static str),
}

impl std::fmt::Display for PipelineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PipelineError::Step { step, .. } => write!(f, "step `{step}` failed"),
            PipelineError::NoBranch { route, key } => write!(
                f,
                "route `{route}` has no branch for key {key}; add `.branch({key}, ..)` or `.otherwise(..)`"
            ),
            PipelineError::Overloaded { step } => write!(
                f,
                "step `{step}` is overloaded: its queue is full; retry later, add replicas or raise its queue bound"
            ),
            PipelineError::Panicked { step, message } => {
                write!(f, "step `{step}` panicked: {message}")
            }
            PipelineError::DeadlineExceeded { after } => {
                write!(f, "the call did not finish within its deadline of {after:?}")
            }
            PipelineError::ShuttingDown => {
                f.write_str("the pipeline is shutting down and takes no new calls")
            }
            PipelineError::ReplicaLost { step } => {
                write!(f, "a replica of step `{step}` stopped before answering")
            }
            PipelineError::BlockingCallInAsyncContext => f.write_str(
                "`Pipeline::call` blocks and was called from inside an async runtime; use `call_async(..).await` there",
            ),
            PipelineError::Unavailable { step, reason } => {
                write!(f, "remote step `{step}` is unavailable: {reason}")
            }
            PipelineError::PayloadTooLarge { step, size, limit } => write!(
                f,
                "a message for remote step `{step}` is {size} bytes, over the NATS server's max_payload of {limit} bytes; \
                 send less per call or raise the server's max_payload"
            ),
            PipelineError::Runtime(_) => f.write_str("could not start the pipeline's runtime"),
            PipelineError::Internal(what) => {
                write!(f, "internal error in pipeline-core: {what} (please report this)")
            }
        }
    }
}

impl StdError for PipelineError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            PipelineError::Step { error, .. } => Some(error.get()),
            PipelineError::Runtime(e) => Some(&**e),
            _ => None,
        }
    }
}

impl PipelineError {
    /// The step this error comes from, if it comes from one.
    pub fn step(&self) -> Option<&'static str> {
        match self {
            PipelineError::Step { step, .. }
            | PipelineError::Overloaded { step }
            | PipelineError::Panicked { step, .. }
            | PipelineError::ReplicaLost { step }
            | PipelineError::Unavailable { step, .. }
            | PipelineError::PayloadTooLarge { step, .. } => Some(step),
            _ => None,
        }
    }

    pub(crate) fn panicked(step: &'static str, payload: Box<dyn std::any::Any + Send>) -> Self {
        PipelineError::Panicked {
            step,
            message: panic_message(&*payload),
        }
    }

    /// Runs `f`, the user's code outside a step body (a shared output's
    /// `Clone`, a route key's `PartialEq`): a panic in it is `step`'s
    /// `Panicked`, as a panic in a step is, never an unwind into the caller.
    pub(crate) fn caught<T>(step: &'static str, f: impl FnOnce() -> T) -> Result<T, Self> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .map_err(|payload| PipelineError::panicked(step, payload))
    }

    pub(crate) fn step_failed(step: &'static str, error: BoxError) -> Self {
        PipelineError::Step {
            step,
            error: StepError(Arc::from(error)),
        }
    }
}

/// What a panic said (its `&str` or `String` payload).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_string())
}

/// A step's own error, shared (cheap to clone). Its `source()` is the
/// step's error itself, so `downcast_ref` finds the step's error type.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn parse(s: String) -> Result<i64, std::num::ParseIntError> { s.parse() }
///
/// let err = parse(Input::<String>::new()).deploy()?.call("x".into()).unwrap_err();
/// let source = std::error::Error::source(&err).unwrap();
/// assert!(source.downcast_ref::<std::num::ParseIntError>().is_some());
/// # Ok::<(), pipeline_core::DeployError>(())
/// ```
#[derive(Debug, Clone)]
pub struct StepError(Arc<dyn StdError + Send + Sync + 'static>);

impl StepError {
    /// The step's error.
    pub fn get(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

/// Why a graph could not be deployed.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// #[step]
/// fn add(a: i64, b: i64) -> i64 { a + b }
///
/// // Two separate inputs: a pipeline takes exactly one.
/// let err = add(Input::<i64>::new(), Input::<i64>::new()).deploy().unwrap_err();
/// assert!(matches!(err, DeployError::SeveralInputs { count: 2 }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// A model step's constructor failed.
    #[error("step `{step}`: the constructor of replica {replica} failed")]
    Build {
        /// The step's name.
        step: &'static str,
        /// The replica's index.
        replica: usize,
        /// The constructor's error.
        #[source]
        source: BoxError,
    },
    /// The graph reads no [`Input`](crate::Input).
    #[error("the graph reads no `Input`; start it from `Input::<T>::new()`")]
    NoInput,
    /// The graph has more than one [`Input`](crate::Input) node.
    #[error("the graph has {count} `Input` nodes but a pipeline takes one input; make one `Input::<T>::new().shared()` and clone it where it is needed")]
    SeveralInputs {
        /// How many `Input` nodes there are.
        count: usize,
    },
    /// A node was deployed already: a node and its clones belong to one
    /// graph, taken by the first `deploy()` that reaches them (whether it
    /// succeeded or failed).
    #[error("{node} was taken by an earlier `deploy()` (a node and its clones belong to one graph, whether that deploy succeeded or failed); build the graph again for another pipeline")]
    NodeDeployed {
        /// The node: "step `name`" or "a shared node".
        node: String,
    },
    /// The graph `.map_each` applies to each item uses a node from outside
    /// it (the pipeline's input, or a shared node of the graph around it).
    /// That graph runs once per item with the item as its input, so such a
    /// node would be computed again per item, from the wrong input.
    #[error("the graph that `.map_each` applies to each item uses {node}, from outside it; it may read only the item: compute what it needs inside, or make it part of the item")]
    OutsideItem {
        /// The node, by its label.
        node: String,
    },
    /// A route has two branches for one key.
    #[error("route `{route}` has two branches for key {key}")]
    DuplicateBranch {
        /// The route's label (its key node's name).
        route: String,
        /// The key, as `Debug` prints it.
        key: String,
    },
    /// A route was given `.otherwise(..)` twice (the later would replace
    /// the earlier).
    #[error("route `{route}` was given `.otherwise(..)` twice: give one")]
    DuplicateOtherwise {
        /// The route's label (its key node's name).
        route: String,
    },
    /// The options name a step the graph does not have.
    #[error(
        "deploy options name step `{name}`, which is not in the graph; its steps are: {known}"
    )]
    UnknownStep {
        /// The name in the options.
        name: String,
        /// The graph's step names, comma-separated.
        known: String,
    },
    /// An option has a value that cannot work.
    #[error("deploy option for step `{step}`: {message}")]
    InvalidOption {
        /// The step (or `*` for a pipeline-wide option).
        step: String,
        /// What is wrong, and what would work.
        message: String,
    },
    /// Deploy options could not be read or parsed; the cause is an
    /// [`OptionsError`].
    #[error("could not load deploy options{}{}", in_path(.path.as_deref()), at_key(.key.as_deref()))]
    Options {
        /// The file, when they came from one.
        path: Option<std::path::PathBuf>,
        /// Where in a JSON file the error is, as `steps.embed.replicas`,
        /// when it is inside the top-level table (TOML's own error quotes
        /// the line).
        key: Option<String>,
        /// What went wrong.
        #[source]
        source: OptionsError,
    },
    /// A remote step could not be set up: the NATS server could not be
    /// reached, or a worker serves the step with other types.
    #[error("remote step `{step}`: {message}")]
    Remote {
        /// The step node.
        step: &'static str,
        /// What is wrong, and what would work.
        message: String,
        /// The transport's error, if one.
        #[source]
        source: Option<BoxError>,
    },
    /// The pipeline's runtime or a replica thread could not be started.
    #[error("could not start the pipeline's runtime or a replica thread")]
    Runtime(#[from] std::io::Error),
    /// A shared node was lowered in an inconsistent way (a bug).
    #[error("internal error in pipeline-core: {0} (please report this)")]
    Internal(&'static str),
}

impl DeployError {
    pub(crate) fn options(
        path: Option<&std::path::Path>,
        key: Option<String>,
        source: OptionsError,
    ) -> Self {
        DeployError::Options {
            path: path.map(std::path::Path::to_path_buf),
            key,
            source,
        }
    }
}

fn at_key(key: Option<&str>) -> String {
    key.map(|k| format!(", at `{k}`")).unwrap_or_default()
}

fn in_path(path: Option<&std::path::Path>) -> String {
    path.map(|p| format!(" from `{}`", p.display()))
        .unwrap_or_default()
}

/// Why deploy options could not be loaded, with the reader's or parser's
/// own error inside.
///
/// ```
/// use pipeline_core::{DeployError, DeployOptions, OptionsError};
///
/// let err = DeployOptions::from_toml_str("[steps.m]\nreplicas = \"two\"").unwrap_err();
/// let DeployError::Options { source: OptionsError::Toml(e), .. } = &err else { panic!() };
/// assert!(e.message().contains("invalid type"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Not valid TOML, or not the options' shape. Boxed, as is every
    /// large cause: a deploy error travels up through every node of a
    /// graph as deep as the user's, so it is kept small.
    #[error(transparent)]
    Toml(Box<toml::de::Error>),
    /// Not valid JSON, or not the options' shape.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The file name ends in neither `.toml` nor `.json`.
    #[error("expected a .toml or .json file")]
    Extension,
}

impl From<toml::de::Error> for OptionsError {
    fn from(e: toml::de::Error) -> Self {
        OptionsError::Toml(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    /// Deploy errors are returned through every level of a graph's
    /// lowering; a large one overflowed the stack of a 500-step chain in a
    /// debug build (tests/tests/deep.rs).
    #[test]
    fn errors_stay_small() {
        assert!(std::mem::size_of::<super::DeployError>() <= 64);
        assert!(std::mem::size_of::<super::PipelineError>() <= 64);
    }
}

/// The error of a step that failed on a remote worker: the worker's
/// message chain (`{:#}`-style, each cause once). The step's own error type
/// stays on the worker, so `source()` of such a [`PipelineError::Step`]
/// downcasts to `RemoteError`, not to the step's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError(pub String);

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for RemoteError {}
