//! Sentence embeddings over HTTP (all-MiniLM-L6-v2): `POST /embed` takes a
//! JSON list of strings and answers their vectors; `POST /search` answers
//! the nearest entries of a small FAQ embedded at start-up.
//!
//! ```text
//! MODELS="$(bash scripts/models.sh)"
//! cargo run -p pipeline-examples --features http,text --example http_embed -- 127.0.0.1:8000 "$MODELS"
//! curl -s -d '["A man is eating food.", "Ein Mann isst."]' http://127.0.0.1:8000/embed | head -c 200
//! curl -s -d '{"query": "how do I get my money back?", "k": 2}' http://127.0.0.1:8000/search
//! curl -sN -H 'accept: text/event-stream' -d '"My parcel never came. I want a refund!"' http://127.0.0.1:8000/document
//! ```
//!
//! `POST /document` streams (Server-Sent Events, or NDJSON without that
//! `accept`): the document is split into sentences by a stream step, each
//! sentence embedded (`.map_each`, its sentences sharing MiniLM's batches)
//! and answered with its nearest FAQ entry as soon as it is ready.
//!
//! One embedding pipeline (tokenize -> minilm (batched actor) -> pool) is
//! deployed; both routes call it through its handle, so their sentences
//! share the model's batches. It is also served alone at `/embed/one`
//! (`"a sentence"` -> its vector), which puts its steps on `/graph` and
//! `/metrics`.
use std::path::PathBuf;

use pipeline_core::http::{Ingress, DEFAULT_ADDR};
use pipeline_core::prelude::*;
use pipeline_examples::text::document::document_search;
use pipeline_examples::text::search::{Corpus, EmbedEach, RequestError, Search, FAQ};
use pipeline_examples::text::{embedder, MINILM_DIR};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pipeline_core::torch::tune_malloc();
    tokio::runtime::Runtime::new()?.block_on(serve())
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| DEFAULT_ADDR.to_string());
    let models = args
        .next()
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("PIPELINE_MODELS").map(PathBuf::from))
        .ok_or("give the models folder (what scripts/models.sh prints) or set PIPELINE_MODELS")?;
    let embed = embedder(&models.join(MINILM_DIR)).deploy()?;
    let corpus = Corpus::embed(FAQ.iter().map(|s| s.to_string()).collect(), &embed).await?;
    tracing::info!(texts = corpus.len(), "FAQ embedded");
    let each = EmbedEach::bind(embed.clone(), Input::<Vec<String>>::new())
        .named("embed_each")
        .deploy()?;
    let search = Search::bind(corpus.clone(), embed.clone(), Input::new())
        .named("search")
        .deploy()?;
    let document = document_search(&models.join(MINILM_DIR), corpus).deploy()?;
    Ingress::new()
        .json("/embed", each)
        .json("/search", search)
        .json("/embed/one", embed)
        .stream("/document", document)
        // Too many texts or a bad k are the client's fault.
        .client_error::<RequestError>(422)
        .serve(&addr)
        .await?;
    Ok(())
}
