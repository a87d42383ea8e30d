//! Stand-in steps shared by the examples, the demo and the benchmarks: an
//! image-classification shape (preprocess, classifier model, combine)
//! without libtorch, so it runs anywhere in microseconds.

use pipeline_core::prelude::*;

pub mod bench;
pub mod process;
pub mod remote_steps;
#[cfg(feature = "http")]
pub mod seed001;
#[cfg(feature = "text")]
pub mod text;
#[cfg(feature = "torch")]
pub mod vision;

/// A classifier's answer: the top categories with their scores, best first.
pub type Top5 = Vec<(String, f32)>;

/// Turns raw bytes into a normalized feature vector (stand-in for decode,
/// resize, crop and normalize).
#[step]
pub fn preprocess(bytes: Vec<u8>) -> Vec<f32> {
    let n = bytes.len().max(1) as f32;
    let mean = bytes.iter().map(|&b| f32::from(b)).sum::<f32>() / n;
    bytes
        .iter()
        .map(|&b| (f32::from(b) - mean) / 255.0)
        .collect()
}

/// A stand-in model: scores ten categories with seeded weights.
#[derive(Debug)]
pub struct Classifier {
    name: String,
    weights: Vec<f32>,
}

#[step(mode = "actors", replicas = 2)]
impl Classifier {
    /// Builds the model for one replica; `model_name` seeds its weights.
    pub fn new(ctx: &ReplicaContext, model_name: String) -> Self {
        let seed = model_name
            .bytes()
            .fold(17u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        let weights = (0..10u32)
            .map(|i| ((seed.wrapping_mul(i + 1) % 1000) as f32 / 1000.0) - 0.5)
            .collect();
        let _ = ctx.device();
        Classifier {
            name: model_name,
            weights,
        }
    }

    /// Scores the features and returns the top five categories.
    pub fn call(&mut self, features: Vec<f32>) -> Top5 {
        let energy: f32 = features.iter().map(|x| x.abs()).sum::<f32>() + 1.0;
        let mut scores: Vec<(String, f32)> = self
            .weights
            .iter()
            .enumerate()
            .map(|(i, w)| (format!("{}:class{i}", self.name), w * energy))
            .collect();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        scores.truncate(5);
        scores
    }
}

/// Ensemble combiner: concatenates each model's top-5 categories.
#[step]
pub fn combine(outputs: Vec<Top5>) -> Vec<String> {
    outputs
        .into_iter()
        .flatten()
        .map(|(category, _)| category)
        .collect()
}
