//! Deploy-time settings: override modes, replicas, autoscaling, devices
//! and queue bounds without recompiling, from a builder or a TOML / JSON
//! file. Only parsing lives here; what the settings mean for a step is
//! decided, and checked, in `plan`.

use std::collections::BTreeMap;
use std::path::Path;

use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::admission::DEFAULT_QUEUE_BOUND;
use crate::error::{DeployError, OptionsError};
use crate::step::{AutoscalePolicy, Device};

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
    #[serde(default, deserialize_with = "steps_table")]
    steps: BTreeMap<String, StepOptions>,
    /// The runtime to run on, if not the default (never from a file).
    #[serde(skip)]
    runtime: RuntimeChoice,
}

/// A runtime handle chosen in code. Options compare equal when both or
/// neither name one: a handle has no identity to compare on stable tokio.
#[derive(Clone, Default)]
struct RuntimeChoice(Option<tokio::runtime::Handle>);

impl PartialEq for RuntimeChoice {
    fn eq(&self, other: &Self) -> bool {
        self.0.is_some() == other.0.is_some()
    }
}

impl Eq for RuntimeChoice {}

impl std::fmt::Debug for RuntimeChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(h) => write!(f, "Some({:?} runtime)", h.runtime_flavor()),
            None => f.write_str("None"),
        }
    }
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
    /// A fixed number of actor replicas (turns the step's autoscaling off).
    pub replicas: Option<usize>,
    /// Autoscaling for an actor step: each field set here replaces the
    /// attribute's (or [`AutoscalePolicy::DEFAULT`]'s) value.
    #[serde(default, deserialize_with = "optional_table")]
    pub autoscale: Option<AutoscaleOptions>,
    /// Mailbox bound per replica (actors) or in-flight bound (tasks).
    pub queue_bound: Option<usize>,
    /// The device every replica of the step owns (`"cpu"` or `"cuda:N"`),
    /// instead of `cuda:(i % gpus)` / CPU.
    pub device: Option<Device>,
    /// Serve the step from worker processes through the NATS server at
    /// this URL (`nats://host:port`); the step must be `#[step(remote)]`.
    pub remote: Option<RemoteUrl>,
}

/// Where a remote step is served: a NATS server's URL. Kept once for the
/// life of the process (options are `Copy`; a deployment's URLs are few).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteUrl(&'static str);

impl RemoteUrl {
    /// The URL.
    pub fn new(url: &str) -> Self {
        RemoteUrl(intern(url))
    }

    /// The URL, as given.
    pub fn as_str(&self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl<'de> Deserialize<'de> for RemoteUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url: String = Deserialize::deserialize(d)?;
        Ok(RemoteUrl::new(&url))
    }
}

fn intern(text: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock, PoisonError};
    static KEPT: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut kept = KEPT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(k) = kept.get(text) {
        return k;
    }
    let k: &'static str = Box::leak(text.to_owned().into_boxed_str());
    kept.insert(k);
    k
}

/// Options read only from a table (a JSON object). serde's derive also
/// reads a struct from a sequence of its fields in order, so a file that
/// is `[true, 5]` would load as `local = true, queue_bound = 5`.
struct Table<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a table of options")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visit(PhantomData)).map(Table)
    }
}

/// An optional [`Table`] (`null` in JSON is none).
fn optional_table<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Ok(Option::<Table<T>>::deserialize(d)?.map(|t| t.0))
}

/// The per-step tables, by name; a name given twice is refused (JSON
/// allows repeated keys, and the last silently winning would hide a
/// copy-paste slip; TOML refuses them itself).
fn steps_table<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, StepOptions>, D::Error> {
    struct Visit;
    impl<'de> Visitor<'de> for Visit {
        type Value = BTreeMap<String, StepOptions>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a table of step options by step name")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut steps = BTreeMap::new();
            while let Some(name) = map.next_key::<String>()? {
                let Table(step) = map.next_value()?;
                if steps.insert(name.clone(), step).is_some() {
                    return Err(serde::de::Error::custom(format!("duplicate step `{name}`")));
                }
            }
            Ok(steps)
        }
    }
    d.deserialize_map(Visit)
}

/// Autoscaling settings for one step in deploy options (see
/// [`AutoscalePolicy`] for what each means); unset fields keep the step's
/// own.
///
/// ```
/// use pipeline_core::{AutoscaleOptions, DeployOptions};
///
/// let o = DeployOptions::from_toml_str(r#"
///     [steps.embed.autoscale]
///     min_replicas = 2
///     max_replicas = 6
/// "#)?;
/// let a = o.step("embed").autoscale.unwrap();
/// assert_eq!((a.min_replicas, a.max_replicas, a.target_ongoing_requests), (Some(2), Some(6), None));
/// # Ok::<(), pipeline_core::DeployError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscaleOptions {
    /// Never fewer replicas (at least 1).
    pub min_replicas: Option<usize>,
    /// Never more replicas.
    pub max_replicas: Option<usize>,
    /// Calls (queued + running) one replica should carry.
    pub target_ongoing_requests: Option<usize>,
    /// How long the load must call for more replicas, in ms.
    pub upscale_delay_ms: Option<u64>,
    /// How long the load must call for fewer replicas, in ms.
    pub downscale_delay_ms: Option<u64>,
}

impl AutoscaleOptions {
    /// `policy` with the fields set here replaced.
    pub fn apply(&self, policy: AutoscalePolicy) -> AutoscalePolicy {
        AutoscalePolicy {
            min_replicas: self.min_replicas.unwrap_or(policy.min_replicas),
            max_replicas: self.max_replicas.unwrap_or(policy.max_replicas),
            target_ongoing_requests: self
                .target_ongoing_requests
                .unwrap_or(policy.target_ongoing_requests),
            upscale_delay_ms: self.upscale_delay_ms.unwrap_or(policy.upscale_delay_ms),
            downscale_delay_ms: self.downscale_delay_ms.unwrap_or(policy.downscale_delay_ms),
        }
    }
}

impl From<AutoscalePolicy> for AutoscaleOptions {
    fn from(p: AutoscalePolicy) -> Self {
        AutoscaleOptions {
            min_replicas: Some(p.min_replicas),
            max_replicas: Some(p.max_replicas),
            target_ongoing_requests: Some(p.target_ongoing_requests),
            upscale_delay_ms: Some(p.upscale_delay_ms),
            downscale_delay_ms: Some(p.downscale_delay_ms),
        }
    }
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

    /// Autoscales the actor step(s) named `step` with `policy` (instead of
    /// a fixed replica count, or the attribute's policy).
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    /// use pipeline_core::AutoscalePolicy;
    ///
    /// #[step(mode = "actors")]
    /// fn embed(x: i64) -> i64 { x }
    ///
    /// let policy = AutoscalePolicy { min_replicas: 2, max_replicas: 4, ..AutoscalePolicy::DEFAULT };
    /// let p = embed(Input::<i64>::new()).deploy_with(DeployOptions::new().autoscale("embed", policy))?;
    /// let r = &p.report()[0];
    /// assert_eq!((r.replicas, r.autoscale), (2, Some(policy)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn autoscale(mut self, step: &str, policy: AutoscalePolicy) -> Self {
        self.steps.entry(step.to_string()).or_default().autoscale = Some(policy.into());
        self
    }

    /// Runs tasks, task-placed replicas, batch timers and autoscalers on
    /// `handle`'s runtime, instead of the multi-thread runtime `deploy` is
    /// called in (or, outside one, the pipeline's own). This is how a
    /// pipeline runs on a `current_thread` runtime, such as a test's paused
    /// clock; that runtime must keep running for the pipeline to answer, so
    /// call it with `call_async` from there.
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    ///
    /// #[step(mode = "actors", placement = "task")]
    /// fn add_one(x: i64) -> i64 { x + 1 }
    ///
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    /// rt.block_on(async {
    ///     let opts = DeployOptions::new().runtime(tokio::runtime::Handle::current());
    ///     let p = add_one(Input::<i64>::new()).deploy_with(opts)?;
    ///     assert_eq!(p.call_async(1).await?, 2);
    ///     Ok::<(), Box<dyn std::error::Error>>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn runtime(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime = RuntimeChoice(Some(handle));
        self
    }

    /// The runtime chosen with [`runtime`](Self::runtime), if any.
    pub(crate) fn chosen_runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.runtime.0.as_ref()
    }

    /// Sets the queue bound of the step(s) named `step`.
    pub fn queue_bound(mut self, step: &str, bound: usize) -> Self {
        self.steps.entry(step.to_string()).or_default().queue_bound = Some(bound);
        self
    }

    /// Sets every option of the step(s) named `step` at once.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn with_step(mut self, step: &str, options: StepOptions) -> Self {
        self.steps.insert(step.to_string(), options);
        self
    }

    /// Serves the step(s) named `step` from worker processes through the
    /// NATS server at `url` (see the README's "Remote steps"), instead of
    /// in this process. The step must be marked `#[step(remote)]`; the
    /// graph is the same, compiled once. [`DeployOptions::local`] ignores
    /// this and runs the step inline.
    ///
    /// ```
    /// use pipeline_core::DeployOptions;
    /// let o = DeployOptions::new().remote("resnet18", "nats://127.0.0.1:4222");
    /// let t = DeployOptions::from_toml_str("[steps.resnet18]\nremote = \"nats://127.0.0.1:4222\"")?;
    /// assert_eq!(o.step("resnet18").remote, t.step("resnet18").remote);
    /// # Ok::<(), pipeline_core::DeployError>(())
    /// ```
    pub fn remote(mut self, step: &str, url: &str) -> Self {
        self.steps.entry(step.to_string()).or_default().remote = Some(RemoteUrl::new(url));
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
    /// let bad = DeployOptions::from_toml_str("[steps.Classifier]\ndevice = \"gpu\"").unwrap_err();
    /// let cause = std::error::Error::source(&bad).unwrap(); // the TOML parser's error
    /// assert!(cause.to_string().contains("expected `cpu` or `cuda:N`"));
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
    /// own, each falling back to the step's. `replicas` and `autoscale`
    /// both set the replica count, so they fall back as one: a node that
    /// sets either takes neither from its step (`replicas = 2` for the step
    /// and an autoscale policy for one of its nodes is that node autoscaled,
    /// the others at 2).
    pub(crate) fn instance(&self, instance: &str, step: &str) -> StepOptions {
        let (own, all) = (self.step(instance), self.step(step));
        let count = if own.replicas.is_some() || own.autoscale.is_some() {
            own
        } else {
            all
        };
        StepOptions {
            replicas: count.replicas,
            autoscale: count.autoscale,
            queue_bound: own.queue_bound.or(all.queue_bound),
            device: own.device.or(all.device),
            remote: own.remote.or(all.remote),
        }
    }

    /// The queue bound of the node called `instance`, a node of `step`.
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
        parse_toml(text).map_err(|(key, e)| DeployError::options(None, key, e))
    }

    /// Parses options from JSON: `{"queue_bound": 512, "steps": {"Classifier": {"replicas": 4}}}`.
    /// The cause of a failure is the parser's own error, through
    /// `source()` ([`OptionsError`](crate::OptionsError)).
    ///
    /// ```
    /// use std::error::Error;
    /// use pipeline_core::{DeployOptions, OptionsError};
    ///
    /// let o = DeployOptions::from_json_str(r#"{"steps": {"m": {"replicas": 2}}}"#)?;
    /// assert_eq!(o.step("m").replicas, Some(2));
    /// let bad = DeployOptions::from_json_str(r#"{"steps": {"m": {"replica": 2}}}"#).unwrap_err();
    /// let cause = bad.source().unwrap().downcast_ref::<OptionsError>().unwrap();
    /// assert!(matches!(cause, OptionsError::Json(_)));
    /// assert!(cause.to_string().contains("unknown field `replica`"));
    /// # Ok::<(), pipeline_core::DeployError>(())
    /// ```
    pub fn from_json_str(text: &str) -> Result<Self, DeployError> {
        parse_json(text).map_err(|(key, e)| DeployError::options(None, key, e))
    }

    /// Reads options from a `.toml` or `.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DeployError> {
        let path = path.as_ref();
        let fail = |(key, e): Failed| DeployError::options(Some(path), key, e);
        let parse: fn(&str) -> Result<Self, Failed> =
            match path.extension().and_then(|e| e.to_str()) {
                Some("toml") => parse_toml,
                Some("json") => parse_json,
                _ => return Err(fail((None, OptionsError::Extension))),
            };
        let text = std::fs::read_to_string(path).map_err(|e| fail((None, e.into())))?;
        parse(&text).map_err(fail)
    }
}

/// Why options did not parse, and at which key if known.
type Failed = (Option<String>, OptionsError);

fn parse_toml(text: &str) -> Result<DeployOptions, Failed> {
    toml::from_str::<Table<DeployOptions>>(text)
        .map(|t| t.0)
        .map_err(|e| (None, e.into()))
}

/// Parses JSON, tracking the key being read, so an error names it
/// (serde_json's own says only a line and a column).
fn parse_json(text: &str) -> Result<DeployOptions, Failed> {
    let mut reader = serde_json::Deserializer::from_str(text);
    let options = serde_path_to_error::deserialize::<_, Table<DeployOptions>>(&mut reader)
        .map_err(|e| {
            // `.` is the top level: no key to name.
            let key = Some(e.path().to_string()).filter(|k| k != ".");
            (key, OptionsError::Json(e.into_inner()))
        })?;
    // Nothing but whitespace may follow, as `serde_json::from_str` checks.
    reader.end().map_err(|e| (None, e.into()))?;
    Ok(options.0)
}
