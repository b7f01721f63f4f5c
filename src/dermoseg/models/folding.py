"""Fold batch normalisation into the convolution before it, keeping the network's structure and state-dict keys.

In inference mode a batch norm after a convolution is an affine map per output channel, y = γ (x − μ) / √(σ² + ε)
+ β, so it can be merged into the convolution's weights (Ioffe & Szegedy 2015, §3.2: "the normalization ... can be
fused with the linear transform"; PyTorch's ``torch.nn.utils.fusion.fuse_conv_bn_weights`` computes the merged
weights). Here the batch-norm module is kept but made an exact identity plus a bias: weight 1, running mean 0,
running variance 1 − ε (so that √(σ² + ε) is 1 in float32), bias the merged bias. The network keeps its modules and
its state-dict keys, so a folded file loads into the same architecture, and its ONNX export (whose own folding then
multiplies by exactly 1) carries the convolution weights bit for bit. This is what lets
``dermoseg combine-segmenters --half`` round the weights to float16 once, the same numbers in the ``.pt`` file and
in its ONNX export (:mod:`dermoseg.engine.onnx_export`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ["batch_norm_folded", "fold_batch_norm", "identity_variance"]


def identity_variance(eps: float) -> float:
    """The float32 running variance v closest to 1 − ``eps`` with √(v + ε) == 1 exactly in float32, so that a
    batch norm with weight 1 and running mean 0 only adds its bias. Raises ValueError if none is found near
    1 − ε (ε outside (0, 1])."""
    if not 0 < eps <= 1:
        raise ValueError(f"batch-norm epsilon must be in (0, 1], got {eps}")
    eps32 = torch.tensor(eps, dtype=torch.float32)
    v = torch.tensor(1.0 - eps, dtype=torch.float32)
    for _ in range(8):  # a few float32 steps around 1 − ε at most
        scale = torch.rsqrt(v + eps32)
        if scale.item() == 1.0 and torch.sqrt(v + eps32).item() == 1.0:
            return float(v)
        v = torch.nextafter(v, torch.tensor(2.0 if scale.item() > 1.0 else 0.0))
    raise ValueError(f"no float32 variance makes sqrt(v + {eps}) exactly 1")


@torch.no_grad()
def fold_batch_norm(network: nn.Module) -> int:
    """Fold every batch norm that directly follows a convolution inside an ``nn.Sequential`` into it, in place.

    Parameters
    ----------
    network : any module; its ``nn.Conv2d`` → ``nn.BatchNorm2d`` pairs that are consecutive children of one
        ``nn.Sequential`` (where the convolution's output can only go to the batch norm) are folded. Other batch
        norms are left as they are. Inference output is unchanged up to float32 rounding (about 1e-6 relative).

    Returns
    -------
    The number of pairs folded (int ≥ 0).

    Raises
    ------
    ValueError
        If a batch norm to fold has no running statistics (``track_running_stats=False``: it normalises with
        batch statistics) or no learnable bias (``affine=False``), checked before that pair is changed; or if a
        convolution or batch norm module appears in two pairs (shared modules; pairs folded before it stay
        folded).

    Notes
    -----
    After folding, each convolution's weight is W·γ/√(σ² + ε) (its bias, if it has one, is merged too and set to
    0), and the batch norm holds weight 1, running mean 0, running variance :func:`identity_variance` and bias
    β − μ·γ/√(σ² + ε) (plus the merged convolution bias). Training such a network again is not meaningful.
    """
    folded, seen = 0, set()
    for sequential in (m for m in network.modules() if isinstance(m, nn.Sequential)):
        children = list(sequential.children())
        for conv, bn in zip(children, children[1:]):
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if id(conv) in seen or id(bn) in seen:
                raise ValueError("a convolution or batch norm used in two places cannot be folded")
            seen.update((id(conv), id(bn)))
            if bn.running_mean is None or bn.running_var is None:
                raise ValueError(f"{type(bn).__name__} without running statistics cannot be folded")
            if bn.bias is None:
                raise ValueError("a batch norm without a learnable bias (affine=False) cannot hold the folded bias")
            weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                                bn.weight, bn.bias)
            conv.weight.copy_(weight)
            if conv.bias is not None:
                conv.bias.zero_()
            if bn.weight is not None:
                bn.weight.fill_(1.0)
            bn.bias.copy_(bias)
            bn.running_mean.zero_()
            bn.running_var.fill_(identity_variance(bn.eps))
            folded += 1
    return folded


@torch.no_grad()
def batch_norm_folded(network: nn.Module) -> bool:
    """Whether every ``nn.BatchNorm2d`` of ``network`` is what :func:`fold_batch_norm` leaves: weight 1 (or none),
    running mean 0 and running variance :func:`identity_variance` of its ε, i.e. an identity plus a bias. False for a
    network without batch norm (nothing was folded). Read from the weights themselves, so it holds for a network
    folded in an earlier file (e.g. a member extracted from a ``--half`` ensemble)."""
    norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    return bool(norms) and all(
        bn.running_mean is not None and bn.running_var is not None and not bn.running_mean.any()
        and bool((bn.running_var.float() == identity_variance(bn.eps)).all())
        and (bn.weight is None or bool((bn.weight == 1).all())) for bn in norms)
