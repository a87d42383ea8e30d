//! The seed's image-classification steps on libtorch (feature `torch`):
//! [`preprocess`] (bytes to a normalized tensor), the [`Classifier`] model
//! step (resnet18 / resnet34 from `tch::vision`, top-5), its batched twin
//! [`BatchedClassifier`], the ensemble's [`combine`], and the business-logic
//! combiner [`WeightedCombine`] that reads its weights from a file.
//!
//! ```no_run
//! use pipeline_core::prelude::*;
//! use pipeline_examples::vision::{combine, preprocess, Classifier, ModelSpec};
//!
//! let pre = preprocess(Input::<Vec<u8>>::new()).shared();   // fan-out point
//! let models = ["resnet18", "resnet34"]
//!     .map(|m| Classifier::bind(ModelSpec::seeded(m.parse().unwrap()), pre.clone()));
//! let ensemble = combine(models).deploy()?;                   // Pipeline<Vec<u8>, Vec<i64>>
//! let image = std::fs::read("cat.png")?;
//! let categories = ensemble.call(image)?;                     // ten ImageNet class indices
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod lite;
mod samples;
#[cfg(feature = "http")]
pub mod served;
pub mod transform;
mod weights;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use pipeline_core::prelude::*;
use pipeline_core::torch::{self, tch, Tensor};
use tch::nn::{FuncT, ModuleT};

pub use samples::sample_images;
pub use transform::PreprocessError;
pub use weights::{WeightedCombine, WeightedTop5, WeightsError};

/// Decodes PNG / JPEG bytes into the `[3, 224, 224]` float tensor the
/// models take (see [`transform`] for the exact transform).
/// Runs as tasks: CPU work on the blocking pool, many at once.
///
/// ```
/// use pipeline_examples::vision::{preprocess, sample_images};
/// let (_, png) = &sample_images()[0];
/// let t = preprocess::call(png.clone())?;
/// assert_eq!(t.size(), vec![3, 224, 224]);
/// assert!(preprocess::call(b"GIF89a nope".to_vec()).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[step(mode = "tasks", remote)]
pub fn preprocess(bytes: Vec<u8>) -> Result<Tensor, PreprocessError> {
    let chw = transform::normalized_chw(&bytes)?;
    let side = transform::SIZE as i64;
    Ok(Tensor::from(
        tch::Tensor::from_slice(&chw).view([3, side, side]),
    ))
}

/// Which torchvision ResNet.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// `torchvision.models.resnet18`
    Resnet18,
    /// `torchvision.models.resnet34`
    Resnet34,
}

impl Arch {
    /// The torchvision name.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::Resnet18 => "resnet18",
            Arch::Resnet34 => "resnet34",
        }
    }

    /// The seed of this architecture's stand-in weights.
    pub const fn seed(self) -> i64 {
        match self {
            Arch::Resnet18 => 18,
            Arch::Resnet34 => 34,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arch {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s {
            "resnet18" => Ok(Arch::Resnet18),
            "resnet34" => Ok(Arch::Resnet34),
            other => Err(ModelError::UnknownArch(other.to_string())),
        }
    }
}

/// A model to load: an architecture and, optionally, a weights file.
///
/// ```
/// use pipeline_examples::vision::{Arch, ModelSpec};
/// let spec = ModelSpec::load(Arch::Resnet18, "resnet18.safetensors");
/// assert_eq!(spec.weights.as_deref(), Some(std::path::Path::new("resnet18.safetensors")));
/// assert_eq!(ModelSpec::seeded(Arch::Resnet34).weights, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// resnet18 or resnet34.
    pub arch: Arch,
    /// A `.safetensors` or `.ot` file with torchvision's state-dict names
    /// (`conv1.weight`, `layer1.0.bn1.running_mean`, `fc.bias`, ...); `None`
    /// uses seeded random weights, and every answer says so.
    pub weights: Option<PathBuf>,
}

impl ModelSpec {
    /// Weights from a file.
    pub fn load(arch: Arch, path: impl Into<PathBuf>) -> Self {
        ModelSpec {
            arch,
            weights: Some(path.into()),
        }
    }

    /// Seeded random weights (no ImageNet weights ship offline).
    pub fn seeded(arch: Arch) -> Self {
        ModelSpec {
            arch,
            weights: None,
        }
    }
}

/// What went wrong building or running a classifier.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Not resnet18 / resnet34.
    #[error("unknown model `{0}`: expected `resnet18` or `resnet34`")]
    UnknownArch(String),
    /// The weights file is missing or does not fit the architecture.
    #[error("cannot load {arch} weights from {path}: {source}")]
    Weights {
        /// The architecture.
        arch: Arch,
        /// The file.
        path: PathBuf,
        /// libtorch's reason (a missing tensor name, a shape mismatch, ...).
        source: tch::TchError,
    },
    /// The input is not a `[3, 224, 224]` image tensor.
    #[error("{arch} takes a [3, 224, 224] image tensor, got {got:?}")]
    Shape {
        /// The architecture.
        arch: Arch,
        /// The shape that came in.
        got: Vec<i64>,
    },
    /// The input's elements are not `f32` (what `preprocess` makes): the
    /// network's weights are, and libtorch would refuse the mix deep in
    /// the forward pass.
    #[error("{arch} takes an f32 (`Float`) image tensor, got {got:?}: convert it with `.to_kind(tch::Kind::Float)` (scaled as `preprocess` does)")]
    Kind {
        /// The architecture.
        arch: Arch,
        /// The element type that came in.
        got: tch::Kind,
    },
    /// libtorch failed during the forward pass.
    #[error("{arch} forward pass failed: {source}")]
    Forward {
        /// The architecture.
        arch: Arch,
        /// libtorch's error.
        source: tch::TchError,
    },
}

impl ModelError {
    fn forward(arch: Arch) -> impl Fn(tch::TchError) -> ModelError {
        move |source| ModelError::Forward { arch, source }
    }
}

/// A classifier's answer, as in the seed: the five best ImageNet categories
/// (class indices) and their scores (logits), best first.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Top5 {
    /// Which model answered.
    pub model: Arch,
    /// ImageNet class indices, best first.
    pub categories: Vec<i64>,
    /// The model's logits for those classes.
    pub scores: Vec<f32>,
    /// Where the weights came from: the file, or `seeded (seed N): not
    /// trained, categories are arbitrary`.
    pub weights: String,
}

impl Top5 {
    /// The categories' ImageNet labels.
    pub fn labels(&self) -> Vec<&'static str> {
        self.categories
            .iter()
            .map(|&c| {
                usize::try_from(c)
                    .ok()
                    .and_then(|c| tch::vision::imagenet::CLASSES.get(c))
                    .copied()
                    .unwrap_or("?")
            })
            .collect()
    }
}

/// Seeded initialisation goes through libtorch's global generator, so
/// replicas built at once take turns.
static SEEDED_INIT: Mutex<()> = Mutex::new(());

/// A ResNet on one device, shared by the batched and unbatched steps.
#[derive(Debug)]
pub struct Resnet {
    arch: Arch,
    device: tch::Device,
    // Owns the parameters `net` reads.
    _vars: tch::nn::VarStore,
    net: FuncTDebug,
    weights: String,
}

/// `FuncT` has no `Debug`.
struct FuncTDebug(FuncT<'static>);

impl fmt::Debug for FuncTDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FuncT")
    }
}

impl Resnet {
    /// Builds the network on `device` and loads its weights (see
    /// [`ModelSpec`]). Weights are built on the CPU and then moved, so every
    /// replica of a seeded model holds the same weights on any device.
    pub fn new(spec: &ModelSpec, device: pipeline_core::Device) -> Result<Self, ModelError> {
        let arch = spec.arch;
        let build = |vs: &tch::nn::VarStore| match arch {
            Arch::Resnet18 => tch::vision::resnet::resnet18(&vs.root(), 1000),
            Arch::Resnet34 => tch::vision::resnet::resnet34(&vs.root(), 1000),
        };
        let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let (net, weights) = match &spec.weights {
            Some(path) => {
                let net = build(&vs);
                load(&mut vs, path).map_err(|source| ModelError::Weights {
                    arch,
                    path: path.clone(),
                    source,
                })?;
                (net, path.display().to_string())
            }
            None => {
                let _turn = SEEDED_INIT
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                tch::manual_seed(arch.seed());
                let net = build(&vs);
                let note = format!(
                    "seeded (seed {}): not trained, categories are arbitrary",
                    arch.seed()
                );
                (net, note)
            }
        };
        let device = tch::Device::from(device);
        vs.set_device(device);
        if spec.weights.is_none() {
            tracing::warn!(model = %arch, "no weights file given: using seeded random weights");
        }
        Ok(Resnet {
            arch,
            device,
            _vars: vs,
            net: FuncTDebug(net),
            weights,
        })
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// Logits for a `[n, 3, 224, 224]` batch, as `[n, 1000]`.
    pub fn forward(&self, batch: &tch::Tensor) -> Result<tch::Tensor, ModelError> {
        let size = batch.size();
        if size.len() != 4 || size[1..] != [3, 224, 224] {
            let got = if size.len() == 4 {
                size[1..].to_vec()
            } else {
                size
            };
            return Err(ModelError::Shape {
                arch: self.arch,
                got,
            });
        }
        if batch.kind() != tch::Kind::Float {
            return Err(ModelError::Kind {
                arch: self.arch,
                got: batch.kind(),
            });
        }
        let input = batch.to_device(self.device);
        Ok(tch::no_grad(|| self.net.0.forward_t(&input, false)))
    }

    /// The top-5 answer for each row of `[n, 1000]` logits.
    pub fn top5(&self, logits: &tch::Tensor) -> Result<Vec<Top5>, ModelError> {
        let (values, indices) = logits
            .to_device(tch::Device::Cpu)
            .f_topk(5, -1, true, true)
            .map_err(ModelError::forward(self.arch))?;
        let n = values.size().first().copied().unwrap_or(0);
        (0..n)
            .map(|i| {
                Ok(Top5 {
                    model: self.arch,
                    categories: Vec::<i64>::try_from(indices.get(i))
                        .map_err(ModelError::forward(self.arch))?,
                    scores: Vec::<f32>::try_from(values.get(i))
                        .map_err(ModelError::forward(self.arch))?,
                    weights: self.weights.clone(),
                })
            })
            .collect()
    }

    /// Classifies one `[3, 224, 224]` image.
    pub fn classify(&self, image: &tch::Tensor) -> Result<Top5, ModelError> {
        if image.dim() != 3 {
            return Err(ModelError::Shape {
                arch: self.arch,
                got: image.size(),
            });
        }
        let logits = self.forward(&image.unsqueeze(0))?;
        let mut top = self.top5(&logits)?;
        top.pop().ok_or(ModelError::Shape {
            arch: self.arch,
            got: image.size(),
        })
    }
}

fn load(vs: &mut tch::nn::VarStore, path: &Path) -> Result<(), tch::TchError> {
    if !path.is_file() {
        return Err(tch::TchError::FileFormat(format!(
            "{} does not exist or is not a file",
            path.display()
        )));
    }
    vs.load(path)
}

/// The seed's `ClassificationModel`: a ResNet per replica, one image per
/// call. Each replica owns its device (`cuda:(i % gpus)`, else the CPU;
/// override with `DeployOptions::device`).
///
/// ```no_run
/// use pipeline_core::prelude::*;
/// use pipeline_examples::vision::{preprocess, Arch, Classifier, ModelSpec};
///
/// let p = Classifier::bind(ModelSpec::seeded(Arch::Resnet18), preprocess(Input::<Vec<u8>>::new()))
///     .deploy()?;
/// let top5 = p.call(std::fs::read("cat.png")?)?;
/// println!("{:?} {:?}", top5.labels(), top5.scores);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Classifier {
    model: Resnet,
}

#[step(mode = "actors", replicas = 2, remote)]
impl Classifier {
    /// Loads the model on this replica's device.
    pub fn new(ctx: &ReplicaContext, spec: ModelSpec) -> Result<Self, ModelError> {
        Ok(Classifier {
            model: Resnet::new(&spec, ctx.device())?,
        })
    }

    /// Classifies one preprocessed image.
    pub fn call(&self, image: Tensor) -> Result<Top5, ModelError> {
        self.model.classify(&image)
    }
}

/// [`Classifier`] with dynamic batching: a replica stacks up to 32 queued
/// images into one forward pass, waiting at most 5 ms for them. The graph
/// sees the same `Tensor -> Top5` edge.
#[derive(Debug)]
pub struct BatchedClassifier {
    model: Resnet,
}

#[step(mode = "actors", replicas = 1, batch(max_size = 32, wait_ms = 5))]
impl BatchedClassifier {
    /// Loads the model on this replica's device.
    pub fn new(ctx: &ReplicaContext, spec: ModelSpec) -> Result<Self, ModelError> {
        Ok(BatchedClassifier {
            model: Resnet::new(&spec, ctx.device())?,
        })
    }

    /// Classifies a batch of preprocessed images, one answer per image.
    pub fn call(&self, images: Vec<Tensor>) -> Result<Vec<Top5>, ModelError> {
        let batch = torch::stack(&images).map_err(ModelError::forward(self.model.arch))?;
        let logits = self.model.forward(&batch)?;
        self.model.top5(&logits)
    }
}

/// The seed's `combine_output`: concatenates each model's top-5 categories.
///
/// ```
/// use pipeline_examples::vision::{combine, Arch, Top5};
/// let top = |model, c: i64| Top5 { model, categories: vec![c; 5], scores: vec![0.0; 5], weights: String::new() };
/// let all = combine::call(vec![top(Arch::Resnet18, 1), top(Arch::Resnet34, 2)]);
/// assert_eq!(all, vec![1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
/// ```
#[step]
pub fn combine(outputs: Vec<Top5>) -> Vec<i64> {
    outputs.into_iter().flat_map(|o| o.categories).collect()
}

/// A request that names the model to run: the input of [`routed`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ImageRequest {
    /// PNG or JPEG bytes.
    pub image: Vec<u8>,
    /// Which model should answer.
    pub model: Arch,
}

/// The route key: the model the request asks for.
#[step]
pub fn requested_model(request: ImageRequest) -> Arch {
    request.model
}

/// The request's image bytes.
#[step]
pub fn image_bytes(request: ImageRequest) -> Vec<u8> {
    request.image
}

/// Chaining: preprocess -> classifier.
///
/// ```no_run
/// use pipeline_core::prelude::*;
/// use pipeline_examples::vision::{chain, Arch, ModelSpec};
/// let p = chain(ModelSpec::seeded(Arch::Resnet18)).deploy()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn chain(model: ModelSpec) -> impl Upstream<Input = Vec<u8>, Output = Top5> {
    Classifier::bind(model, preprocess(Input::<Vec<u8>>::new()))
}

/// A [`Classifier`] node named after its model (`resnet18`, ...), so that
/// graphs, metrics and errors tell the models of an ensemble apart; deploy
/// options for `Classifier` still reach every one.
pub fn classifier<U>(
    model: ModelSpec,
    image: U,
) -> impl pipeline_core::Produces<Top5, Input = U::Input, Output = Top5>
where
    U: Upstream + pipeline_core::Produces<Tensor>,
{
    let name = model.arch.name();
    Classifier::bind(model, image).named(name)
}

/// Ensemble: preprocess once -> [model, model] concurrently -> [`combine`]
/// (the seed's concatenated top-5 categories).
pub fn ensemble(models: [ModelSpec; 2]) -> impl Upstream<Input = Vec<u8>, Output = Vec<i64>> {
    let pre = preprocess(Input::<Vec<u8>>::new()).shared();
    combine(models.map(|m| classifier(m, pre.clone())))
}

/// Business logic: the ensemble weighted by [`WeightedCombine`], whose
/// weights are read from the JSON file `store` on every call.
pub fn weighted(
    models: [ModelSpec; 2],
    store: PathBuf,
) -> impl Upstream<Input = Vec<u8>, Output = WeightedTop5> {
    let pre = preprocess(Input::<Vec<u8>>::new()).shared();
    WeightedCombine::bind(store, models.map(|m| classifier(m, pre.clone())))
}

/// Per-request model choice: a route on the request's `model` field; only
/// the chosen classifier runs.
pub fn routed(
    resnet18: ModelSpec,
    resnet34: ModelSpec,
) -> impl Upstream<Input = ImageRequest, Output = Top5> {
    let request = Input::<ImageRequest>::new().shared();
    let pre = preprocess(image_bytes(request.clone())).shared();
    route(requested_model(request))
        .branch(Arch::Resnet18, classifier(resnet18, pre.clone()))
        .branch(Arch::Resnet34, classifier(resnet34, pre))
}

/// A list of images in, one classification per image streamed out as each
/// is ready (frames of a video, say): a stream step hands out the images,
/// and preprocess -> [`BatchedClassifier`] runs on each (`.map_each`), so
/// the frames of one list share the model's batches; answers keep the
/// frames' order.
///
/// ```no_run
/// use pipeline_core::prelude::*;
/// use pipeline_examples::vision::{frames_classified, sample_images, Arch, ModelSpec};
///
/// let p = frames_classified(ModelSpec::seeded(Arch::Resnet18)).deploy()?;
/// let frames: Vec<Vec<u8>> = sample_images().into_iter().map(|(_, bytes)| bytes).collect();
/// for top5 in p.call_iter(frames) {
///     println!("{:?}", top5?.categories);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn frames_classified(
    model: ModelSpec,
) -> impl Upstream<Input = Vec<Vec<u8>>, Output = ItemStream<Top5>> {
    frames(Input::<Vec<Vec<u8>>>::new())
        .map_each_with(move |frame| BatchedClassifier::bind(model, preprocess(frame)))
}

/// The frames of a list, one item each.
#[step]
pub fn frames(images: Vec<Vec<u8>>) -> ItemStream<Vec<u8>> {
    ItemStream::iter(images)
}

/// The models for the examples and the demo: `resnet18` / `resnet34` from
/// `DIR/<name>.safetensors` when `dir` is given (e.g. the agreement
/// fixture, or real torchvision weights converted to safetensors), else
/// seeded.
pub fn model_specs(dir: Option<&Path>) -> [ModelSpec; 2] {
    [Arch::Resnet18, Arch::Resnet34].map(|arch| match dir {
        Some(dir) => ModelSpec::load(arch, dir.join(format!("{arch}.safetensors"))),
        None => ModelSpec::seeded(arch),
    })
}
