//! The real models (CPU, 2 cores here), the Rust side of
//! `scripts/bench_models.sh`, which also runs the Python references
//! (`scripts/bench_models.py`) and the HTTP load, and prints the comparison:
//!
//! 1. preprocess -> EfficientNet-Lite0 (TorchScript) through the pipeline
//!    against a hand-written loop doing the same work (the same transform,
//!    the same module, `forward` per image), one image at a time;
//! 2. preprocessing alone (decode, resize, crop, normalise) per image, for
//!    the files in `target/bench/images/` (the photo and the fixture's);
//! 3. MiniLM sentence embeddings per second, one sentence at a time and 32
//!    in flight (the batched encoder then runs up to 32 per forward pass),
//!    on the sentences in `target/bench/sentences.txt`.
//!
//! `PIPELINE_MODELS=... cargo bench -p pipeline-examples --features text
//! --bench models [-- preprocess]` prints the tables and writes
//! `target/bench/models-rust.json` (`-- preprocess`: part 2 only, into
//! `models-rust-preprocess.json`, for the run without SIMD).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pipeline_core::prelude::*;
use pipeline_core::torch::{tch, ScriptStep, Tensor, TorchScript};
use pipeline_examples::bench::throughput;
use pipeline_examples::text::search::EmbedEach;
use pipeline_examples::text::{embedder, MINILM_DIR};
use pipeline_examples::vision::lite::{Preprocess, LITE0_FILE};
use pipeline_examples::vision::transform::Transform;
use serde_json::json;

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The files of `target/bench/images/` (the script copies them there).
fn images() -> Vec<(String, Vec<u8>)> {
    let dir = out_dir().join("images");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/bench_models.sh)", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read image"))
        })
        .collect()
}

/// Part 2: microseconds per image, median of rounds, per file.
fn preprocessing(images: &[(String, Vec<u8>)]) -> serde_json::Value {
    let rounds = 7;
    let reps = 20;
    let transform = Transform::IMAGENET;
    println!("preprocessing alone, Resize(224) CenterCrop(224) ToTensor Normalize (us per image, median of {rounds} rounds of {reps})");
    println!("| image | bytes | us |");
    println!("| --- | ---: | ---: |");
    let mut rows = serde_json::Map::new();
    for (name, bytes) in images {
        transform.normalized_chw(bytes).expect("preprocess");
        let per = median(
            (0..rounds)
                .map(|_| {
                    let start = Instant::now();
                    for _ in 0..reps {
                        std::hint::black_box(transform.normalized_chw(bytes).expect("preprocess"));
                    }
                    start.elapsed().as_secs_f64() * 1e6 / reps as f64
                })
                .collect(),
        );
        println!("| {name} | {} | {per:.0} |", bytes.len());
        rows.insert(name.clone(), json!(per));
    }
    println!();
    serde_json::Value::Object(rows)
}

/// `[3, H, W]` -> `[1, 3, H, W]` (inline, no hop).
#[step]
fn batch_of_one(t: Tensor) -> Tensor {
    Tensor::from(t.unsqueeze(0))
}

fn main() {
    pipeline_core::torch::tune_malloc();
    let images = images();
    let only_preprocess = std::env::args().any(|a| a == "preprocess");
    let simd = std::env::var("JSIMD_FORCENONE").as_deref() != Ok("1");
    println!(
        "libtorch intra-op threads: {}; JPEG SIMD: {}\n",
        tch::get_num_threads(),
        if simd {
            "on (if built with nasm)"
        } else {
            "off (JSIMD_FORCENONE=1)"
        }
    );
    let pre = preprocessing(&images);
    if only_preprocess {
        write(
            "models-rust-preprocess.json",
            &json!({ "preprocess_us": pre, "simd": simd }),
        );
        return;
    }
    let models = PathBuf::from(
        std::env::var_os("PIPELINE_MODELS")
            .expect("PIPELINE_MODELS (what scripts/models.sh prints)"),
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    // 1. preprocess -> lite0, pipeline vs hand loop, interleaved rounds.
    let path = models.join(LITE0_FILE);
    let transform = Transform::lite(224);
    let hand = TorchScript::load(&path, tch::Device::Cpu).expect("load lite0");
    let hand_run = |work: &[Vec<u8>]| {
        for bytes in work {
            let chw = transform.normalized_chw(bytes).expect("preprocess");
            let x = tch::Tensor::from_slice(&chw).view([1, 3, 224, 224]);
            let _ = std::hint::black_box(hand.forward(&x).expect("forward"));
        }
    };
    let pipeline = Arc::new(
        ScriptStep::bind(
            path.clone(),
            batch_of_one(Preprocess::bind(transform, Input::<Vec<u8>>::new())),
        )
        .deploy()
        .expect("deploy"),
    );
    let work: Vec<Vec<u8>> = images
        .iter()
        .map(|(_, b)| b.clone())
        .cycle()
        .take(30)
        .collect();
    hand_run(&work[..2]);
    throughput(&rt, &pipeline, &work[..2], 1);
    let rounds = 5;
    let (mut hand_rates, mut pipe_rates) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        hand_run(&work);
        hand_rates.push(work.len() as f64 / start.elapsed().as_secs_f64());
        pipe_rates.push(throughput(&rt, &pipeline, &work, 1));
    }
    let (h, p) = (median(hand_rates), median(pipe_rates));
    println!("preprocess -> EfficientNet-Lite0 (TorchScript), one image at a time (images/s, median of {rounds} interleaved rounds)");
    println!("| hand-written loop | pipeline | pipeline / hand |");
    println!("| ---: | ---: | ---: |");
    println!("| {h:.1} | {p:.1} | {:.3} |\n", p / h);

    // 3. MiniLM embeddings/s.
    let sentences: Vec<String> = std::fs::read_to_string(out_dir().join("sentences.txt"))
        .expect("target/bench/sentences.txt (run scripts/bench_models.sh)")
        .lines()
        .map(String::from)
        .collect();
    let embed = Arc::new(embedder(&models.join(MINILM_DIR)).deploy().expect("deploy"));
    throughput(&rt, &embed, &sentences[..32], 32);
    let mut rates = serde_json::Map::new();
    println!(
        "MiniLM sentence embeddings ({} sentences, embeddings/s, median of 3)",
        sentences.len()
    );
    println!("| in flight | embeddings/s |");
    println!("| ---: | ---: |");
    for in_flight in [1usize, 32] {
        let r = median(
            (0..3)
                .map(|_| throughput(&rt, &embed, &sentences, in_flight))
                .collect(),
        );
        println!("| {in_flight} | {r:.1} |");
        rates.insert(in_flight.to_string(), json!(r));
    }
    // The whole list in one call, as sentence-transformers' encode takes
    // it: EmbedEach sends it longest first, 64 in flight.
    let each = EmbedEach::bind((*embed).clone(), Input::<Vec<String>>::new())
        .deploy()
        .expect("deploy");
    let list = median(
        (0..3)
            .map(|_| {
                let start = Instant::now();
                let n = each.call(sentences.clone()).expect("embed list").len();
                n as f64 / start.elapsed().as_secs_f64()
            })
            .collect(),
    );
    println!("| the list in one EmbedEach call | {list:.1} |");
    rates.insert("list".into(), json!(list));
    println!();
    write(
        "models-rust.json",
        &json!({
            "threads": tch::get_num_threads(),
            "lite0": { "hand_images_per_s": h, "pipeline_images_per_s": p, "ratio": p / h },
            "preprocess_us": pre,
            "simd": simd,
            "embeddings_per_s": rates,
        }),
    );
}

fn write(name: &str, value: &serde_json::Value) {
    let out = out_dir();
    std::fs::create_dir_all(&out).expect("create target/bench");
    std::fs::write(out.join(name), serde_json::to_string_pretty(value).unwrap())
        .expect("write json");
    println!("wrote target/bench/{name}");
}
