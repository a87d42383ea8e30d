//! `torch::tune_malloc` takes effect: memory a worker thread frees is
//! reused, not handed back to the kernel and faulted in again. Own
//! harness, because the tuning must come before any thread starts: `main`
//! tunes, runs the checks, then runs the same checks in a child process
//! that keeps glibc's defaults, so the test also shows the difference it
//! guards.
//!
//! Page faults are counted, not timed: the same work faults the same pages
//! whatever else the machine is doing. Two figures:
//!
//! - an allocation probe, which the assertions rest on: a fresh thread
//!   allocates, touches and frees about 60 MiB in 1-4 MiB blocks, five
//!   times. Tuned, every round after the first reuses the first round's
//!   pages; with glibc's defaults every round faults them in again.
//! - a resnet18 replica on its own thread, faults per call, checked only
//!   against an upper bound when tuned. Untuned it is printed, not checked:
//!   glibc's dynamic mmap and trim thresholds move with the timing of the
//!   frees, so untuned runs range from about 60 to about 450 faults per
//!   call on the same machine.

#[cfg(feature = "torch")]
fn main() {
    const CHILD: &str = "PIPELINE_MALLOC_TEST_UNTUNED";
    if std::env::var_os(CHILD).is_some() {
        // The probe first: glibc's dynamic thresholds are process-wide, so
        // it must see them as a fresh process has them, not as resnet18's
        // frees left them.
        let probe = probe_faults_per_round();
        let resnet = faults_per_call();
        println!("probe {}", join(&probe));
        println!("resnet {resnet}");
        return;
    }
    assert!(
        pipeline_core::torch::tune_malloc(),
        "glibc refused a setting"
    );
    let probe = probe_faults_per_round();
    let resnet = faults_per_call();
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .env(CHILD, "1")
        .output()
        .expect("run the untuned child");
    assert!(child.status.success(), "untuned child failed: {child:?}");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let line = |key: &str| -> Vec<f64> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("the child prints `{key} ...`: {stdout:?}"))
            .split_whitespace()
            .map(|v| v.parse().expect("a number"))
            .collect()
    };
    let untuned_probe: Vec<u64> = line("probe").into_iter().map(|v| v as u64).collect();
    let untuned_resnet = line("resnet")[0];

    println!(
        "minor page faults per resnet18 call on a replica thread: \
         tuned {resnet:.0}, glibc defaults {untuned_resnet:.0}"
    );
    println!(
        "minor page faults per probe round (60 MiB in 1-4 MiB blocks): \
         tuned {}, glibc defaults {}",
        join(&probe),
        join(&untuned_probe)
    );

    // A resnet18 forward pass frees about 10 MB of activations (2,500
    // pages); tuned, a warm replica faults almost none of them in again.
    assert!(resnet < 250.0, "tuned: {resnet} faults per call");
    // A round touches 15,360 pages. Tuned, the rounds after the first
    // reuse them; with glibc's defaults each round maps them afresh.
    let tuned_reuse = mean_after_first(&probe);
    let untuned_reuse = mean_after_first(&untuned_probe);
    assert!(
        tuned_reuse < 100.0,
        "tuned: rounds after the first fault {tuned_reuse} pages each ({probe:?})"
    );
    assert!(
        untuned_reuse > 10_000.0,
        "glibc defaults reused the memory, so the probe cannot tell the tuning \
         had an effect: {untuned_reuse} faults per round ({untuned_probe:?})"
    );
    println!("test malloc_tuning_keeps_freed_memory ... ok");
}

/// Minor page faults of a freshly spawned thread in each of five rounds of:
/// allocate 24 blocks of 1-4 MiB (60 MiB) with plain `malloc`, write every
/// byte, free them all.
#[cfg(feature = "torch")]
fn probe_faults_per_round() -> Vec<u64> {
    use pipeline_examples::process::thread_minor_faults;
    const MIB: usize = 1 << 20;

    std::thread::spawn(|| {
        (0..5)
            .map(|_| {
                let before = thread_minor_faults();
                let blocks: Vec<Vec<u8>> = (0..24)
                    .map(|i| {
                        let n = (1 + i % 4) * MIB;
                        // Not `vec![0; n]`: that is `calloc`, which may take
                        // fresh zero pages from the kernel whatever the
                        // tuning.
                        let mut block = Vec::<u8>::with_capacity(n);
                        block.resize(n, 1);
                        block
                    })
                    .collect();
                drop(std::hint::black_box(blocks));
                thread_minor_faults() - before
            })
            .collect()
    })
    .join()
    .expect("probe thread")
}

/// Mean of the rounds after the first, which only reuse can make cheap.
#[cfg(feature = "torch")]
fn mean_after_first(rounds: &[u64]) -> f64 {
    let later = &rounds[1..];
    later.iter().sum::<u64>() as f64 / later.len() as f64
}

#[cfg(feature = "torch")]
fn join(values: &[u64]) -> String {
    values
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
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
