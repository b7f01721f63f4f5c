"""Synthetic hair models for the hair-removal benchmark (issue 16): several generators, so that a detector tuned
to one kind of hair is caught out by another.

Each model draws hairs with a known opacity map onto a real image (the literature's protocol: e.g. Attia et al.
2020, Kiani & Sharafat 2011); the map is kept for scoring only, never shown to a method. Sizes hold at a 512-px
short side and are scaled by ``min(H, W) / 512``. Hair colours are RGB 0..255.

| model | hairs | width px | colour | opacity | after drawing |
|---|---|---|---|---|---|
| ``curved_sparse`` | 3-10 cubic Bezier | 1-4 | black, dark brown, brown | 0.85-1 | - |
| ``curved_dense`` | 40-80 cubic Bezier | 1-4 | black, dark brown, brown | 0.85-1 | - |
| ``straight`` | 4-15 straight, across the image | 1-6 | black, dark brown, brown | 0.85-1 | - |
| ``light`` | 5-15 cubic Bezier | 1-2.5 | grey-white, blond | 0.5-0.9 | - |
| ``soft_jpeg`` | 10-30 cubic Bezier | 1.5-5 | dark brown to mid-brown | 0.25-1, varying along each hair | Gaussian blur of the opacity (sigma 0.5-1.5 px), whole image JPEG quality 60-85 |
| ``none`` | 0 | - | - | - | - (what a method damages on the image as it is) |
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DARK = np.array([[15, 12, 10], [55, 38, 28], [95, 65, 45]], np.float32)   # black, dark brown, brown
LIGHT = np.array([[225, 222, 215], [235, 205, 150]], np.float32)          # grey-white, blond


@dataclass(frozen=True)
class HairModel:
    """One synthetic-hair generator: counts, widths (px at 512), colour palette, opacity range, shape and
    post-processing."""
    count: tuple[int, int]
    width: tuple[float, float]
    palette: np.ndarray
    opacity: tuple[float, float]
    shape: str = "curved"           # "curved" (cubic Bezier) or "straight" (a chord across the image)
    varying: bool = False           # opacity varies smoothly along each hair within the range
    blur: tuple[float, float] = (0.0, 0.0)   # sigma of a Gaussian blur of the opacity map, px
    jpeg: tuple[int, int] | None = None      # JPEG quality range of the final re-encoding, or None


MODELS: dict[str, HairModel] = {
    "curved_sparse": HairModel((3, 10), (1.0, 4.0), DARK, (0.85, 1.0)),
    "curved_dense": HairModel((40, 80), (1.0, 4.0), DARK, (0.85, 1.0)),
    "straight": HairModel((4, 15), (1.0, 6.0), DARK, (0.85, 1.0), shape="straight"),
    "light": HairModel((5, 15), (1.0, 2.5), LIGHT, (0.5, 0.9)),
    "soft_jpeg": HairModel((10, 30), (1.5, 5.0), DARK[1:], (0.25, 1.0), varying=True, blur=(0.5, 1.5),
                           jpeg=(60, 85)),
    "none": HairModel((0, 0), (1.0, 1.0), DARK, (1.0, 1.0)),
}

POINTS = 64  # points per hair polyline


def curved_path(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """(64, 2) float x, y points of a random cubic Bezier hair 60-420 px long (at 512); may leave the image."""
    length = rng.uniform(60, 420) * scale
    theta = rng.uniform(0, np.pi)
    p0 = np.array([rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(-0.1 * h, 1.1 * h)])
    d = np.array([np.cos(theta), np.sin(theta)])
    n = np.array([-d[1], d[0]])
    p3 = p0 + length * d
    p1 = p0 + length / 3 * d + rng.normal(0, 0.25) * length * n
    p2 = p0 + 2 * length / 3 * d + rng.normal(0, 0.25) * length * n
    t = np.linspace(0, 1, POINTS)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3


def straight_path(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(64, 2) float x, y points of a straight chord through a random point of the image, at a random angle,
    reaching past the image on both sides."""
    c = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    theta = rng.uniform(0, np.pi)
    d = np.array([np.cos(theta), np.sin(theta)]) * float(np.hypot(h, w))
    t = np.linspace(-1, 1, POINTS)[:, None]
    return c + t * d


def coverage(points: np.ndarray, width: float, h: int, w: int, profile: np.ndarray | None = None,
             supersample: int = 4):
    """Anti-aliased coverage of a polyline of the given width, times an opacity profile along it.

    Parameters
    ----------
    points : (P, 2) float x, y.
    width : line width in pixels (> 0; below one pixel the coverage is scaled down, as a thin hair is fainter).
    profile : optional (P - 1,) opacity of each segment in 0..1 (None: 1 everywhere).

    Returns
    -------
    None if the line misses the image, else ((row slice, column slice), (h', w') float32 patch in 0..1).
    """
    pad = width + 3
    x0, y0 = np.floor(points.min(axis=0) - pad).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + pad).astype(int)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    s = supersample
    size = ((cy1 - cy0) * s, (cx1 - cx0) * s)
    pts = np.round((points - [cx0, cy0]) * s * 16).astype(np.int32)  # 4 fractional bits (shift=4)
    # OpenCV's anti-aliased line of thickness t >= 2 is 2 ceil(t / 2) + 1.6 px wide (measured; t = 1: 1.4 px): the
    # drawn width is the asked one to the nearest 2 / supersample px (0.5 px).
    thick = max(1, 2 * int(round((max(width, 1.0) * s - 1.6) / 2)))
    canvas = np.zeros(size, np.uint8)
    if profile is None:
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, 255, thickness=thick, lineType=cv2.LINE_AA, shift=4)
    else:
        levels = np.clip(np.rint(np.asarray(profile) * 255), 0, 255).astype(int)
        for k in range(len(pts) - 1):  # later segments overwrite the shared end: a step of at most one level
            cv2.line(canvas, tuple(pts[k]), tuple(pts[k + 1]), int(levels[k]), thick, cv2.LINE_AA, 4)
    cov = cv2.resize(canvas, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    if width < 1.0:
        cov *= np.float32(width)
    return (slice(cy0, cy1), slice(cx0, cx1)), cov


def _smooth_profile(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """(n,) opacity values varying smoothly between lo and hi (a random walk of 5 knots, linearly interpolated)."""
    knots = rng.uniform(lo, hi, 5)
    return np.interp(np.linspace(0, 4, n), np.arange(5), knots)


def draw_hair(image: np.ndarray, model: HairModel, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw the hairs of ``model`` on ``image`` (not modified).

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.
    model : the generator.
    rng : its random numbers (the number of hairs, then per hair: colour, opacity, width, path, in that order).

    Returns
    -------
    (hairy, alpha): (H, W, 3) uint8 RGB, and (H, W) float32 in 0..1, the largest hair opacity x coverage at
    each pixel (0 where no hair touches it; before any JPEG re-encoding, which changes every pixel a little).
    """
    h, w = image.shape[:2]
    scale = min(h, w) / 512
    out = image.astype(np.float32)
    alpha = np.zeros((h, w), np.float32)
    n = int(rng.integers(model.count[0], model.count[1], endpoint=True))
    for _ in range(n):
        colour = model.palette[rng.integers(len(model.palette))] * np.float32(rng.uniform(0.9, 1.1))
        colour = np.clip(colour, 0, 255)
        profile = _smooth_profile(rng, *model.opacity, POINTS - 1) if model.varying else None
        opacity = 1.0 if model.varying else rng.uniform(*model.opacity)
        width = rng.uniform(*model.width) * scale
        path = straight_path(rng, h, w) if model.shape == "straight" else curved_path(rng, h, w, scale)
        hit = coverage(path, width, h, w, profile)
        if hit is None:
            continue
        (sy, sx), cov = hit
        sigma = rng.uniform(*model.blur) * scale if model.blur[1] > 0 else 0.0
        if sigma > 0:
            cov = cv2.GaussianBlur(cov, (0, 0), sigma)
        a = (np.float32(opacity) * cov)[..., None]
        out[sy, sx] = out[sy, sx] * (1 - a) + colour * a
        alpha[sy, sx] = np.maximum(alpha[sy, sx], a[..., 0])
    hairy = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if model.jpeg is not None:
        quality = int(rng.integers(model.jpeg[0], model.jpeg[1], endpoint=True))
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(hairy, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        hairy = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return hairy, alpha


def hair_regions(alpha: np.ndarray, margin_px: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """The two scoring regions of a drawn opacity map.

    Returns
    -------
    (hair, untouched): (H, W) bool each. ``hair``: opacity x coverage >= 0.25 (the pixels a detector should
    find). ``untouched``: farther than ``margin_px`` (scaled to a 512-px short side) from every pixel the hair
    changed at all (alpha > 1/255) — skin and lesion that a method should leave as they are; the thin margin is
    left out of both because a repair must reach a pixel past the hair's faint edge.
    """
    scale = min(alpha.shape) / 512
    touched = (alpha > 1 / 255).astype(np.uint8)
    r = max(1, int(round(margin_px * scale)))
    near = cv2.dilate(touched, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
    return alpha >= 0.25, ~near
