//! Serving the embeddings: a list of texts embedded in one call, and a
//! small semantic search over a corpus embedded at start-up. Both steps hold
//! a handle to one deployed embedding pipeline (as a Ray Serve deployment
//! holds another's handle), so every route shares the model replicas and
//! sentences from different requests are batched together. Both are
//! `concurrent`: their calls share the step (it only holds handles) instead
//! of taking turns, as a model step's calls otherwise do.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use pipeline_core::prelude::*;

use super::Embedding;

/// The most texts one [`EmbedEach`] call takes.
pub const MAX_TEXTS: usize = 1024;

/// How many of one list's texts are in the embedding pipeline at once:
/// two full batches keep the encoder busy (and all of one `EmbedEach`'s
/// lists together hold at most [`SHARED_IN_FLIGHT`]).
pub const IN_FLIGHT: usize = 64;

/// How many texts all of one [`EmbedEach`]'s calls have in the embedding
/// pipeline at once, together: several long lists at a time then wait for
/// each other instead of overflowing the pipeline's queues (256 by
/// default), which would fail them as overloaded with their work thrown
/// away.
pub const SHARED_IN_FLIGHT: usize = 3 * IN_FLIGHT;

/// Embeds `texts`, [`IN_FLIGHT`] at a time and each holding one of
/// `permits` while in the pipeline, answering in the given order. They are
/// sent longest first (as sentence-transformers orders a list), so the
/// sentences the encoder finds queued together have similar lengths and
/// its batches carry little padding.
async fn embed_all(
    embed: &Pipeline<String, Embedding>,
    texts: impl IntoIterator<Item = String>,
    permits: &tokio::sync::Semaphore,
) -> Result<Vec<Embedding>, PipelineError> {
    let mut texts: Vec<(usize, String)> = texts.into_iter().enumerate().collect();
    texts.sort_by_key(|(_, t)| std::cmp::Reverse(t.chars().count()));
    let order: Vec<usize> = texts.iter().map(|(i, _)| *i).collect();
    let sorted: Vec<Embedding> = futures::stream::iter(texts)
        .map(|(_, t)| async move {
            // Never closed: a permit always comes.
            let _permit = permits.acquire().await;
            embed.call_async(t).await
        })
        .buffered(IN_FLIGHT)
        .try_collect()
        .await?;
    let mut out = vec![Vec::new(); sorted.len()];
    for (i, v) in order.into_iter().zip(sorted) {
        out[i] = v;
    }
    Ok(out)
}

/// A request the search steps refuse (the client's fault: serve it as 422
/// with `Ingress::client_error`). When the embedding pipeline itself fails,
/// the steps fail with its [`PipelineError`] instead, which the HTTP
/// ingress answers as it would a direct call (503 when overloaded, ...).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// More texts than [`MAX_TEXTS`].
    #[error("{0} texts in one request; at most {MAX_TEXTS}")]
    TooMany(usize),
    /// `k` of zero or over the corpus' size limit.
    #[error("k = {0}; give 1 to {MAX_K}")]
    BadK(usize),
}

/// The largest `k` a search answers.
pub const MAX_K: usize = 100;

/// Texts -> their embeddings, in order: each text is one call of the
/// embedding pipeline, [`IN_FLIGHT`] at a time (the encoder batches them).
#[derive(Debug)]
pub struct EmbedEach {
    one: Pipeline<String, Embedding>,
    /// Shared by its calls: [`SHARED_IN_FLIGHT`].
    permits: tokio::sync::Semaphore,
}

#[step(mode = "tasks", concurrent)]
impl EmbedEach {
    /// Over the deployed embedding pipeline `one`.
    pub fn new(one: Pipeline<String, Embedding>) -> Self {
        EmbedEach {
            one,
            permits: tokio::sync::Semaphore::new(SHARED_IN_FLIGHT),
        }
    }

    /// Embeds every text; the first failure fails the call.
    pub async fn call(&self, texts: Vec<String>) -> Result<Vec<Embedding>, BoxError> {
        if texts.len() > MAX_TEXTS {
            return Err(RequestError::TooMany(texts.len()).into());
        }
        Ok(embed_all(&self.one, texts, &self.permits).await?)
    }
}

/// A search request: `{"query": "...", "k": 3}` (`k` defaults to 3).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Query {
    /// The text to look for.
    pub query: String,
    /// How many hits, best first.
    #[serde(default = "default_k")]
    pub k: usize,
}

fn default_k() -> usize {
    3
}

/// A small FAQ, the corpus of the examples' search and document routes.
pub const FAQ: &[&str] = &[
    "How do I reset my password?",
    "Can I get a refund for my order?",
    "Where is my package? It has not arrived yet.",
    "How do I change the delivery address?",
    "Do you ship to other countries?",
    "How can I cancel my subscription?",
    "What payment methods do you accept?",
    "Is there a student discount?",
    "How do I contact customer support?",
    "Can I change the size of the shoes I ordered?",
    "My invoice shows the wrong amount.",
    "How long does delivery take?",
];

/// One search result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hit {
    /// The corpus text.
    pub text: String,
    /// Its position in the corpus.
    pub index: usize,
    /// Cosine similarity to the query.
    pub score: f32,
}

/// Texts with their embeddings, made once.
#[derive(Debug, Clone)]
pub struct Corpus {
    texts: Arc<Vec<String>>,
    vectors: Arc<Vec<Embedding>>,
}

impl Corpus {
    /// Embeds `texts` with `embed` ([`IN_FLIGHT`] at a time).
    pub async fn embed(
        texts: Vec<String>,
        embed: &Pipeline<String, Embedding>,
    ) -> Result<Self, PipelineError> {
        let permits = tokio::sync::Semaphore::new(SHARED_IN_FLIGHT);
        let vectors = embed_all(embed, texts.iter().cloned(), &permits).await?;
        Ok(Corpus {
            texts: Arc::new(texts),
            vectors: Arc::new(vectors),
        })
    }

    /// How many texts.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether it has no text.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The `k` texts nearest `query`, best first (ties by corpus order).
    pub fn nearest(&self, query: &[f32], k: usize) -> Vec<Hit> {
        let mut hits: Vec<Hit> = self
            .vectors
            .iter()
            .enumerate()
            .map(|(index, v)| Hit {
                text: self.texts[index].clone(),
                index,
                score: super::cosine(query, v),
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        hits.truncate(k);
        hits
    }
}

/// A query -> the corpus' nearest texts.
#[derive(Debug)]
pub struct Search {
    corpus: Corpus,
    embed: Pipeline<String, Embedding>,
}

#[step(mode = "tasks", concurrent)]
impl Search {
    /// Over `corpus`, embedding queries with `embed`.
    pub fn new(corpus: Corpus, embed: Pipeline<String, Embedding>) -> Self {
        Search { corpus, embed }
    }

    /// Embeds the query and ranks the corpus by cosine similarity.
    pub async fn call(&self, query: Query) -> Result<Vec<Hit>, BoxError> {
        if query.k == 0 || query.k > MAX_K {
            return Err(RequestError::BadK(query.k).into());
        }
        let v = self.embed.call_async(query.query).await?;
        Ok(self.corpus.nearest(&v, query.k))
    }
}
