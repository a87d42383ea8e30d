//! Agreement with PyTorch: the Rust pipeline against PyPI's torch and
//! torchvision on the same files. The fixture (seeded weights, images,
//! expected outputs) is written by `scripts/make_fixture.py` through
//! `scripts/fixture.sh`, which the README's test command runs first.
//!
//! Checks, per image and model: the top-5 categories are identical and the
//! scores agree within 1e-4. The preprocessed tensor is compared element by
//! element: it must equal torchvision's bit for bit (PNG through the same
//! arithmetic as Pillow's resize, JPEG through libjpeg-turbo as in Pillow),
//! and the largest difference is reported (printed with `--nocapture`, and
//! written to `target/fixture/agreement-*.txt`).
#![cfg(feature = "torch")]

use std::path::{Path, PathBuf};

use pipeline_core::prelude::*;
use pipeline_core::torch::tch;
use pipeline_examples::vision::{preprocess, transform, Arch, Classifier, ModelSpec};
use serde_json::Value;

const SCORE_TOLERANCE: f64 = 1e-4;

fn fixture_dir() -> PathBuf {
    let dir = std::env::var_os("PIPELINE_FIXTURE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixture"));
    assert!(
        dir.join("expected.json").is_file(),
        "no PyTorch fixture in {}: run `bash scripts/fixture.sh` (the README's test command does)",
        dir.display()
    );
    dir
}

fn expected(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("read expected.json");
    serde_json::from_str(&text).expect("parse expected.json")
}

/// torchvision's preprocessed tensor of each fixture image, by file name.
fn preprocessed(dir: &Path) -> std::collections::HashMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(dir.join("preprocessed.safetensors"))
        .expect("read preprocessed.safetensors")
        .into_iter()
        .collect()
}

fn images(expected: &Value) -> impl Iterator<Item = &Value> {
    expected["images"].as_array().expect("images").iter()
}

fn i64s(v: &Value) -> Vec<i64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_i64().expect("integer"))
        .collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

#[test]
fn preprocessing_matches_torchvision() {
    let dir = fixture_dir();
    let expected = expected(&dir);
    let reference = preprocessed(&dir);
    let mut report = String::new();
    let mut worst = 0f32;
    for image in images(&expected) {
        let file = image["file"].as_str().expect("file");
        let bytes = std::fs::read(dir.join("images").join(file)).expect("read image");
        let ours = transform::normalized_chw(&bytes).expect("preprocess");
        let theirs = Vec::<f32>::try_from(reference[file].flatten(0, -1)).expect("tensor");
        assert_eq!(ours.len(), theirs.len(), "{file}: element count");
        let max_diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let differing = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        let mean = ours.iter().map(|&v| f64::from(v)).sum::<f64>() / ours.len() as f64;
        let want_mean = image["preprocessed"]["mean"].as_f64().expect("mean");
        let line = format!(
            "preprocess {file:<28} max |diff| {max_diff:.3e} ({differing} of {} elements differ), mean {mean:.6} vs {want_mean:.6}\n",
            ours.len()
        );
        print!("{line}");
        report.push_str(&line);
        assert!(
            (mean - want_mean).abs() < 1e-5,
            "{file}: mean {mean} vs {want_mean}"
        );
        worst = worst.max(max_diff);
    }
    let line = format!("largest preprocessing difference: {worst:.3e}\n");
    print!("{line}");
    report.push_str(&line);
    // The same decoded pixels, and the resize is Pillow's own arithmetic.
    assert_eq!(worst, 0.0, "preprocessing should match bit for bit");
    let _ = std::fs::write(dir.join("agreement-preprocess.txt"), report);
}

/// Pillow's premultiplied-alpha resize: the chain that drops alpha after
/// `Resize` and `CenterCrop` ([`Alpha::Premultiplied`]) against torchvision's
/// on the fixture's RGBA and grey + alpha PNGs (uniform alpha, random alpha,
/// transparent holes over a loud colour, a ramp): bit for bit. Each image's
/// result also differs from the seed's chain (alpha dropped first), so the
/// premultiplied arithmetic is what is checked.
#[test]
fn premultiplied_alpha_resize_matches_pillow() {
    use transform::{Alpha, Transform};

    let dir = fixture_dir();
    let expected = expected(&dir);
    let reference = preprocessed(&dir);
    let files = expected["premultiplied"]
        .as_array()
        .expect("the fixture lists no images with alpha: rerun `bash scripts/fixture.sh`");
    assert!(files.len() >= 4, "{files:?}");
    let chain = Transform::IMAGENET.with_alpha(Alpha::Premultiplied);
    let mut report = String::new();
    for file in files {
        let file = file.as_str().expect("file");
        let bytes = std::fs::read(dir.join("images").join(file)).expect("read image");
        let ours = chain.normalized_chw(&bytes).expect("preprocess");
        let theirs =
            Vec::<f32>::try_from(reference[&format!("premultiplied/{file}")].flatten(0, -1))
                .expect("tensor");
        let differing = ours.iter().zip(&theirs).filter(|(a, b)| a != b).count();
        let dropped_first = transform::normalized_chw(&bytes).expect("preprocess");
        let changed = ours
            .iter()
            .zip(&dropped_first)
            .filter(|(a, b)| a != b)
            .count();
        let line = format!(
            "premultiplied {file:<28} {differing} of {} elements differ from torchvision; {changed} differ from the alpha-first chain\n",
            ours.len()
        );
        print!("{line}");
        report.push_str(&line);
        assert_eq!(
            differing, 0,
            "{file}: premultiplied resize should match bit for bit"
        );
        assert!(
            changed > 0,
            "{file}: the premultiplied chain changed nothing"
        );
    }
    let _ = std::fs::write(dir.join("agreement-alpha.txt"), report);
}

#[test]
fn top5_matches_pytorch() {
    let dir = fixture_dir();
    let expected = expected(&dir);
    let mut report = String::new();
    let mut worst = 0f64;
    for arch in [Arch::Resnet18, Arch::Resnet34] {
        let spec = ModelSpec::load(arch, dir.join(format!("{arch}.safetensors")));
        let pipeline = Classifier::bind(spec, preprocess(Input::<Vec<u8>>::new()))
            .deploy_with(DeployOptions::new().replicas("Classifier", 1))
            .expect("deploy");
        for image in images(&expected) {
            let file = image["file"].as_str().expect("file");
            let bytes = std::fs::read(dir.join("images").join(file)).expect("read image");
            let top5 = pipeline.call(bytes).expect("classify");
            let want = &image["models"][arch.name()];
            let want_categories: Vec<i64> = i64s(&want["categories"]);
            let want_scores = f64s(&want["scores"]);
            assert_eq!(
                top5.categories, want_categories,
                "{arch} on {file}: categories"
            );
            assert!(top5.weights.ends_with(".safetensors"), "{}", top5.weights);
            let diff = top5
                .scores
                .iter()
                .zip(&want_scores)
                .map(|(a, b)| (f64::from(*a) - b).abs())
                .fold(0f64, f64::max);
            let line = format!(
                "{arch} {file:<28} top-5 {:?} identical, max |score diff| {diff:.3e}\n",
                top5.categories
            );
            print!("{line}");
            report.push_str(&line);
            assert!(
                diff <= SCORE_TOLERANCE,
                "{arch} on {file}: scores {:?} vs {want_scores:?}",
                top5.scores
            );
            worst = worst.max(diff);
        }
    }
    let line = format!("largest score difference: {worst:.3e} (tolerance {SCORE_TOLERANCE:e})\n");
    print!("{line}");
    report.push_str(&line);
    let _ = std::fs::write(dir.join("agreement-top5.txt"), report);
}

#[test]
fn ot_weights_load_like_safetensors() {
    // `.ot` is tch's own format: write one from the fixture's safetensors
    // and check the model answers the same from both.
    let dir = fixture_dir();
    let named = tch::Tensor::read_safetensors(dir.join("resnet18.safetensors")).expect("read");
    let ot = std::env::temp_dir().join(format!("pipeline-resnet18-{}.ot", std::process::id()));
    tch::Tensor::save_multi(&named, &ot).expect("write .ot");
    let bytes = std::fs::read(dir.join("images/landscape-320x240.png")).expect("image");
    let image = preprocess::call(bytes).expect("preprocess");
    let answer = |spec: ModelSpec| {
        pipeline_examples::vision::Resnet::new(&spec, Device::Cpu)
            .and_then(|m| m.classify(&image))
            .expect("classify")
    };
    let from_ot = answer(ModelSpec::load(Arch::Resnet18, &ot));
    let from_st = answer(ModelSpec::load(
        Arch::Resnet18,
        dir.join("resnet18.safetensors"),
    ));
    let _ = std::fs::remove_file(&ot);
    assert_eq!(from_ot.categories, from_st.categories);
    assert_eq!(from_ot.scores, from_st.scores);
}

#[test]
fn weights_that_do_not_fit_fail_deploy_naming_the_file() {
    let dir = fixture_dir();
    // resnet34's file lacks nothing resnet18 needs by name but its shapes
    // differ; resnet18's file lacks resnet34's extra blocks.
    let spec = ModelSpec::load(Arch::Resnet34, dir.join("resnet18.safetensors"));
    let err = Classifier::bind(spec, preprocess(Input::<Vec<u8>>::new()))
        .deploy()
        .expect_err("wrong weights must fail deploy");
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(text.contains("Classifier"), "{text}");
    assert!(text.contains("resnet18.safetensors"), "{text}");
    assert!(
        text.contains("cannot find the tensor named layer"),
        "names the missing tensor: {text}"
    );
}

/// A TorchScript export of the same resnet18 (`torch.jit.trace`), run by
/// the framework's `ScriptStep` and `BatchedScriptStep` on torchvision's
/// preprocessed tensors: the same top-5 as PyTorch, scores within 1e-4.
#[test]
fn torchscript_steps_match_pytorch() {
    use pipeline_core::torch::{BatchedScriptStep, ScriptStep, Tensor};

    let dir = fixture_dir();
    let expected = expected(&dir);
    let reference = preprocessed(&dir);
    let path = dir.join("resnet18.pt");
    let one = ScriptStep::bind(path.clone(), Input::<Tensor>::new())
        .deploy()
        .expect("deploy ScriptStep");
    let batched = BatchedScriptStep::bind(path, Input::<Tensor>::new())
        .deploy()
        .expect("deploy BatchedScriptStep");
    // Loading turned the profiling executor off (it recompiles for every
    // new batch size: see `TorchScript::load`).
    assert!(!pipeline_core::torch::tch::jit::get_profiling_mode());
    let inputs: Vec<(&Value, Tensor)> = images(&expected)
        .map(|image| {
            let file = image["file"].as_str().expect("file");
            (image, Tensor::from(reference[file].unsqueeze(0)))
        })
        .collect();
    // The batched step gets every image at once (one or more batches).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let batched_out: Vec<Tensor> = rt.block_on(async {
        let calls = inputs
            .iter()
            .map(|(_, x)| batched.call_async(Tensor::from(x.squeeze_dim(0))));
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.expect("batched forward"))
            .collect()
    });
    for ((image, x), from_batch) in inputs.iter().zip(batched_out) {
        let file = image["file"].as_str().expect("file");
        let want = &image["models"]["resnet18"];
        let want_categories: Vec<i64> = i64s(&want["categories"]);
        let want_scores = f64s(&want["scores"]);
        let logits = one.call(x.clone()).expect("forward").squeeze_dim(0);
        for (how, logits) in [
            ("ScriptStep", logits),
            ("BatchedScriptStep", from_batch.shallow_clone()),
        ] {
            let (scores, categories) = logits.topk(5, 0, true, true);
            let categories = Vec::<i64>::try_from(&categories).expect("categories");
            let scores = Vec::<f64>::try_from(&scores.to_kind(tch::Kind::Double)).expect("scores");
            assert_eq!(categories, want_categories, "{how} on {file}");
            let diff = scores
                .iter()
                .zip(&want_scores)
                .map(|(a, b)| (a - b).abs())
                .fold(0f64, f64::max);
            assert!(
                diff <= SCORE_TOLERANCE,
                "{how} on {file}: {scores:?} vs {want_scores:?}"
            );
        }
    }
}

/// A missing file, a file that is not TorchScript, and an input of the
/// wrong shape or dtype are errors that say so, not panics.
#[test]
fn torchscript_errors_are_clear() {
    use pipeline_core::torch::{ScriptError, ScriptStep, Tensor, TorchScript};

    let dir = fixture_dir();
    let missing = TorchScript::load(dir.join("nope.pt"), tch::Device::Cpu).unwrap_err();
    assert!(matches!(missing, ScriptError::Missing { .. }), "{missing}");
    assert!(
        missing.to_string().contains("nope.pt` not found"),
        "{missing}"
    );

    // A safetensors file is a real file, but no TorchScript module.
    let not_script =
        TorchScript::load(dir.join("resnet18.safetensors"), tch::Device::Cpu).unwrap_err();
    assert!(
        matches!(not_script, ScriptError::NotTorchScript { .. }),
        "{not_script}"
    );
    assert!(
        not_script.to_string().contains("torch.jit.trace"),
        "{not_script}"
    );
    // Through deploy: the replica's constructor fails, naming the step.
    let err = ScriptStep::bind(dir.join("resnet18.safetensors"), Input::<Tensor>::new())
        .deploy()
        .unwrap_err();
    let chain = format!(
        "{err}: {}",
        std::error::Error::source(&err).expect("source")
    );
    assert!(
        chain.contains("ScriptStep") && chain.contains("not a TorchScript module"),
        "{chain}"
    );

    let p = ScriptStep::bind(dir.join("resnet18.pt"), Input::<Tensor>::new())
        .deploy()
        .expect("deploy");
    let gray = Tensor::from(tch::Tensor::zeros(
        [1, 1, 224, 224],
        (tch::Kind::Float, tch::Device::Cpu),
    ));
    let err = p.call(gray).unwrap_err();
    let source = std::error::Error::source(&err).expect("source");
    let text = source.to_string();
    assert!(source.downcast_ref::<ScriptError>().is_some(), "{text}");
    assert!(text.contains("shape [1, 1, 224, 224]"), "{text}");
    let ints = Tensor::from(tch::Tensor::zeros(
        [1, 3, 224, 224],
        (tch::Kind::Int64, tch::Device::Cpu),
    ));
    let text = std::error::Error::source(&p.call(ints).unwrap_err())
        .expect("source")
        .to_string();
    assert!(text.contains("Int64"), "{text}");
    // The replica is still there for the next call.
    let ok = Tensor::from(tch::Tensor::zeros(
        [1, 3, 224, 224],
        (tch::Kind::Float, tch::Device::Cpu),
    ));
    assert_eq!(p.call(ok).expect("forward").size(), [1, 1000]);
}

/// The pretrained ensemble (EfficientNet-Lite0 and -Lite1 as TorchScript,
/// each behind its own preprocessing) against PyTorch on the same files:
/// on every fixture image and on a real photo, the same top-5 and
/// probabilities within 1e-4; and the right answer on the photo
/// (grace_hopper.jpg: "military uniform" first, for both models).
#[test]
fn pretrained_lite_models_match_pytorch() {
    use pipeline_examples::vision::lite::{lite_ensemble, Ranked};

    let dir = fixture_dir();
    let expected = expected(&dir);
    let lite = &expected["lite"];
    assert!(
        lite.is_object(),
        "the fixture has no EfficientNet-Lite expectations: run `bash scripts/test.sh` \
         (it runs scripts/models.sh, then the fixture with PIPELINE_MODELS set)"
    );
    let models = PathBuf::from(lite["models"].as_str().expect("models dir"));
    let p = lite_ensemble(&models).deploy().expect("deploy");
    let mut report = String::new();
    let mut worst = 0f64;
    for image in lite["images"].as_array().expect("images") {
        let file = image["file"].as_str().expect("file");
        let bytes = std::fs::read(dir.join(file)).expect("read image");
        let answer = p.call(bytes).expect("classify");
        for (key, got) in [("lite0", &answer.lite0), ("lite1", &answer.lite1)] {
            let want = &image[key];
            let categories: Vec<i64> = got.iter().map(|r| r.category).collect();
            let want_categories: Vec<i64> = i64s(&want["categories"]);
            assert_eq!(categories, want_categories, "{key} on {file}");
            let diff = got
                .iter()
                .map(|r: &Ranked| f64::from(r.probability))
                .zip(f64s(&want["probabilities"]))
                .map(|(a, b)| (a - b).abs())
                .fold(0f64, f64::max);
            assert!(
                diff <= SCORE_TOLERANCE,
                "{key} on {file}: {got:?} vs {want}"
            );
            worst = worst.max(diff);
            report.push_str(&format!(
                "{key} {file:<36} {:<20} {:.4}  max |p diff| {diff:.2e}\n",
                got[0].label, got[0].probability
            ));
        }
        if file.ends_with("grace_hopper.jpg") {
            assert_eq!(answer.lite0[0].label, "military uniform");
            assert_eq!(answer.lite1[0].label, "military uniform");
            assert_eq!(answer.combined[0].label, "military uniform");
        }
    }
    report.push_str(&format!(
        "largest probability difference: {worst:.3e} (tolerance {SCORE_TOLERANCE:e})\n"
    ));
    print!("{report}");
    let _ = std::fs::write(dir.join("agreement-lite.txt"), report);
}
