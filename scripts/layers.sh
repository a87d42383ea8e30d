#!/usr/bin/env bash
# Prints what each layer of pipeline-core uses (`use crate::..` and other
# `crate::` paths outside comments) and fails if a layer uses one below it.
# The layers, top (used by all below) to bottom, as README.md's Layout says.
set -euo pipefail
cd "$(dirname "$0")/../pipeline-core/src"
layers=(error step torch eval runtime graph pipeline http remote)
status=0
for i in "${!layers[@]}"; do
  layer=${layers[$i]}
  files=$(ls -d "$layer" "$layer.rs" 2>/dev/null || true)
  [ -n "$files" ] || continue
  # Code lines only: doc links and comments name things, they do not use them.
  code=$(grep -rhv '^\s*//' $files || true)
  used=$(grep -oE 'crate::[a-z_]+' <<<"$code" | sed 's/crate:://' | sort -u | grep -vx "$layer" || true)
  printf '%-9s uses: %s\n' "$layer" "$(echo $used)"
  for u in $used; do
    for j in "${!layers[@]}"; do
      if [ "${layers[$j]}" = "$u" ] && [ "$j" -gt "$i" ]; then
        echo "  error: $layer (layer $i) uses $u (layer $j), which is below it" >&2
        status=1
      fi
    done
  done
  # Root re-exports (`crate::Pipeline`, `crate::{..}`) hide the layer; only
  # the edge (http) may use them.
  if [ "$layer" != http ] && grep -qE 'crate::(\{|[A-Z])' <<<"$code"; then
    echo "  error: $layer uses root re-exports; name the module" >&2
    grep -nE 'crate::(\{|[A-Z])' -r $files | grep -v '^\S*:\s*//' >&2 || true
    status=1
  fi
done
exit $status
