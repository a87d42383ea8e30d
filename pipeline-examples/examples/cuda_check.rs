//! Checks the CUDA path of the libtorch steps: what was loaded, the device
//! count and each replica's device; then, when there is a GPU, runs the same
//! graphs with their model replicas on the GPU and pinned to the CPU and
//! compares the answers (seeded resnet18 as actors x2 and batched, and the
//! pretrained EfficientNet-Lite ensemble when `MODELS_DIR` holds it, also
//! with one model on each device), and times each.
//!
//! `cargo run --release -p pipeline-examples --features torch --example cuda_check [-- MODELS_DIR [JSON_OUT]]`
//!
//! On a machine without a GPU it reports 0 devices and the CPU, and stops
//! there. It exits non-zero when an answer differs between devices (top-1
//! category, or a score by more than 1e-2, relative above 1: cuDNN runs
//! convolutions in TF32 by default, as PyTorch does, and PyTorch's own
//! answers differ by 1.3e-3 between its GPU and CPU on these models;
//! `scripts/cuda_reference.py` compares this program's GPU answers with
//! PyTorch's on the GPU, which agree to 3e-8).

#[cfg(feature = "torch")]
fn main() -> std::process::ExitCode {
    check::main()
}

#[cfg(not(feature = "torch"))]
fn main() {
    println!("build with --features torch to check libtorch and CUDA");
}

#[cfg(feature = "torch")]
mod check {
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::sync::Arc;

    use pipeline_core::prelude::*;
    use pipeline_core::torch::{self, tch};
    use pipeline_core::{Device, Pipeline};
    use pipeline_examples::bench::throughput;
    use pipeline_examples::vision::lite::{lite_ensemble, LiteAnswer, Ranked};
    use pipeline_examples::vision::{
        chain, preprocess, sample_images, Arch, BatchedClassifier, ModelSpec, Top5,
    };

    /// Largest difference allowed between a GPU and a CPU score (relative
    /// for logits over 1, absolute below: probabilities). TF32
    /// convolutions on the GPU put PyTorch's own answers 1.3e-3 apart.
    const TOLERANCE: f64 = 1e-2;

    /// One comparison: a graph deployed with its models on the GPU against
    /// the same graph with them on the CPU.
    struct Row {
        graph: &'static str,
        images: usize,
        top1_same: usize,
        top5_same: usize,
        max_diff: f64,
        /// The first pass of the load on the GPU (JIT warm-up included).
        gpu_cold_per_s: f64,
        gpu_per_s: f64,
        cpu_per_s: f64,
        /// The GPU's answers, for a comparison with PyTorch's.
        answers: Vec<serde_json::Value>,
    }

    type Run<O> = Arc<Pipeline<Vec<u8>, O>>;

    pub(crate) fn main() -> ExitCode {
        torch::tune_malloc(); // before any thread starts
        let args: Vec<String> = std::env::args().skip(1).collect();
        let models = args.first().map(PathBuf::from);
        let json_out = args.get(1).map(PathBuf::from);

        println!("backend: {:?}", torch::ensure_cuda_loaded());
        let gpus = torch::cuda_device_count();
        println!("cuda devices: {gpus}");
        for i in 0..4 {
            println!("replica {i} -> {}", torch::replica_device(i));
        }
        if gpus == 0 {
            println!("no CUDA device: nothing more to check");
            return ExitCode::SUCCESS;
        }
        match check(gpus, models.as_deref(), json_out.as_deref()) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                println!("FAILED: an answer differs between the GPU and the CPU");
                ExitCode::FAILURE
            }
            Err(e) => {
                println!("FAILED: {e:#}");
                ExitCode::FAILURE
            }
        }
    }

    fn check(
        gpus: usize,
        models: Option<&Path>,
        json_out: Option<&Path>,
    ) -> Result<bool, Box<dyn std::error::Error>> {
        let rt = tokio::runtime::Runtime::new()?;
        let mut rows = Vec::new();

        // A matmul on each device against the CPU's.
        for i in 0..gpus {
            let a = tch::Tensor::randn([512, 512], (tch::Kind::Float, tch::Device::Cpu));
            let cpu = a.matmul(&a);
            let gpu = a
                .to_device(tch::Device::Cuda(i))
                .matmul(&a.to_device(tch::Device::Cuda(i)));
            let diff = (gpu.to_device(tch::Device::Cpu) - &cpu)
                .abs()
                .max()
                .double_value(&[]);
            println!("matmul 512x512 on cuda:{i}: largest difference from the CPU {diff:.2e}");
        }

        let mut images: Vec<(String, Vec<u8>)> = sample_images()
            .into_iter()
            .map(|(name, bytes)| (name.to_string(), bytes))
            .collect();
        if let Some(photo) = models.map(|d| d.join("grace_hopper.jpg")) {
            if let Ok(bytes) = std::fs::read(&photo) {
                images.push(("grace_hopper.jpg".into(), bytes));
            }
        }
        let load: Vec<Vec<u8>> = images
            .iter()
            .cycle()
            .take(256)
            .map(|(_, b)| b.clone())
            .collect();

        // Seeded resnet18, actors x2: one replica per turn of the GPUs.
        let spec = || ModelSpec::seeded(Arch::Resnet18);
        let gpu = Arc::new(chain(spec()).deploy()?);
        let cpu = Arc::new(
            chain(spec()).deploy_with(DeployOptions::new().device("Classifier", Device::Cpu))?,
        );
        print_devices("resnet18 (actors x2)", &gpu, &cpu);
        rows.push(compare_top5(
            "resnet18, actors x2",
            &rt,
            &gpu,
            &cpu,
            &images,
            &load,
        )?);

        // The same model batched: a replica stacks queued images on its GPU.
        let batched = || BatchedClassifier::bind(spec(), preprocess(Input::<Vec<u8>>::new()));
        let gpu = Arc::new(batched().deploy()?);
        let cpu = Arc::new(
            batched().deploy_with(DeployOptions::new().device("BatchedClassifier", Device::Cpu))?,
        );
        print_devices("resnet18 (batched)", &gpu, &cpu);
        rows.push(compare_top5(
            "resnet18, batched",
            &rt,
            &gpu,
            &cpu,
            &images,
            &load,
        )?);

        // The pretrained ensemble, if its files are there.
        let mut lite_ok = true;
        match models {
            Some(dir) if dir.join("efficientnet-lite0.pt").is_file() => {
                if let Err(e) = lite_rows(dir, &rt, &images, &load, &mut rows) {
                    println!("lite ensemble: {e}");
                    lite_ok = false;
                }
            }
            _ => {
                println!("(no MODELS_DIR with efficientnet-lite0.pt: the lite ensemble is skipped)")
            }
        }

        println!();
        println!("| graph | images | top-1 same | top-5 same | largest difference | GPU images/s (first pass) | GPU images/s | CPU images/s |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for r in &rows {
            println!(
                "| {} | {} | {} | {} | {:.1e} | {:.0} | {:.0} | {:.0} |",
                r.graph,
                r.images,
                r.top1_same,
                r.top5_same,
                r.max_diff,
                r.gpu_cold_per_s,
                r.gpu_per_s,
                r.cpu_per_s
            );
        }
        println!(
            "(throughput: {} calls, 64 in flight, each deploy's defaults)",
            load.len()
        );
        if let Some(path) = json_out {
            let json: Vec<_> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "graph": r.graph, "images": r.images, "top1_same": r.top1_same,
                        "top5_same": r.top5_same, "max_prob_diff": r.max_diff,
                        "gpu_first_pass_images_per_s": r.gpu_cold_per_s,
                        "gpu_images_per_s": r.gpu_per_s, "cpu_images_per_s": r.cpu_per_s,
                        "gpu_answers": r.answers,
                    })
                })
                .collect();
            std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
        }
        Ok(lite_ok
            && rows
                .iter()
                .all(|r| r.top1_same == r.images && r.max_diff <= TOLERANCE))
    }

    fn lite_rows(
        dir: &Path,
        rt: &tokio::runtime::Runtime,
        images: &[(String, Vec<u8>)],
        load: &[Vec<u8>],
        rows: &mut Vec<Row>,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let on_cpu = || {
            DeployOptions::new()
                .device("lite0", Device::Cpu)
                .device("lite1", Device::Cpu)
        };
        let gpu = Arc::new(lite_ensemble(dir).deploy()?);
        let cpu = Arc::new(lite_ensemble(dir).deploy_with(on_cpu())?);
        print_devices("lite ensemble", &gpu, &cpu);
        rows.push(compare_lite("lite ensemble", rt, &gpu, &cpu, images, load)?);
        // One model on each device: `rank` gets one tensor from each.
        let mixed = Arc::new(
            lite_ensemble(dir).deploy_with(DeployOptions::new().device("lite1", Device::Cpu))?,
        );
        print_devices("lite ensemble, lite1 on the CPU", &mixed, &cpu);
        rows.push(compare_lite(
            "lite ensemble, lite0 GPU + lite1 CPU",
            rt,
            &mixed,
            &cpu,
            images,
            load,
        )?);
        Ok(())
    }

    fn print_devices<A: Send + 'static, B: Send + 'static>(
        graph: &str,
        gpu: &Pipeline<Vec<u8>, A>,
        cpu: &Pipeline<Vec<u8>, B>,
    ) {
        for (which, report) in [("gpu", gpu.report()), ("cpu", cpu.report())] {
            for step in report.iter().filter(|s| !s.devices.is_empty()) {
                if step.devices.iter().any(|d| *d != Device::Cpu) || which == "cpu" {
                    println!("{graph} [{which}]: {} on {:?}", step.step, step.devices);
                }
            }
        }
    }

    fn compare_top5(
        graph: &'static str,
        rt: &tokio::runtime::Runtime,
        gpu: &Run<Top5>,
        cpu: &Run<Top5>,
        images: &[(String, Vec<u8>)],
        load: &[Vec<u8>],
    ) -> Result<Row, Box<dyn std::error::Error>> {
        let mut row = row(graph, images.len());
        for (name, bytes) in images {
            let (g, c) = (gpu.call(bytes.clone())?, cpu.call(bytes.clone())?);
            let diff = max_diff(&g.scores, &c.scores);
            println!(
                "{graph}: {name}: gpu {:?} cpu {:?} ({diff:.1e})",
                g.categories, c.categories
            );
            tally(&mut row, &g.categories, &c.categories, diff);
        }
        time_both(&mut row, rt, gpu, cpu, load);
        Ok(row)
    }

    fn compare_lite(
        graph: &'static str,
        rt: &tokio::runtime::Runtime,
        gpu: &Run<LiteAnswer>,
        cpu: &Run<LiteAnswer>,
        images: &[(String, Vec<u8>)],
        load: &[Vec<u8>],
    ) -> Result<Row, Box<dyn std::error::Error>> {
        let mut row = row(graph, images.len());
        let categories = |r: &[Ranked]| r.iter().map(|x| x.category).collect::<Vec<_>>();
        let probabilities = |r: &[Ranked]| r.iter().map(|x| x.probability).collect::<Vec<_>>();
        for (name, bytes) in images {
            let (g, c) = (gpu.call(bytes.clone())?, cpu.call(bytes.clone())?);
            let diff = [
                (&g.lite0, &c.lite0),
                (&g.lite1, &c.lite1),
                (&g.combined, &c.combined),
            ]
            .iter()
            .map(|(a, b)| max_diff(&probabilities(a), &probabilities(b)))
            .fold(0.0, f64::max);
            let first = |r: &[Ranked]| r.first().map(|x| x.label.clone()).unwrap_or_default();
            println!(
                "{graph}: {name}: gpu {:?} cpu {:?} ({diff:.1e})",
                first(&g.combined),
                first(&c.combined)
            );
            tally(
                &mut row,
                &categories(&g.combined),
                &categories(&c.combined),
                diff,
            );
            row.answers.push(serde_json::json!({
                "image": name, "lite0": g.lite0, "lite1": g.lite1, "combined": g.combined,
            }));
        }
        time_both(&mut row, rt, gpu, cpu, load);
        Ok(row)
    }

    /// Times `load` through both deployments: the GPU's twice (its first
    /// pass includes the JIT's warm-up), then the CPU's.
    fn time_both<O: Send + 'static>(
        row: &mut Row,
        rt: &tokio::runtime::Runtime,
        gpu: &Run<O>,
        cpu: &Run<O>,
        load: &[Vec<u8>],
    ) {
        row.gpu_cold_per_s = throughput(rt, gpu, load, 64);
        row.gpu_per_s = throughput(rt, gpu, load, 64);
        row.cpu_per_s = throughput(rt, cpu, load, 64);
    }

    fn row(graph: &'static str, images: usize) -> Row {
        Row {
            graph,
            images,
            top1_same: 0,
            top5_same: 0,
            max_diff: 0.0,
            gpu_cold_per_s: 0.0,
            gpu_per_s: 0.0,
            cpu_per_s: 0.0,
            answers: Vec::new(),
        }
    }

    fn tally(row: &mut Row, gpu: &[i64], cpu: &[i64], diff: f64) {
        row.top1_same += usize::from(gpu.first() == cpu.first());
        row.top5_same += usize::from(gpu == cpu);
        row.max_diff = row.max_diff.max(diff);
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f64 {
        if a.len() != b.len() {
            return f64::INFINITY;
        }
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from((x - y).abs() / y.abs().max(1.0)))
            .fold(0.0, f64::max)
    }
}
