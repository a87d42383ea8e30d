//! Checks that libtorch sees CUDA: prints what was loaded, the device
//! count, each replica's device, and runs a matmul on `cuda:0` when there is
//! one. `cargo run -p pipeline-examples --features torch --example cuda_check`
//! (on a machine without a GPU it reports 0 devices and the CPU).

#[cfg(feature = "torch")]
fn main() {
    use pipeline_core::torch::{self, tch};
    println!("backend: {:?}", torch::ensure_cuda_loaded());
    let n = torch::cuda_device_count();
    println!("cuda devices: {n}");
    for i in 0..4 {
        println!("replica {i} -> {}", torch::replica_device(i));
    }
    if n > 0 {
        let a = tch::Tensor::ones([512, 512], (tch::Kind::Float, tch::Device::Cuda(0)));
        let s = a.matmul(&a).sum(tch::Kind::Float).double_value(&[]);
        println!("matmul on cuda:0: sum = {s}");
    }
}

#[cfg(not(feature = "torch"))]
fn main() {
    println!("build with --features torch to check libtorch and CUDA");
}
