#!/usr/bin/env bash
# Prints the compile-time checks' catalogue: each UI case (a mistake in
# tests/ui/<area>/<case>.rs) with the first line of the error rustc gives
# for it (its .stderr snapshot), as a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../tests/ui"
echo "| case | first line of the error |"
echo "| --- | --- |"
for f in */*.stderr; do
    line=$(grep -m1 -E '^error' "$f" | sed -E 's/^error(\[E[0-9]+\])?: //; s/\|/\\|/g')
    echo "| \`${f%.stderr}\` | $line |"
done
