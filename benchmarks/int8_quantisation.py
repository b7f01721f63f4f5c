"""Optional int8 engine (issue #14): static int8 quantisation of the shipped segmenter's ONNX export with ONNX
Runtime, its speed and its validation Dice change beside the fp32 export, measured in one run.

Quantisation: ``onnxruntime.quantization.quantize_static`` (QDQ format, per-channel int8 weights, uint8
activations, MinMax calibration) on 32 images of the ISIC *training* split prepared by the segmenter's own
preprocessing. Dice: ``dermoseg.segmentation.evaluate.evaluate_model`` on the 311 images of the ISIC validation
split with the default inference (flip TTA), fp32 and int8 runners in the same :class:`Segmenter`; forward
times are the fastest of alternating calls. The bar for
accepting int8 is a Dice loss ≤ 0.003. PH2 is not used.

    .venv/bin/python benchmarks/int8_quantisation.py --out benchmarks/results/int8_quantisation.txt
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from dermoseg.data.datasets import load_isic2018_task1
from dermoseg.data.splits import ISIC_SPLIT, read_split, select
from dermoseg.engine import onnx_path_for
from dermoseg.engine.ort_runner import OrtRunner
from dermoseg.io import read_image
from dermoseg.segmentation.evaluate import evaluate_model
from dermoseg.segmentation.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO / ".." / "shared" / "data"
MAX_DICE_LOSS = 0.003


def quantise(model: Segmenter, calibration: list[Path], out: Path) -> None:
    """Write the int8 QDQ model of ``model``'s ONNX export to ``out``, calibrated on ``calibration`` images."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": model.prepare(read_image(p))} for p in calibration])

        def get_next(self):
            return next(self.batches, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(onnx_path_for(model.path)), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calibration", type=int, default=32, help="ISIC training images for calibration")
    ap.add_argument("--repeats", type=int, default=20, help="timed forward calls of each (default 20)")
    ap.add_argument("--out", type=Path, help="also write the printed lines here")
    args = ap.parse_args(argv)
    samples = load_isic2018_task1(DATA_ROOT / "isic2018_task1")
    split = read_split(ISIC_SPLIT)
    train, val = select(samples, split, "train"), select(samples, split, "val")
    fp32 = Segmenter.load("default", engine="onnx")
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        q = Path(tmp) / "segmentation.int8.onnx"
        quantise(fp32, [s.image_path for s in train[: args.calibration]], q)
        int8 = dataclasses.replace(fp32, runner=OrtRunner(q, path=q))
        size_mb = q.stat().st_size / 1e6
        x = fp32.prepare(read_image(val[0].image_path))
        times = {"fp32": [], "int8": []}
        for _ in range(args.repeats + 1):  # the two in turn; the first round warms up
            for name, m in (("fp32", fp32), ("int8", int8)):
                t = time.perf_counter()
                m.logits(x, tta=True)
                times[name].append(time.perf_counter() - t)
        times = {k: min(v[1:]) for k, v in times.items()}  # the least disturbed call of each
        dice = {name: evaluate_model(m, val)[1]["dice"] for name, m in (("fp32", fp32), ("int8", int8))}
    loss = dice["fp32"] - dice["int8"]
    lines.append(f"int8 static quantisation of the shipped segmenter ({args.calibration} ISIC training images for "
                 f"calibration; {size_mb:.1f} MB)")
    lines.append(f"forward with flip TTA (fastest of {args.repeats} alternating calls): fp32 {1e3 * times['fp32']:.1f} ms, int8 {1e3 * times['int8']:.1f} ms "
                 f"({times['fp32'] / times['int8']:.2f}x)")
    lines.append(f"ISIC validation Dice ({len(val)} images, flip TTA): fp32 {dice['fp32']:.4f}, int8 "
                 f"{dice['int8']:.4f}, loss {loss:+.4f} -> {'accepted' if loss <= MAX_DICE_LOSS else 'rejected'} "
                 f"(bar: loss <= {MAX_DICE_LOSS})")
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
