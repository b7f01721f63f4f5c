"""Lesion measurements on hand-made masks with values worked out by hand, on a real image, and bad inputs.

Hand-worked values (continuous shapes; the digitised masks differ by a pixel's worth):

* disc of radius R: asymmetry 0 about both axes; compactness P²/(4πA) = (2πR)²/(4π·πR²) = 1; diameter 2R.
* ellipse with semi-axes a, b (rotated by 30°): asymmetry 0 about both principal axes (they are its axes of
  symmetry); Ramanujan's perimeter P = π[3(a+b) − √((3a+b)(a+3b))], area πab; diameter 2a.
* half-disc of radius R (flat side down): its principal axes are the symmetry axis (minor: var_y = R²/4 −
  (4R/3π)² < var_x = R²/4) and the horizontal line through the centroid, at height c = 4R/(3π). Folding across
  the minor axis: ΔA = 0. Folding across the major axis y = c: the overlap of the half-disc with its mirror is
  {c ≤ |y − c| ... } = 2·∫_c^{2c} 2√(R² − y²) dy = 4[F(2c) − F(c)], F(y) = (y√(R² − y²) + R² asin(y/R)) / 2,
  so ΔA/A = (A − overlap)/A with A = πR²/2 — about 0.184.
* 4-point star with tips (±a, 0), (0, ±b) and inner corners (±s, ±s): symmetric about x and y, its principal
  axes (a > b) → asymmetry 0 and 0; area = 4·(½·a·s + ½·s·b) = 2s(a + b); perimeter = 4(√((a−s)² + s²) +
  √(s² + (b−s)²)); diameter 2a (tip to tip).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dermoseg.segmentation.measure import (ABCD_COLOURS, asymmetry, colour_shares, colours_present, compactness, largest_diameter,
                              measure_lesion, perimeter, principal_axes)

H = W = 320
C = 160
YY, XX = np.mgrid[:H, :W]


def disc(r: float) -> np.ndarray:
    return (XX - C) ** 2 + (YY - C) ** 2 <= r * r


def ellipse(a: float, b: float, degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    u = (XX - C) * math.cos(t) + (YY - C) * math.sin(t)
    v = -(XX - C) * math.sin(t) + (YY - C) * math.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


def star(a: float, b: float, s: float) -> np.ndarray:
    pts = np.array([(a, 0), (s, s), (0, b), (-s, s), (-a, 0), (-s, -s), (0, -b), (s, -s)]) + C
    m = np.zeros((H, W), np.uint8)
    cv2.fillPoly(m, [np.rint(pts).astype(np.int32)], 1)
    return m.astype(bool)


def test_disc():
    m = disc(60)
    a1, a2 = asymmetry(m)
    assert a1 < 0.01 and a2 < 0.01
    assert compactness(m) == pytest.approx(1.0, abs=0.03)
    assert perimeter(m) == pytest.approx(2 * math.pi * 60, rel=0.02)
    assert 120 <= largest_diameter(m) <= 122.5


def test_rotated_ellipse():
    a, b = 90, 40
    m = ellipse(a, b, 30)
    centroid, axes, var = principal_axes(m)
    assert abs(abs(axes[0] @ [math.cos(math.radians(30)), math.sin(math.radians(30))]) - 1) < 1e-3
    assert var[0] == pytest.approx(a * a / 4, rel=0.02) and var[1] == pytest.approx(b * b / 4, rel=0.03)
    a1, a2 = asymmetry(m)
    assert a1 < 0.015 and a2 < 0.015
    p = math.pi * (3 * (a + b) - math.sqrt((3 * a + b) * (a + 3 * b)))
    assert compactness(m) == pytest.approx(p * p / (4 * math.pi * math.pi * a * b), rel=0.03)
    assert largest_diameter(m) == pytest.approx(2 * a, abs=2.5)


def test_half_disc_asymmetry_worked_out_by_hand():
    r = 100.0
    m = disc(r) & (YY <= C)  # flat side at y = C, the half-disc above it (smaller y)
    c = 4 * r / (3 * math.pi)

    def f(y):
        return (y * math.sqrt(r * r - y * y) + r * r * math.asin(y / r)) / 2

    area = math.pi * r * r / 2
    overlap = 4 * (f(2 * c) - f(c))
    expected = (area - overlap) / area  # ≈ 0.184
    a_major, a_minor = asymmetry(m)
    assert a_major == pytest.approx(expected, abs=0.01)
    assert a_minor < 0.01
    # moving the lesion does not change it; flipping it upside down neither
    assert asymmetry(np.roll(m, (-40, 25), axis=(0, 1)))[0] == pytest.approx(a_major, abs=1e-9)
    assert asymmetry(m[::-1])[0] == pytest.approx(a_major, abs=0.005)


def test_four_point_star():
    a, b, s = 110, 60, 25
    m = star(a, b, s)
    a1, a2 = asymmetry(m)
    assert a1 < 0.02 and a2 < 0.02
    area = 2 * s * (a + b)
    p = 4 * (math.hypot(a - s, s) + math.hypot(s, b - s))
    assert compactness(m) == pytest.approx(p * p / (4 * math.pi * area), rel=0.05)
    assert compactness(m) > 2.0 > compactness(ellipse(90, 40, 0))
    assert largest_diameter(m) == pytest.approx(2 * a, abs=2)


def test_diameter_of_tiny_shapes_and_millimetres():
    one = np.zeros((5, 5), bool)
    one[2, 2] = True
    assert largest_diameter(one) == pytest.approx(math.sqrt(2))
    row = np.zeros((5, 20), bool)
    row[2, 3:15] = True
    assert largest_diameter(row) == pytest.approx(math.hypot(12, 1))  # corner to corner of a 12 x 1 strip
    image = np.full((H, W, 3), 200, np.uint8)
    out = measure_lesion(image, disc(50), mm_per_pixel=0.05)
    assert out["diameter_mm"] == pytest.approx(out["diameter_px"] * 0.05)
    assert measure_lesion(image, disc(50))["diameter_mm"] == ""


def test_colour_count_on_hand_made_patches():
    image = np.zeros((100, 100, 3), np.uint8)
    image[:] = (0, 255, 0)  # outside the lesion: ignored whatever its colour
    mask = np.zeros((100, 100), bool)
    mask[:, :50] = True  # 5000 lesion pixels in columns 0..49
    lesion = image[:, :50]
    lesion[:50] = ABCD_COLOURS["light_brown"]   # 2500 = 50%
    lesion[50:80] = ABCD_COLOURS["dark_brown"]  # 1500 = 30%
    lesion[80:95] = ABCD_COLOURS["black"]       # 750 = 15%
    lesion[95:99] = ABCD_COLOURS["blue_grey"]   # 200 = 4% (< 5%: not counted)
    lesion[99:] = (0, 200, 0)                   # 50 = 1%, green: far from every reference, unassigned
    shares = colour_shares(image, mask)
    assert shares == pytest.approx({"white": 0, "red": 0, "light_brown": 0.5, "dark_brown": 0.3, "black": 0.15,
                                    "blue_grey": 0.04})
    assert colours_present(image, mask) == ["light_brown", "dark_brown", "black"]
    assert colours_present(image, mask, min_share=0.03) == ["light_brown", "dark_brown", "blue_grey", "black"]
    # slightly off reference values still count as the same colour
    noisy = image.astype(int)
    noisy[mask] += np.random.default_rng(0).integers(-8, 9, size=(5000, 3))
    assert colours_present(np.clip(noisy, 0, 255).astype(np.uint8), mask) == ["light_brown", "dark_brown", "black"]


def test_real_lesion_measurements_are_in_range(isic_samples):
    from dermoseg.io import read_image, read_mask
    s = isic_samples[0]
    image, mask = read_image(s.image_path), read_mask(s.mask_path)
    out = measure_lesion(image, mask, mm_per_pixel=0.01)
    assert 0 <= out["asymmetry_major"] <= 1 and 0 <= out["asymmetry_minor"] <= 1
    assert out["compactness"] >= 0.95
    assert 0 <= out["colour_count"] <= 6
    ys, xs = np.nonzero(mask)
    assert out["diameter_px"] >= max(np.ptp(ys) + 1, np.ptp(xs) + 1)  # at least the bounding box's longer side


def test_bad_inputs():
    with pytest.raises(ValueError, match="bool"):
        asymmetry(disc(10).astype(np.uint8))
    with pytest.raises(ValueError, match="empty"):
        asymmetry(np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="empty"):
        compactness(np.zeros((10, 10), bool))
    with pytest.raises(ValueError):
        largest_diameter(np.zeros((2, 3, 4), bool))
    image = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(ValueError, match="does not match"):
        colour_shares(image, np.zeros((10, 10), bool))
    with pytest.raises(ValueError):
        colour_shares(image.astype(np.float32), disc(10))
    with pytest.raises(ValueError):
        colours_present(image, disc(10), min_share=0)
    with pytest.raises(ValueError):
        measure_lesion(image, disc(10), mm_per_pixel=-1)
    empty = measure_lesion(image, np.zeros((H, W), bool))
    assert empty["colour_count"] == 0 and empty["diameter_px"] == ""
