//! TorchScript models: any file `torch.jit.trace` or `torch.jit.script`
//! wrote, loaded with `tch::CModule` on a replica's device, run in eval
//! mode without gradients. [`TorchScript`] is the model; [`ScriptStep`]
//! and [`BatchedScriptStep`] are ready-made `Tensor -> Tensor` actor steps
//! around it (the batched one stacks its callers' tensors into one forward
//! pass and splits the result).

use std::fmt;
use std::path::{Path, PathBuf};

use tch::TchError;

use super::tensor::{stack, unstack, Tensor};
use crate::step::ReplicaContext;

/// Why a TorchScript model could not load or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScriptError {
    /// No file at the path (nothing there, or a directory).
    #[error("TorchScript file `{}` not found{}", .path.display(), if .path.is_dir() { " (it is a directory)" } else { "" })]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// The file is there but libtorch cannot load it as a TorchScript
    /// module (a pickled `state_dict` or `torch.save(model)` file is not
    /// one: export with `torch.jit.trace(model, example)` or
    /// `torch.jit.script(model)` and `.save(path)`).
    #[error(
        "`{}` is not a TorchScript module: export it with `torch.jit.trace(model, example).save(path)` \
         or `torch.jit.script(model).save(path)`",
        .path.display()
    )]
    NotTorchScript {
        /// The file.
        path: PathBuf,
        /// libtorch's error.
        #[source]
        source: TchError,
    },
    /// The module refused its input (wrong shape, dtype or device);
    /// `found` describes the input, `message` is what the module said
    /// (it names the shape it expected where it can tell).
    #[error("the TorchScript module `{module}` rejected an input of {found}: {message}")]
    BadInput {
        /// The module's file name.
        module: String,
        /// The input's shape and kind.
        found: String,
        /// libtorch's message, first line.
        message: String,
    },
    /// A batch could not be stacked (mismatched shapes, named) or the
    /// output split.
    #[error("batching for `{module}`: {source}")]
    Batch {
        /// The module's file name.
        module: String,
        /// libtorch's error.
        #[source]
        source: TchError,
    },
    /// The module returned something other than one tensor.
    #[error("the TorchScript module `{module}` returned {found}, not a tensor")]
    NotATensor {
        /// The module's file name.
        module: String,
        /// What it returned.
        found: String,
    },
}

/// A loaded TorchScript module on one device, in eval mode.
///
/// ```no_run
/// use pipeline_core::torch::{tch, TorchScript};
///
/// let model = TorchScript::load("lite0.pt", tch::Device::Cpu)?;
/// let logits = model.forward(&tch::Tensor::zeros([1, 3, 224, 224], (tch::Kind::Float, tch::Device::Cpu)))?;
/// # Ok::<(), pipeline_core::torch::ScriptError>(())
/// ```
pub struct TorchScript {
    module: tch::CModule,
    device: tch::Device,
    name: String,
}

impl fmt::Debug for TorchScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TorchScript")
            .field("module", &self.name)
            .field("device", &self.device)
            .finish()
    }
}

impl TorchScript {
    /// Loads the module at `path` onto `device`.
    ///
    /// The first load turns libtorch's profiling graph executor off, for
    /// the whole process (`tch::jit::set_profiling_mode(false)`; call it
    /// with `true` afterwards to have it back). That executor profiles a
    /// module again for every new input shape and then compiles fused
    /// kernels for it; a server's batches come in every size from 1 to
    /// `max_size`, so on a GPU it kept recompiling: the pretrained
    /// ensemble's first 256 images ran at 36 images/s on an H100 with it
    /// and at 309 without, and its steady state did not change (365 and
    /// 371 images/s; `examples/cuda_check.rs`).
    pub fn load(path: impl AsRef<Path>, device: tch::Device) -> Result<Self, ScriptError> {
        static SIMPLE_EXECUTOR: std::sync::Once = std::sync::Once::new();
        SIMPLE_EXECUTOR.call_once(|| tch::jit::set_profiling_mode(false));
        let path = path.as_ref();
        if !path.is_file() {
            return Err(ScriptError::Missing {
                path: path.to_path_buf(),
            });
        }
        let mut module = tch::CModule::load_on_device(path, device).map_err(|source| {
            ScriptError::NotTorchScript {
                path: path.to_path_buf(),
                source,
            }
        })?;
        module.set_eval();
        Ok(TorchScript {
            module,
            device,
            name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into(),
            ),
        })
    }

    /// The device it runs on.
    pub fn device(&self) -> tch::Device {
        self.device
    }

    /// Runs the module on `input` (moved to the module's device first),
    /// without gradients.
    pub fn forward(&self, input: &tch::Tensor) -> Result<tch::Tensor, ScriptError> {
        let input = input.to_device(self.device);
        let output = tch::no_grad(|| {
            self.module
                .forward_is(&[tch::IValue::Tensor(input.shallow_clone())])
        });
        match output {
            Ok(tch::IValue::Tensor(t)) => Ok(t),
            Ok(other) => Err(ScriptError::NotATensor {
                module: self.name.clone(),
                found: ivalue_kind(&other).to_string(),
            }),
            Err(e) => Err(ScriptError::BadInput {
                module: self.name.clone(),
                found: format!("shape {:?} ({:?})", input.size(), input.kind()),
                message: first_line(&e.to_string()),
            }),
        }
    }

    /// Runs the module once on a batch: the tensors are stacked along a new
    /// first dimension, and the output split back, one per input.
    pub fn forward_batch(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, ScriptError> {
        let batch = stack(inputs).map_err(|source| ScriptError::Batch {
            module: self.name.clone(),
            source,
        })?;
        let output = self.forward(&batch)?;
        if output.size().first().copied() != Some(inputs.len() as i64) {
            return Err(ScriptError::Batch {
                module: self.name.clone(),
                source: TchError::Shape(format!(
                    "a batch of {} gave an output of shape {:?}",
                    inputs.len(),
                    output.size()
                )),
            });
        }
        Ok(unstack(&output))
    }
}

fn ivalue_kind(v: &tch::IValue) -> &'static str {
    match v {
        tch::IValue::None => "None",
        tch::IValue::Tuple(_) => "a tuple",
        tch::IValue::GenericList(_) | tch::IValue::TensorList(_) => "a list",
        tch::IValue::GenericDict(_) => "a dict",
        tch::IValue::String(_) => "a string",
        _ => "a non-tensor value",
    }
}

/// libtorch's TorchScript errors carry a long traceback; its first line
/// says what went wrong.
fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(text)
        .to_string()
}

/// A TorchScript model as an actor step, `Tensor -> Tensor`: each replica
/// loads the file on its own device (`cuda:(i % gpus)` or the CPU).
///
/// ```no_run
/// use pipeline_core::prelude::*;
/// use pipeline_core::torch::{ScriptStep, Tensor};
///
/// let p = ScriptStep::bind("lite0.pt".into(), Input::<Tensor>::new()).deploy()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ScriptStep {
    model: TorchScript,
}

#[crate::step(mode = "actors", remote)]
impl ScriptStep {
    /// Loads the module on this replica's device.
    pub fn new(ctx: &ReplicaContext, path: PathBuf) -> Result<Self, ScriptError> {
        Ok(ScriptStep {
            model: TorchScript::load(path, ctx.device().into())?,
        })
    }

    /// One forward pass.
    pub fn call(&self, input: Tensor) -> Result<Tensor, ScriptError> {
        self.model.forward(&input).map(Tensor::from)
    }
}

/// [`ScriptStep`], batched: a replica stacks up to 32 queued inputs (waiting
/// at most 5 ms after the first) into one forward pass. The graph sees the
/// same `Tensor -> Tensor` edge.
#[derive(Debug)]
pub struct BatchedScriptStep {
    model: TorchScript,
}

#[crate::step(mode = "actors", batch(max_size = 32, wait_ms = 5), remote)]
impl BatchedScriptStep {
    /// Loads the module on this replica's device.
    pub fn new(ctx: &ReplicaContext, path: PathBuf) -> Result<Self, ScriptError> {
        Ok(BatchedScriptStep {
            model: TorchScript::load(path, ctx.device().into())?,
        })
    }

    /// One forward pass over the batch.
    pub fn call(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ScriptError> {
        self.model.forward_batch(&inputs)
    }
}
