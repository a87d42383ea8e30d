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

fn images(expected: &Value) -> impl Iterator<Item = &Value> {
    expected["images"].as_array().expect("images").iter()
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
    let reference: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(dir.join("preprocessed.safetensors"))
            .expect("read preprocessed.safetensors")
            .into_iter()
            .collect();
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
            let want_categories: Vec<i64> = want["categories"]
                .as_array()
                .expect("categories")
                .iter()
                .map(|c| c.as_i64().expect("category"))
                .collect();
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
