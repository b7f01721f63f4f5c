"""Segmentation losses (paper §3.2.4, eq. 7–9; §4.2), and the Lovász hinge (Berman et al., CVPR 2018).

All losses take lesion logits ``(N, 1, H, W)`` float32 and a target ``(N, 1, H, W)`` float32 in {0, 1}
(1 = lesion), reduce per image first (the sums of eq. 8 run over one image's pixels) and then average over the
batch, and return a scalar.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

LOSSES = ("weighted_dice", "weighted_bce", "dice_bce", "lovasz_hinge")


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


def _lovasz_gradient(target_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss at the sorted errors (Berman et al. 2018, eq. 8):
    ``g_i = J̄(1..i) − J̄(1..i−1)``, where ``J̄(1..i)`` is the Jaccard loss when the i largest errors are wrong.

    target_sorted : (P,) float in {0, 1}, the pixels' labels in decreasing order of their error.
    Returns (P,) float, non-negative, summing to 1.
    """
    lesion = target_sorted.sum()
    intersection = lesion - target_sorted.cumsum(0)
    union = lesion + (1.0 - target_sorted).cumsum(0)
    jaccard_loss = 1.0 - intersection / union
    return torch.cat([jaccard_loss[:1], jaccard_loss[1:] - jaccard_loss[:-1]])


def lovasz_hinge_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lovász hinge loss (Berman, Triki & Blaschko, "The Lovász-Softmax loss: a tractable surrogate for the
    optimization of the intersection-over-union measure in neural networks", CVPR 2018, §3.1, Algorithm 1),
    computed per image and averaged over the batch: a convex surrogate of each image's lesion Jaccard loss
    ``1 − |M ∩ G| / |M ∪ G|``, the per-image figure that the ISIC thresholded Jaccard is built from.

    Each pixel's hinge error is ``max(0, 1 − s·z)`` with logit ``z`` and sign ``s = +1`` (lesion) or ``−1``
    (background); the errors, sorted in decreasing order, are weighted by :func:`_lovasz_gradient`.
    A prediction with every logit on the right side by a margin of at least 1 scores 0; all logits 0 score 1.

    Returns
    -------
    Scalar float tensor, ≥ 0.
    """
    _check(logits, target)
    per_image = []
    for z, g in zip(logits.flatten(1), target.flatten(1)):
        errors = 1.0 - z * (2.0 * g - 1.0)
        errors_sorted, order = torch.sort(errors, descending=True)
        per_image.append(torch.dot(F.relu(errors_sorted), _lovasz_gradient(g[order])))
    return torch.stack(per_image).mean()


def get_loss(name: str, **kwargs):
    """Return the loss function ``name`` (one of :data:`LOSSES`) with keyword defaults bound; settings the loss
    does not take (the class weights and smoothing, for ``lovasz_hinge``) are left out.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    table = {"weighted_dice": weighted_dice_loss, "weighted_bce": weighted_bce_loss, "dice_bce": dice_bce_loss,
             "lovasz_hinge": lovasz_hinge_loss}
    if name not in table:
        raise ValueError(f"unknown loss '{name}' (choose from {', '.join(LOSSES)})")
    fn = table[name]
    unused = {"lesion_weight", "background_weight", "smooth"} - set(inspect.signature(fn).parameters)
    bound = {k: v for k, v in kwargs.items() if k not in unused}  # any other unknown keyword is a TypeError
    return lambda logits, target: fn(logits, target, **bound)
