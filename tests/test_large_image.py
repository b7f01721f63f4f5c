"""Issue #11 finding 5: large images are measured on a bounded copy; the results agree with the
full-resolution computation; --no-measure skips the measurements. (Time and memory on a 6748x4499 photograph:
benchmarks/large_image.py.)"""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from dermoseg.cli import main
from dermoseg.io import read_image, read_mask
from dermoseg.segmentation.measure import MEASURE_MAX_SIDE, measure_lesion


@pytest.mark.parametrize("index", [0, 5])
def test_bounded_copy_agrees_with_full_resolution(ph2_samples, index):
    s = ph2_samples[index]
    image, mask = read_image(s.image_path), read_mask(s.mask_path)
    h, w = mask.shape
    size = (int(w * 2.5), int(h * 2.5))  # about 1900 x 1440: larger than the bound, still cheap in full
    big = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
    # a smooth border at full resolution, as the model's mask has (bilinear probability map, thresholded)
    big_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.BILINEAR)) > 127
    assert max(size) > MEASURE_MAX_SIDE
    bounded = measure_lesion(big, big_mask, mm_per_pixel=0.01)
    full = measure_lesion(big, big_mask, mm_per_pixel=0.01, max_side=None)
    for key in ("asymmetry_major", "asymmetry_minor"):
        assert bounded[key] == pytest.approx(full[key], abs=0.01), key
    for key in ("diameter_px", "diameter_mm", "area_mm2"):
        assert bounded[key] == pytest.approx(full[key], rel=0.005), key
    # a ragged border traced at finer sampling is longer (digitisation), hence the wider bounds (measure.py)
    for key in ("perimeter_px", "perimeter_mm"):
        assert bounded[key] == pytest.approx(full[key], rel=0.06), key
    assert bounded["compactness"] == pytest.approx(full["compactness"], rel=0.12)
    assert bounded["colours"] == full["colours"]
    assert full["area_mm2"] == pytest.approx(big_mask.sum() * 1e-4)


def test_no_measure_switch(tmp_path, isic_samples):
    shutil.copy(isic_samples[0].image_path, tmp_path / "a.jpg")
    assert main(["segment", str(tmp_path / "a.jpg"), "--out", str(tmp_path / "out"), "--no-tta", "--no-measure"]) == 0
    with open(tmp_path / "out" / "results.csv", newline="") as fh:
        header = next(csv.reader(fh))
    assert "lesion_area_px" in header and "asymmetry_major" not in header and "colour_count" not in header
