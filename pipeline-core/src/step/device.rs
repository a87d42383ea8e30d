//! Where a replica runs its work ([`Device`]) and what its constructor
//! learns about itself ([`ReplicaContext`]).

/// A compute device a replica may own. Parsed from `"cpu"` or `"cuda:N"`
/// (as in deploy options files).
///
/// ```
/// use pipeline_core::Device;
/// assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
/// assert_eq!("cuda:1".parse::<Device>(), Ok(Device::Cuda(1)));
/// assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
/// assert!("gpu".parse::<Device>().unwrap_err().contains("expected `cpu` or `cuda:N`"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(try_from = "String")]
#[non_exhaustive]
pub enum Device {
    /// The CPU.
    #[default]
    Cpu,
    /// The CUDA device with this index.
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let index = |i: &str| i.parse::<usize>().ok();
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            d => match d.strip_prefix("cuda:").and_then(index) {
                Some(i) => Ok(Device::Cuda(i)),
                None => Err(format!(
                    "unknown device `{d}`: expected `cpu` or `cuda:N` (N a device index)"
                )),
            },
        }
    }
}

impl TryFrom<String> for Device {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// What a model step's constructor learns about the replica it builds.
///
/// ```
/// use pipeline_core::prelude::*;
///
/// struct Scaler { factor: i64 }
///
/// #[step]
/// impl Scaler {
///     fn new(ctx: &ReplicaContext, factor: i64) -> Self {
///         assert_eq!(ctx.device(), Device::Cpu);
///         Scaler { factor: factor * (ctx.index() as i64 + 1) }
///     }
///     fn call(&self, x: i64) -> i64 { x * self.factor }
/// }
///
/// let p = Scaler::bind(10, Input::<i64>::new()).deploy()?;
/// assert_eq!(p.call(2)?, 20);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaContext {
    pub(crate) step: &'static str,
    pub(crate) index: usize,
    pub(crate) replicas: usize,
    pub(crate) device: Device,
}

impl ReplicaContext {
    /// A context for building a model by hand, e.g. in a unit test.
    pub fn new(step: &'static str, index: usize, replicas: usize, device: Device) -> Self {
        ReplicaContext {
            step,
            index,
            replicas,
            device,
        }
    }
    /// The step's name.
    pub fn step(&self) -> &'static str {
        self.step
    }
    /// This replica's index, `0..replicas()`.
    pub fn index(&self) -> usize {
        self.index
    }
    /// How many replicas the step has.
    pub fn replicas(&self) -> usize {
        self.replicas
    }
    /// The device this replica owns.
    pub fn device(&self) -> Device {
        self.device
    }
}
