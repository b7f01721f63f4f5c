"""Black-frame check on all the shared data: frames found, lesion pixels in the frame, the largest frames on a sheet.

Runs the frame stage of :func:`dermoseg.preprocess.clean_image` (shipped settings) on all 200 PH2 and all 2075
ISIC 2018 images of ../shared/data, prints how many frames were found, their area, and any ground-truth lesion
pixel inside a frame mask (there must be none: the same check is a test, tests/test_preprocess_frame_safety.py),
and writes a contact sheet of the 24 largest detected frames for a person to check: the image with the frame in
magenta and the ground-truth lesion outline in green, then the cleaned (filled) image.

Usage (from the repository root)::

    nice -n 15 .venv/bin/python benchmarks/frame_check.py            # writes docs/figures/frames_largest.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dermoseg.data.datasets import load_isic2018_task1, load_ph2
from dermoseg.io import read_image, read_mask
from dermoseg.preprocess import clean_image

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = REPO / ".." / "shared" / "data"


def _tile(sample, size: int = 150) -> np.ndarray:
    image, truth = read_image(sample.image_path), read_mask(sample.mask_path)
    res = clean_image(image, {"hair": {"enabled": False}})
    marked = image.copy()
    marked[res.frame_mask] = (marked[res.frame_mask] * 0.3 + np.array([255, 0, 255]) * 0.7).astype(np.uint8)
    contours, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(marked, contours, -1, (0, 255, 0), max(2, image.shape[0] // 150))
    pair = np.hstack([cv2.resize(t, (size, size), interpolation=cv2.INTER_AREA) for t in (marked, res.image)])
    label = np.full((14, 2 * size, 3), 255, np.uint8)
    cv2.putText(label, f"{sample.image_id} frame {res.frame_pct:.1f}%", (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.36,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([label, pair])


def save_small_png(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB figure as a 256-colour PNG (a few hundred kB at most, for docs/figures)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).quantize(colors=256).save(path, optimize=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sheet", type=Path, default=REPO / "docs" / "figures" / "frames_largest.png")
    p.add_argument("--n", type=int, default=24, help="frames on the sheet (largest first)")
    args = p.parse_args(argv)
    found, offenders, total = [], [], 0
    for name, samples in (("PH2", load_ph2(DATA_ROOT / "ph2")),
                          ("ISIC 2018", load_isic2018_task1(DATA_ROOT / "isic2018_task1"))):
        n_found = 0
        for s in samples:
            image, truth = read_image(s.image_path), read_mask(s.mask_path)
            frame = clean_image(image, {"hair": {"enabled": False}}).frame_mask
            if frame.any():
                n_found += 1
                found.append((float(frame.mean()), s))
            if (frame & truth).any():
                offenders.append((s.image_id, int((frame & truth).sum())))
        total += len(samples)
        print(f"{name}: {len(samples)} images, frame found on {n_found}")
    areas = np.array([a for a, _ in found]) * 100
    if len(areas):
        print(f"frame area when found: median {np.median(areas):.1f}%, range {areas.min():.2f}-{areas.max():.1f}%")
    print(f"lesion pixels inside a frame mask: {offenders if offenders else 'none'} ({total} images)")
    found.sort(key=lambda t: -t[0])
    tiles = [_tile(s) for _, s in found[: args.n]]
    if tiles:
        tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % 4)
        save_small_png(args.sheet, np.vstack([np.hstack(tiles[k:k + 4]) for k in range(0, len(tiles), 4)]))
        print(f"sheet of the {min(args.n, len(found))} largest frames: {args.sheet}")
    return 1 if offenders else 0


if __name__ == "__main__":
    sys.exit(main())
