"""Export the raw weights (not the moving average) of a run trained with ``trainer.ema_decay``, to measure what the
average itself adds on the same run (issue 12).

With EMA, Lightning's ``EMAWeightAveraging`` stores the averaged weights as the checkpoint's ``state_dict`` and the
raw ones as ``current_model_state``; this swaps them and exports a segmentation model file.

    python experiments/export_raw_weights.py runs/codec_mobilenet_v2_long/checkpoints/last.ckpt runs/codec_mobilenet_v2_long_raw/model.pt
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from dermoseg.segmentation.task import export_model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path, help="last.ckpt of a run trained with trainer.ema_decay")
    p.add_argument("out", type=Path, help="model file to write (a .json is written beside it)")
    args = p.parse_args(argv)
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    if "current_model_state" not in ckpt:
        p.error(f"{args.checkpoint}: no current_model_state (was the run trained with trainer.ema_decay?)")
    ckpt["state_dict"] = ckpt.pop("current_model_state")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.ckpt"
        torch.save(ckpt, raw)
        print(export_model(raw, args.out, {"weights": "raw weights of the last epoch (no moving average)"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
