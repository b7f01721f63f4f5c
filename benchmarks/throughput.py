"""Training and inference throughput of the codec and U-Net, measured in the same run, with their ratios.

Training: images per second of full optimisation steps (forward, weighted Dice loss, backward, Adam) on random
batches, as :mod:`dermoseg.segmentation.task` runs them (channels-last, float32, CPU). Inference: images per second of
one-image forward passes in inference mode, as ``dermoseg segment`` runs them (network only; decoding and
resizing excluded). One warm-up step each is not timed. Parameters and MACs are printed beside.

    .venv/bin/python benchmarks/throughput.py --sizes 128 256 --out docs/results/throughput.json

Numbers depend on what else runs on the machine; the load average at the start is recorded with them, and
the ratios (measured back to back) are more stable than the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from dermoseg.report import model_key
from dermoseg.segmentation.losses import get_loss
from dermoseg.models import build_model
from dermoseg.models.complexity import count_macs, count_parameters

MODELS = {
    "codec-paper": {"architecture": "codec", "encoder": "paper", "aspp_rates": [3, 3, 6]},
    "codec-mobilenet_v2": {"architecture": "codec", "encoder": "mobilenet_v2", "aspp_rates": [3, 3, 6]},
    "unet": {"architecture": "unet", "width": 32},
}


def train_throughput(model: torch.nn.Module, size: int, batch: int, steps: int) -> float:
    """Images per second of ``steps`` timed Adam steps on ``(batch, 3, size, size)`` random inputs (one untimed
    warm-up step first)."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = get_loss("weighted_dice")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, 1, size, size, generator=g) > 0.5).float()
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


@torch.inference_mode()
def infer_throughput(model: torch.nn.Module, size: int, images: int) -> float:
    """Images per second of single-image forward passes at ``size`` × ``size`` (one untimed warm-up)."""
    model.eval()
    x = torch.randn(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    model(x)
    start = time.perf_counter()
    for _ in range(images):
        model(x)
    return images / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Measure every model at every size; print a table and the codec/U-Net ratios; optionally write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="square input sizes in pixels")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--batch", type=int, default=8, help="training batch size (default 8)")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per model and size")
    ap.add_argument("--images", type=int, default=10, help="timed inference images per model and size")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results = []
    print(f"{'model':28s} {'params':>11s} {'GMACs':>7s} {'train img/s':>12s} {'infer img/s':>12s}")
    for size in args.sizes:
        for name in args.models:
            net = build_model(MODELS[name], pretrained=False).to(memory_format=torch.channels_last)
            macs, params = count_macs(net, size, size), count_parameters(net)
            tr = train_throughput(net, size, args.batch, args.steps)
            inf = infer_throughput(net, size, args.images)
            key = model_key(MODELS[name], size)
            results.append({"key": key, "model": name, "image_size": size, "batch_size": args.batch, "parameters": params,
                            "macs": macs, "train_img_s": round(tr, 3), "infer_img_s": round(inf, 3)})
            print(f"{key:28s} {params:11,d} {macs / 1e9:7.3f} {tr:12.2f} {inf:12.2f}", flush=True)
    ratios = {}
    for size in args.sizes:
        by = {r["model"]: r for r in results if r["image_size"] == size}
        if "unet" not in by:
            continue
        for name in by:
            if name != "unet":
                for what in ("train", "infer"):
                    ratios[f"{name}/unet {what} @{size}"] = by[name][f"{what}_img_s"] / by["unet"][f"{what}_img_s"]
    for k, v in ratios.items():
        print(f"ratio {k}: {v:.2f}x")
    if args.out:
        payload = {"command": " ".join(["python", "benchmarks/throughput.py", *(argv if argv is not None else sys.argv[1:])]),
                   "machine": f"{platform.machine()} {os.cpu_count()} cpus", "threads": torch.get_num_threads(),
                   "torch": torch.__version__, "load_average": load, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "results": results, "ratios": ratios}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
