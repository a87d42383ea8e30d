#!/usr/bin/env bash
# Makes headless Chromium and its WebDriver (chromedriver) available to the
# dashboard's browser test, idempotently, and prints ONLY chromedriver's
# absolute path on stdout (progress goes to stderr), so that
#
#   export PIPELINE_CHROMEDRIVER="$(bash scripts/chromium.sh)"
#
# works. Both come from Debian's packages `chromium` and `chromium-driver`,
# installed with apt-get when missing (as root, or through sudo); their
# versions always match. Chromium itself is at /usr/bin/chromium
# (PIPELINE_CHROMIUM overrides it for the test).
set -euo pipefail

say() { printf '[chromium] %s\n' "$*" >&2; }
die() { printf '[chromium] error: %s\n' "$*" >&2; exit 1; }

if ! command -v chromedriver >/dev/null 2>&1 || [ ! -x "${PIPELINE_CHROMIUM:-/usr/bin/chromium}" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        die "chromium and chromium-driver are missing and this user cannot install them: apt-get install chromium chromium-driver"
    fi
    say "installing Debian's chromium and chromium-driver (a few minutes, once)"
    export DEBIAN_FRONTEND=noninteractive
    # An old package list may name versions the mirror no longer has.
    "${sudo[@]}" apt-get update -q >&2 || say "apt-get update failed; trying the package list there is"
    "${sudo[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver >&2 \
        || die "apt-get install chromium chromium-driver failed"
fi
driver="$(command -v chromedriver)"
say "$("$driver" --version 2>/dev/null | head -1) at $driver"
printf '%s\n' "$driver"
