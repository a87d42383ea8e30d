#!/usr/bin/env bash
# Proves the README's "Use it in your own crate": makes a new crate in a
# temporary folder (`cargo new`), depends on this checkout's pipeline-core by
# path with the `torch` feature, lets `scripts/setup.sh --project` point it
# at libtorch, and builds and runs a one-step pipeline serving a TorchScript
# model (EfficientNet-Lite0 from scripts/models.sh) on a real photo.
# The test command runs it; the build shares target/own-crate between runs.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[own-crate] %s\n' "$*" >&2; }
die() { printf '[own-crate] error: %s\n' "$*" >&2; exit 1; }

models="${PIPELINE_MODELS:-$(bash "$repo_root/scripts/models.sh")}"
[ -f "$models/efficientnet-lite0.pt" ] || die "no models in $models: run scripts/models.sh"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
cargo new --quiet --vcs none app
cd app
cat >> Cargo.toml <<TOML
pipeline-core = { path = "$repo_root/pipeline-core", features = ["torch"] }
TOML
cat > src/main.rs <<'RUST'
use pipeline_core::prelude::*;
use pipeline_core::torch::{tch, ScriptStep, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = std::env::args().nth(1).expect("usage: app MODEL.pt");
    let p = ScriptStep::bind(model.into(), Input::<Tensor>::new()).deploy()?;
    let image = Tensor::from(tch::Tensor::zeros([1, 3, 224, 224], (tch::Kind::Float, tch::Device::Cpu)));
    let logits = p.call(image)?;
    println!("logits {:?}", logits.size());
    Ok(())
}
RUST
bash "$repo_root/scripts/setup.sh" --project . >&2
say "building a new crate against this checkout (target/own-crate)"
out="$(CARGO_TARGET_DIR="$repo_root/target/own-crate" cargo run --quiet -- "$models/efficientnet-lite0.pt")"
echo "$out"
[ "$out" = "logits [1, 1000]" ] || die "unexpected output: $out"
say "ok: a crate of its own found libtorch and ran a TorchScript step"
