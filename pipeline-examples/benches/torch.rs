//! Model pipelines on libtorch (CPU here; seeded resnet weights, which cost
//! the same as trained ones):
//!
//! 1. preprocess -> resnet18 throughput through the pipeline against a
//!    hand-written tch loop doing the same work (decode, resize, normalize,
//!    stack, forward, top-5) with the same batch size and the same libtorch
//!    threads;
//! 2. batched against unbatched resnet18 under 32 concurrent callers;
//! 3. the ensemble's latency against its slowest branch alone;
//! 4. resident memory over a long run of the ensemble.
//!
//! `cargo bench -p pipeline-examples --features torch --bench torch` prints
//! the tables and writes `target/bench/torch.json`. The process tunes
//! glibc's malloc first (`torch::tune_malloc`), as a server binary should;
//! `PIPELINE_BENCH_UNTUNED=1` keeps glibc's defaults and writes
//! `target/bench/torch-untuned.json`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline_core::prelude::*;
use pipeline_core::torch::{tch, Tensor};
use pipeline_examples::bench::throughput;
use pipeline_examples::process::{minor_faults, rss_mib};
use pipeline_examples::vision::{
    chain, ensemble, model_specs, preprocess, sample_images, transform, Arch, BatchedClassifier,
    Classifier, ModelSpec,
};
use serde_json::json;
use tch::nn::ModuleT;

/// The baseline: the same work written directly against tch, no pipeline.
struct HandLoop {
    _vs: tch::nn::VarStore,
    net: tch::nn::FuncT<'static>,
}

impl HandLoop {
    fn new() -> Self {
        tch::manual_seed(Arch::Resnet18.seed());
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        let net = tch::vision::resnet::resnet18(&vs.root(), 1000);
        HandLoop { _vs: vs, net }
    }

    /// Classifies `images` in batches of `batch`; returns how many answers.
    fn run(&self, images: &[Vec<u8>], batch: usize) -> usize {
        let mut answered = 0;
        for chunk in images.chunks(batch) {
            let tensors: Vec<tch::Tensor> = chunk
                .iter()
                .map(|bytes| {
                    let chw = transform::normalized_chw(bytes).expect("preprocess");
                    tch::Tensor::from_slice(&chw).view([3, 224, 224])
                })
                .collect();
            let input = tch::Tensor::stack(&tensors, 0);
            let logits = tch::no_grad(|| self.net.forward_t(&input, false));
            let (scores, categories) = logits.topk(5, -1, true, true);
            for i in 0..chunk.len() as i64 {
                let c = Vec::<i64>::try_from(categories.get(i)).expect("categories");
                let s = Vec::<f32>::try_from(scores.get(i)).expect("scores");
                answered += usize::from(c.len() == 5 && s.len() == 5);
            }
        }
        answered
    }
}

fn median(xs: &[f64]) -> f64 {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn range(xs: &[f64]) -> (f64, f64) {
    xs.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

fn p50(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    // First, before any thread: replica threads then reuse freed
    // activations like the main thread does (see `torch::tune_malloc`).
    // `PIPELINE_BENCH_UNTUNED=1` measures glibc's defaults instead.
    let tuned =
        std::env::var_os("PIPELINE_BENCH_UNTUNED").is_none() && pipeline_core::torch::tune_malloc();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let samples: Vec<Vec<u8>> = sample_images().into_iter().map(|(_, b)| b).collect();
    let images = |n: usize| -> Vec<Vec<u8>> { samples.iter().cycle().take(n).cloned().collect() };
    let threads = tch::get_num_threads();
    let mut rows = Vec::new();
    println!(
        "libtorch intra-op threads: {threads}; CPU; seeded weights; glibc malloc tuned: {tuned}\n"
    );

    // 1. Pipeline against the hand-written loop, interleaved rounds so the
    // machine's drift hits both alike. `local` is the same pipeline with
    // every step inline (no thread hops): the framework's own cost.
    let rounds = 5;
    println!(
        "preprocess -> resnet18, pipeline vs hand-written tch loop (calls/s, median of {rounds} interleaved rounds)"
    );
    println!("| batch | callers in flight | hand-written | pipeline | ratio | ratio range | pipeline, all steps local | page faults/call hand, pipeline |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let hand = HandLoop::new();
    let single = Arc::new(
        chain(ModelSpec::seeded(Arch::Resnet18))
            .deploy_with(DeployOptions::new().replicas("Classifier", 1))
            .expect("deploy"),
    );
    let single_local = Arc::new(
        chain(ModelSpec::seeded(Arch::Resnet18))
            .deploy_with(DeployOptions::local())
            .expect("deploy"),
    );
    let batched = Arc::new(
        BatchedClassifier::bind(
            ModelSpec::seeded(Arch::Resnet18),
            preprocess(Input::<Vec<u8>>::new()),
        )
        .deploy()
        .expect("deploy"),
    );
    for (batch, n) in [(1usize, 40usize), (8, 96)] {
        let work = images(n);
        let pipeline = if batch == 1 { &single } else { &batched };
        // Warm up (first passes allocate).
        hand.run(&work[..batch], batch);
        throughput(&rt, pipeline, &work[..batch.max(2)], batch);
        throughput(&rt, &single_local, &work[..2], 1);
        let (mut hand_rates, mut pipe_rates, mut local_rates, mut ratios) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut hand_faults, mut pipe_faults) = (0u64, 0u64);
        for _ in 0..rounds {
            let faults = minor_faults();
            let start = Instant::now();
            assert_eq!(hand.run(&work, batch), n);
            let hand_rate = n as f64 / start.elapsed().as_secs_f64();
            hand_faults += minor_faults() - faults;
            let faults = minor_faults();
            let pipe_rate = throughput(&rt, pipeline, &work, batch);
            pipe_faults += minor_faults() - faults;
            if batch == 1 {
                local_rates.push(throughput(&rt, &single_local, &work, 1));
            }
            ratios.push(pipe_rate / hand_rate);
            hand_rates.push(hand_rate);
            pipe_rates.push(pipe_rate);
        }
        let (hand_rate, pipe_rate) = (median(&hand_rates), median(&pipe_rates));
        let ratio = pipe_rate / hand_rate;
        let (lo, hi) = range(&ratios);
        let local = (!local_rates.is_empty()).then(|| median(&local_rates));
        let calls = (rounds * n) as f64;
        let (hand_faults, pipe_faults) = (hand_faults as f64 / calls, pipe_faults as f64 / calls);
        println!(
            "| {batch} | {batch} | {hand_rate:.1} | {pipe_rate:.1} | {:.1}% | {:.0}-{:.0}% | {} | {hand_faults:.0}, {pipe_faults:.0} |",
            ratio * 100.0,
            lo * 100.0,
            hi * 100.0,
            local.map_or("-".to_string(), |l| format!("{l:.1}")),
        );
        rows.push(
            json!({"bench": "pipeline_vs_hand_loop", "batch": batch, "in_flight": batch,
            "rounds": rounds, "hand_calls_per_s": hand_rate, "pipeline_calls_per_s": pipe_rate,
            "ratio": ratio, "ratio_min": lo, "ratio_max": hi,
            "pipeline_local_calls_per_s": local,
            "minor_faults_per_call_hand": hand_faults,
            "minor_faults_per_call_pipeline": pipe_faults}),
        );
    }

    // 2. Batched vs unbatched under 32 concurrent callers (tensors in).
    let callers = 32;
    let tensors: Vec<Tensor> = images(160)
        .into_iter()
        .map(|b| preprocess::call(b).expect("preprocess"))
        .collect();
    let unbatched_p = Arc::new(
        Classifier::bind(ModelSpec::seeded(Arch::Resnet18), Input::<Tensor>::new())
            .deploy_with(DeployOptions::new().replicas("Classifier", 1))
            .expect("deploy"),
    );
    let batched_p = Arc::new(
        BatchedClassifier::bind(ModelSpec::seeded(Arch::Resnet18), Input::<Tensor>::new())
            .deploy()
            .expect("deploy"),
    );
    throughput(&rt, &unbatched_p, &tensors[..4], 4);
    throughput(&rt, &batched_p, &tensors[..32], 32);
    let before = batched_p.health().steps[0].clone();
    let unbatched = throughput(&rt, &unbatched_p, &tensors, callers);
    let batched_rate = throughput(&rt, &batched_p, &tensors, callers);
    let after = batched_p.health().steps[0].clone();
    let mean_batch = (after.batched_calls - before.batched_calls) as f64
        / (after.batches - before.batches).max(1) as f64;
    println!(
        "\nresnet18, 1 replica, {callers} concurrent callers, {} calls (calls/s)",
        tensors.len()
    );
    println!("| unbatched | batch(max_size = 32, wait_ms = 5) | mean batch | speedup |");
    println!("| ---: | ---: | ---: | ---: |");
    println!(
        "| {unbatched:.1} | {batched_rate:.1} | {mean_batch:.1} | {:.2}x |",
        batched_rate / unbatched
    );
    rows.push(json!({"bench": "batched_vs_unbatched", "callers": callers,
        "unbatched_calls_per_s": unbatched, "batched_calls_per_s": batched_rate,
        "mean_batch": mean_batch, "speedup": batched_rate / unbatched}));

    // 3. Ensemble latency against its branches alone (sequential calls).
    let specs = model_specs(None);
    let ens = ensemble(specs.clone()).deploy().expect("deploy");
    let [r18, r34] = specs.map(|s| chain(s).deploy().expect("deploy"));
    let image = samples[0].clone();
    let rounds = 20;
    let (mut t_ens, mut t18, mut t34) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=rounds {
        let time = |f: &dyn Fn() -> bool| {
            let start = Instant::now();
            assert!(f());
            start.elapsed()
        };
        let (a, b, c) = (
            time(&|| r18.call(image.clone()).is_ok()),
            time(&|| r34.call(image.clone()).is_ok()),
            time(&|| ens.call(image.clone()).is_ok()),
        );
        if round > 0 {
            t18.push(a);
            t34.push(b);
            t_ens.push(c);
        }
    }
    let (a, b, c) = (p50(t18), p50(t34), p50(t_ens));
    let slowest = a.max(b);
    println!("\nensemble latency, p50 of {rounds} sequential calls (ms)");
    println!("| preprocess -> resnet18 | preprocess -> resnet34 | ensemble (both + combine) | ensemble / slowest branch |");
    println!("| ---: | ---: | ---: | ---: |");
    println!(
        "| {:.1} | {:.1} | {:.1} | {:.2}x |",
        a.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        c.as_secs_f64() * 1e3,
        c.as_secs_f64() / slowest.as_secs_f64()
    );
    rows.push(
        json!({"bench": "ensemble_latency", "p50_ms_resnet18": a.as_secs_f64() * 1e3,
        "p50_ms_resnet34": b.as_secs_f64() * 1e3, "p50_ms_ensemble": c.as_secs_f64() * 1e3,
        "ratio_to_slowest_branch": c.as_secs_f64() / slowest.as_secs_f64()}),
    );

    // 4. Memory over a long run of the ensemble (8 calls in flight): the
    // allocator keeps its peak, and nothing grows past it.
    let rounds = 40;
    let per_round = 48;
    let work = images(per_round);
    let ens = Arc::new(ens);
    let mut rss = Vec::new();
    for _ in 0..rounds {
        throughput(&rt, &ens, &work, 8);
        rss.push(rss_mib());
    }
    let line: Vec<String> = rss.iter().step_by(4).map(|m| format!("{m:.0}")).collect();
    // The first rounds may still reach the allocator's peak; the second
    // half must hold it.
    let half = rounds / 2;
    let growth = rss[rounds - 1] - rss[half - 1];
    println!(
        "\nlong run: ensemble, 8 calls in flight, RSS MiB every {} calls: {}; growth over rounds {half}-{rounds}: {growth:+.1} MiB",
        4 * per_round,
        line.join(", ")
    );
    rows.push(
        json!({"bench": "ensemble_long_run", "calls": rounds * per_round,
        "rss_mib_by_round": rss, "growth_mib_second_half": growth}),
    );

    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).expect("bench dir");
    std::fs::write(
        out.join(if tuned { "torch.json" } else { "torch-untuned.json" }),
        serde_json::to_string_pretty(
            &json!({"benchmark": "torch", "intra_op_threads": threads, "malloc_tuned": tuned, "rows": rows}),
        )
        .expect("json"),
    )
    .expect("write json");
}
