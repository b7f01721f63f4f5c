"""Lesion measurements that dermatologists use (the "A", "B", "C" and "D" of the ABCD rule), from a lesion mask.

All functions take the mask as an (H, W) bool array (True = lesion, e.g. from
:class:`dermoseg.segmentation.segmenter.Segmenter`) and,
for colour, the (H, W, 3) uint8 RGB image it belongs to. Lengths are in pixels of that image; areas in pixels;
``mm_per_pixel`` converts the diameter to millimetres when the user knows the scale of the image.

References
----------
- W. Stolz, A. Riemann, A. B. Cognetta et al., "ABCD rule of dermatoscopy: a new practical method for early
  recognition of malignant melanoma", Eur. J. Dermatol. 4:521–527 (1994) — the four criteria, the six colours
  (white, red, light brown, dark brown, blue-grey, black) and the 6 mm diameter.
- W. V. Stoecker, W. W. Li, R. H. Moss, "Automatic detection of asymmetry in skin tumors", Comput. Med. Imaging
  Graph. 16(3):191–197 (1992) — asymmetry by folding the lesion over its principal axes, ΔA / A.
- M. E. Celebi et al., "A methodological approach to the classification of dermoscopy images", Comput. Med.
  Imaging Graph. 31(6):362–373 (2007) — asymmetry over both principal axes and compactness P²/(4πA) as
  border-irregularity features.
- A. M. Vossepoel, A. W. M. Smeulders, "Vector code probability and metrication error in the representation of
  straight lines of finite length", Comput. Graph. Image Process. 20:347–364 (1982) — the perimeter estimator
  0.980·n_even + 1.406·n_odd − 0.091·n_corner for 8-connected chain codes.

Research tool, not a medical device: these numbers describe a mask; they are not a diagnosis.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from dermoseg.errors import DermosegError
from dermoseg.inputs import check_rgb

# sRGB reference of each of the six ABCD colours (Stolz et al. 1994 name the colours, not their values; these
# values are this project's choice, read off dermoscopic appearance: white = scar-like regression, red =
# vascular, light/dark brown = melanin in the epidermis, blue-grey = melanin in the dermis, black = melanin in
# the stratum corneum). Each lesion pixel takes the colour of the nearest reference in CIELAB (ΔE*ab, CIE 1976)
# if that distance is at most COLOUR_MAX_DISTANCE; a colour is present when it covers at least
# COLOUR_MIN_SHARE of the lesion.
ABCD_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (235, 230, 225),
    "red": (190, 50, 60),
    "light_brown": (185, 125, 85),
    "dark_brown": (100, 55, 35),
    "blue_grey": (100, 115, 135),
    "black": (30, 25, 25),
}
COLOUR_MAX_DISTANCE = 40.0  # ΔE*ab; pixels farther from every reference are left unassigned
COLOUR_MIN_SHARE = 0.05     # a colour counts when it covers at least 5% of the lesion pixels
MEASURE_MAX_SIDE = 1024     # pixels; larger images are measured on a copy of this size (measure_lesion)


def _check_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    if mask.dtype != bool:
        raise ValueError(f"expected a bool mask, got dtype {mask.dtype} (use mask > 0 or mask > 128)")
    return mask


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def principal_axes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid and principal axes of a lesion (eigenvectors of the covariance of its pixel coordinates).

    Parameters
    ----------
    mask : (H, W) bool, at least one True pixel.

    Returns
    -------
    (centroid, axes, variances): centroid (2,) float64 as (x, y) in pixels; axes (2, 2) float64, row 0 the unit
    vector of the major axis and row 1 of the minor axis, as (x, y); variances (2,) their pixel-coordinate
    variances (px², major ≥ minor). A shape with equal variances (a disc, a regular star) has no preferred axes:
    any orthogonal pair is returned.

    Raises
    ------
    ValueError
        If the mask is not (H, W) bool or is empty.
    """
    mask = _check_mask(mask)
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        raise ValueError("empty mask: no lesion pixel")
    pts = np.stack([xs, ys], 1).astype(np.float64)
    centroid = pts.mean(0)
    cov = np.cov((pts - centroid).T, bias=True) if xs.size > 1 else np.zeros((2, 2))
    values, vectors = np.linalg.eigh(cov)  # ascending
    order = values.argsort()[::-1]
    return centroid, vectors[:, order].T.copy(), values[order]


def asymmetry(mask: np.ndarray) -> tuple[float, float]:
    """Asymmetry of the lesion over its two principal axes (Stoecker et al. 1992; Celebi et al. 2007).

    The mask is reflected across the line through its centroid along each principal axis; the asymmetry about
    that axis is the area that does not overlap when the lesion is folded, ΔA = |M ⊕ M'| / 2, divided by the
    lesion area A = |M|. (Reflection is computed by mapping each output pixel back with nearest-neighbour
    sampling, so a digitised symmetric shape gives a small positive value, about 1/√A.)

    Parameters
    ----------
    mask : (H, W) bool lesion mask (the largest connected region is used).

    Returns
    -------
    (asymmetry_major, asymmetry_minor): ΔA/A for the fold across the major axis and across the minor axis, each
    in [0, 1]; 0 = mirror-symmetric. A disc or an ellipse gives ≈ 0 for both; a half-disc gives 0 across its
    symmetry (minor) axis and ≈ 0.184 across the major axis (worked out in ``tests/test_measure.py``).

    Raises
    ------
    ValueError
        If the mask is not (H, W) bool or is empty.
    """
    mask = _largest_component(_check_mask(mask))
    centroid, axes, _ = principal_axes(mask)
    area = float(mask.sum())
    ys, xs = np.nonzero(mask)
    # Work in a canvas large enough to hold the reflection (reflected pixels can leave the image).
    reach = int(math.ceil(np.hypot(xs - centroid[0], ys - centroid[1]).max())) + 2
    cx, cy = centroid
    gy, gx = np.mgrid[int(cy) - reach:int(cy) + reach + 2, int(cx) - reach:int(cx) + reach + 2]
    h, w = mask.shape

    def inside(px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """Mask value at the nearest pixel of each (x, y) point; False outside the image."""
        ix, iy = np.rint(px).astype(np.int64), np.rint(py).astype(np.int64)
        ok = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        out = np.zeros(px.shape, bool)
        out[ok] = mask[iy[ok], ix[ok]]
        return out

    original = inside(gx.astype(np.float64), gy.astype(np.float64))
    values = []
    for u in axes:  # fold across the line through the centroid with direction u
        dx, dy = gx - cx, gy - cy
        along = dx * u[0] + dy * u[1]
        rx, ry = cx + 2 * along * u[0] - dx, cy + 2 * along * u[1] - dy
        mirrored = inside(rx, ry)
        values.append(float(np.logical_xor(original, mirrored).sum()) / 2.0 / area)
    return values[0], values[1]


def _chain_code_perimeter(contour: np.ndarray) -> float:
    """Vossepoel–Smeulders length of a closed 8-connected contour ((K, 1, 2) int points from cv2)."""
    pts = contour.reshape(-1, 2)
    if len(pts) < 2:
        return 0.0
    steps = np.diff(np.vstack([pts, pts[:1]]), axis=0)
    steps = steps[np.any(steps != 0, axis=1)]
    diagonal = (steps[:, 0] != 0) & (steps[:, 1] != 0)
    n_odd = int(diagonal.sum())
    n_even = len(steps) - n_odd
    corners = int(np.any(steps != np.roll(steps, 1, axis=0), axis=1).sum())
    return 0.980 * n_even + 1.406 * n_odd - 0.091 * corners


def perimeter(mask: np.ndarray) -> float:
    """Length of the lesion's outer border in pixels.

    The border is traced as an 8-connected chain through the centres of the boundary pixels (OpenCV
    ``findContours``) and its length estimated by Vossepoel & Smeulders (1982): 0.980·n_even + 1.406·n_odd −
    0.091·n_corner, which is unbiased for straight edges of any orientation (the plain chain length 1·n_even +
    √2·n_odd overestimates a digitised circle by about 5%). Only the largest connected region counts; holes
    are ignored.

    Parameters
    ----------
    mask : (H, W) bool.

    Returns
    -------
    Perimeter in pixels (float ≥ 0); 0 for an empty mask.
    """
    mask = _check_mask(mask)
    if not mask.any():
        return 0.0
    mask = _largest_component(mask)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(_chain_code_perimeter(c) for c in contours)


def compactness(mask: np.ndarray) -> float:
    """Border irregularity as the compactness index P² / (4πA) (Celebi et al. 2007, §3.2; ABCD "B").

    Parameters
    ----------
    mask : (H, W) bool lesion mask (the largest connected region is used; holes are filled).

    Returns
    -------
    Dimensionless, ≥ about 1: 1 for a disc, π[3(a+b) − √((3a+b)(a+3b))]² / (4π²ab) for an ellipse of
    semi-axes a, b (Ramanujan's perimeter), larger for ragged or star-shaped borders. P from :func:`perimeter`
    (pixels), A the number of lesion pixels. Regions under about 50 pixels are too coarse for a meaningful value.
    Digitised curves come within about 2% of the continuous value (a disc of radius 60 px gives 0.995);
    long axis-aligned straight edges are read about 5% low (an n×n square gives ≈ 0.95·4/π), because the
    estimator is tuned for edges of random orientation.

    Raises
    ------
    ValueError
        If the mask is not (H, W) bool or is empty.
    """
    mask = _check_mask(mask)
    if not mask.any():
        raise ValueError("empty mask: no lesion pixel")
    mask = _largest_component(mask)
    filled = np.zeros(mask.shape, np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    p = perimeter(filled.astype(bool))
    return float(p * p / (4.0 * math.pi * filled.sum()))


def largest_diameter(mask: np.ndarray) -> float:
    """Largest diameter (maximum Feret diameter) of the lesion, in pixels (ABCD "D").

    The largest distance between two points of the lesion, each pixel being a unit square: the maximum distance
    between corners of the lesion pixels, found on the convex hull of the boundary pixels' corners.

    Parameters
    ----------
    mask : (H, W) bool (all lesion regions count; a lesion split in two is measured across both parts).

    Returns
    -------
    Diameter in pixels (float): √2 for one pixel, n for a row of n pixels, ≈ 2R for a disc of radius R.
    0 for an empty mask. Multiply by the pixel size (mm/pixel) for millimetres.

    Raises
    ------
    ValueError
        If the mask is not (H, W) bool.
    """
    mask = _check_mask(mask)
    if not mask.any():
        return 0.0
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    centres = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float64)
    corners = (centres[:, None, :] + np.array([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])).reshape(-1, 2)
    hull = cv2.convexHull(corners.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    d = np.sqrt(((hull[:, None, :] - hull[None, :, :]) ** 2).sum(-1))
    return float(d.max())


def _srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB → (..., 3) float64 CIELAB (D65), L in [0, 100]."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def colour_shares(image: np.ndarray, mask: np.ndarray, max_distance: float = COLOUR_MAX_DISTANCE) -> dict[str, float]:
    """Share of the lesion covered by each of the six ABCD colours (Stolz et al. 1994).

    Each lesion pixel is assigned to the nearest reference colour of :data:`ABCD_COLOURS` by CIELAB distance
    ΔE*ab (CIE 1976), unless that distance exceeds ``max_distance`` (then it is unassigned: e.g. a green ink
    mark or pale pink skin inside the mask).

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB (as read by :func:`dermoseg.io.read_image`).
    mask : (H, W) bool lesion mask of the same height and width.
    max_distance : ΔE*ab limit, > 0.

    Returns
    -------
    ``{colour: share}`` for the six colours in the order of :data:`ABCD_COLOURS`, shares in [0, 1] of the
    lesion pixels (their sum is ≤ 1). All 0 for an empty mask.

    Raises
    ------
    ValueError
        If the image is not (H, W, 3) uint8, the mask not (H, W) bool of the same size, or max_distance ≤ 0.
    """
    mask = _check_mask(mask)
    check_rgb(image)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    if not max_distance > 0:
        raise ValueError(f"max_distance must be > 0, got {max_distance}")
    names = list(ABCD_COLOURS)
    if not mask.any():
        return {n: 0.0 for n in names}
    pixels = image[mask]
    # Classify each distinct colour once (a lesion has far fewer distinct RGB triples than pixels). Packing each
    # triple into one 24-bit integer keeps np.unique's order and result but sorts plain integers: 20x faster
    # than np.unique(axis=0) on a 512 px lesion (its row sort dominated the whole segment job, issue #14).
    keys, inverse = np.unique((pixels[:, 0].astype(np.uint32) << 16) | (pixels[:, 1].astype(np.uint32) << 8)
                              | pixels[:, 2], return_inverse=True)
    uniq = np.stack([keys >> 16, (keys >> 8) & 255, keys & 255], 1).astype(np.uint8)
    refs = _srgb_to_lab(np.array([ABCD_COLOURS[n] for n in names], dtype=np.uint8))
    dist = np.sqrt(((_srgb_to_lab(uniq)[:, None, :] - refs[None]) ** 2).sum(-1))
    nearest = np.where(dist.min(1) <= max_distance, dist.argmin(1), -1)[inverse.reshape(-1)]
    counts = np.bincount(nearest[nearest >= 0], minlength=len(names))
    return {n: float(counts[i]) / len(pixels) for i, n in enumerate(names)}


def colours_present(image: np.ndarray, mask: np.ndarray, min_share: float = COLOUR_MIN_SHARE,
                    max_distance: float = COLOUR_MAX_DISTANCE) -> list[str]:
    """The ABCD colours covering at least ``min_share`` of the lesion (see :func:`colour_shares`).

    Parameters
    ----------
    image, mask, max_distance : as for :func:`colour_shares`.
    min_share : minimum share of lesion pixels, in (0, 1] (default 5%).

    Returns
    -------
    Colour names in the order of :data:`ABCD_COLOURS`; its length is the ABCD colour count (0–6).
    """
    if not 0.0 < min_share <= 1.0:
        raise ValueError(f"min_share must be in (0, 1], got {min_share}")
    return [n for n, s in colour_shares(image, mask, max_distance).items() if s >= min_share]


class MeasurementError(DermosegError, ValueError):
    """A measurement setting is invalid (a pixel size that is not a finite number > 0)."""


def check_mm_per_pixel(mm_per_pixel: float | None) -> None:
    """Raise :class:`MeasurementError` unless ``mm_per_pixel`` (pixel size in mm) is None or finite and > 0."""
    if mm_per_pixel is not None and not (math.isfinite(mm_per_pixel) and mm_per_pixel > 0):
        raise MeasurementError(f"mm per pixel (--mm-per-pixel) must be a finite number > 0, got {mm_per_pixel}")


def bounded_copy(image: np.ndarray, mask: np.ndarray, max_side: int | None = MEASURE_MAX_SIDE
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """An image and its mask shrunk so that the longer side is at most ``max_side`` pixels.

    The image is resized by pixel-area averaging (``cv2.INTER_AREA``), the mask by area averaging then
    thresholding at one half (a pixel is lesion when most of its area is), so shape and colour statistics are
    kept while a 30 Mpx photograph costs no more than a 1 Mpx one.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.
    mask : (H, W) bool.
    max_side : pixels, or None for no bound.

    Returns
    -------
    (image, mask, scale): the copies ((h, w, 3) uint8 and (h, w) bool; the inputs themselves when already small
    enough) and the factor ``scale = h / H ≤ 1``: lengths measured on the copy are divided by ``scale``, areas by
    ``scale²``, to give full-resolution pixels.
    """
    h, w = mask.shape
    if max_side is None or max(h, w) <= max_side:
        return image, mask, 1.0
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small_mask = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA) >= 128
    small_image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small_image, small_mask, size[1] / h


def measure_lesion(image: np.ndarray, mask: np.ndarray, mm_per_pixel: float | None = None,
                   max_side: int | None = MEASURE_MAX_SIDE) -> dict[str, Any]:
    """All measurements of one lesion, as ``results.csv`` columns of ``dermoseg segment``.

    Images larger than ``max_side`` pixels are measured on a bounded copy (:func:`bounded_copy`): colours and
    asymmetry do not depend on resolution, and the perimeter and diameter found on the copy are scaled back to
    full-resolution pixels. Checked against the full-resolution computation on real PH2 lesions upscaled 2.5×
    (``tests/test_large_image.py``): asymmetry within 0.01, diameter and area within 0.5%, colours equal;
    the perimeter of a ragged border comes out up to about 5% shorter (traced at finer sampling, a ragged
    border is longer: a digitisation effect, not an error of either), so compactness up to about 10% lower.
    The lesion area is counted on the full-resolution mask.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.
    mask : (H, W) bool lesion mask.
    mm_per_pixel : size of one image pixel in millimetres (finite, > 0), or None when unknown.
    max_side : longest side of the copy measured, in pixels; None measures at full resolution (slow and
        memory-hungry on large photographs: a 30 Mpx image takes about a minute and 2.5 GB).

    Returns
    -------
    ``asymmetry_major``, ``asymmetry_minor`` (ΔA/A, [0, 1]), ``compactness`` (P²/4πA, ≥ ~1), ``perimeter_px``,
    ``colour_count`` (0–6), ``colours`` (names joined by ``;``), ``diameter_px``, and, in millimetres (empty
    when ``mm_per_pixel`` is None), ``diameter_mm``, ``perimeter_mm`` and ``area_mm2`` (the lesion pixel count
    times ``mm_per_pixel²``). An empty mask gives empty cells and colour_count 0.

    Raises
    ------
    ValueError
        On mis-shaped inputs; :class:`MeasurementError` if ``mm_per_pixel`` is not a finite number > 0.
    """
    check_mm_per_pixel(mm_per_pixel)
    mask = _check_mask(mask)
    small_image, small, scale = bounded_copy(image, mask, max_side)
    if mask.any() and not small.any():  # a lesion too small to survive the shrinking: measure it as it is
        small_image, small, scale = image, mask, 1.0
    colours = colours_present(small_image, small)
    if not small.any():
        return {"asymmetry_major": "", "asymmetry_minor": "", "compactness": "", "perimeter_px": "",
                "colour_count": 0, "colours": "", "diameter_px": "", "diameter_mm": "", "perimeter_mm": "",
                "area_mm2": ""}
    a_major, a_minor = asymmetry(small)
    diameter, border = largest_diameter(small) / scale, perimeter(small) / scale
    mm = mm_per_pixel or None
    return {"asymmetry_major": a_major, "asymmetry_minor": a_minor, "compactness": compactness(small),
            "perimeter_px": border, "colour_count": len(colours), "colours": ";".join(colours),
            "diameter_px": diameter, "diameter_mm": diameter * mm if mm else "",
            "perimeter_mm": border * mm if mm else "", "area_mm2": int(mask.sum()) * mm * mm if mm else ""}
