#!/usr/bin/env bash
# One-time, idempotent set-up for this repository on a fresh machine.
#
# Installs libtorch (the PyPI `torch` wheel, which ships libtorch's headers and
# shared libraries) into a per-user cache shared by every clone, then writes
# `.cargo/config.toml` in this clone so that plain `cargo build`, `cargo test
# --all-features` and `cargo run` find it without exported variables.
#
# Re-running is quick: an existing install is checked and reused.
#
#   bash scripts/setup.sh --project DIR
#
# also writes the same `.cargo/config.toml` into the crate (or workspace) at
# DIR, so that a crate of your own depending on `pipeline-core` with the
# `torch` feature finds libtorch too (see the README's "Use it in your own
# crate").
#
# Variables (all optional):
#   PIPELINE_TORCH_DIR   where the venv lives (default ~/.cache/pipeline-rs/torch-<ver>)
#   PIPELINE_PYTHON      the python used to make the venv (default python3)
set -euo pipefail

TORCH_VERSION="2.13.0"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/pipeline-rs"
venv="${PIPELINE_TORCH_DIR:-$cache_root/torch-$TORCH_VERSION}"
python="${PIPELINE_PYTHON:-python3}"

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

projects=("$repo_root")
while [ $# -gt 0 ]; do
  case "$1" in
    --project)
      [ $# -ge 2 ] || die "--project needs a directory"
      [ -d "$2" ] || die "--project $2: no such directory"
      projects+=("$(cd "$2" && pwd)")
      shift 2
      ;;
    *) die "unknown argument $1 (usage: setup.sh [--project DIR])" ;;
  esac
done

command -v cargo >/dev/null || die "cargo not found: install Rust (rustup) first"
command -v "$python" >/dev/null || die "$python not found: install Python 3.9+ with pip and venv"

# nasm lets libjpeg-turbo (the mozjpeg crate) build its SIMD code, which
# decodes JPEG about twice as fast, as Pillow's own copy does. Installed from
# Debian's packages when possible; without it the build still works, with
# the plain C code (and says so in a cargo warning).
if ! command -v nasm >/dev/null; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo -n"
  if command -v apt-get >/dev/null \
      && { $sudo_cmd apt-get install -y -qq nasm >/dev/null 2>&1 \
           || { $sudo_cmd apt-get update -qq >/dev/null 2>&1 && $sudo_cmd apt-get install -y -qq nasm >/dev/null 2>&1; }; }; then
    say "installed nasm from Debian's packages (JPEG decoding with SIMD)"
  else
    say "nasm not installed (no apt-get or no permission): JPEG decoding builds without SIMD"
  fi
fi

venv_python="$venv/bin/python"
installed_version() {
  [ -x "$venv_python" ] || return 1
  "$venv_python" - <<'PY' 2>/dev/null
import importlib.metadata as m
print(m.version("torch"))
PY
}

current="$(installed_version || true)"
if [ "${current%%+*}" = "$TORCH_VERSION" ]; then
  say "libtorch $current already installed in $venv"
else
  say "installing torch==$TORCH_VERSION from PyPI into $venv (about 4.7 GB, a few minutes the first time)"
  mkdir -p "$(dirname "$venv")"
  # A half-finished earlier attempt is replaced, never patched.
  rm -rf "$venv.partial"
  "$python" -m venv "$venv.partial" || die "could not create a venv with $python (on Debian: apt-get install python3-venv)"
  "$venv.partial/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
      "torch==$TORCH_VERSION" \
    || die "pip could not install torch==$TORCH_VERSION; check that PyPI is reachable (pip config, proxy)"
  # venv scripts carry absolute paths, so the venv is built where it will live
  # only after a successful install: rename is atomic enough for one user.
  rm -rf "$venv"
  mv "$venv.partial" "$venv"
  # Fix the shebangs/activate that still name the .partial path.
  grep -rl "$venv.partial" "$venv/bin" 2>/dev/null | xargs -r sed -i "s#$venv.partial#$venv#g"
  current="$(installed_version)" || die "torch installed but cannot be imported from $venv"
  say "installed torch $current"
fi

torch_dir="$("$venv_python" -W ignore -c 'import os, torch; print(os.path.dirname(torch.__file__))')"
[ -f "$torch_dir/lib/libtorch.so" ] || die "libtorch.so not found under $torch_dir/lib"
[ -d "$torch_dir/include/torch" ] || die "libtorch headers not found under $torch_dir/include"

# Link flags: rpath so binaries find libtorch without LD_LIBRARY_PATH.
# libtorch_cuda.so is not linked here (that would load CUDA into every test
# binary); pipeline_core::torch loads it at run time when it exists.
for project in "${projects[@]}"; do
mkdir -p "$project/.cargo"
cat > "$project/.cargo/config.toml" <<TOML
# Written by scripts/setup.sh; safe to delete and regenerate. Not committed.
[env]
LIBTORCH = "$torch_dir"
PIPELINE_TORCH_PYTHON = "$venv_python"

[target.x86_64-unknown-linux-gnu]
rustflags = ["-C", "link-arg=-Wl,-rpath,$torch_dir/lib"]

# Doctests are linked by rustdoc, which reads these instead.
[build]
rustdocflags = ["-C", "link-arg=-Wl,-rpath,$torch_dir/lib"]
TOML
say "wrote $project/.cargo/config.toml (LIBTORCH=$torch_dir)"
done
