//! libtorch glue (feature `torch`): device mapping for replicas and the
//! `tch` crate, re-exported so users depend on one version.
//!
//! libtorch's CUDA backend lives in `libtorch_cuda.so`, which registers
//! itself when loaded but which no symbol of ours references, so a linker
//! using `--as-needed` (the default on Debian and Ubuntu) drops it and CUDA
//! then silently reports no device. Rather than ask every binary for link
//! flags (which would also load CUDA into binaries that never use it), this
//! module loads it at run time, once, before the first device query:
//! [`ensure_cuda_loaded`]. To check CUDA on a machine with a GPU:
//!
//! ```text
//! cargo run -p pipeline-examples --features torch --example cuda_check
//! ```

use std::sync::OnceLock;

pub use tch;

mod malloc;
mod script;
mod tensor;
pub use malloc::{tune_malloc, tune_malloc_with, MallocTuning};
pub use script::{BatchedScriptStep, ScriptError, ScriptStep, TorchScript};
pub use tensor::{stack, unstack, Tensor};

use crate::step::Device;

/// What loading libtorch's CUDA backend found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaBackend {
    /// `libtorch_cuda.so` is loaded (from this path or name).
    Loaded(String),
    /// This libtorch has no CUDA backend (a CPU-only build), or it could not
    /// be loaded; the reason is kept.
    Unavailable(String),
}

/// Loads `libtorch_cuda.so` if this libtorch has one, once per process, and
/// says what happened. Called by [`cuda_device_count`].
pub fn ensure_cuda_loaded() -> &'static CudaBackend {
    static BACKEND: OnceLock<CudaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        // The directory `LIBTORCH` named at build time first, then the
        // loader's own search (which honours the binary's rpath).
        let mut candidates = Vec::new();
        if let Some(dir) = option_env!("PIPELINE_LIBTORCH_LIB") {
            candidates.push(format!("{dir}/libtorch_cuda.so"));
        }
        candidates.push("libtorch_cuda.so".to_string());
        let mut errors = Vec::new();
        for candidate in candidates {
            match load(&candidate) {
                Ok(()) => return CudaBackend::Loaded(candidate),
                Err(e) => errors.push(format!("{candidate}: {e}")),
            }
        }
        CudaBackend::Unavailable(errors.join("; "))
    })
}

impl From<Device> for tch::Device {
    fn from(device: Device) -> Self {
        match device {
            Device::Cpu => tch::Device::Cpu,
            Device::Cuda(i) => tch::Device::Cuda(i),
        }
    }
}

/// How many CUDA devices libtorch sees (0 on a machine without a GPU).
///
/// ```
/// let n = pipeline_core::torch::cuda_device_count();
/// assert!(n < 1024);
/// ```
pub fn cuda_device_count() -> usize {
    ensure_cuda_loaded();
    let n = tch::Cuda::device_count();
    usize::try_from(n).unwrap_or(0)
}

/// The device replica `index` of a step should own: `cuda:(index % gpus)`
/// when CUDA devices exist, else the CPU.
///
/// ```
/// use pipeline_core::{torch, Device};
/// let d = torch::replica_device(3);
/// assert!(d == Device::Cpu || matches!(d, Device::Cuda(_)));
/// ```
pub fn replica_device(index: usize) -> Device {
    match cuda_device_count() {
        0 => Device::Cpu,
        gpus => Device::Cuda(index % gpus),
    }
}

/// Loads a shared library for the life of the process.
#[allow(unsafe_code)]
fn load(path: &str) -> Result<(), libloading::Error> {
    // SAFETY: loading runs the library's initialisers. libtorch_cuda's
    // register libtorch's CUDA backend and touch nothing of ours; it is
    // built against the libtorch this process already links.
    let library = unsafe { libloading::Library::new(path) }?;
    // Never unloaded: libtorch keeps pointers into it.
    std::mem::forget(library);
    Ok(())
}
