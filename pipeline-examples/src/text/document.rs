//! A document in, its sentences streamed out, each with its nearest FAQ
//! entry: a stream step splits the document, and the embedding graph
//! (tokenize -> MiniLM, a batched actor -> pool) runs on each sentence
//! through `.map_each`, so the sentences of one document (and of
//! concurrent ones) share MiniLM's batches.
//!
//! ```text
//! document -> sentences ~> [each: tokenize -> minilm -> pool -> nearest] ~> answers
//! ```

use std::path::Path;

use pipeline_core::prelude::*;

use super::search::{Corpus, Hit};
use super::{pool, Embedding, MiniLm, Tokenize};

/// How many sentences a document may have (a longer one fails at the
/// sentence after this many, after streaming those).
pub const MAX_SENTENCES: usize = 10_000;

/// A document -> its sentences, in order: split after `.`, `!` or `?`
/// followed by white space (or at the end), trimmed, empty ones skipped.
///
/// ```
/// use futures::StreamExt;
/// use pipeline_examples::text::document::sentences;
///
/// let parts: Vec<String> = futures::executor::block_on(
///     sentences::call("Hi there! Is it late? Yes. ".into()).map(Result::unwrap).collect(),
/// );
/// assert_eq!(parts, ["Hi there!", "Is it late?", "Yes."]);
/// ```
#[step]
pub fn sentences(document: String) -> ItemStream<String> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut chars = document.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let ends = matches!(c, '.' | '!' | '?')
            && chars.peek().is_none_or(|(_, next)| next.is_whitespace());
        if ends {
            let end = i + c.len_utf8();
            parts.push(document[start..end].trim().to_string());
            start = end;
        }
    }
    parts.push(document[start..].trim().to_string());
    let parts = parts.into_iter().filter(|s| !s.is_empty());
    ItemStream::try_iter(parts.enumerate().map(|(i, s)| {
        if i < MAX_SENTENCES {
            Ok(s)
        } else {
            Err(format!(
                "the document has more than {MAX_SENTENCES} sentences"
            ))
        }
    }))
}

/// One sentence of a document and the FAQ entry nearest to it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answered {
    /// The sentence.
    pub sentence: String,
    /// The nearest FAQ entry.
    pub nearest: Hit,
}

/// A sentence and its embedding -> the nearest entry of the corpus.
#[derive(Debug)]
pub struct Nearest {
    corpus: Corpus,
}

#[step]
impl Nearest {
    /// Searches `corpus`.
    pub fn new(corpus: Corpus) -> Self {
        Nearest { corpus }
    }

    /// The corpus entry nearest `vector`.
    pub fn call(&self, sentence: String, vector: Embedding) -> Result<Answered, String> {
        let nearest = self
            .corpus
            .nearest(&vector, 1)
            .pop()
            .ok_or("the corpus is empty")?;
        Ok(Answered { sentence, nearest })
    }
}

/// The document graph: sentences of a document, each embedded with the
/// model files in `dir` (what `scripts/models.sh` writes under
/// `all-MiniLM-L6-v2/`) and answered with its nearest entry of `corpus`.
pub fn document_search(
    dir: &Path,
    corpus: Corpus,
) -> impl Upstream<Input = String, Output = ItemStream<Answered>> {
    let dir = dir.to_path_buf();
    sentences(Input::<String>::new()).map_each_with(move |sentence| {
        let sentence = sentence.shared();
        let tokens = Tokenize::bind(dir.clone(), sentence.clone()).named("tokenize");
        let vector = pool(MiniLm::bind(dir, tokens).named("minilm")).named("pool");
        Nearest::bind(corpus, sentence, vector).named("nearest")
    })
}
