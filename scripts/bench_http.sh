#!/usr/bin/env bash
# HTTP load benchmark: seed 001 (Preprocessor -> Model -> Postprocessor)
# served by the ingress, driven by wrk (installed from Debian's packages
# here if missing) at 1 and 64 connections. Prints a table and writes
# target/bench/http.json.
#   bash scripts/bench_http.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
say() { printf '[bench-http] %s\n' "$*" >&2; }

if ! command -v wrk >/dev/null; then
  say "installing wrk from Debian's packages"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq wrk >/dev/null
fi
command -v curl >/dev/null || { say "curl is needed to wait for the server"; exit 1; }

say "building the seed 001 server (release)"
cargo build -q --release -p pipeline-examples --features http --example http_seed
addr="127.0.0.1:18080"
RUST_LOG=warn target/release/examples/http_seed "$addr" >/dev/null &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 200); do
  curl -sf "http://$addr/healthz" >/dev/null && break
  sleep 0.05  # waiting for a separate process to bind; not a test
done

lua="$(mktemp)"
cat > "$lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"values": [1.0, 2.0, 3.0, 4.0]}'
wrk.headers["Content-Type"] = "application/json"
LUA

ms() { # wrk prints 1.23ms / 456.00us / 1.20s
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}

rows=()
printf '| connections | wrk threads | req/s | p50 (ms) | p99 (ms) | non-2xx |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n'
for conns in 1 64; do
  threads=$(( conns < 2 ? 1 : 2 ))
  out="$(wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$lua" "http://$addr/predict")"
  rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
  p50="$(ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
  p99="$(ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
  bad="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"; bad="${bad:-0}"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$conns" "$threads" "$rps" "$p50" "$p99" "$bad"
  rows+=("{\"connections\": $conns, \"threads\": $threads, \"requests_per_s\": $rps, \"p50_ms\": $p50, \"p99_ms\": $p99, \"non_2xx\": $bad}")
done
rm -f "$lua"
mkdir -p target/bench
( IFS=,; printf '{"benchmark": "http", "seconds": %s, "rows": [%s]}\n' "$secs" "${rows[*]}" ) > target/bench/http.json
say "wrote target/bench/http.json"
