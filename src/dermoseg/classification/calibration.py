"""Calibration of class probabilities: temperature scaling and the expected calibration error.

Reference: C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On Calibration of Modern Neural Networks", ICML 2017
(§4.2 temperature scaling: one scalar T > 0 divides all logits, chosen to minimise the negative log-likelihood
on a held-out set; §2 expected calibration error over M equal-width confidence bins, their eq. 3). T does not
change the arg-max, so accuracy and balanced accuracy are the same before and after scaling.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax


def _check(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"expected (N, K) logits with N >= 1, got shape {logits.shape}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"expected ({logits.shape[0]},) labels, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be integers in [0, {logits.shape[1] - 1}]")
    if not np.isfinite(logits).all():
        raise ValueError("logits contain NaN or infinity")
    return logits, labels


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of ``labels`` under ``softmax(logits / temperature)``.

    Parameters
    ----------
    logits : (N, K) float.
    labels : (N,) int in [0, K).
    temperature : T > 0.

    Raises
    ------
    ValueError
        On mis-shaped inputs, labels out of range, non-finite logits or T <= 0.
    """
    logits, labels = _check(logits, labels)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature minimising the NLL on a held-out set (Guo et al. 2017, §4.2).

    Parameters
    ----------
    logits : (N, K) float, the model's outputs on the validation split.
    labels : (N,) int true classes.
    bounds : search interval for T (bounded scalar minimisation over log T).

    Returns
    -------
    T > 0 (float). T > 1 softens over-confident probabilities, T < 1 sharpens under-confident ones.

    Raises
    ------
    ValueError
        On mis-shaped inputs (see :func:`nll`).
    """
    logits, labels = _check(logits, labels)
    from scipy.optimize import minimize_scalar  # ~1 s to import; only fitting needs it
    res = minimize_scalar(lambda lt: nll(logits, labels, float(np.exp(lt))), bounds=np.log(bounds),
                          method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) along the last axis: (N, K) float → (N, K) float64, rows sum to 1."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Confidence histogram of the top-1 prediction (Guo et al. 2017, §2, Fig. 1).

    Parameters
    ----------
    probs : (N, K) probabilities, rows summing to 1.
    labels : (N,) int true classes.
    n_bins : M equal-width bins on (0, 1]; bin m holds confidences in ((m-1)/M, m/M].

    Returns
    -------
    ``{"edges": (M+1,), "count": (M,) int, "confidence": (M,) mean confidence, "accuracy": (M,) share correct}``;
    empty bins have NaN confidence and accuracy.
    """
    probs, labels = _check(probs, labels)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, conf, n_bins) / count
        acc = np.bincount(idx, correct, n_bins) / count
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": acc}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE = Σ_m (|B_m| / N) · |acc(B_m) − conf(B_m)| over M equal-width bins of top-1 confidence
    (Guo et al. 2017, eq. 3). In [0, 1]; 0 is perfectly calibrated.

    Parameters
    ----------
    probs : (N, K) probabilities; labels : (N,) int; n_bins : M (15, as in Guo et al.).
    """
    b = reliability_bins(probs, labels, n_bins)
    used = b["count"] > 0
    return float(np.sum(b["count"][used] / b["count"].sum() * np.abs(b["accuracy"][used] - b["confidence"][used])))
