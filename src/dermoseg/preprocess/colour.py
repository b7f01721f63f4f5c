"""Colour constancy: the Shades of Gray illuminant estimate and a von Kries correction (Finlayson & Trezzi 2004).

Dermatoscopes differ in their light and white balance, so the same skin comes out bluish under one and yellowish
under another. Shades of Gray estimates the light's colour as the Minkowski p-norm mean of each channel
(p = 1: Gray World; p → ∞: max-RGB; p = 6 is the value Finlayson & Trezzi found best and Barata, Celebi & Marques
(2015, "Improving dermoscopy image classification using color constancy", IEEE JBHI 19(3)) found best for
dermoscopy), then divides each channel by it (a diagonal, von Kries, correction) so that the estimated light
becomes neutral gray. The classifier applies it to every image it sees, in training and at inference, when its
model file says so (``model.shades_of_gray_p``).
"""

from __future__ import annotations

import numpy as np

from dermoseg.inputs import check_rgb


def shades_of_gray(image: np.ndarray, p: float = 6.0) -> np.ndarray:
    """Correct an image's colour cast with the Shades of Gray estimate (Finlayson & Trezzi 2004, eq. 6; Barata
    et al. 2015, §II).

    The illuminant e_c = (mean over pixels of I_c^p)^(1/p) is estimated per channel c on intensities in [0, 1];
    each channel is then scaled by ‖e‖ / (√3 · e_c), which maps the estimated light to a neutral gray of the same
    length and keeps the overall brightness. Values are clipped to [0, 255].

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.
    p : Minkowski norm ≥ 1 (1 = Gray World, 6 = the dermoscopy default; ``float("inf")`` = max-RGB).

    Returns
    -------
    (H, W, 3) uint8 RGB, a new array (the input is not modified). An all-black image is returned unchanged.

    Raises
    ------
    ValueError
        If the image is not (H, W, 3) uint8 or ``p`` < 1.
    """
    check_rgb(image)
    if not p >= 1:
        raise ValueError(f"the Minkowski norm p must be >= 1, got {p}")
    x = image.reshape(-1, 3).astype(np.float64) / 255.0
    illuminant = x.max(axis=0) if np.isinf(p) else np.power(np.power(x, p).mean(axis=0), 1.0 / p)
    norm = float(np.linalg.norm(illuminant))
    if norm == 0.0 or np.any(illuminant == 0):
        return image.copy()
    gain = norm / (np.sqrt(3.0) * illuminant)
    return np.clip(image.astype(np.float32) * gain.astype(np.float32), 0, 255).round().astype(np.uint8)
