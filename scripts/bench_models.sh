#!/usr/bin/env bash
# The real-model benchmarks against their Python references, on this machine:
#   - preprocess -> EfficientNet-Lite0: pipeline vs a hand-written tch loop;
#   - preprocessing alone per image: Rust (JPEG with and without libjpeg-turbo's
#     SIMD) vs torchvision + Pillow;
#   - MiniLM embeddings/s at 1 and 32 in flight vs sentence-transformers at
#     batch_size 1 and 32;
#   - p50/p99 of POST /embed (one sentence) under 1 and 16 concurrent clients
#     (wrk, installed from Debian's packages if missing).
# Prints a table and writes target/bench/models.json.
#   bash scripts/bench_models.sh [SECONDS_PER_HTTP_RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
say() { printf '[bench-models] %s\n' "$*" >&2; }

bash scripts/setup.sh
PIPELINE_MODELS="$(bash scripts/models.sh)"
export PIPELINE_MODELS
bash scripts/fixture.sh
python="$(sed -n 's/^PIPELINE_TORCH_PYTHON = "\(.*\)"$/\1/p' .cargo/config.toml)"
out=target/bench
mkdir -p "$out/images"
cp "$PIPELINE_MODELS/grace_hopper.jpg" target/fixture/images/* "$out/images/"

# 256 sentences of 4 to 60 words, the same every run.
"$python" - "$out/sentences.txt" <<'PY'
import random, sys
words = ("the model pipeline serves requests with replicas on a cluster while each step "
         "batches tensors and the router sends images to classifiers that answer labels "
         "for photos of dogs cats mountains rivers cities people food music weather").split()
rng = random.Random(20261127)
with open(sys.argv[1], "w") as f:
    for _ in range(256):
        n = rng.choice([4, 8, 12, 16, 24, 32, 60])
        f.write(" ".join(rng.choice(words) for _ in range(n)).capitalize() + ".\n")
PY

say "Rust: cargo bench --bench models (JPEG SIMD on, then off)"
cargo bench -q -p pipeline-examples --features text --bench models
JSIMD_FORCENONE=1 cargo bench -q -p pipeline-examples --features text --bench models -- preprocess

say "Python: torchvision + Pillow, sentence-transformers"
"$python" -W ignore scripts/bench_models.py "$out"

if ! command -v wrk >/dev/null; then
  say "installing wrk from Debian's packages"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq wrk >/dev/null
fi
say "HTTP: POST /embed under 1 and 16 connections, ${secs}s each"
cargo build -q --release -p pipeline-examples --features http,text --example http_embed
addr="127.0.0.1:18081"
RUST_LOG=warn target/release/examples/http_embed "$addr" "$PIPELINE_MODELS" >/dev/null &
server=$!
lua="$(mktemp)"
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$lua"' EXIT
for _ in $(seq 1 400); do
  curl -sf "http://$addr/readyz" >/dev/null && break
  sleep 0.05  # waiting for a separate process to load the model; not a test
done
cat > "$lua" <<'LUA'
wrk.method = "POST"
wrk.body = '["How do I change the delivery address of an order that has already shipped?"]'
wrk.headers["Content-Type"] = "application/json"
LUA
for c in 1 16; do
  wrk -t "$([ $c -eq 1 ] && echo 1 || echo 2)" -c "$c" -d "${secs}s" --latency -s "$lua" "http://$addr/embed" \
    > "$out/embed-wrk-$c.txt"
done

"$python" - "$out" <<'PY'
import json, os, re, sys
out = sys.argv[1]
rust = json.load(open(os.path.join(out, "models-rust.json")))
nosimd = json.load(open(os.path.join(out, "models-rust-preprocess.json")))["preprocess_us"]
py = json.load(open(os.path.join(out, "models-python.json")))

def ms(v):
    n = float(re.match(r"[\d.]+", v).group())
    return n / 1000 if v.endswith("us") else n * 1000 if v.endswith("s") and not v.endswith("ms") else n

http = {}
for c in (1, 16):
    text = open(os.path.join(out, f"embed-wrk-{c}.txt")).read()
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    http[str(c)] = {"p50_ms": ms(pct["50"]), "p99_ms": ms(pct["99"]), "requests_per_s": rps}

lite = rust["lite0"]
print(f"\nlibtorch threads: Rust {rust['threads']}, Python {py['threads']}\n")
print("| preprocess -> Lite0, one image at a time | hand-written tch loop | pipeline | ratio |")
print("| --- | ---: | ---: | ---: |")
print(f"| images/s | {lite['hand_images_per_s']:.1f} | {lite['pipeline_images_per_s']:.1f} | {lite['ratio']:.3f} |\n")
print("| preprocessing (us per image) | Rust, JPEG SIMD | Rust, no SIMD | torchvision + Pillow | Python / Rust |")
print("| --- | ---: | ---: | ---: | ---: |")
for name, us in rust["preprocess_us"].items():
    p = py["preprocess_us"][name]
    print(f"| {name} | {us:.0f} | {nosimd[name]:.0f} | {p:.0f} | {p / us:.2f} |")
print("\n| MiniLM embeddings/s | pipeline | sentence-transformers | ratio |")
print("| --- | ---: | ---: | ---: |")
for b in ("1", "32"):
    r, p = rust["embeddings_per_s"][b], py["embeddings_per_s"][b]
    print(f"| batch {b} (Rust: {b} in flight) | {r:.1f} | {p:.1f} | {r / p:.2f} |")
r, p = rust["embeddings_per_s"]["list"], py["embeddings_per_s"]["32"]
print(f"| the list of {len(open(os.path.join(out, 'sentences.txt')).read().splitlines())} in one call (Rust: EmbedEach; Python: batch 32) | {r:.1f} | {p:.1f} | {r / p:.2f} |")
print("\n| POST /embed, one sentence | p50 ms | p99 ms | requests/s |")
print("| --- | ---: | ---: | ---: |")
for c, v in http.items():
    print(f"| {c} client{'s' if c != '1' else ''} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['requests_per_s']:.0f} |")
json.dump({"rust": rust, "rust_no_simd_preprocess_us": nosimd, "python": py, "http_embed": http},
          open(os.path.join(out, "models.json"), "w"), indent=1)
print("\nwrote target/bench/models.json")
PY
