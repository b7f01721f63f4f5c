"""Time and peak memory of ``dermoseg segment`` on one large photograph (issue #11 finding 5), side by side.

Makes a 6748×4499 JPEG (the largest ISIC 2018 original size) by upscaling a real ISIC image into a temporary
folder, then runs, each in a fresh process, back to back:

- ``segment`` with the measurements (the default), ``segment --no-measure``;
- the lesion measurements alone on that image's mask: on the bounded copy (the default) and, with ``--full``,
  at full resolution as before the bound (about a minute and 2.5 GB).

For each it prints wall seconds of the image (the ``seconds`` column of ``results.csv``: read + segment +
write + measure), the process's CPU seconds and peak resident memory, and the ratios between them; a run on a
64×64 copy gives the start-up cost (imports, model loading), so that process CPU minus it is the CPU time
spent on the large image. Target: ≤ 3 s and ≤ 1.5 GB for the default run on the 2-core development CPU. The load
average is printed with the figures: on a busy machine wall times grow while CPU seconds stay comparable.

    PYTHONPATH=src .venv/bin/python benchmarks/large_image.py [--full] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = (6748, 4499)
# Runs a command line in this process and reports the process's own peak memory and CPU time on stderr
# (RUSAGE_CHILDREN would give the largest of all children so far, not this one's).
WRAP = """
import resource, runpy, sys
sys.argv = sys.argv[1:]
try:
    if sys.argv[0] == "-c":
        sys.argv = sys.argv[1:]
        exec(compile(sys.argv[0], "<measure>", "exec"))
    else:
        sys.argv = ["dermoseg", *sys.argv]
        runpy.run_module("dermoseg.cli", run_name="__main__")
finally:
    u = resource.getrusage(resource.RUSAGE_SELF)
    print(f"RUSAGE {u.ru_maxrss} {u.ru_utime + u.ru_stime}", file=sys.stderr)
"""
MEASURE_ONLY = """
import json, sys, time, resource
from dermoseg.io import read_image, read_mask
from dermoseg.segmentation.measure import measure_lesion
image, mask = read_image(sys.argv[1]), read_mask(sys.argv[2], 128)
start = time.perf_counter()
measure_lesion(image, mask, max_side=None if sys.argv[3] == "full" else 1024)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MiB, stdout) of one child process running ``argv`` (``dermoseg`` arguments, or
    ``["-c", code, args...]``)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAP, *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    usage = [ln for ln in proc.stderr.splitlines() if ln.startswith("RUSAGE ")]
    if proc.returncode != 0 or not usage:
        sys.exit(f"failed: {' '.join(argv[:3])}\n{proc.stderr[-2000:]}")
    peak_kib, cpu = usage[-1].split()[1:]
    return wall, float(cpu), int(peak_kib) / 1024.0, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--full", action="store_true", help="also time the measurements at full resolution")
    args = parser.parse_args()
    from PIL import Image
    source = sorted((args.data_root / "isic2018_task1" / "ISIC2018_Task1-2_Training_Input").glob("ISIC_*.jpg"))[0]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "large.jpg"
        Image.open(source).convert("RGB").resize(SIZE, Image.BICUBIC).save(big, quality=90)
        print(f"input: {big.name} {SIZE[0]}x{SIZE[1]} ({big.stat().st_size / 1e6:.1f} MB), upscaled from {source.name}")
        small = Path(tmp) / "small.jpg"
        Image.open(source).convert("RGB").resize((64, 64)).save(small)
        _, startup_cpu, _, _ = run(["segment", str(small), "--out", str(Path(tmp) / "startup")], env)
        rows = []
        for label, name, extra in (("segment (measurements on)", "measure", []),
                                   ("segment --no-measure", "no_measure", ["--no-measure"])):
            out = Path(tmp) / name
            wall, cpu, peak, _ = run(["segment", str(big), "--out", str(out), *extra], env)
            with open(out / "results.csv", newline="") as fh:
                image_seconds = float(next(csv.DictReader(fh))["seconds"])
            rows.append((label, image_seconds, wall, cpu, peak))
        mask = Path(tmp) / "measure" / "large_segmentation.png"
        for kind in (["bounded", "full"] if args.full else ["bounded"]):
            wall, cpu, peak, out = run(["-c", MEASURE_ONLY, str(big), str(mask), kind], env)
            rows.append((f"measurements only, {kind}", json.loads(out)["seconds"], wall, cpu, peak))
    print(f"{'run':32s} {'image s':>8s} {'process wall s':>15s} {'process CPU s':>14s} {'peak MiB':>9s}")
    for label, image_seconds, wall, cpu, peak in rows:
        print(f"{label:32s} {image_seconds:8.2f} {wall:15.2f} {cpu:14.2f} {peak:9.0f}")
    print(f"start-up (64x64 image) {startup_cpu:.2f} CPU s; CPU on the large image: "
          f"{rows[0][3] - startup_cpu:.2f} s with measurements, {rows[1][3] - startup_cpu:.2f} s without")
    print(f"measurements cost {rows[0][1] - rows[1][1]:.2f} s of the image's {rows[0][1]:.2f} s "
          f"({rows[0][1] / rows[1][1]:.2f}x the --no-measure time)")
    if args.full:
        print(f"full-resolution measurements / bounded: {rows[3][1] / rows[2][1]:.1f}x time, "
              f"{rows[3][4] / rows[2][4]:.1f}x peak memory")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
