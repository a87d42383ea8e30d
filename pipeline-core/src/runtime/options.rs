//! Deploy-time settings: override modes, replicas and queue bounds without
//! recompiling, from a builder or a TOML / JSON file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::DeployError;
use crate::step::Device;

/// How many calls may wait in one replica's mailbox (actors), or be in
/// flight at once (tasks), unless the options say otherwise.
pub const DEFAULT_QUEUE_BOUND: usize = 256;

/// Deploy-time settings that override what the steps' attributes say,
/// without recompiling. Build them in code or load them from a file.
///
/// ```
/// use pipeline_core::DeployOptions;
///
/// let opts = DeployOptions::new().replicas("Classifier", 4).queue_bound("Classifier", 64);
/// let from_toml = DeployOptions::from_toml_str(r#"
///     queue_bound = 512
///     [steps.Classifier]
///     replicas = 4
///     queue_bound = 64
/// "#)?;
/// assert_eq!(from_toml.step("Classifier"), opts.step("Classifier"));
/// assert!(DeployOptions::local().is_local());
/// # Ok::<(), pipeline_core::DeployError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployOptions {
    /// Run every step inline in the caller.
    #[serde(default)]
    local: bool,
    /// The queue bound of every step without its own.
    #[serde(default)]
    queue_bound: Option<usize>,
    /// Per-step settings, by step name.
    #[serde(default)]
    steps: BTreeMap<String, StepOptions>,
}

/// Settings for one step: by a node's name (its own, from `.named(..)`, or
/// `Classifier_1` for a step's second node) for that node alone, or by the
/// step's name for every node of it.
///
/// ```
/// let o = pipeline_core::DeployOptions::new().replicas("embed", 2);
/// assert_eq!(o.step("embed").replicas, Some(2));
/// assert_eq!(o.step("other"), pipeline_core::StepOptions::default());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepOptions {
    /// Number of actor replicas.
    pub replicas: Option<usize>,
    /// Mailbox bound per replica (actors) or in-flight bound (tasks).
    pub queue_bound: Option<usize>,
    /// The device every replica of the step owns (`"cpu"` or `"cuda:N"`),
    /// instead of `cuda:(i % gpus)` / CPU.
    pub device: Option<Device>,
}

impl DeployOptions {
    /// The steps' own attributes, unchanged.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every step runs inline in the caller, whatever its attribute says:
    /// for tests.
    pub fn local() -> Self {
        DeployOptions {
            local: true,
            ..Self::default()
        }
    }

    /// Whether every step is forced local.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// Sets the replicas of the actor step(s) named `step`.
    pub fn replicas(mut self, step: &str, replicas: usize) -> Self {
        self.steps.entry(step.to_string()).or_default().replicas = Some(replicas);
        self
    }

    /// Sets the queue bound of the step(s) named `step`.
    pub fn queue_bound(mut self, step: &str, bound: usize) -> Self {
        self.steps.entry(step.to_string()).or_default().queue_bound = Some(bound);
        self
    }

    /// Pins every replica of the step(s) named `step` to `device`, instead
    /// of spreading them over the GPUs (`cuda:(i % gpus)`, or the CPU
    /// without CUDA). A CUDA device the machine lacks fails `deploy`.
    ///
    /// ```
    /// use pipeline_core::{DeployOptions, Device};
    /// let o = DeployOptions::new().device("Classifier", Device::Cpu);
    /// let t = DeployOptions::from_toml_str("[steps.Classifier]\ndevice = \"cpu\"")?;
    /// assert_eq!(o, t);
    /// let bad = DeployOptions::from_toml_str("[steps.Classifier]\ndevice = \"gpu\"");
    /// assert!(bad.unwrap_err().to_string().contains("expected `cpu` or `cuda:N`"));
    /// # Ok::<(), pipeline_core::DeployError>(())
    /// ```
    pub fn device(mut self, step: &str, device: Device) -> Self {
        self.steps.entry(step.to_string()).or_default().device = Some(device);
        self
    }

    /// Sets the queue bound of every step that has none of its own.
    pub fn default_queue_bound(mut self, bound: usize) -> Self {
        self.queue_bound = Some(bound);
        self
    }

    /// The settings for the step named `step`.
    pub fn step(&self, step: &str) -> StepOptions {
        self.steps.get(step).copied().unwrap_or_default()
    }

    /// The settings of the node called `instance`, a node of `step`: its
    /// own, each falling back to the step's.
    pub(crate) fn instance(&self, instance: &str, step: &str) -> StepOptions {
        let (own, all) = (self.step(instance), self.step(step));
        StepOptions {
            replicas: own.replicas.or(all.replicas),
            queue_bound: own.queue_bound.or(all.queue_bound),
            device: own.device.or(all.device),
        }
    }

    pub(crate) fn queue_bound_for(&self, instance: &str, step: &str) -> usize {
        self.instance(instance, step)
            .queue_bound
            .or(self.queue_bound)
            .unwrap_or(DEFAULT_QUEUE_BOUND)
    }

    pub(crate) fn step_names(&self) -> impl Iterator<Item = &str> {
        self.steps.keys().map(String::as_str)
    }

    /// Parses options from TOML (see the type's example).
    pub fn from_toml_str(text: &str) -> Result<Self, DeployError> {
        toml::from_str(text).map_err(|e| DeployError::OptionsFile(e.to_string()))
    }

    /// Parses options from JSON: `{"queue_bound": 512, "steps": {"Classifier": {"replicas": 4}}}`.
    ///
    /// ```
    /// let o = pipeline_core::DeployOptions::from_json_str(r#"{"steps": {"m": {"replicas": 2}}}"#)?;
    /// assert_eq!(o.step("m").replicas, Some(2));
    /// let bad = pipeline_core::DeployOptions::from_json_str(r#"{"steps": {"m": {"replica": 2}}}"#);
    /// assert!(bad.unwrap_err().to_string().contains("unknown field `replica`"));
    /// # Ok::<(), pipeline_core::DeployError>(())
    /// ```
    pub fn from_json_str(text: &str) -> Result<Self, DeployError> {
        serde_json::from_str(text).map_err(|e| DeployError::OptionsFile(e.to_string()))
    }

    /// Reads options from a `.toml` or `.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DeployError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| DeployError::OptionsFile(format!("{}: {e}", path.display())))?;
        let parsed = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Self::from_toml_str(&text),
            Some("json") => Self::from_json_str(&text),
            _ => {
                return Err(DeployError::OptionsFile(format!(
                    "{}: expected a .toml or .json file",
                    path.display()
                )))
            }
        };
        parsed.map_err(|e| DeployError::OptionsFile(format!("{}: {e}", path.display())))
    }
}
