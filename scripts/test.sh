#!/usr/bin/env bash
# Runs every test with all features, after the one-time set-up.
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/fixture.sh
echo "[test] layering of pipeline-core (scripts/layers.sh)" >&2
bash scripts/layers.sh
echo "[test] cargo test --workspace --all-features" >&2
cargo test --workspace --all-features
