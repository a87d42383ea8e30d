//! `torch::tune_malloc` takes effect: a resnet18 replica on its own thread
//! reuses the memory of its forward passes instead of faulting it in again
//! on every call. Own harness, because the tuning must come before any
//! thread starts: `main` tunes, runs the check, then runs the same check in
//! a child process that keeps glibc's defaults, so the test also shows the
//! difference it guards.
//!
//! Page faults are counted, not timed: the same work faults the same pages
//! whatever else the machine is doing.

#[cfg(feature = "torch")]
fn main() {
    const CHILD: &str = "PIPELINE_MALLOC_TEST_UNTUNED";
    if std::env::var_os(CHILD).is_some() {
        println!("{}", faults_per_call());
        return;
    }
    assert!(
        pipeline_core::torch::tune_malloc(),
        "glibc refused a setting"
    );
    let tuned = faults_per_call();
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .env(CHILD, "1")
        .output()
        .expect("run the untuned child");
    assert!(child.status.success(), "untuned child failed: {child:?}");
    let untuned: f64 = String::from_utf8_lossy(&child.stdout)
        .trim()
        .parse()
        .expect("the child prints its faults per call");
    println!("minor page faults per resnet18 call on a replica thread: tuned {tuned:.0}, glibc defaults {untuned:.0}");
    // A resnet18 forward pass frees about 10 MB of activations (2,500
    // pages); tuned, a warm replica faults almost none of them in again.
    assert!(tuned < 250.0, "tuned: {tuned} faults per call");
    assert!(
        tuned * 4.0 < untuned,
        "the tuning made no difference: tuned {tuned}, untuned {untuned}"
    );
    println!("test malloc_tuning_keeps_forward_pass_memory ... ok");
}

/// Minor page faults per call of preprocess -> resnet18 (one replica on
/// its own thread), after warm-up.
#[cfg(feature = "torch")]
fn faults_per_call() -> f64 {
    use pipeline_core::prelude::*;
    use pipeline_examples::process::minor_faults;
    use pipeline_examples::vision::{chain, sample_images, Arch, ModelSpec};

    let p = chain(ModelSpec::seeded(Arch::Resnet18))
        .deploy_with(DeployOptions::new().replicas("Classifier", 1))
        .expect("deploy");
    let images: Vec<Vec<u8>> = sample_images().into_iter().map(|(_, b)| b).collect();
    for image in &images {
        p.call(image.clone()).expect("warm-up call");
    }
    let calls = 3 * images.len();
    let before = minor_faults();
    for image in images.iter().cycle().take(calls) {
        p.call(image.clone()).expect("call");
    }
    (minor_faults() - before) as f64 / calls as f64
}

#[cfg(not(feature = "torch"))]
fn main() {}
