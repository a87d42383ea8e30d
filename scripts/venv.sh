# Sourced (not run) by scripts/nats.sh and scripts/models.sh, after they set
# `repo_root` and `die`: finds the torch venv exactly as scripts/setup.sh
# makes it. The torch version is read from setup.sh, so they cannot drift.
# Sets TORCH_VERSION, cache_root, venv and venv_python.
TORCH_VERSION="$(sed -n 's/^TORCH_VERSION="\(.*\)"$/\1/p' "$repo_root/scripts/setup.sh")"
[ -n "$TORCH_VERSION" ] || die "could not read TORCH_VERSION from scripts/setup.sh"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/pipeline-rs"
venv="${PIPELINE_TORCH_DIR:-$cache_root/torch-$TORCH_VERSION}"
venv_python="$venv/bin/python"
