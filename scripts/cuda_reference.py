# PyTorch's answers for grace_hopper.jpg (the same TorchScript files, torchvision's
# transforms) on cuda and cpu, against the GPU answers cuda_check wrote:
#   cd MODELS_DIR && python3 cuda_reference.py CUDA_CHECK.json
import json, sys, torch
from PIL import Image
import torchvision.transforms as T
ours = json.load(open(sys.argv[1]))
row = [r for r in ours if r["graph"] == "lite ensemble"][0]
ans = [a for a in row["gpu_answers"] if a["image"] == "grace_hopper.jpg"][0]
img = Image.open("grace_hopper.jpg").convert("RGB")
print("torch", torch.__version__, "cudnn.allow_tf32", torch.backends.cudnn.allow_tf32, "matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32)
for name, size in [("lite0", 224), ("lite1", 240)]:
    t = T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    x = t(img).unsqueeze(0)
    probs = {}
    for dev in ["cuda", "cpu"]:
        m = torch.jit.load(f"efficientnet-{name}.pt", map_location=dev).eval()
        with torch.no_grad():
            probs[dev] = m(x.to(dev)).softmax(-1)[0].cpu()
    top = torch.topk(probs["cuda"], 5)
    print(name, "pytorch cuda top5", top.indices.tolist(), "ours", [r["category"] for r in ans[name]])
    d_cuda = max(abs(probs["cuda"][r["category"]].item() - r["probability"]) for r in ans[name])
    d_cpu = max(abs(probs["cpu"][r["category"]].item() - r["probability"]) for r in ans[name])
    d_pt = (probs["cuda"] - probs["cpu"]).abs().max().item()
    print(f"{name}: ours(gpu) vs pytorch cuda {d_cuda:.2e}; ours(gpu) vs pytorch cpu {d_cpu:.2e}; pytorch cuda vs cpu {d_pt:.2e}")
