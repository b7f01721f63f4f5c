"""Black-frame detection and filling (paper §3.1.2, eq. 1).

The frame is the band of very dark pixels that a dermatoscope leaves around the field of view: the corners
outside a round lens (a vignette) or straight black bars along the edges. The paper finds it by the HSL
lightness ``L = (max(R, G, B) + min(R, G, B)) / 2`` (eq. 1, whose printed form sums the channels by mistake)
and "removes" it without saying how. Here the frame is *filled* rather than cropped, so that every output keeps
the input's height, width and pixel grid (a mask predicted on the cleaned image lies on the original directly).

A dark lesion that touches the image border is also a dark region connected to the border; four rules keep it
out of the frame mask (each was needed on the shared ISIC/PH2 data, see docs/preprocessing.md):

1. a strict lightness threshold (frames are near black; lesions are brown, blue-grey or black but rarely that
   dark over a thick region),
2. an opening that removes dark structures thinner than a frame (hairs that would connect a dark lesion to the
   border, one-pixel black lines at the image edge),
3. a frame component must reach into an image corner (a vignette covers all four corners, a bar two of them;
   a lesion touching one edge does not),
4. the field of view is convex (a circle or a rectangle), so dark pixels inside the convex hull of the bright
   field are a bite of the lesion into the field, never frame; when the field is round, the pixels inside the
   ellipse fitted to its outline (without the bite) are given back too.

The functions here take every setting as an argument; their values (and how each was chosen) are in
``dermoseg/configs/preprocess.yaml`` and docs/preprocessing.md, applied by :func:`dermoseg.preprocess.clean_image`.
"""

from __future__ import annotations

import cv2
import numpy as np

from dermoseg.inputs import check_rgb


def lightness(image: np.ndarray) -> np.ndarray:
    """HSL lightness of an RGB image (paper eq. 1).

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.

    Returns
    -------
    (H, W) uint8, ``(max(R, G, B) + min(R, G, B)) // 2``, 0..255.
    """
    r, g, b = cv2.split(image)
    hi = cv2.max(cv2.max(r, g), b).astype(np.uint16)
    lo = cv2.min(cv2.min(r, g), b)
    return ((hi + lo) >> 1).astype(np.uint8)


def _disk(diameter: float) -> np.ndarray:
    d = max(1, int(round(diameter)))
    d += 1 - d % 2  # odd, so that the element is centred
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))


def detect_frame(image: np.ndarray, lightness_max: float, median_px: int, min_thickness_px: float, corner_px: float,
                 max_area_pct: float, field_lightness_min: float, convex_field: bool) -> np.ndarray:
    """Find the dark frame of a dermoscopic image (paper §3.1.2, eq. 1).

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.
    lightness_max : HSL lightness (0..255) at or below which a pixel can be frame.
    median_px : odd median-filter size in pixels applied to the lightness first (JPEG noise).
    min_thickness_px : diameter in pixels of the opening; thinner dark structures are not frame.
    corner_px : side in pixels of the four corner squares a frame component must reach into.
    max_area_pct : a candidate frame covering more than this percentage of the image is taken for a dark
        photograph and dropped (an empty mask is returned).
    field_lightness_min : HSL lightness (0..255); when the median lightness of the field of view (everything but
        the candidate frame) is below this, the whole picture is dark (a lesion filling the field, an
        under-exposed photograph) and no frame is reported.
    convex_field : give dark pixels inside the convex hull of the bright field of view back to the field.

    Returns
    -------
    (H, W) bool mask, True = frame. Empty when the image has no frame.

    Raises
    ------
    ValueError
        If ``image`` is not (H, W, 3) uint8.
    """
    check_rgb(image)
    h, w = image.shape[:2]
    raw = lightness(image)
    lum = raw
    k = int(median_px)
    if k > 1 and min(h, w) > k:
        lum = cv2.medianBlur(raw, k)
    dark = (lum <= lightness_max).astype(np.uint8)
    if not dark.any():
        return np.zeros((h, w), bool)
    element = _disk(min_thickness_px)
    # Outside the image counts as not dark, so that a band along an edge must itself be thicker than the element.
    thick = cv2.morphologyEx(dark, cv2.MORPH_OPEN, element, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    n, labels = cv2.connectedComponents(thick, connectivity=8)
    if n <= 1:
        return np.zeros((h, w), bool)
    c = max(1, min(int(round(corner_px)), h, w))
    corners = np.concatenate([labels[:c, :c].ravel(), labels[:c, -c:].ravel(), labels[-c:, :c].ravel(),
                              labels[-c:, -c:].ravel()])
    keep = np.zeros(n, bool)
    keep[corners] = True
    keep[0] = False
    frame = keep[labels]
    if not frame.any():
        return frame
    # The median filter and the opening rounded the frame's inner edge: take back the dark pixels (unfiltered
    # lightness) within one element of the frame.
    frame = (cv2.dilate(frame.astype(np.uint8), element) > 0) & (raw <= lightness_max)
    if 100.0 * frame.mean() > max_area_pct or np.median(lum[~frame]) < field_lightness_min:
        return np.zeros((h, w), bool)
    if convex_field:
        field = ~frame
        # The hull's filled edges cross the staircase of the field's outline: shrink it by one pixel so that
        # the frame pixels touching the field stay frame.
        hull = cv2.erode(_field_hull(field).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        frame &= ~hull
        round_field = _field_ellipse(field)
        if round_field is not None:
            frame &= ~round_field
    return frame


def _field_hull(field: np.ndarray) -> np.ndarray:
    """Convex hull (filled, bool) of the largest connected part of the field of view."""
    contours, _ = cv2.findContours(field.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros(field.shape, np.uint8)
    if contours:
        largest = max(contours, key=cv2.contourArea)
        cv2.fillConvexPoly(hull, cv2.convexHull(largest), 1)
    return hull > 0


def _field_ellipse(field: np.ndarray) -> np.ndarray | None:
    """The round field of view, when the field's outline (away from the image edges) is an ellipse.

    A dark lesion that bites into a round field leaves, between the convex hull's chord and the lens circle, a
    cap that the hull does not give back; the ellipse fitted to the outline without the bite does. The fit is
    least squares on the outline points, refitted on the points within 4 %, then 2 %, then 1 % of the image size
    of the previous ellipse (the bite's points drop out); it is used only if at least 60 % of the outline lies
    within 2 % of it, the fitted points go at least 135 degrees round the centre, and both axes exceed half the
    image's short side (straight bars give no such ellipse). The mask is the ellipse shrunk by
    ``max(1.5 px, 0.5 %)`` on each side, so that the lens edge itself stays frame. Returns (H, W) bool or None.
    """
    h, w = field.shape
    contours, _ = cv2.findContours(field.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    pts = max(contours, key=cv2.contourArea)[:, 0, :].astype(np.float32)
    inside = (pts[:, 0] > 1) & (pts[:, 0] < w - 2) & (pts[:, 1] > 1) & (pts[:, 1] < h - 2)
    pts = pts[inside]
    if len(pts) < 50:
        return None
    fit = pts
    for tol in (0.04 * min(h, w), 0.02 * min(h, w), 0.01 * min(h, w)):
        if len(fit) < 20:
            return None
        (cx, cy), (d1, d2), angle = cv2.fitEllipse(fit)
        if not (np.isfinite([cx, cy, d1, d2]).all() and min(d1, d2) > 0.5 * min(h, w) and max(d1, d2) < 4 * max(h, w)):
            return None
        t = np.radians(angle)
        dx, dy = pts[:, 0] - cx, pts[:, 1] - cy
        u = (dx * np.cos(t) + dy * np.sin(t)) / (d1 / 2)
        v = (-dx * np.sin(t) + dy * np.cos(t)) / (d2 / 2)
        dist = (np.sqrt(u * u + v * v) - 1) * (d1 + d2) / 4
        good = np.abs(dist) <= tol
        fit = pts[good]
    if np.mean(np.abs(dist) <= 0.02 * min(h, w)) < 0.6:
        return None
    sector = ((np.degrees(np.arctan2(fit[:, 1] - cy, fit[:, 0] - cx)) + 180) // 22.5).astype(int)
    if len(np.unique(sector)) < 6:
        return None
    # Shrunk by a margin, so that the lens edge itself (the frame's innermost pixels) stays frame.
    margin = 2 * max(1.5, 0.005 * min(h, w))
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, ((float(cx), float(cy)), (float(d1) - margin, float(d2) - margin), float(angle)), 1, -1)
    return mask > 0


def fill_frame(image: np.ndarray, frame: np.ndarray, ring_px: float, fill: str) -> np.ndarray:
    """Paint the frame over with the median colour of a ring of the field of view near the frame.

    A constant colour taken from the skin inside the frame (pixels between ``ring_px`` and ``2 ring_px`` from
    the frame, past the dark rim of the lens), not the nearest pixel, so that a lesion that reaches the frame is
    not smeared into it. The image keeps its size.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.
    frame : (H, W) bool, True = frame.
    ring_px : distance in pixels from the frame at which the ring starts, and its width.
    fill : ``"median"`` to fill, ``"none"`` to return a copy unchanged.

    Returns
    -------
    (H, W, 3) uint8 RGB, a new array.

    Raises
    ------
    ValueError
        If the shapes disagree or ``fill`` is unknown.
    """
    check_rgb(image)
    if frame.shape != image.shape[:2]:
        raise ValueError(f"frame mask {frame.shape} does not match image {image.shape[:2]}")
    if fill not in ("median", "none"):
        raise ValueError(f"fill must be 'median' or 'none', got {fill!r}")
    out = image.copy()
    if fill == "none" or not frame.any():
        return out
    # The first ring_px pixels inside the frame's edge are the dark rim of the lens (a gradient, not skin):
    # the colour is taken from the next ring_px pixels.
    dist = cv2.distanceTransform((~frame).astype(np.uint8), cv2.DIST_L2, 3)
    ring = (dist > ring_px) & (dist <= 2 * ring_px)
    if not ring.any():
        ring = ~frame
    if not ring.any():
        return out
    out[frame] = np.median(image[ring], axis=0).round().astype(np.uint8)
    return out
