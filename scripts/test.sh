#!/usr/bin/env bash
# Runs every test with all features, after the one-time set-up.
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-off build (CI, a fresh clone) gains nothing from incremental
# compilation and its cache is the largest thing under target/; a developer
# who runs this by hand keeps their own setting.
if [ -n "${CI:-}" ] && [ -z "${CARGO_INCREMENTAL:-}" ]; then
    export CARGO_INCREMENTAL=0
fi
# The build needs several GB; say how much room there is before it starts, so
# a failure for want of disk reads as that.
echo "[test] free disk where target/ goes: $(df -h --output=avail . | tail -1 | tr -d ' ')" >&2
bash scripts/setup.sh
# The NATS tests start their own nats-server (tests/tests/support/nats.rs);
# exported so that every test process finds the same pinned binary. (Two
# statements: `export X="$(...)"` would hide a failure of nats.sh from set -e.)
PIPELINE_NATS_SERVER="$(bash scripts/nats.sh)"
export PIPELINE_NATS_SERVER
# The pretrained models (EfficientNet-Lite0/1, traced once) the fixture and
# the agreement tests use.
PIPELINE_MODELS="$(bash scripts/models.sh)"
export PIPELINE_MODELS
bash scripts/fixture.sh
# Headless Chromium and chromedriver for the dashboard's browser test
# (Debian's packages, installed once).
PIPELINE_CHROMEDRIVER="$(bash scripts/chromium.sh)"
export PIPELINE_CHROMEDRIVER
echo "[test] layering of pipeline-core (scripts/layers.sh)" >&2
bash scripts/layers.sh
# The API docs build with no broken links (not the torch module: that
# would build libtorch's bindings once more, in the doc profile).
echo "[test] cargo doc, warnings denied" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p pipeline-core -p pipeline-macros --features pipeline-core/remote,pipeline-core/http
echo "[test] cargo test --workspace --all-features" >&2
cargo test --workspace --all-features
echo "[test] a crate of its own (scripts/own_crate.sh)" >&2
bash scripts/own_crate.sh
