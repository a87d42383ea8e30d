//! Proves the libtorch link: build a small model with tch and run a forward
//! pass, inside a pipeline step. Needs the `torch` feature (and
//! `scripts/setup.sh`, which installs libtorch).
#![cfg(feature = "torch")]

use pipeline_core::prelude::*;
use pipeline_core::torch::tch::{self, nn, nn::Module, Device as TchDevice, Kind, Tensor};

#[test]
fn small_model_forward_pass() {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(TchDevice::Cpu);
    let net = nn::seq()
        .add(nn::linear(vs.root() / "l1", 4, 8, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(vs.root() / "l2", 8, 3, Default::default()));
    let x = Tensor::ones([2, 4], (Kind::Float, TchDevice::Cpu));
    let y = net.forward(&x);
    assert_eq!(y.size(), vec![2, 3]);
    let sum = y.abs().sum(Kind::Float).double_value(&[]);
    assert!(sum.is_finite() && sum > 0.0, "{sum}");
}

struct Linear {
    net: nn::Linear,
    _vs: nn::VarStore,
}

#[step]
impl Linear {
    fn new(ctx: &ReplicaContext, inputs: i64) -> Self {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(ctx.device().into());
        let net = nn::linear(vs.root(), inputs, 1, Default::default());
        Linear { net, _vs: vs }
    }
    fn call(&self, xs: Vec<f32>) -> f32 {
        let x = Tensor::from_slice(&xs).unsqueeze(0);
        self.net.forward(&x).double_value(&[0, 0]) as f32
    }
}

#[test]
fn model_step_runs_a_forward_pass() {
    let p = Linear::bind(3, Input::<Vec<f32>>::new()).deploy().unwrap();
    let a = p.call(vec![1.0, 2.0, 3.0]).unwrap();
    let b = p.call(vec![1.0, 2.0, 3.0]).unwrap();
    assert!(a.is_finite());
    assert_eq!(a, b);
    assert!(pipeline_core::torch::cuda_device_count() < 1024);
}

#[test]
fn cuda_backend_is_loaded_when_libtorch_has_one() {
    use pipeline_core::torch::{ensure_cuda_loaded, CudaBackend};
    // The PyPI wheel ships libtorch_cuda.so; loading it must work even on a
    // machine without a GPU (it then reports 0 devices).
    let has_cuda_lib = std::path::Path::new(env!("PIPELINE_LIBTORCH_LIB"))
        .join("libtorch_cuda.so")
        .exists();
    match ensure_cuda_loaded() {
        CudaBackend::Loaded(_) => assert!(has_cuda_lib),
        CudaBackend::Unavailable(why) => assert!(
            !has_cuda_lib,
            "libtorch_cuda.so exists but did not load: {why}"
        ),
    }
}
