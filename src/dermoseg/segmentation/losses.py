"""Segmentation losses (paper §3.2.4, eq. 7–9; §4.2).

All losses take lesion logits ``(N, 1, H, W)`` float32 and a target ``(N, 1, H, W)`` float32 in {0, 1}
(1 = lesion), reduce per image first (the sums of eq. 8 run over one image's pixels) and then average over the
batch, and return a scalar.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSSES = ("weighted_dice", "weighted_bce", "dice_bce")


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.shape != target.shape or logits.ndim != 4 or logits.shape[1] != 1:
        raise ValueError(f"expected logits and target of equal shape (N, 1, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(target.shape)}")


def soft_dice_per_image(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice coefficient of each image (paper eq. 8): ``(2·Σ p·g + s) / (Σ p + Σ g + s)``.

    Parameters
    ----------
    prob : (N, 1, H, W) float, probabilities in [0, 1].
    target : (N, 1, H, W) float, in {0, 1}.
    smooth : the +1 smoothing of eq. 8 (keeps empty masks at Dice 1, avoids 0/0).

    Returns
    -------
    (N,) float tensor, values in [0, 1].
    """
    dims = (1, 2, 3)
    inter = (prob * target).sum(dims)
    return (2.0 * inter + smooth) / (prob.sum(dims) + target.sum(dims) + smooth)


def weighted_dice_loss(logits: torch.Tensor, target: torch.Tensor, lesion_weight: float = 0.7,
                       background_weight: float = 0.3, smooth: float = 1.0) -> torch.Tensor:
    """Weighted soft Dice loss (paper eq. 8–9): ``1 − (w_l·D_lesion + w_b·D_background) / (w_l + w_b)``,
    with the soft Dice of each class computed per image and the loss averaged over the batch.

    Defaults are the paper's (§4.2): lesion 0.7, background 0.3, smoothing 1.

    Returns
    -------
    Scalar float tensor in [0, 1].
    """
    _check(logits, target)
    prob = torch.sigmoid(logits)
    d_lesion = soft_dice_per_image(prob, target, smooth)
    d_background = soft_dice_per_image(1.0 - prob, 1.0 - target, smooth)
    dice = (lesion_weight * d_lesion + background_weight * d_background) / (lesion_weight + background_weight)
    return (1.0 - dice).mean()


def weighted_bce_loss(logits: torch.Tensor, target: torch.Tensor, lesion_weight: float = 0.7,
                      background_weight: float = 0.3) -> torch.Tensor:
    """Class-weighted binary cross-entropy (paper §3: "weighted cross-entropy loss"): each pixel's BCE is
    weighted ``w_l`` if lesion, ``w_b`` if background, normalised by the weight sum of each image.

    Returns
    -------
    Scalar float tensor, ≥ 0 (nats).
    """
    _check(logits, target)
    weight = lesion_weight * target + background_weight * (1.0 - target)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return ((weight * bce).sum((1, 2, 3)) / weight.sum((1, 2, 3))).mean()


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor, lesion_weight: float = 0.7,
                  background_weight: float = 0.3, smooth: float = 1.0) -> torch.Tensor:
    """Sum of :func:`weighted_dice_loss` and :func:`weighted_bce_loss`: Dice for overlap, cross-entropy for
    calibrated probabilities and stable early gradients, the compound loss of nnU-Net (Isensee et al., Nature
    Methods 18:203–211, 2021)."""
    return (weighted_dice_loss(logits, target, lesion_weight, background_weight, smooth)
            + weighted_bce_loss(logits, target, lesion_weight, background_weight))


def get_loss(name: str, **kwargs):
    """Return the loss function ``name`` (one of :data:`LOSSES`) with keyword defaults bound.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    table = {"weighted_dice": weighted_dice_loss, "weighted_bce": weighted_bce_loss, "dice_bce": dice_bce_loss}
    if name not in table:
        raise ValueError(f"unknown loss '{name}' (choose from {', '.join(LOSSES)})")
    fn = table[name]
    if name == "weighted_bce":
        kwargs.pop("smooth", None)
    return lambda logits, target: fn(logits, target, **kwargs)
