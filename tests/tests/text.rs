//! Sentence embeddings (all-MiniLM-L6-v2) against sentence-transformers on
//! the same sentences: the fixture (`scripts/make_fixture.py`, run by
//! `scripts/fixture.sh` with `PIPELINE_MODELS` set) records, per sentence,
//! the model's word-piece ids and its embedding alone and inside one padded
//! batch. Here the same sentences go through the deployed pipeline
//! (tokenize -> minilm, batched actor -> pool): the ids must be identical
//! (truncation to 256 included) and every embedding's cosine with
//! Python's at least 0.9999, whether the sentence ran alone or batched.
#![cfg(feature = "text")]

use std::path::{Path, PathBuf};

use pipeline_core::prelude::*;
use pipeline_examples::text::search::{Corpus, EmbedEach, Query, RequestError, Search, MAX_TEXTS};
use pipeline_examples::text::{cosine, embedder, MiniLm, TextError, Tokenize, Tokens, MINILM_DIR};
use serde_json::Value;

const MIN_COSINE: f32 = 0.9999;

fn fixture() -> (PathBuf, Value) {
    let dir = std::env::var_os("PIPELINE_FIXTURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixture"));
    let text = std::fs::read_to_string(dir.join("expected.json"))
        .expect("no fixture: run `bash scripts/test.sh` (it runs scripts/fixture.sh)");
    let expected: Value = serde_json::from_str(&text).expect("parse expected.json");
    let minilm = expected["minilm"].clone();
    assert!(
        minilm.is_object(),
        "the fixture has no MiniLM expectations: run `bash scripts/test.sh` \
         (scripts/models.sh, then the fixture with PIPELINE_MODELS set)"
    );
    let models = std::env::var_os("PIPELINE_MODELS")
        .map(PathBuf::from)
        .or_else(|| expected["lite"]["models"].as_str().map(PathBuf::from))
        .expect("PIPELINE_MODELS (what scripts/models.sh prints)");
    (models.join(MINILM_DIR), minilm)
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

/// One sentence as sentence-transformers saw it.
struct Reference {
    text: String,
    /// Its word-piece ids.
    ids: Vec<u32>,
    /// Its embedding, encoded alone.
    alone: Vec<f32>,
    /// Its embedding, encoded in one padded batch with the others.
    batched: Vec<f32>,
}

fn sentences(minilm: &Value) -> Vec<Reference> {
    minilm["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| Reference {
            text: s["text"].as_str().expect("text").to_string(),
            ids: s["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|i| i.as_u64().expect("id") as u32)
                .collect(),
            alone: floats(&s["embedding"]),
            batched: floats(&s["embedding_in_batch"]),
        })
        .collect()
}

#[test]
fn tokenizer_gives_sentence_transformers_ids() {
    let (dir, minilm) = fixture();
    let tokenize = Tokenize::new(dir).expect("load tokenizer.json");
    let all = sentences(&minilm);
    assert!(
        all.iter().any(|r| r.ids.len() == 256),
        "the fixture has a sentence past 256 word pieces"
    );
    for Reference { text, ids, .. } in &all {
        let got = tokenize.call(text.clone()).expect("tokenize");
        assert_eq!(&got.ids, ids, "ids of {text:?}");
    }
}

#[test]
fn embeddings_match_sentence_transformers_alone_and_batched() {
    let (dir, minilm) = fixture();
    let embed = embedder(&dir).deploy().expect("deploy");
    let all = sentences(&minilm);
    let mut report = String::new();
    let mut worst = 1f32;
    // One at a time: each forward pass holds one sentence.
    for Reference {
        text, alone: want, ..
    } in &all
    {
        let got = embed.call(text.clone()).expect("embed");
        assert_eq!(got.len(), 384);
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "unit length, got {norm}");
        let c = cosine(&got, want);
        assert!(c >= MIN_COSINE, "{text:?}: cosine {c} with Python's");
        worst = worst.min(c);
        report.push_str(&format!("alone   {c:.7}  {:?}\n", short(text)));
    }
    // All at once: the batched encoder pads them together.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let batched = rt.block_on(futures::future::try_join_all(
        all.iter().map(|r| embed.call_async(r.text.clone())),
    ));
    let batched = batched.expect("embed batched");
    for (
        Reference {
            text,
            batched: want,
            ..
        },
        got,
    ) in all.iter().zip(&batched)
    {
        let c = cosine(got, want);
        assert!(
            c >= MIN_COSINE,
            "{text:?} batched: cosine {c} with Python's"
        );
        worst = worst.min(c);
        report.push_str(&format!("batched {c:.7}  {:?}\n", short(text)));
    }
    let minilm = embed
        .metrics()
        .into_iter()
        .find(|s| s.step == "minilm")
        .expect("minilm metrics");
    let (sentences, batches) = (minilm.batch_size.sum, minilm.batch_size.count());
    assert!(
        batches < 2 * all.len() as u64,
        "the concurrent calls were batched: {sentences} sentences in {batches} batches"
    );
    report.push_str(&format!(
        "lowest cosine: {worst:.7} (required {MIN_COSINE}); minilm ran {sentences} sentences in {batches} batches\n"
    ));
    print!("{report}");
    if let Some(dir) = std::env::var_os("PIPELINE_FIXTURE_DIR")
        .map(PathBuf::from)
        .or_else(|| Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixture")))
    {
        let _ = std::fs::write(dir.join("agreement-minilm.txt"), report);
    }
}

#[test]
fn similar_sentences_are_near_and_unrelated_far() {
    let (dir, _) = fixture();
    let embed = embedder(&dir)
        .deploy_with(DeployOptions::local())
        .expect("deploy");
    let e = |s: &str| embed.call(s.to_string()).expect("embed");
    let food = e("A man is eating food.");
    let bread = e("A man is eating a piece of bread.");
    let drums = e("A monkey is playing drums.");
    assert!(cosine(&food, &bread) > 0.7, "{}", cosine(&food, &bread));
    assert!(cosine(&food, &drums) < 0.2, "{}", cosine(&food, &drums));
}

#[test]
fn bad_files_and_bad_tokens_are_errors_not_panics() {
    let (dir, _) = fixture();
    let empty = std::env::temp_dir().join(format!("minilm-missing-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("temp dir");
    assert!(matches!(
        Tokenize::new(empty.clone()),
        Err(TextError::Missing { .. })
    ));
    // A tokenizer.json that is not one; weights that are not safetensors.
    std::fs::write(empty.join("tokenizer.json"), b"{ not json").expect("write");
    std::fs::write(empty.join("model.safetensors"), b"garbage").expect("write");
    let err = Tokenize::new(empty.clone()).expect_err("bad tokenizer.json");
    assert!(matches!(err, TextError::Tokenizer { .. }), "{err}");
    let err = MiniLm::bind(empty.clone(), Input::<Tokens>::new())
        .deploy()
        .expect_err("bad weights");
    assert!(
        format!("{:#}", anyhow_like(&err)).contains("model.safetensors"),
        "{}",
        anyhow_like(&err)
    );
    let _ = std::fs::remove_dir_all(&empty);

    // Ids a caller made up: past the vocabulary, empty, too long.
    let model = MiniLm::bind(dir, Input::<Tokens>::new())
        .deploy()
        .expect("deploy");
    for ids in [vec![101, 999_999, 102], vec![], vec![101; 513]] {
        let n = ids.len();
        let err = model.call(Tokens { ids }).expect_err("bad tokens");
        assert!(
            matches!(step_error::<TextError>(&err), Some(TextError::BadTokens(_))),
            "{n} ids: {err}"
        );
    }
    // The replica survived: a good call still answers.
    let ok = model
        .call(Tokens {
            ids: vec![101, 7592, 102],
        })
        .expect("good tokens");
    assert_eq!(ok.size(), [3, 384]);
}

/// A text's first 40 characters, for the report.
fn short(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The step's own error inside a pipeline error, as its type.
fn step_error<E: std::error::Error + 'static>(e: &PipelineError) -> Option<&E> {
    std::error::Error::source(e)?.downcast_ref::<E>()
}

/// The error and its causes on one line.
fn anyhow_like(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[test]
fn search_ranks_the_corpus_and_refuses_bad_requests() {
    let (dir, _) = fixture();
    let embed = embedder(&dir).deploy().expect("deploy");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let faq = [
        "How do I reset my password?",
        "Can I get a refund for my order?",
        "Do you ship to other countries?",
    ];
    let corpus = rt
        .block_on(Corpus::embed(
            faq.iter().map(|s| s.to_string()).collect(),
            &embed,
        ))
        .expect("embed corpus");
    let search = Search::bind(corpus, embed.clone(), Input::<Query>::new())
        .deploy()
        .expect("deploy search");
    let hits = search
        .call(Query {
            query: "I forgot my login secret".into(),
            k: 2,
        })
        .expect("search");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].index, 0, "{hits:?}");
    assert!(hits[0].score > hits[1].score);
    let hits = search
        .call(Query {
            query: "money back please".into(),
            k: 10,
        })
        .expect("search");
    assert_eq!(hits.len(), 3, "k past the corpus gives the whole corpus");
    assert_eq!(hits[0].index, 1, "{hits:?}");
    for k in [0, 101] {
        let err = search
            .call(Query {
                query: "x".into(),
                k,
            })
            .expect_err("bad k");
        assert!(
            matches!(
                step_error::<RequestError>(&err),
                Some(RequestError::BadK(_))
            ),
            "{err}"
        );
    }

    let each = EmbedEach::bind(embed.clone(), Input::<Vec<String>>::new())
        .deploy()
        .expect("deploy embed_each");
    let texts: Vec<String> = faq.iter().map(|s| s.to_string()).collect();
    let vectors = each.call(texts.clone()).expect("embed each");
    for (text, v) in texts.iter().zip(&vectors) {
        let alone = embed.call(text.clone()).expect("embed");
        assert!(cosine(v, &alone) > 0.99999, "order kept for {text:?}");
    }
    assert!(each.call(Vec::new()).expect("no texts").is_empty());
    // The most texts a call takes all go through, though the embedding
    // pipeline's queues hold fewer (256): the step keeps 64 in flight.
    let most = each
        .call(vec!["a short text".to_string(); MAX_TEXTS])
        .expect("MAX_TEXTS texts");
    assert_eq!(most.len(), MAX_TEXTS);
    let err = each
        .call(vec![String::new(); MAX_TEXTS + 1])
        .expect_err("too many");
    assert!(
        matches!(
            step_error::<RequestError>(&err),
            Some(RequestError::TooMany(_))
        ),
        "{err}"
    );
}

#[cfg(feature = "http")]
mod support;

/// The `http_embed` example's routes, served: `/embed` answers a list's
/// vectors in order, `/search` the FAQ's nearest entries; bad requests are
/// 4xx with the reason, never 500.
#[cfg(feature = "http")]
#[test]
fn embed_and_search_over_http() {
    use pipeline_core::http::Ingress;
    use support::http::{post, Server};

    let (dir, minilm) = fixture();
    let embed = embedder(&dir).deploy().expect("deploy");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let faq: Vec<String> = [
        "How do I reset my password?",
        "How long does delivery take?",
    ]
    .map(String::from)
    .to_vec();
    let corpus = rt
        .block_on(Corpus::embed(faq, &embed))
        .expect("embed corpus");
    let server = Server::start(
        Ingress::new()
            .json(
                "/embed",
                EmbedEach::bind(embed.clone(), Input::new())
                    .deploy()
                    .expect("deploy"),
            )
            .json(
                "/search",
                Search::bind(corpus, embed.clone(), Input::new())
                    .deploy()
                    .expect("deploy"),
            )
            .client_error::<RequestError>(422),
    );
    let all = sentences(&minilm);
    let texts: Vec<&str> = all.iter().map(|r| r.text.as_str()).collect();
    let (status, json, _) = post(
        &server.url("/embed"),
        serde_json::to_string(&texts).expect("json").as_bytes(),
    );
    assert_eq!(status, 200, "{json}");
    let vectors = json.as_array().expect("a list");
    assert_eq!(vectors.len(), texts.len());
    for (
        Reference {
            text, alone: want, ..
        },
        got,
    ) in all.iter().zip(vectors)
    {
        let c = cosine(&floats(got), want);
        assert!(c >= MIN_COSINE, "{text:?} over HTTP: cosine {c}");
    }

    let (status, json, _) = post(
        &server.url("/search"),
        br#"{"query": "when will my parcel arrive?", "k": 1}"#,
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json[0]["text"], "How long does delivery take?", "{json}");
    assert!(json[0]["score"].as_f64().expect("score") > 0.5, "{json}");
    let (status, json, _) = post(&server.url("/search"), br#"{"query": "x"}"#);
    assert_eq!(
        (status, json.as_array().map(Vec::len)),
        (200, Some(2)),
        "k defaults to 3"
    );

    for (path, body, want) in [
        ("/search", &br#"{"query": "x", "k": 0}"#[..], 422),
        ("/search", br#"{"k": 2}"#, 422),
        ("/embed", br#"["a", 3]"#, 422),
        ("/embed", b"not json", 400),
    ] {
        let (status, json, _) = post(&server.url(path), body);
        assert_eq!(
            status,
            want,
            "{path} {}: {json}",
            String::from_utf8_lossy(body)
        );
        assert!(json["error"].is_string(), "{json}");
    }
    let too_many = serde_json::to_string(&vec![""; MAX_TEXTS + 1]).expect("json");
    let (status, json, _) = post(&server.url("/embed"), too_many.as_bytes());
    assert_eq!(status, 422, "{json}");
    assert!(
        json["error"].as_str().expect("error").contains("at most"),
        "{json}"
    );
    server.shutdown().expect("clean shutdown");
}

#[test]
fn a_document_streams_each_sentence_with_its_nearest_faq_entry() {
    use pipeline_examples::text::document::{document_search, Answered};
    use pipeline_examples::text::search::FAQ;

    let (dir, _) = fixture();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let embed = embedder(&dir).deploy().expect("deploy embedder");
    let faq: Vec<String> = FAQ.iter().map(|s| s.to_string()).collect();
    let corpus = rt
        .block_on(Corpus::embed(faq.clone(), &embed))
        .expect("embed the FAQ");
    let p = document_search(&dir, corpus.clone())
        .deploy()
        .expect("deploy the document graph");
    let document = "My parcel still has not arrived. I would like my money back! \
                    How do I log in again, I forgot my password?";
    let answers: Vec<Answered> = p
        .call_iter(document.to_string())
        .map(|a| a.expect("an answer"))
        .collect();
    let sentences: Vec<&str> = answers.iter().map(|a| a.sentence.as_str()).collect();
    assert_eq!(
        sentences,
        [
            "My parcel still has not arrived.",
            "I would like my money back!",
            "How do I log in again, I forgot my password?"
        ]
    );
    let nearest: Vec<&str> = answers.iter().map(|a| a.nearest.text.as_str()).collect();
    assert_eq!(
        nearest,
        [
            "Where is my package? It has not arrived yet.",
            "Can I get a refund for my order?",
            "How do I reset my password?"
        ]
    );
    // Each score is the one the sentence gets embedded alone.
    for a in &answers {
        let alone = embed.call(a.sentence.clone()).expect("embed alone");
        let best = &corpus.nearest(&alone, 1)[0];
        assert_eq!(best.index, a.nearest.index);
        assert!(
            (best.score - a.nearest.score).abs() < 1e-4,
            "{a:?} vs {best:?}"
        );
    }

    // A long document: its sentences share MiniLM's batches, in order.
    let long: String = (0..200)
        .map(|i| format!("Sentence number {i} is here. "))
        .collect();
    let answers: Vec<Answered> = p.call_iter(long).map(|a| a.expect("an answer")).collect();
    assert_eq!(answers.len(), 200);
    assert!(answers
        .iter()
        .enumerate()
        .all(|(i, a)| a.sentence == format!("Sentence number {i} is here.")));
    let minilm = p
        .health()
        .steps
        .into_iter()
        .find(|s| s.step == "minilm")
        .expect("the minilm step");
    assert!(
        minilm.batches < minilm.batched_calls,
        "sentences shared batches: {minilm:?}"
    );
}
