#!/usr/bin/env bash
# Writes the PyTorch agreement fixture (seeded weights, test images, expected
# outputs) into target/fixture, after scripts/setup.sh. The weights are too
# big to commit (about 130 MB), so the fixture is made here, from the same
# torch the Rust side links, plus torchvision from PyPI. Skipped when
# target/fixture already matches scripts/make_fixture.py.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[fixture] %s\n' "$*" >&2; }
die() { printf '[fixture] error: %s\n' "$*" >&2; exit 1; }

python="$(sed -n 's/^PIPELINE_TORCH_PYTHON = "\(.*\)"$/\1/p' .cargo/config.toml 2>/dev/null || true)"
[ -x "$python" ] || die "no torch venv: run scripts/setup.sh first"

out="${PIPELINE_FIXTURE_DIR:-target/fixture}"
stamp="$(cat scripts/make_fixture.py scripts/requirements-reference.txt | sha256sum | cut -d' ' -f1)"
if [ -f "$out/STAMP" ] && [ "$(cat "$out/STAMP")" = "$stamp" ]; then
  say "up to date in $out"
  exit 0
fi

if ! "$python" -c 'import torchvision, safetensors, PIL, numpy' 2>/dev/null; then
  say "installing torchvision==0.28.0 and safetensors from PyPI into the torch venv"
  "$python" -m pip install --disable-pip-version-check --progress-bar off \
      "torchvision==0.28.0" "safetensors>=0.4" "pillow" "numpy" \
    || die "pip could not install torchvision / safetensors"
fi

if ! "$python" -c 'import sentence_transformers' 2>/dev/null; then
  say "installing sentence-transformers (pinned, scripts/requirements-reference.txt) into the torch venv"
  "$python" -m pip install --disable-pip-version-check --progress-bar off --quiet \
      -r scripts/requirements-reference.txt >&2 \
    || die "pip could not install sentence-transformers"
fi

rm -rf "$out.partial"
"$python" -W ignore scripts/make_fixture.py "$out.partial"
echo "$stamp" > "$out.partial/STAMP"
rm -rf "$out"
mv "$out.partial" "$out"
say "wrote $out ($(du -sh "$out" | cut -f1))"
