"""The loaded segmentation model: image → lesion probability → mask, at the image's own size.

:class:`Segmenter` owns every step around the network, so that ``segment``, ``evaluate``, the classifier's
mask and the Python API apply a model exactly as it was trained: optional cleaning (black frame and hair,
paper §3.1, when the model file says so), resizing to the model's square training size, ImageNet
normalisation, the network through its :attr:`Segmenter.runner` (which pads to the output stride and crops
back), optional flip test-time augmentation, sigmoid, bilinear resizing back to the input's height and width,
and thresholding to one filled lesion region. A 6000×4000 photograph costs the network no more than a 256×256
one. The runner is ONNX Runtime on the file's ONNX export by default, or eager PyTorch (:mod:`dermoseg.engine`);
both go through the same steps here, so they differ only by the network's floating-point arithmetic. With flip
TTA, a model file with a quality sidecar also gives each mask an estimated Jaccard (``quality``) and a ``review``
flag (:mod:`dermoseg.segmentation.quality`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch

from dermoseg import modelfile
from dermoseg.data.transforms import normalise, resize_image
from dermoseg.engine import make_runner
from dermoseg.errors import ModelFileError
from dermoseg.inputs import check_rgb, image_warning
from dermoseg.segmentation.quality import QualityModel

THRESHOLD = 0.5  # default lesion-probability threshold of every command


@dataclass
class Segmentation:
    """What :meth:`Segmenter.segment` returns for one image.

    Attributes
    ----------
    image : (H, W, 3) uint8 RGB, the input as given (measurements and overlays use it, not the cleaned copy).
    probability : (H, W) float32 lesion probability in [0, 1].
    mask : (H, W) bool, True = lesion (one filled region, see :func:`probability_to_mask`).
    threshold : the probability threshold used.
    quality : estimated Jaccard of the mask with the truth, in [0, 1] (:mod:`dermoseg.segmentation.quality`); None
        without flip TTA or without a quality sidecar beside the model file.
    review : True where the mask should be checked by eye (quality at or below the sidecar's review threshold);
        None when ``quality`` is.
    warning : why the mask is likely unreliable (tiny, nearly uniform or grayscale image, no lesion found, lesion
        on every pixel: :func:`input_warning`), or "" — the ``warning`` column of ``results.csv``.
    """

    image: np.ndarray
    probability: np.ndarray
    mask: np.ndarray
    threshold: float
    quality: float | None = None
    review: bool | None = None
    warning: str = ""

    def measure(self, mm_per_pixel: float | None = None) -> dict[str, Any]:
        """The ABCD lesion measurements of :func:`dermoseg.segmentation.measure.measure_lesion` on this mask and
        image: ``asymmetry_major``, ``asymmetry_minor`` (ΔA/A, in [0, 1]), ``compactness`` (P²/4πA, ≥ ~1),
        ``perimeter_px``, ``colour_count`` (0–6), ``colours``, ``diameter_px`` and, with ``mm_per_pixel``,
        ``diameter_mm``, ``perimeter_mm`` and ``area_mm2`` (see that function for their sources).

        Parameters
        ----------
        mm_per_pixel : size of one image pixel in mm (finite, > 0); None leaves the mm figures empty.

        Raises
        ------
        dermoseg.segmentation.measure.MeasurementError
            For an ``mm_per_pixel`` that is not a finite number > 0.
        """
        from dermoseg.segmentation.measure import measure_lesion
        return measure_lesion(self.image, self.mask, mm_per_pixel)


def input_warning(image: np.ndarray, mask: np.ndarray) -> str:
    """Why a segmentation is likely unreliable, or "" if nothing looks wrong.

    Checks, in order: the image checks of :func:`dermoseg.inputs.image_warning` (tiny, nearly uniform,
    grayscale); no lesion pixel found; lesion on every pixel. Every problem found is given, joined by "; ".

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.
    mask : (H, W) bool, True = lesion.
    """
    image_problem = image_warning(image)
    problems = [image_problem] if image_problem else []
    if not mask.any():
        problems.append("no lesion found")
    elif mask.all():
        problems.append("lesion covers the whole image (lesion larger than the field of view, or not a dermoscopic image?)")
    return "; ".join(problems)


@dataclass
class Segmenter(modelfile.LoadedModel):
    """A segmentation model file loaded for inference (:meth:`load`).

    Attributes
    ----------
    runner : the network seam, ``(N, 3, S, S) float32 normalised → (N, 1, S, S) float32 logits`` (numpy).
    image_size : side S of the square input the network was trained at, in pixels.
    preprocess : cleaning settings from the model file (``enabled`` and :mod:`dermoseg.preprocess` keys).
    tta : the file's default for flip test-time augmentation.
    path, info : the file and its provenance (epoch, scores, commit).
    quality : the quality estimator fitted for this file (its ``.quality.json`` sidecar), or None.
    """

    runner: Callable[[np.ndarray], np.ndarray]
    image_size: int
    preprocess: dict[str, Any]
    path: Path
    info: dict[str, Any] = field(default_factory=dict)
    tta: bool = False
    quality: QualityModel | None = None

    @classmethod
    def load(cls, model: str | Path | None = None, engine: str | None = None,
             threads: int | None = None, quality: bool = True) -> "Segmenter":
        """Load a segmentation model file: a path, or a shipped name (None or "default": ``weights/segmentation.pt``;
        "fast": the small preset; :func:`dermoseg.modelfile.resolve`).

        Parameters
        ----------
        engine : "onnx" (ONNX Runtime on the file's export ``X.onnx``), "torch" (eager PyTorch), or None: ONNX
            Runtime when the export is there (it is for the shipped models), else PyTorch
            (:func:`dermoseg.engine.make_runner`).
        threads : compute threads (None: the CPUs available to the process).
        quality : also load the quality sidecar ``X.quality.json`` if there is one (:mod:`dermoseg.segmentation.quality`).

        Raises
        ------
        dermoseg.errors.ModelFileError
            If the file is missing, unreadable, or not a dermoseg segmentation model, its recorded cleaning settings
            are not valid here (an unknown or out-of-range setting), or its quality sidecar is malformed or was
            fitted for another file.
        dermoseg.engine.ort_runner.OnnxFileError
            If ONNX Runtime is chosen and the export is missing, unreadable or made from another file.
        """
        from dermoseg.models import build_model
        from dermoseg.preprocess.settings import PreprocessConfigError, resolve_settings
        path, payload = modelfile.read(model, "segmentation")
        cfg = payload["config"]
        try:  # the cleaning the model was trained with, checked now rather than on the first image
            resolve_settings(cfg.get("preprocess"))
        except PreprocessConfigError as exc:
            raise ModelFileError(f"{path}: recorded cleaning settings not usable by this version ({exc})") from None

        def network() -> torch.nn.Module:
            net = build_model(cfg["model"], pretrained=False)
            net.load_state_dict(payload["state_dict"])
            return net

        return cls(make_runner(network, path, engine, threads), int(cfg["image_size"]),
                   dict(cfg.get("preprocess") or {}), path, dict(payload.get("info", {})), bool(cfg.get("tta", False)),
                   QualityModel.load(path) if quality else None)


    @property
    def trained_epochs(self) -> int | None:
        """How many epochs these weights had trained (1-based), from the 0-based ``checkpoint_epoch`` in ``info``;
        None if the file does not say."""
        epoch = self.info.get("checkpoint_epoch")
        return int(epoch) + 1 if epoch is not None and int(epoch) >= 0 else None


    def clean(self, image: np.ndarray, preprocess: bool | None = None) -> np.ndarray:
        """The image the network sees before resizing: cleaned (black frame, hair; paper §3.1) when ``preprocess``
        is true, or when it is None and the model file enables cleaning; otherwise ``image`` itself."""
        if not (bool(self.preprocess.get("enabled")) if preprocess is None else preprocess):
            return image
        from dermoseg.preprocess import clean_image
        return clean_image(image, self.preprocess).image

    def prepare(self, image: np.ndarray, preprocess: bool | None = None) -> np.ndarray:
        """The network input of one image: cleaned if asked (:meth:`clean`), resized to the training size,
        ImageNet-normalised.

        Parameters
        ----------
        image : (H, W, 3) uint8 RGB, any size ≥ 1×1.
        preprocess : clean the image first; None follows the model file.

        Returns
        -------
        (1, 3, S, S) float32, S = :attr:`image_size`.

        Raises
        ------
        ValueError
            If ``image`` is not (H, W, 3) uint8.
        """
        check_rgb(image)
        return normalise(resize_image(self.clean(image, preprocess), self.image_size))[None]

    def pass_logits(self, x: np.ndarray, tta: bool | None = None) -> np.ndarray:
        """The network's lesion logits of each pass over a prepared input (:meth:`prepare`), flips undone: as is
        and, when ``tta``, horizontally and vertically flipped (3 network calls; None follows the model file, on for
        the shipped model: chosen on the ISIC validation split). (1, 3, S, S) float32 → (P, 1, S, S) float32,
        P = 3 with TTA, else 1."""
        passes = [self.runner(x)]
        if self.tta if tta is None else tta:
            passes += [self.runner(x[..., ::-1])[..., ::-1], self.runner(x[..., ::-1, :])[..., ::-1, :]]
        return np.concatenate(passes)

    @staticmethod
    def mean_logits(passes: np.ndarray) -> np.ndarray:
        """The mean of (P, 1, S, S) pass logits (:meth:`pass_logits`): the (1, 1, S, S) logits the mask comes from."""
        return (sum(passes) / len(passes))[None]

    def logits(self, x: np.ndarray, tta: bool | None = None) -> np.ndarray:
        """The network's lesion logits of a prepared input, averaged over the passes of :meth:`pass_logits`.
        (1, 3, S, S) float32 → (1, 1, S, S) float32."""
        return self.mean_logits(self.pass_logits(x, tta))

    @staticmethod
    def probability_map(logits: np.ndarray, height: int, width: int) -> np.ndarray:
        """Sigmoid of (1, 1, S, S) logits, resized bilinearly to (height, width) float32 probabilities in [0, 1]."""
        prob = torch.sigmoid(torch.from_numpy(np.ascontiguousarray(logits)))[0, 0].numpy().astype(np.float32)
        return cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)

    def probability(self, image: np.ndarray, tta: bool | None = None, preprocess: bool | None = None) -> np.ndarray:
        """Lesion probability of every pixel of one image: :meth:`prepare`, :meth:`logits`, :meth:`probability_map`.

        Parameters
        ----------
        image : (H, W, 3) uint8 RGB, any size ≥ 1×1.
        tta : average the logits over horizontal and vertical flips (3× slower); None follows the model file
            (the shipped model's is on: chosen on the ISIC validation split).
        preprocess : clean the image first (see :meth:`clean`); None follows the model file.

        Returns
        -------
        (H, W) float32 probabilities in [0, 1].

        Raises
        ------
        ValueError
            If ``image`` is not (H, W, 3) uint8.
        """
        return self.probability_map(self.logits(self.prepare(image, preprocess), tta), *image.shape[:2])

    def segmentation(self, image: np.ndarray, passes: np.ndarray, threshold: float | None = None,
                     exclude: np.ndarray | None = None) -> Segmentation:
        """The :class:`Segmentation` of ``image`` from its network passes (:meth:`pass_logits`): probability, mask
        and, with several passes and a quality sidecar, quality and review flag; ``threshold`` defaults to
        :data:`THRESHOLD`, a pixel is lesion where its probability is above it; ``exclude`` as in :meth:`segment`
        (the quality signals see the passes as they are). Raises ValueError if ``threshold`` is not in (0, 1)."""
        threshold = THRESHOLD if threshold is None else threshold
        prob = self.probability_map(self.mean_logits(passes), *image.shape[:2])
        if exclude is not None:
            prob[exclude] = 0.0
        mask = probability_to_mask(prob, threshold)
        quality, review = (None, None) if self.quality is None else self.quality.assess(passes, image, threshold, mask)
        return Segmentation(image, prob, mask, threshold, quality, review, input_warning(image, mask))

    def segment(self, image: np.ndarray, threshold: float | None = None, tta: bool | None = None,
                preprocess: bool | None = None, exclude: np.ndarray | None = None) -> Segmentation:
        """Probability, lesion mask, warning and, with flip TTA and a quality sidecar, quality and review flag of
        one image.

        Parameters
        ----------
        image : (H, W, 3) uint8 RGB, any size ≥ 1×1.
        threshold : lesion-probability threshold in (0, 1), a pixel is lesion where its probability is above it;
            None: :data:`THRESHOLD` (0.5).
        tta : average the logits over horizontal and vertical flips (3 network passes; also what ``quality``
            needs); None follows the model file (the shipped model's is on).
        preprocess : remove the black frame and hair first (:meth:`clean`); None follows the model file (the
            shipped model's is off).
        exclude : (H, W) bool pixels that show nothing (fully transparent); they get probability 0, so they are
            never lesion.

        Returns
        -------
        A :class:`Segmentation` (its arrays at the image's own size).

        Raises
        ------
        ValueError
            If ``image`` is not (H, W, 3) uint8 or ``threshold`` is not in (0, 1) (checked before the network runs).
        """
        if threshold is not None:
            check_threshold(threshold)
        return self.segmentation(image, self.pass_logits(self.prepare(image, preprocess), tta), threshold, exclude)


def check_threshold(threshold: float) -> float:
    """``threshold`` itself if it is a lesion-probability threshold in (0, 1), else ValueError naming it (0 or
    less would make every pixel lesion, 1 or more none; NaN none)."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return threshold


def probability_to_mask(prob: np.ndarray, threshold: float = THRESHOLD, keep_largest: bool = True) -> np.ndarray:
    """Threshold a probability map into a lesion mask.

    Parameters
    ----------
    prob : (H, W) float probabilities in [0, 1].
    threshold : a pixel is lesion where ``prob > threshold``.
    keep_largest : keep only the largest connected lesion region and fill its holes (a dermoscopic image shows
        one lesion; ISIC 2018 ground truths are single filled regions).

    Returns
    -------
    (H, W) bool mask.

    Raises
    ------
    ValueError
        If ``threshold`` is not in (0, 1) (0 or less makes every pixel lesion, 1 or more none, NaN none).
    """
    mask = prob > check_threshold(threshold)
    if not keep_largest or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = labels == largest
    # Fill holes: background not connected to the border becomes lesion.
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    outside = np.zeros(n, bool)  # background regions that touch the image border (a lookup table by label:
    outside[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True  # fast on 30 Mpx)
    outside[0] = True
    return mask | ~outside[labels]
