"""Black-frame and hair removal before segmentation (paper §3.1, eq. 1-4).

One call does both, in the paper's order::

    from dermoseg.preprocess import clean_image
    result = clean_image(image)            # (H, W, 3) uint8 RGB in
    result.image, result.hair_mask, result.n_hairs, result.mode

The frame is filled (painted with the skin colour next to it), never cropped: the cleaned image has the input's
height and width, so a mask predicted on it lies on the original image as it is. Settings: the shipped
defaults in ``dermoseg/configs/preprocess.yaml`` (how each was chosen: ``docs/preprocessing.md``), overridden
by a ``preprocess:`` mapping (see :func:`~dermoseg.preprocess.settings.resolve_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from dermoseg.inputs import check_rgb
from dermoseg.preprocess.frame import _disk, detect_frame, fill_frame, lightness
from dermoseg.preprocess.hair import (dark_region, detect_hair, edge_lines, hair_mask, hair_response,
                                     light_hair_response, line_support, repair_dense, repair_sparse)
from dermoseg.preprocess.settings import PreprocessConfigError, default_settings, resolve_settings

__all__ = ["CleanResult", "clean_image", "detect_frame", "fill_frame", "lightness", "detect_hair", "dark_region",
           "hair_mask", "hair_response", "light_hair_response", "edge_lines", "line_support", "repair_sparse", "repair_dense",
           "resolve_settings", "default_settings", "PreprocessConfigError"]


@dataclass(frozen=True)
class CleanResult:
    """What :func:`clean_image` found and did.

    Attributes
    ----------
    image : (H, W, 3) uint8 RGB, the cleaned image (same size as the input).
    frame_mask : (H, W) bool, True = black frame (filled in ``image``).
    hair_mask : (H, W) bool, True = hair (repaired in ``image``).
    n_hairs : N, the number of connected hair components (paper §3.1.3 step 4; with the light-hair pass on,
        the sum over the dark and the light pass).
    mode : ``"dense"`` (eq. 3 diffusion), ``"sparse"`` (eq. 4 interpolation) or ``"none"`` (no hair found or
        hair removal disabled); each pass (dark, then light) compares its own count with ``dense_count``, and
        "dense" is reported when either pass repaired densely.
    frame_found : whether any frame pixel was found.
    """

    image: np.ndarray
    frame_mask: np.ndarray
    hair_mask: np.ndarray
    n_hairs: int
    mode: str
    frame_found: bool

    @property
    def hair_pct(self) -> float:
        """Hair pixels as a percentage of the image."""
        return 100.0 * float(self.hair_mask.mean())

    @property
    def frame_pct(self) -> float:
        """Frame pixels as a percentage of the image."""
        return 100.0 * float(self.frame_mask.mean())


def _repair(image: np.ndarray, mask: np.ndarray, mode: str, hs: Mapping[str, Any]) -> np.ndarray:
    """Repair the ``mask`` pixels of ``image`` by the ``mode`` ("dense": eq. 3, else eq. 4) with settings ``hs``."""
    if mode == "dense":
        return repair_dense(image, mask, iterations=int(hs["diffusion_iterations"]), lam=hs["diffusion_lambda"],
                            kappa=hs["diffusion_kappa"])
    return repair_sparse(image, mask)


def clean_image(image: np.ndarray, cfg: Mapping[str, Any] | None = None) -> CleanResult:
    """Remove the black frame (§3.1.2, eq. 1), then the hair (§3.1.3, eq. 2-4), of one dermoscopic image.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB, any size (pixel sizes in the settings are scaled by
        ``min(H, W) / reference_size``).
    cfg : a ``preprocess:`` mapping overriding the shipped defaults, or None. Its ``enabled`` key is for the
        callers (segmentation, training) and is not read here; ``frame.enabled`` / ``hair.enabled`` switch the
        two stages.

    Returns
    -------
    :class:`CleanResult`; the input array is not modified.

    Raises
    ------
    ValueError
        If ``image`` is not a non-empty (H, W, 3) uint8 array.
    PreprocessConfigError
        If a setting is invalid (the key is named).
    """
    check_rgb(image)
    s = resolve_settings(cfg)
    f, hs = s["frame"], s["hair"]
    h, w = image.shape[:2]
    scale = min(h, w) / float(s["reference_size"])
    frame = np.zeros((h, w), bool)
    out = image
    if f["enabled"]:
        frame = detect_frame(image, lightness_max=f["lightness_max"], median_px=f["median_px"],
                             min_thickness_px=f["min_thickness_px"] * scale, corner_px=f["corner_px"] * scale,
                             max_area_pct=f["max_area_pct"], field_lightness_min=f["field_lightness_min"],
                             convex_field=f["convex_field"])
        out = fill_frame(image, frame, ring_px=f["ring_px"] * scale, fill=f["fill"])
    hair = np.zeros((h, w), bool)
    n, mode = 0, "none"
    if hs["enabled"]:
        valid = None
        if frame.any():
            margin = f["hair_margin_px"] * scale
            valid = ~(cv2.dilate(frame.astype(np.uint8), _disk(2 * margin + 1)) > 0) if margin > 0 else ~frame
        common = dict(closing_px=hs["closing_px"] * scale, chroma_weight=hs["chroma_weight"],
                      light_weight=hs["light_weight"],
                      threshold_low=hs["threshold_low"], threshold_high=hs["threshold_high"],
                      min_length_px=hs["min_length_px"] * scale, max_width_px=hs["max_width_px"] * scale,
                      dilate_px=hs["dilate_px"] * scale, min_contrast=hs["min_contrast"],
                      lesion_threshold=hs["lesion_threshold"], long_hair_px=hs["long_hair_px"] * scale,
                      line_length_px=hs["line_length_px"] * scale, line_angles=int(hs["line_angles"]),
                      line_tolerance_px=hs["line_tolerance_px"] * scale,
                      line_exempt_response=hs["line_exempt_response"], edge_px=hs["edge_px"] * scale)
        # Dark hair first (the paper); then, if enabled, light hair on the repaired image (see hair.py's notes).
        for light in (False, True) if hs["light_weight"] > 0 else (False,):
            found, count = detect_hair(out, valid, light=light, **common)
            if count == 0:
                continue
            pass_mode = hs["mode"] if hs["mode"] != "auto" else ("dense" if count > hs["dense_count"] else "sparse")
            out = _repair(out, found, pass_mode, hs)
            hair |= found
            n += count
            mode = "dense" if "dense" in (mode, pass_mode) else pass_mode
    if out is image:
        out = image.copy()
    return CleanResult(out, frame, hair, int(n), mode, bool(frame.any()))
