"""Per-image segmentation quality: an estimate of the mask's Jaccard with the (unknown) truth, and a review flag.

The estimate comes from cheap signals of the network passes the :class:`~dermoseg.segmentation.segmenter.Segmenter`
already runs for flip test-time augmentation, and of the image (:func:`signals`): how much the masks of the passes
disagree (their mean pairwise Jaccard, the trivial baseline), how uncertain the averaged probability is per lesion
pixel (binary entropy, as in the entropy-based uncertainty maps of Kendall & Gal, NeurIPS 2017; the passes' spread),
the soft Jaccard between mask and probability (Rahman & Wang's Jaccard/IoU surrogate, ISVC 2016), the mask's area
share, border contact, compactness and fragments, and the colour contrast across its contour and its agreement
with Otsu's threshold. A fractional logistic regression (Papke & Wooldridge, J. Appl. Econometrics 11 (1996)
619–632: the Bernoulli quasi-likelihood with a Jaccard in [0, 1] as target, fitted by scikit-learn's
``LogisticRegression`` on each image counted once as lesion-correct with weight J and once as wrong with weight
1 − J) maps standardised signals to ``quality`` in [0, 1]. ``review`` is true where ``quality <= review_threshold``, the threshold being the quality
below which :data:`REVIEW_RATE` of the ISIC validation split falls.

The fitted model is a small JSON sidecar beside the model file (``X.quality.json`` beside ``X.pt``,
:func:`sidecar_path`), not inside it: writing into ``X.pt`` would change its sha256, which its ONNX export and
model card record. The sidecar records the sha256 of the ``.pt`` it was fitted for; :meth:`QualityModel.load`
refuses a sidecar made for another file. ``dermoseg fit-quality --model X`` refits it for any model
(:func:`fit`, on the ISIC validation split only; PH2 is never used for it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import cv2
import numpy as np

from dermoseg.errors import ModelFileError
from dermoseg.inputs import check_rgb
from dermoseg.io import file_sha256, write_text
from dermoseg.metrics import THRESHOLDED_JACCARD_CUTOFF

FORMAT = "dermoseg-quality-1"
# an image with Jaccard below this is a failure (as in the report; the ISIC 2018 thresholded-Jaccard cutoff)
FAILURE_JACCARD = THRESHOLDED_JACCARD_CUTOFF
REVIEW_RATE = 0.10       # share of the ISIC validation split flagged for review by the stored threshold
RING_PX = 6              # width in network pixels of the rings inside and outside the contour (boundary contrast)
# The signals of :func:`signals`, in the order the quality model stores its coefficients.
SIGNALS = ("tta_jaccard", "tta_jaccard_min", "pass_spread", "soft_jaccard", "entropy_ratio", "threshold_jaccard",
           "mean_probability_in", "area_share", "border_contact", "compactness", "discarded_share", "log_components",
           "lesion_contrast", "boundary_contrast", "otsu_jaccard")
BASELINE = "tta_jaccard"  # the trivial signal the quality estimate must beat


def sidecar_path(model_path: str | Path) -> Path:
    """The quality sidecar of a model file: ``X.quality.json`` beside ``X.pt``."""
    return Path(model_path).with_suffix(".quality.json")


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else float(np.count_nonzero(a & b) / union)


def _entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit  # no overflow warning far from 0
    return expit(x)


def signals(passes: np.ndarray, image: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """The cheap per-image signals of a segmentation, from the logits of its network passes and the image.

    Parameters
    ----------
    passes : (P, 1, S, S) or (P, S, S) float logits of P ≥ 2 network passes at the network's resolution, flips
        undone (:meth:`~dermoseg.segmentation.segmenter.Segmenter.pass_logits` with flip TTA: P = 3).
    image : (H, W, 3) uint8 RGB, the input image (resized here to S × S, squashed like the network input; not
        cleaned, which would cost more than the network when cleaning is on).
    threshold : lesion where the probability is above it (as for the mask).

    Returns
    -------
    ``{name: value}`` for every name in :data:`SIGNALS`, all floats. With p the probability of the passes' mean
    logit and m its mask (thresholded, largest region, holes filled, like the final mask), all at S × S:

    - ``tta_jaccard`` / ``tta_jaccard_min``: mean / smallest pairwise Jaccard of the passes' masks (the baseline);
    - ``pass_spread``: Σ over pixels of the passes' probability standard deviation, per mask pixel;
    - ``soft_jaccard``: Σ p·m / Σ max(p, m), the expected-Jaccard surrogate (Rahman & Wang 2016);
    - ``entropy_ratio``: Σ binary entropy of p (bits), per mask pixel (uncertain area relative to the lesion);
    - ``threshold_jaccard``: Jaccard of the masks at thresholds 0.3 and 0.7;
    - ``mean_probability_in``: mean p in m; ``area_share``: m's share of the image; ``border_contact``: share of
      the image's outermost pixels in m; ``compactness``: 4π·area / perimeter², in [0, 1];
    - ``discarded_share``: share of the pixels above the threshold that the largest-region clean-up removed;
      ``log_components``: ln(1 + number of 8-connected regions above the threshold);
    - ``lesion_contrast``: CIELAB distance (ΔE*ab 1976) between the mean colours inside and outside m;
      ``boundary_contrast``: the same between rings of :data:`RING_PX` pixels just inside and just outside m's
      contour; ``otsu_jaccard``: Jaccard of m with Otsu's threshold (Otsu 1979) of the blurred lightness
      (darker = lesion, largest region), a classical second opinion.

    Empty masks give 0 for the ratios, contrasts and compactness (a mask and truth both empty agree: Jaccard 1).

    Raises
    ------
    ValueError
        If fewer than two passes are given (one pass has no disagreement to measure), or ``image`` is not
        (H, W, 3) uint8.
    """
    from dermoseg.data.transforms import resize_image
    from dermoseg.segmentation.segmenter import probability_to_mask
    check_rgb(image)
    logits = np.asarray(passes, dtype=np.float32).reshape(len(passes), *np.shape(passes)[-2:])
    if len(logits) < 2:
        raise ValueError(f"quality signals need at least 2 network passes (flip TTA), got {len(logits)}")
    size = logits.shape[-1]
    probs = _sigmoid(logits)
    masks = [probability_to_mask(p, threshold) for p in probs]
    pairs = [_jaccard(masks[i], masks[j]) for i in range(len(masks)) for j in range(i + 1, len(masks))]
    p = _sigmoid(logits.mean(0))
    raw = p > threshold
    m = probability_to_mask(p, threshold)
    area = int(m.sum())
    per_area = 1.0 / max(area, 1)
    m8 = m.astype(np.uint8)
    border = np.concatenate([m[0], m[-1], m[1:-1, 0], m[1:-1, -1]])
    perimeter = sum(cv2.arcLength(c, True) for c in cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0])
    n_components = cv2.connectedComponents(raw.astype(np.uint8), connectivity=8)[0] - 1
    n_raw = int(raw.sum())
    lab = cv2.cvtColor(resize_image(image, size), cv2.COLOR_RGB2LAB).astype(np.float32)
    ring = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * RING_PX + 1, 2 * RING_PX + 1))
    inner, outer = m & ~(cv2.erode(m8, ring) > 0), (cv2.dilate(m8, ring) > 0) & ~m
    otsu = cv2.threshold(cv2.GaussianBlur(lab[..., 0].astype(np.uint8), (5, 5), 0), 0, 1,
                         cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)[1]

    def contrast(a: np.ndarray, b: np.ndarray) -> float:
        # OpenCV's 8-bit Lab: L scaled by 255/100, a and b offset by 128; back to CIE units before the distance
        return float(np.linalg.norm((lab[a].mean(0) - lab[b].mean(0)) * (100 / 255, 1, 1))) if a.any() and b.any() else 0.0

    return {
        "tta_jaccard": float(np.mean(pairs)),
        "tta_jaccard_min": float(np.min(pairs)),
        "pass_spread": float(probs.std(0).sum() * per_area),
        "soft_jaccard": float((p * m).sum() / np.maximum(p, m).sum()) if (p.sum() + area) > 0 else 1.0,
        "entropy_ratio": float(_entropy(p).sum() * per_area),
        "threshold_jaccard": _jaccard(probability_to_mask(p, 0.7), probability_to_mask(p, 0.3)),
        "mean_probability_in": float(p[m].mean()) if area else 0.0,
        "area_share": area / m.size,
        "border_contact": float(border.mean()),
        "compactness": float(min(1.0, 4 * math.pi * area / perimeter ** 2)) if perimeter > 0 else 0.0,
        "discarded_share": float(np.count_nonzero(raw & ~m) / n_raw) if n_raw else 0.0,
        "log_components": math.log1p(n_components),
        "lesion_contrast": contrast(m, ~m),
        "boundary_contrast": contrast(inner, outer),
        "otsu_jaccard": _jaccard(probability_to_mask(otsu.astype(np.float32), 0.5), m),
    }


@dataclass
class QualityModel:
    """A fitted quality estimator: ``quality = sigmoid(intercept + coef · (x − mean) / scale)`` of the signals x.

    Attributes
    ----------
    signals : names of the signals used (a subset of :data:`SIGNALS`), in coefficient order.
    mean, scale : standardisation of each signal (from the fitting data).
    coef, intercept : the fractional logistic regression on the standardised signals.
    review_threshold : an image is flagged for review where ``quality <= review_threshold``.
    model_sha256 : sha256 of the model file the estimator was fitted for.
    info : provenance (fitting set, size, review rate, cross-validated figures, command, commit).
    """

    signals: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    review_threshold: float
    model_sha256: str
    info: dict[str, Any] = field(default_factory=dict)

    def predict(self, rows: Sequence[dict[str, float]] | dict[str, float]) -> np.ndarray | float:
        """Quality in [0, 1] of one signal dict (:func:`signals`; a float) or of a list of them ((N,) float64).

        An empty mask (``area_share`` 0) gets quality 0 whatever the regression says: every image of the task
        holds a lesion, so an empty mask's Jaccard with a real truth is 0, and the regression, fitted on masks
        that had a lesion, would extrapolate (it rated an empty mask near 1: two empty flip passes agree)."""
        one = isinstance(rows, dict)
        rows = [rows] if one else rows
        x = np.array([[float(r[k]) for k in self.signals] for r in rows], dtype=np.float64)
        z = self.intercept + ((x - np.array(self.mean)) / np.array(self.scale)) @ np.array(self.coef)
        q = np.where([float(r["area_share"]) == 0.0 for r in rows], 0.0, _sigmoid(z))
        return float(q[0]) if one else q

    def review(self, quality: float) -> bool:
        """True where an image of this quality should be checked by eye (``quality <= review_threshold``)."""
        return bool(quality <= self.review_threshold)

    def assess(self, passes: np.ndarray, image: np.ndarray, threshold: float = 0.5,
               mask: np.ndarray | None = None) -> tuple[float | None, bool | None]:
        """``(quality, review)`` of one segmentation from its pass logits and image (see :func:`signals`);
        ``(None, None)`` for a single pass (no flip TTA), which has no pass disagreement to measure. ``mask``:
        the (H, W) bool mask the user gets, if known; when it is empty (e.g. every pixel excluded as fully
        transparent) the segmentation counts as empty (quality 0, review True: :meth:`predict`)."""
        if len(passes) < 2:
            return None, None
        found = signals(passes, image, threshold)
        if mask is not None and not mask.any():
            found["area_share"] = 0.0
        q = self.predict(found)
        return q, self.review(q)

    def to_json(self) -> dict[str, Any]:
        """The sidecar's content (see :meth:`load`)."""
        return {"format": FORMAT, "model_sha256": self.model_sha256, "signals": self.signals, "mean": self.mean,
                "scale": self.scale, "coef": self.coef, "intercept": self.intercept,
                "review_threshold": self.review_threshold, "info": self.info}

    def save(self, model_path: str | Path) -> Path:
        """Write the sidecar of ``model_path`` atomically (:func:`sidecar_path`); a file there that is not a quality
        sidecar is never replaced.

        Raises
        ------
        ModelFileError
            If the sidecar path holds a file that is not a dermoseg quality sidecar.
        """
        path = sidecar_path(model_path)
        if path.exists():
            try:
                own = json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
            except (OSError, ValueError, AttributeError):
                own = False
            if not own:
                raise ModelFileError(f"{path}: exists and is not a dermoseg quality sidecar; not replaced")
        return write_text(path, json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, model_path: str | Path) -> "QualityModel | None":
        """The quality estimator fitted for a model file, or None when the file has no sidecar.

        Raises
        ------
        ModelFileError
            If the sidecar is unreadable or malformed, or was fitted for another model file (sha256 differs:
            refit it with ``dermoseg fit-quality --model X``).
        """
        path = sidecar_path(model_path)
        if not path.is_file():
            return None
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            if d.get("format") != FORMAT:
                raise ValueError(f"no '{FORMAT}' format tag")
            model = cls(list(d["signals"]), [float(v) for v in d["mean"]], [float(v) for v in d["scale"]],
                        [float(v) for v in d["coef"]], float(d["intercept"]), float(d["review_threshold"]),
                        str(d["model_sha256"]), dict(d.get("info") or {}))
            unknown = set(model.signals) - set(SIGNALS)
            if unknown or not len(model.signals) == len(model.mean) == len(model.scale) == len(model.coef):
                raise ValueError(f"unknown signals {sorted(unknown)} or lists of unequal length")
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"{path}: not a valid quality sidecar ({exc})") from None
        sha = file_sha256(model_path)
        if sha != model.model_sha256:
            raise ModelFileError(f"{path}: fitted for a model file with sha256 {model.model_sha256[:12]}…, but "
                                 f"{Path(model_path).name} has {sha[:12]}…; refit it with "
                                 f"'dermoseg fit-quality --model {model_path}'")
        return model


# ------------------------------------------------------------------------------------------ fitting and scoring
def fit(rows: Sequence[dict[str, Any]], names: Sequence[str] = SIGNALS, review_rate: float = REVIEW_RATE,
        model_sha256: str = "", c: float = 1.0) -> QualityModel:
    """Fit the quality estimator on images whose real Jaccard is known.

    Parameters
    ----------
    rows : per image, every signal in ``names`` and ``jaccard`` in [0, 1] (e.g. :func:`signal_rows`).
    names : the signals to use.
    review_rate : the share of ``rows`` whose fitted quality is at most the stored review threshold.
    c : inverse L2 strength of the logistic regression on standardised signals (scikit-learn's ``C``).

    Returns
    -------
    A :class:`QualityModel` (``info`` holds only the fitting size and review rate; callers add provenance).

    Raises
    ------
    ValueError
        For fewer than 10 rows or a review rate outside (0, 1).
    """
    from sklearn.linear_model import LogisticRegression
    if len(rows) < 10:
        raise ValueError(f"fitting the quality estimator needs at least 10 images, got {len(rows)}")
    if not 0.0 < review_rate < 1.0:
        raise ValueError(f"review rate must be in (0, 1), got {review_rate}")
    x = np.array([[float(r[k]) for k in names] for r in rows], dtype=np.float64)
    y = np.clip(np.array([float(r["jaccard"]) for r in rows]), 0.0, 1.0)
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    reg = LogisticRegression(C=c, max_iter=1000)
    reg.fit(np.vstack([z, z]), np.r_[np.ones(len(y)), np.zeros(len(y))], sample_weight=np.r_[y, 1.0 - y])
    model = QualityModel(list(names), mean.tolist(), scale.tolist(), reg.coef_[0].tolist(), float(reg.intercept_[0]),
                         0.0, model_sha256, {"fitted_images": len(rows), "review_rate": review_rate})
    model.review_threshold = float(np.quantile(model.predict(rows), review_rate))
    return model


def cross_fit(rows: Sequence[dict[str, Any]], names: Sequence[str] = SIGNALS, folds: int = 10, seed: int = 2018,
              c: float = 1.0) -> np.ndarray:
    """Out-of-fold quality of each row: each fold is predicted by an estimator fitted on the other folds (k-fold
    cross-fitting, so the figures on the fitting set are not in-sample).

    Returns
    -------
    (N,) float64 quality in [0, 1], in the order of ``rows``.
    """
    order = np.random.default_rng(seed).permutation(len(rows))
    out = np.empty(len(rows))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        out[test] = fit([rows[i] for i in train], names, c=c).predict([rows[i] for i in test])
    return out


def detection_figures(quality: np.ndarray, jaccard: np.ndarray, flagged: float = REVIEW_RATE,
                      review_threshold: float | None = None) -> dict[str, float]:
    """How well a score (higher = better mask) finds the failures (Jaccard < :data:`FAILURE_JACCARD`).

    Parameters
    ----------
    quality, jaccard : (N,) per image.
    flagged : share of the images flagged, those with the lowest score (ceil(flagged · N) images).
    review_threshold : also report the share flagged and of failures caught by ``quality <= review_threshold``.

    Returns
    -------
    ``images``, ``failures``, ``caught_at_flagged`` (share of failures among the flagged), ``spearman`` (rank
    correlation of score and Jaccard), ``auroc`` (of −score for failure; NaN without both classes), and with a
    threshold ``flagged_at_threshold``, ``caught_at_threshold``.
    """
    from scipy.stats import spearmanr

    from dermoseg.metrics import binary_auc
    quality, jaccard = np.asarray(quality, dtype=np.float64), np.asarray(jaccard, dtype=np.float64)
    fail = jaccard < FAILURE_JACCARD
    n_flag = math.ceil(flagged * len(quality))
    low = np.zeros(len(quality), dtype=bool)
    low[np.argsort(quality, kind="stable")[:n_flag]] = True
    out = {"images": len(quality), "failures": int(fail.sum()), "flagged": n_flag,
           "caught_at_flagged": float((low & fail).sum() / fail.sum()) if fail.any() else math.nan,
           "spearman": float(spearmanr(quality, jaccard).statistic),
           "auroc": binary_auc(fail, -quality) if 0 < fail.sum() < len(fail) else math.nan}
    if review_threshold is not None:
        review = quality <= review_threshold
        out["flagged_at_threshold"] = float(review.mean())
        out["caught_at_threshold"] = float((review & fail).sum() / fail.sum()) if fail.any() else math.nan
    return out


def signal_rows(segmenter, items: Iterable[tuple[str, np.ndarray, np.ndarray]], threshold: float = 0.5
                ) -> Iterator[dict[str, Any]]:
    """Per image: its id, real Jaccard and Dice of the segmenter's mask (at the image's own size) and the signals.

    Parameters
    ----------
    segmenter : a loaded :class:`~dermoseg.segmentation.segmenter.Segmenter` (run with flip TTA).
    items : ``(image_id, image (H, W, 3) uint8 RGB, truth (H, W) bool)``.

    Yields
    ------
    ``{"image_id", "jaccard", "dice", **signals}``.
    """
    from dermoseg.metrics import image_metrics
    for image_id, image, truth in items:
        passes = segmenter.pass_logits(segmenter.prepare(image), tta=True)
        mask = segmenter.segmentation(image, passes, threshold).mask
        metrics = image_metrics(mask, truth)
        yield {"image_id": image_id, "jaccard": metrics["jaccard"], "dice": metrics["dice"],
               **signals(passes, image, threshold)}


# ---------------------------------------------------------------------------------- commands: fit and evaluate
def fit_settings(path: str | Path | None = None) -> dict[str, Any]:
    """The fitting settings: ``path`` (YAML), or the shipped ``dermoseg/configs/quality.yaml``.

    Raises
    ------
    dermoseg.config.ConfigError
        If the file is missing or not a mapping, or names an unknown signal.
    """
    from importlib import resources

    import yaml

    from dermoseg.config import ConfigError, read_yaml_mapping
    if path is None:
        cfg = yaml.safe_load(resources.files("dermoseg").joinpath("configs", "quality.yaml").read_text(encoding="utf-8"))
    else:
        cfg = read_yaml_mapping(path, "quality settings file")
    for name in [cfg.get("signals", [])] + list((cfg.get("variants") or {}).values()):
        unknown = set(name) - set(SIGNALS)
        if unknown or not name:
            raise ConfigError(f"{path or 'dermoseg/configs/quality.yaml'}: unknown or no signals {sorted(unknown)} "
                              f"(choose from {', '.join(SIGNALS)})")
    return cfg


def set_signals(segmenter, set_name: str, data_root: str | Path, cache_dir: str | Path) -> list[dict[str, Any]]:
    """The signal rows (:func:`signal_rows`) of a named evaluation set, computed once per model file and cached.

    The cache is ``cache_dir/<set>_signals.csv`` with ``<set>_signals.json`` (the model file's sha256, the signal
    names, the image count); it is reused when both match, else recomputed and replaced.

    Parameters
    ----------
    segmenter : a loaded :class:`~dermoseg.segmentation.segmenter.Segmenter`.
    set_name : ``isic2018_val`` or ``ph2`` (:data:`dermoseg.data.evalsets.EVAL_SETS`).

    Returns
    -------
    Rows ``{"image_id": str, "jaccard": float, "dice": float, <signal>: float, ...}`` sorted by image id.
    """
    import csv

    from dermoseg.batch import rows_to_csv
    from dermoseg.data.evalsets import eval_set_samples
    from dermoseg.segmentation.evaluate import read_pairs
    cache_dir = Path(cache_dir)
    table, meta_path = cache_dir / f"{set_name}_signals.csv", cache_dir / f"{set_name}_signals.json"
    sha = segmenter.sha256

    def cached() -> list[dict[str, Any]] | None:
        if not (table.is_file() and meta_path.is_file()):
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("model_sha256") != sha or meta.get("signals") != list(SIGNALS):
            return None
        with open(table, newline="", encoding="utf-8") as fh:
            rows = [{k: (v if k == "image_id" else float(v)) for k, v in r.items()} for r in csv.DictReader(fh)]
        return rows if len(rows) == meta.get("images") else None

    rows = cached()
    if rows is None:
        samples = sorted(eval_set_samples(set_name, data_root), key=lambda s: s.image_id)
        rows = list(signal_rows(segmenter, read_pairs(samples)))
        write_text(table, rows_to_csv(rows, ["image_id", "jaccard", "dice", *SIGNALS]))
        write_text(meta_path, json.dumps({"set": set_name, "images": len(rows), "model": segmenter.path.name,
                                          "model_sha256": sha, "signals": list(SIGNALS), "inference": "flip TTA, 0.5",
                                          "jaccard": "of the mask at the image's own size vs the truth"}, indent=2)
                   + "\n")
        rows = cached()  # as written (6 significant digits), so a fit from the committed table is reproducible
    return rows


def _figures(rows: Sequence[dict[str, Any]], quality: np.ndarray, review_threshold: float | None = None
             ) -> dict[str, dict[str, float]]:
    jaccard = np.array([r["jaccard"] for r in rows])
    return {"quality": detection_figures(quality, jaccard, review_threshold=review_threshold),
            "baseline": detection_figures(np.array([r[BASELINE] for r in rows]), jaccard)}


def fit_for_model(model: str | Path | None, data_root: str | Path, cache_dir: str | Path,
                  settings: dict[str, Any] | None = None) -> tuple[QualityModel, Path]:
    """``dermoseg fit-quality``: fit the quality estimator of a model file on the fitting set (the ISIC validation
    split) and write its sidecar beside the model file.

    The sidecar's ``info`` holds the cross-fitted figures on the fitting set (:func:`cross_fit`), those of the
    baseline, the settings and the commit.

    Parameters
    ----------
    model : model file, or None / "default" for the shipped one.
    data_root : the data folder (:data:`dermoseg.config.DATA_ROOT`).
    cache_dir : where the per-image signals are cached (:func:`set_signals`).
    settings : :func:`fit_settings` (None: the shipped ones).

    Returns
    -------
    (the fitted model, the sidecar's path).
    """
    from dermoseg.segmentation.segmenter import Segmenter
    from dermoseg.training import git_commit
    settings = settings or fit_settings()
    segmenter = Segmenter.load(model, quality=False)
    rows = set_signals(segmenter, settings["fit_set"], data_root, cache_dir)
    names, c = list(settings["signals"]), float(settings["c"])
    oof = cross_fit(rows, names, int(settings["folds"]), int(settings["seed"]), c)
    fitted = fit(rows, names, float(settings["review_rate"]), segmenter.sha256, c)
    fitted.info.update({"fit_set": settings["fit_set"], "c": c, "folds": int(settings["folds"]),
                        "seed": int(settings["seed"]), "cross_fitted": _figures(rows, oof),
                        "command": f"dermoseg fit-quality --model {model or 'default'}", "commit": git_commit()})
    return fitted, fitted.save(segmenter.path)


def evaluate_for_model(model: str | Path | None, data_root: str | Path, cache_dir: str | Path,
                       settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """``dermoseg evaluate-quality``: measure the model's quality estimator beside the flip-TTA agreement baseline.

    On the fitting set the figures are cross-fitted (each image scored by an estimator fitted without it, with the
    sidecar's settings); on each test set (PH2) the sidecar's estimator and review threshold are applied as they
    are. Each signal set of ``settings["variants"]`` is also cross-fitted on the fitting set.

    Writes ``cache_dir/<set>_quality.csv`` (image_id, jaccard, dice, quality, baseline, review) and
    ``cache_dir/summary.json``.

    Returns
    -------
    The summary: ``{"model", "model_sha256", "review_threshold", "sets": {set: {"quality": figures, "baseline":
    figures}}, "variants": {name: figures}}`` (figures of :func:`detection_figures`).

    Raises
    ------
    ModelFileError
        If the model file has no quality sidecar (fit one with ``dermoseg fit-quality``) or a stale one.
    """
    from dermoseg.batch import rows_to_csv
    from dermoseg.segmentation.segmenter import Segmenter
    settings = settings or fit_settings()
    segmenter = Segmenter.load(model)
    qm = segmenter.quality
    if qm is None:
        raise ModelFileError(f"{sidecar_path(segmenter.path)}: no quality sidecar; fit one with "
                             f"'dermoseg fit-quality --model {model or 'default'}'")
    fit_set = qm.info.get("fit_set", settings["fit_set"])
    folds, seed, c = (int(qm.info.get("folds", settings["folds"])), int(qm.info.get("seed", settings["seed"])),
                      float(qm.info.get("c", settings["c"])))
    summary: dict[str, Any] = {"model": segmenter.path.name, "model_sha256": qm.model_sha256,
                               "review_threshold": qm.review_threshold, "signals": qm.signals, "sets": {},
                               "variants": {}}
    for set_name in [fit_set, *settings.get("test_sets", [])]:
        rows = set_signals(segmenter, set_name, data_root, cache_dir)
        if set_name == fit_set:
            quality = cross_fit(rows, qm.signals, folds, seed, c)
            for label, names in (settings.get("variants") or {}).items():
                summary["variants"][label] = {"signals": list(names),
                                              **_figures(rows, cross_fit(rows, names, folds, seed, c))["quality"]}
            how = f"cross-fitted ({folds}-fold)"
        else:
            quality = qm.predict(rows)
            how = "the fitted estimator and threshold as stored"
        summary["sets"][set_name] = {"how": how, **_figures(rows, quality, qm.review_threshold)}
        out = [{"image_id": r["image_id"], "jaccard": r["jaccard"], "dice": r["dice"], "quality": float(q),
                "baseline": r[BASELINE], "review": bool(q <= qm.review_threshold)} for r, q in zip(rows, quality)]
        write_text(Path(cache_dir) / f"{set_name}_quality.csv",
                   rows_to_csv(out, ["image_id", "jaccard", "dice", "quality", "baseline", "review"]))
    write_text(Path(cache_dir) / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
