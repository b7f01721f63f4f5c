"""A classifier ensemble as one network: the mean of its members' calibrated class probabilities.

Averaging the probabilities of a few independently trained networks is the standard way to gain accuracy and
calibration (Lakshminarayanan et al. 2017, "Simple and Scalable Predictive Uncertainty Estimation using Deep
Ensembles", NeurIPS; the ISIC 2018 Task 3 leaders were ensembles, Codella et al. 2019). Building it as one
``nn.Module`` keeps every seam of a single classifier: one input, one runner, one ONNX graph, one temperature.

The members may differ in input size and normalisation. The ensemble takes the largest member size with RGB in
[0, 1] (normalisation mean 0, std 1); each member's input is shrunk inside the network by area interpolation written
as two fixed matrices (:func:`area_resize_matrix`, the separable weights of OpenCV's ``INTER_AREA``, which
:func:`dermoseg.data.transforms.resize_image` uses), then normalised with the member's own mean and std.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np
import torch
from torch import nn

from dermoseg.config import CLASSIFIER_MODEL_DEFAULTS

__all__ = ["ClassifierEnsemble", "SegmentationEnsemble", "area_resize_matrix", "takes_plain_rgb"]


def takes_plain_rgb(model: Mapping[str, Any]) -> bool:
    """Whether a classifier's ``model`` config can be an ensemble member: no lesion mask (``mask_mode`` "none") and
    no Shades of Gray colour constancy, since the ensemble feeds every member the same plain RGB."""
    model = {**CLASSIFIER_MODEL_DEFAULTS, **model}
    return model["mask_mode"] == "none" and not model["shades_of_gray_p"]


def area_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The (n_out, n_in) float32 matrix R of area interpolation from n_in to n_out ≤ n_in samples along one axis.

    For an (n_in, n_in) image X, ``R @ X @ R.T`` is OpenCV's ``cv2.resize(X, (n_out, n_out),
    interpolation=cv2.INTER_AREA)`` up to float rounding (area weights are separable): each output sample is the
    mean of the input samples it covers, partial ones by their covered fraction. Rows sum to 1.

    Raises
    ------
    ValueError
        If n_out < 1 or n_out > n_in (this is for shrinking only).
    """
    if not 1 <= n_out <= n_in:
        raise ValueError(f"area_resize_matrix shrinks only: need 1 <= n_out <= n_in, got {n_out} and {n_in}")
    return cv2.resize(np.eye(n_in, dtype=np.float32), (n_in, n_out), interpolation=cv2.INTER_AREA)


class ClassifierEnsemble(nn.Module):
    """Mean of member classifiers' temperature-calibrated probabilities, returned as log-probabilities.

    Parameters
    ----------
    members : the member networks, each ``(N, 3, s_i, s_i)`` float32 normalised → ``(N, K)`` float32 logits.
    sizes : s_i, each member's input side in pixels.
    temperatures : T_i > 0, each member's calibration temperature (its probabilities are softmax(logits / T_i)).
    normalisations : (mean, std) of each member's RGB input, each (3,) in [0, 1] units.

    Raises
    ------
    ValueError
        If the lists differ in length or are empty, a temperature is not > 0, or a std is not > 0.

    Notes
    -----
    ``forward``: ``(N, 3, S, S)`` float32 RGB in [0, 1] with S = max(s_i) → ``(N, K)`` float32
    log(mean_i softmax(f_i(x_i) / T_i)), whose softmax is the mean probability itself (rows of the mean already sum to
    1). x_i is the input shrunk to s_i by :func:`area_resize_matrix` and normalised by the member's mean and std.
    With flip test-time augmentation the classifier averages this output over the flips, so the result is the
    flip-mean of the log mean probability, not the mean of each member's own flip-averaged calibrated output (its
    T_i was fitted on flip-averaged logits); the ensemble's own temperature is fitted on exactly what it computes.
    """

    def __init__(self, members: Sequence[nn.Module], sizes: Sequence[int], temperatures: Sequence[float],
                 normalisations: Sequence[tuple[np.ndarray, np.ndarray]]):
        super().__init__()
        if not members or not len(members) == len(sizes) == len(temperatures) == len(normalisations):
            raise ValueError("an ensemble needs one size, temperature and normalisation per member, and ≥ 1 member")
        if min(float(t) for t in temperatures) <= 0:
            raise ValueError(f"member temperatures must be > 0, got {list(temperatures)}")
        self.members = nn.ModuleList(members)
        self.sizes = [int(s) for s in sizes]
        self.input_size = max(self.sizes)
        for i, (size, t, (mean, std)) in enumerate(zip(self.sizes, temperatures, normalisations)):
            mean, std = (np.asarray(v, dtype=np.float32).reshape(3) for v in (mean, std))
            if not (std > 0).all():
                raise ValueError(f"member {i}: normalisation std must be > 0, got {std.tolist()}")
            # buffers, not parameters: fixed by the members' files, kept out of the state dict
            self.register_buffer(f"resize_{i}", torch.from_numpy(area_resize_matrix(self.input_size, size)),
                                 persistent=False)
            self.register_buffer(f"mean_{i}", torch.from_numpy(mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer(f"std_{i}", torch.from_numpy(std).view(1, 3, 1, 1), persistent=False)
            self.register_buffer(f"temperature_{i}", torch.tensor(float(t)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) float32 RGB in [0, 1] → (N, K) float32 log of the mean calibrated probability.

        Raises ValueError if the input is not (N, 3, S, S) with S = :attr:`input_size` (the resize matrices are
        fixed for that size)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, self.input_size, self.input_size):
            raise ValueError(f"the ensemble classifier takes (N, 3, {self.input_size}, {self.input_size}) input, "
                             f"got {tuple(x.shape)}")
        log_probs = []
        for i, member in enumerate(self.members):
            xi = x
            if self.sizes[i] != self.input_size:
                r = getattr(self, f"resize_{i}")
                xi = r @ xi @ r.transpose(0, 1)
            xi = (xi - getattr(self, f"mean_{i}")) / getattr(self, f"std_{i}")
            log_probs.append(torch.log_softmax(member(xi) / getattr(self, f"temperature_{i}"), dim=1))
        stacked = torch.stack(log_probs)
        return torch.logsumexp(stacked, dim=0) - float(np.log(len(log_probs)))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ClassifierEnsemble":
        """Build the (untrained) ensemble of a classifier file's ``config.model`` with ``architecture: ensemble``:
        ``members`` is a list of ``{"model": member model config, "image_size": int, "temperature": float,
        "normalisation": {"mean": [3], "std": [3]}}``. The members' weights come from the file's state dict
        (keys ``members.<i>.…``).

        Raises
        ------
        ValueError
            If ``members`` is missing or empty, a member uses the lesion mask or colour constancy (the ensemble
            feeds every member the same plain RGB, :func:`takes_plain_rgb`), or an entry lacks a key or has a
            malformed value.
        """
        from dermoseg.models.classifier import build_classifier

        def build(members: list) -> "ClassifierEnsemble":
            for i, m in enumerate(members):
                if not takes_plain_rgb(m["model"]):
                    raise ValueError(f"ensemble member {i} uses the lesion mask or Shades of Gray; members must "
                                     "take plain RGB")
            return cls([build_classifier(m["model"], pretrained=False) for m in members],
                       [int(m["image_size"]) for m in members], [float(m["temperature"]) for m in members],
                       [(m["normalisation"]["mean"], m["normalisation"]["std"]) for m in members])
        return _from_members(config, "classifier", build)


class SegmentationEnsemble(nn.Module):
    """The mean lesion probability of several segmentation networks that take the same input (issue 12's "small
    ensemble": model averaging, e.g. Lakshminarayanan et al., NeurIPS 2017, "deep ensembles").

    Parameters
    ----------
    members : segmentation networks, each mapping ``(N, 3, S, S)`` float32 (ImageNet-normalised RGB, the same
        size for all) to ``(N, 1, S, S)`` lesion logits.

    Raises
    ------
    ValueError
        If fewer than two members are given.

    Notes
    -----
    ``forward``: ``(N, 3, S, S)`` → ``(N, 1, S, S)`` float32 logit of mean_i sigmoid(f_i(x)), clamped to
    [1e-6, 1 − 1e-6] in probability (about ±13.8 in logit), so its sigmoid is the members' mean probability and
    everything downstream (flip TTA, the 0.5 threshold, the quality signals) treats it as one network's logits.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a segmentation ensemble needs at least two members, got {len(members)}")
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) float32 → (N, 1, S, S) float32 logit of the members' mean lesion probability."""
        p = torch.stack([torch.sigmoid(m(x)) for m in self.members]).mean(0)
        return torch.logit(p.clamp(1e-6, 1 - 1e-6))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "SegmentationEnsemble":
        """Build the (untrained) ensemble of a segmentation file's ``config.model`` with ``architecture: ensemble``:
        ``members`` is a list of ``{"model": member model config}`` (weights from the file's state dict, keys
        ``members.<i>.…``). Raises ValueError if ``members`` is missing, has fewer than two entries, an entry
        lacks ``model`` or is itself an ensemble."""
        from dermoseg.models import build_model

        def build(members: list) -> "SegmentationEnsemble":
            if any(m["model"].get("architecture") == "ensemble" for m in members):
                raise ValueError("a segmentation ensemble member cannot be an ensemble itself")
            return cls([build_model(m["model"], pretrained=False) for m in members])
        return _from_members(config, "segmentation", build)


def _from_members(config: Mapping[str, Any], kind: str, build: Callable[[list], nn.Module]) -> nn.Module:
    """``build(config["members"])``, the shared checks of both ``from_config``: a missing or empty ``members`` list,
    or an entry lacking a key or holding a value of the wrong type, raises ValueError naming ``kind``."""
    members = config.get("members") or []
    if not members:
        raise ValueError(f"a {kind} ensemble config needs a non-empty 'members' list")
    try:
        return build(list(members))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed {kind} ensemble member entry ({type(exc).__name__}: {exc})") from None
