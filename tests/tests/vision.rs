//! The libtorch image steps and the four example graphs (chain, ensemble,
//! weighted business logic, per-request route), on seeded weights and the
//! sample images; device assignment; batching with tensors.
#![cfg(feature = "torch")]

use std::error::Error as _;
use std::sync::Arc;

use pipeline_core::prelude::*;
use pipeline_core::torch::{self, tch, Tensor};
use pipeline_examples::vision::{
    chain, ensemble, model_specs, preprocess, routed, sample_images, weighted, Arch,
    BatchedClassifier, Classifier, ImageRequest, ModelError, ModelSpec, PreprocessError,
    WeightsError,
};

fn first_image() -> Vec<u8> {
    sample_images().remove(0).1
}

#[test]
fn chain_classifies_every_sample_and_says_weights_are_seeded() {
    let p = chain(ModelSpec::seeded(Arch::Resnet18))
        .deploy()
        .expect("deploy");
    for (name, bytes) in sample_images() {
        let top5 = p.call(bytes.clone()).expect(name);
        assert_eq!(top5.model, Arch::Resnet18);
        assert_eq!(top5.categories.len(), 5, "{name}");
        assert!(top5.categories.iter().all(|c| (0..1000).contains(c)));
        assert!(
            top5.scores.windows(2).all(|w| w[0] >= w[1]),
            "best first: {:?}",
            top5.scores
        );
        assert!(
            top5.weights.starts_with("seeded (seed 18)"),
            "{}",
            top5.weights
        );
        assert_eq!(top5.labels().len(), 5);
        // Both replicas hold the same seeded weights: repeated calls, spread
        // over them, agree.
        for _ in 0..3 {
            assert_eq!(p.call(bytes.clone()).expect(name), top5);
        }
    }
}

#[test]
fn frames_stream_one_classification_each_in_order() {
    use pipeline_examples::vision::frames_classified;

    let p = frames_classified(ModelSpec::seeded(Arch::Resnet18))
        .deploy()
        .expect("deploy");
    let one = chain(ModelSpec::seeded(Arch::Resnet18))
        .deploy()
        .expect("deploy the chain");
    let images = sample_images();
    let frames: Vec<Vec<u8>> = images
        .iter()
        .cycle()
        .take(12)
        .map(|(_, b)| b.clone())
        .collect();
    let answers: Vec<_> = p
        .call_iter(frames.clone())
        .map(|a| a.expect("a classification"))
        .collect();
    assert_eq!(answers.len(), 12);
    for (frame, answer) in frames.into_iter().zip(&answers) {
        // The same answer the plain chain gives the frame alone.
        assert_eq!(
            one.call(frame).expect("alone").categories,
            answer.categories
        );
    }
    // A frame that is no image ends the stream after the frames before it.
    let got: Vec<_> = p
        .call_iter(vec![
            images[0].1.clone(),
            b"not an image".to_vec(),
            images[1].1.clone(),
        ])
        .collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].as_ref().unwrap_err().step(), Some("preprocess"));
}

#[test]
fn ensemble_concatenates_each_models_top5() {
    let specs = model_specs(None);
    let p = ensemble(specs.clone()).deploy().expect("deploy");
    let [a, b] = specs.map(|s| chain(s).deploy().expect("deploy chain"));
    let image = first_image();
    let mut want = a.call(image.clone()).expect("resnet18").categories;
    want.extend(b.call(image.clone()).expect("resnet34").categories);
    assert_eq!(p.call(image).expect("ensemble"), want);
    // One preprocess feeding two classifiers, as drawn, each named after
    // its model and counted apart.
    let dot = p.graph().to_dot();
    assert_eq!(dot.matches("label=\"resnet18").count(), 1, "{dot}");
    assert_eq!(dot.matches("label=\"resnet34").count(), 1, "{dot}");
    assert_eq!(dot.matches("preprocess").count(), 1, "{dot}");
    let requests: Vec<_> = p.metrics().iter().map(|m| (m.step, m.requests)).collect();
    assert_eq!(
        requests,
        [
            ("preprocess", 1),
            ("resnet18", 1),
            ("resnet34", 1),
            ("combine", 1)
        ]
    );
}

#[test]
fn weighted_ensemble_reads_its_weights_on_every_call() {
    let store = std::env::temp_dir().join(format!("weights-test-{}.json", std::process::id()));
    let specs = model_specs(None);
    let p = weighted(specs.clone(), store.clone())
        .deploy()
        .expect("deploy");
    let [a, b] = specs.map(|s| chain(s).deploy().expect("deploy chain"));
    let image = first_image();
    let r18 = a.call(image.clone()).expect("resnet18").categories;
    let r34 = b.call(image.clone()).expect("resnet34").categories;

    std::fs::write(&store, r#"{"resnet18": 1.0, "resnet34": 0.0}"#).expect("write store");
    let only18 = p.call(image.clone()).expect("weighted");
    assert_eq!(only18.categories, r18);
    assert!((only18.scores.iter().sum::<f32>() - 1.0).abs() < 1e-5);

    // An operator edits the store: the next call follows, no redeploy.
    std::fs::write(&store, r#"{"resnet18": 0.0, "resnet34": 2.5}"#).expect("write store");
    let only34 = p.call(image.clone()).expect("weighted");
    assert_eq!(only34.categories, r34);
    assert_eq!(only34.weights[&Arch::Resnet34], 2.5);

    // A broken store fails the call, naming the step and the file.
    std::fs::write(&store, r#"{"resnet18": 1.0}"#).expect("write store");
    let err = p.call(image.clone()).expect_err("missing weight");
    assert_eq!(err.step(), Some("WeightedCombine"));
    assert!(matches!(
        err.source().and_then(|e| e.downcast_ref::<WeightsError>()),
        Some(WeightsError::Missing {
            model: Arch::Resnet34,
            ..
        })
    ));
    std::fs::write(&store, "not json").expect("write store");
    let err = p.call(image).expect_err("bad store");
    assert!(err.to_string().contains("WeightedCombine"), "{err}");
    std::fs::remove_file(&store).expect("clean up");
}

#[test]
fn route_runs_only_the_requested_model() {
    let [r18, r34] = model_specs(None);
    let p = routed(r18, r34).deploy().expect("deploy");
    let image = first_image();
    for model in [Arch::Resnet34, Arch::Resnet18, Arch::Resnet34] {
        let top5 = p
            .call(ImageRequest {
                image: image.clone(),
                model,
            })
            .expect("route");
        assert_eq!(top5.model, model);
    }
}

#[test]
fn bad_image_bytes_fail_the_call_naming_preprocess() {
    let p = chain(ModelSpec::seeded(Arch::Resnet18))
        .deploy()
        .expect("deploy");
    for bytes in [
        Vec::new(),
        b"definitely not a png".to_vec(),
        first_image()[..100].to_vec(),
    ] {
        let err = p.call(bytes).expect_err("bad bytes");
        assert_eq!(err.step(), Some("preprocess"), "{err}");
        let source = err
            .source()
            .and_then(|e| e.downcast_ref::<PreprocessError>());
        assert!(
            matches!(source, Some(PreprocessError::Decode { .. })),
            "{err}"
        );
    }
    // The pipeline is unharmed.
    assert!(p.call(first_image()).is_ok());
}

fn sample_jpeg() -> Vec<u8> {
    sample_images()
        .into_iter()
        .find(|(name, _)| name.ends_with(".jpg"))
        .expect("a JPEG sample")
        .1
}

#[test]
fn broken_jpegs_fail_with_libjpegs_reason_and_never_panic() {
    let jpeg = sample_jpeg();
    assert!(preprocess::call(jpeg.clone()).is_ok());
    // Cut off in the scan data: libjpeg alone would pad it with grey.
    let cut = jpeg[..jpeg.len() * 2 / 3].to_vec();
    match preprocess::call(cut) {
        Err(PreprocessError::Jpeg { reason, .. }) => {
            assert!(reason.contains("truncated"), "{reason}")
        }
        other => panic!("expected a truncated-JPEG error, got {other:?}"),
    }
    // Cut off in the header.
    let err = preprocess::call(jpeg[..40].to_vec()).expect_err("header only");
    assert!(matches!(err, PreprocessError::Jpeg { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("cannot decode the JPEG image (40 bytes)"),
        "{err}"
    );
    // Bytes after the end-of-image marker are ignored, as Pillow does.
    let mut trailing = jpeg.clone();
    trailing.extend_from_slice(b"appended by some camera");
    assert!(preprocess::call(trailing).is_ok());
    // Flipped bytes anywhere: an answer or an error, never a panic or an
    // abort (libjpeg's fatal errors unwind out of C and are caught).
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..500 {
        let mut bytes = jpeg.clone();
        for _ in 0..1 + next() % 8 {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        match preprocess::call(bytes) {
            Ok(t) => {
                assert_eq!(t.size(), vec![3, 224, 224]);
                ok += 1;
            }
            Err(e) => {
                assert!(e.to_string().starts_with("cannot decode"), "{e}");
                failed += 1;
            }
        }
    }
    assert_eq!(ok + failed, 500);
    assert!(failed > 0, "some of the damage must be caught");
}

#[test]
fn a_wrongly_shaped_tensor_fails_with_the_models_error() {
    let p = Classifier::bind(ModelSpec::seeded(Arch::Resnet18), Input::<Tensor>::new())
        .deploy_with(DeployOptions::new().replicas("Classifier", 1))
        .expect("deploy");
    let err = p
        .call(Tensor::from(tch::Tensor::zeros(
            [3, 10, 10],
            tch::kind::FLOAT_CPU,
        )))
        .expect_err("wrong shape");
    assert_eq!(err.step(), Some("Classifier"));
    let cause = err.source().expect("the model's error");
    assert!(cause.to_string().contains("[3, 224, 224]"), "{cause}");
    assert!(err
        .source()
        .and_then(|e| e.downcast_ref::<ModelError>())
        .is_some_and(|e| matches!(e, ModelError::Shape { .. })));
}

#[test]
fn replicas_get_devices_and_the_override_pins_them() {
    let node = || chain(ModelSpec::seeded(Arch::Resnet18));
    let gpus = torch::cuda_device_count();
    let p = node()
        .deploy_with(DeployOptions::new().replicas("Classifier", 3))
        .expect("deploy");
    let report = p
        .report()
        .into_iter()
        .find(|s| s.step == "Classifier")
        .expect("report");
    let want: Vec<Device> = (0..3)
        .map(|i| {
            if gpus == 0 {
                Device::Cpu
            } else {
                Device::Cuda(i % gpus)
            }
        })
        .collect();
    assert_eq!(report.devices, want);

    let pinned = node()
        .deploy_with(
            DeployOptions::new()
                .replicas("Classifier", 2)
                .device("Classifier", Device::Cpu),
        )
        .expect("deploy");
    let report = pinned
        .report()
        .into_iter()
        .find(|s| s.step == "Classifier")
        .expect("report");
    assert_eq!(report.devices, vec![Device::Cpu, Device::Cpu]);
    assert!(pinned.call(first_image()).is_ok());

    // A GPU the machine lacks fails deploy, naming the step.
    let missing = Device::Cuda(gpus);
    let err = node()
        .deploy_with(DeployOptions::new().device("Classifier", missing))
        .expect_err("no such GPU");
    let text = err.to_string();
    assert!(
        text.contains("Classifier") && text.contains(&missing.to_string()),
        "{text}"
    );
}

#[test]
fn batched_classifier_forms_batches_and_answers_each_caller() {
    let images: Vec<Tensor> = sample_images()
        .into_iter()
        .map(|(_, b)| preprocess::call(b).expect("preprocess"))
        .collect();
    let spec = ModelSpec::seeded(Arch::Resnet18);
    let single = Classifier::bind(spec.clone(), Input::<Tensor>::new())
        .deploy()
        .expect("deploy");
    let batched = BatchedClassifier::bind(spec, Input::<Tensor>::new())
        .deploy()
        .expect("deploy");
    let want: Vec<_> = images
        .iter()
        .map(|t| single.call(t.clone()).expect("single"))
        .collect();

    let callers = 32;
    let batched = Arc::new(batched);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let answers = rt.block_on(async {
        let calls = (0..callers).map(|i| {
            let p = Arc::clone(&batched);
            let image = images[i % images.len()].clone();
            async move { (i, p.call_async(image).await) }
        });
        futures::future::join_all(calls).await
    });
    for (i, answer) in answers {
        let got = answer.expect("batched call");
        let want = &want[i % images.len()];
        assert_eq!(got.categories, want.categories, "caller {i}");
        for (g, w) in got.scores.iter().zip(&want.scores) {
            // One image alone or in a batch: same math, another kernel order.
            assert!((g - w).abs() < 1e-3, "caller {i}: {g} vs {w}");
        }
    }
    let health = batched.health();
    let step = health
        .steps
        .iter()
        .find(|s| s.step == "BatchedClassifier")
        .expect("health");
    assert_eq!(step.batched_calls, callers as u64);
    assert!(
        step.batches < callers as u64,
        "calls were batched: {} batches",
        step.batches
    );
}

#[test]
fn a_bad_tensor_fails_only_its_batch() {
    let p = BatchedClassifier::bind(ModelSpec::seeded(Arch::Resnet18), Input::<Tensor>::new())
        .deploy()
        .expect("deploy");
    let bad = Tensor::from(tch::Tensor::zeros([3, 10, 10], tch::kind::FLOAT_CPU));
    let err = p.call(bad).expect_err("wrong shape");
    assert_eq!(err.step(), Some("BatchedClassifier"));
    let good = preprocess::call(first_image()).expect("preprocess");
    assert_eq!(p.call(good).expect("next batch").categories.len(), 5);
}

#[test]
fn stack_and_unstack_round_trip() {
    let xs: Vec<Tensor> = (0..4)
        .map(|i| Tensor::from(tch::Tensor::from_slice(&[i as f32, 1.0, 2.0]).view([3, 1])))
        .collect();
    let batch = torch::stack(&xs).expect("stack");
    assert_eq!(batch.size(), vec![4, 3, 1]);
    let back = torch::unstack(&batch);
    assert_eq!(back.len(), 4);
    for (x, y) in xs.iter().zip(&back) {
        assert!(x.equal(y));
    }
    assert!(torch::stack::<Tensor>(&[])
        .unwrap_err()
        .to_string()
        .contains("empty"));
}
