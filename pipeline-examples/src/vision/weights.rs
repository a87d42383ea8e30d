//! Business logic in the graph: the ensemble's weights live in a store (a
//! JSON file an operator edits), read on every call, so a change applies to
//! the next request without a redeploy.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pipeline_core::prelude::*;

use super::{Arch, Top5};

/// Why the weighted combination failed.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The store could not be read.
    #[error("cannot read the weights store {path}: {source}")]
    Read {
        /// The store's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store is not `{"resnet18": 0.5, ...}`.
    #[error("the weights store {path} is not a JSON object of model weights: {source}")]
    Parse {
        /// The store's path.
        path: PathBuf,
        /// serde's message.
        source: serde_json::Error,
    },
    /// A model answered that the store has no (usable) weight for.
    #[error(
        "the weights store {path} has no weight for {model}: add `\"{model}\": <weight >= 0>`"
    )]
    Missing {
        /// The store's path.
        path: PathBuf,
        /// The model.
        model: Arch,
    },
    /// Negative, non-finite, or all zero.
    #[error("the weights store {path} has unusable weights {weights:?}: each must be finite and >= 0, and one > 0")]
    Invalid {
        /// The store's path.
        path: PathBuf,
        /// What it holds.
        weights: BTreeMap<Arch, f32>,
    },
}

/// The ensemble's answer after weighting: the five best categories by
/// weighted probability, and the weights that were used.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WeightedTop5 {
    /// ImageNet class indices, best first.
    pub categories: Vec<i64>,
    /// Each category's weighted probability (each model's top-5 scores
    /// softmaxed, times its weight, summed over models, over the weights'
    /// total).
    pub scores: Vec<f32>,
    /// The weights read from the store for this call.
    pub weights: BTreeMap<Arch, f32>,
}

/// Combines the models' top-5 answers with weights read from a JSON store
/// on each call: `{"resnet18": 0.3, "resnet34": 0.7}`.
///
/// ```
/// use pipeline_examples::vision::{Arch, Top5, WeightedCombine};
/// let store = std::env::temp_dir().join(format!("weights-doc-{}.json", std::process::id()));
/// std::fs::write(&store, r#"{"resnet18": 0.0, "resnet34": 1.0}"#)?;
/// let top = |model, c| Top5 { model, categories: vec![c, 9, 8, 7, 6], scores: vec![5.0, 1.0, 1.0, 1.0, 1.0], weights: String::new() };
/// let combiner = WeightedCombine::new(store.clone());
/// let out = combiner.call(vec![top(Arch::Resnet18, 1), top(Arch::Resnet34, 2)])?;
/// assert_eq!(out.categories[0], 2);  // resnet18 weighs nothing
/// # std::fs::remove_file(store)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct WeightedCombine {
    store: PathBuf,
}

#[step]
impl WeightedCombine {
    /// A combiner reading `store`.
    pub fn new(store: PathBuf) -> Self {
        WeightedCombine { store }
    }

    /// Reads the weights and combines.
    pub fn call(&self, outputs: Vec<Top5>) -> Result<WeightedTop5, WeightsError> {
        let path = || self.store.clone();
        let text = std::fs::read_to_string(&self.store).map_err(|source| WeightsError::Read {
            path: path(),
            source,
        })?;
        let weights: BTreeMap<Arch, f32> =
            serde_json::from_str(&text).map_err(|source| WeightsError::Parse {
                path: path(),
                source,
            })?;
        let usable = weights.values().all(|w| w.is_finite() && *w >= 0.0)
            && weights.values().any(|w| *w > 0.0);
        if !usable {
            return Err(WeightsError::Invalid {
                path: path(),
                weights,
            });
        }
        let mut by_category: BTreeMap<i64, f32> = BTreeMap::new();
        let mut total = 0.0;
        for out in &outputs {
            let w = *weights.get(&out.model).ok_or(WeightsError::Missing {
                path: path(),
                model: out.model,
            })?;
            total += w;
            let max = out.scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = out.scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            for (c, e) in out.categories.iter().zip(exp) {
                *by_category.entry(*c).or_default() += w * e / sum;
            }
        }
        let mut ranked: Vec<(i64, f32)> = by_category
            .into_iter()
            .map(|(c, s)| (c, if total > 0.0 { s / total } else { 0.0 }))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(5);
        Ok(WeightedTop5 {
            categories: ranked.iter().map(|r| r.0).collect(),
            scores: ranked.iter().map(|r| r.1).collect(),
            weights,
        })
    }
}
