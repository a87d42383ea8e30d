#!/usr/bin/env bash
# Runs the main demo, after the one-time set-up. The README's demo command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --release -p pipeline-examples
