"""The loaded classifier: image (and lesion mask) → calibrated probabilities over the seven ISIC 2018 Task 3
classes (MEL, NV, BCC, AKIEC, BKL, DF, VASC).

:class:`Classifier` owns every step around the network, shared with training so that a model is always fed
inputs prepared as it was trained: the mask use of the model file (``mask_mode``: "none"; "crop" to the
lesion's bounding box plus :data:`CROP_MARGIN`; or "channel", the mask as a fourth input), resizing to the
square training size, the normalisation its encoder's ImageNet weights expect
(:func:`dermoseg.models.classifier.input_normalisation`, recorded in the model file), the network through its
:attr:`Classifier.runner`, averaging over the four flips (test-time augmentation), and temperature scaling (Guo et al. 2017, §4.2) before the softmax.

Research tool, not a medical device: no output of this module is a diagnosis of a patient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from dermoseg import modelfile
from dermoseg.classification import HAM_CLASSES
from dermoseg.classification.calibration import probabilities
from dermoseg.classification.ood import OodCheck, load_check
from dermoseg.config import CLASSIFIER_MODEL_DEFAULTS
from dermoseg.data.transforms import normalise, resize_image, resize_mask
from dermoseg.engine import make_runner
from dermoseg.errors import ModelFileError
from dermoseg.inputs import check_rgb
from dermoseg.models.classifier import MASK_MODES, input_normalisation
from dermoseg.preprocess.colour import shades_of_gray

# extra border around the lesion box for mask_mode "crop", as a fraction of its width/height
CROP_MARGIN = CLASSIFIER_MODEL_DEFAULTS["crop_margin"]
DIAGNOSIS_NOTE = "research tool, not a medical device"


def mask_path_for(mask_dir: str | Path, image_id: str) -> Path:
    """``mask_dir/<image_id>_segmentation.png``, the name ``dermoseg segment`` writes (ISIC 2018 naming)."""
    return Path(mask_dir) / f"{image_id}_segmentation.png"


def crop_to_mask(image: np.ndarray, mask: np.ndarray, margin: float = CROP_MARGIN) -> np.ndarray:
    """Crop an image to its lesion's bounding box, enlarged by ``margin`` on every side.

    Parameters
    ----------
    image : (H, W, C) or (H, W) array of any dtype.
    mask : (H, W) bool, True = lesion.
    margin : extra border as a fraction of the box's width (left/right) and height (top/bottom), ≥ 0; the box is
        clipped to the image.

    Returns
    -------
    The cropped view of ``image`` (same dtype). An empty mask returns the whole image unchanged (the classifier
    then sees what it would without a mask).

    Raises
    ------
    ValueError
        If the mask's shape differs from the image's height and width, or ``margin`` < 0.
    """
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return image
    h, w = mask.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    dy, dx = int(round(margin * (y1 - y0))), int(round(margin * (x1 - x0)))
    return image[max(0, y0 - dy):min(h, y1 + dy), max(0, x0 - dx):min(w, x1 + dx)]


def prepare_image(image: np.ndarray, size: int, mask: np.ndarray | None = None, mask_mode: str = "none",
                  margin: float = CROP_MARGIN, shades_of_gray_p: float | None = None) -> np.ndarray:
    """Bring one image (and its lesion mask) to the classifier's square input, as training and inference share it.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB, any size.
    size : side of the square input in pixels (the aspect ratio is not kept, as in the squashed HAM10000 copy).
    mask : (H, W) bool lesion mask; required unless ``mask_mode == "none"`` (where it is ignored).
    mask_mode : "none", "crop" (crop to the lesion box + ``margin`` first) or "channel" (mask as a 4th channel).
    margin : see :func:`crop_to_mask`.
    shades_of_gray_p : when set, the resized RGB is colour-corrected by Shades of Gray with this Minkowski norm
        (:func:`dermoseg.preprocess.colour.shades_of_gray`; Barata et al. 2015); None leaves the colours alone.

    Returns
    -------
    (size, size, 3) uint8, or (size, size, 4) uint8 for "channel" (4th channel 0/255).

    Raises
    ------
    ValueError
        If the image is not (H, W, 3) uint8, the mode is unknown, or a needed mask is missing or mis-shaped.
    """
    check_rgb(image)
    if mask_mode not in MASK_MODES:
        raise ValueError(f"unknown mask_mode '{mask_mode}' (choose from {', '.join(MASK_MODES)})")
    if mask_mode != "none":
        if mask is None:
            raise ValueError(f"mask_mode '{mask_mode}' needs a lesion mask")
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match image {image.shape[:2]}")
    rgb = resize_image(np.ascontiguousarray(crop_to_mask(image, mask, margin)) if mask_mode == "crop" else image, size)
    if shades_of_gray_p:
        rgb = shades_of_gray(rgb, float(shades_of_gray_p))
    if mask_mode != "channel":
        return rgb
    m = resize_mask(mask.astype(bool), size).astype(np.uint8) * 255
    return np.concatenate([rgb, m[..., None]], axis=2)


def input_array(prepared: np.ndarray, normalisation: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(S, S, 3|4) uint8 from :func:`prepare_image` → (3|4, S, S) float32: RGB normalised as (x / 255 − mean) / std
    with ``normalisation`` = (mean, std), each (3,) in [0, 1] units (:func:`dermoseg.data.transforms.normalise`;
    the encoder's, :func:`dermoseg.models.classifier.input_normalisation`), a mask channel mapped 0 → -1,
    255 → +1."""
    x = normalise(np.ascontiguousarray(prepared[..., :3]), *normalisation)
    if prepared.shape[2] == 4:
        x = np.concatenate([x, (prepared[..., 3].astype(np.float32) / 127.5 - 1.0)[None]], 0)
    return x


def input_tensor(prepared: np.ndarray, normalisation: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    """:func:`input_array` as a tensor (training batches)."""
    return torch.from_numpy(input_array(prepared, normalisation))


def recorded_normalisation(config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), each (3,) float32, of a classifier file's ``config``: its ``normalisation`` entry
    (``{"mean": [3 floats], "std": [3 floats]}``, :func:`dermoseg.classification.task.export_classifier`) or,
    absent, that of its ``model.encoder`` (:func:`dermoseg.models.classifier.input_normalisation`).

    Raises
    ------
    ValueError
        For an unknown encoder, or a ``normalisation`` entry that is not two lists of 3 positive-std floats.
    """
    if "normalisation" not in config:
        return input_normalisation(config["model"].get("encoder", "mobilenet_v2"))
    mean, std = (np.asarray(config["normalisation"][k], dtype=np.float32) for k in ("mean", "std"))
    if mean.shape != (3,) or std.shape != (3,) or not (std > 0).all():
        raise ValueError(f"normalisation must be 3 means and 3 positive stds, got {config['normalisation']}")
    return mean, std


def flip_logits(runner: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, tta: bool = True) -> np.ndarray:
    """Logits of a batch, averaged over the four flips (identity, horizontal, vertical, both) when ``tta``.

    Parameters
    ----------
    runner : the network seam, ``(N, C, S, S) float32 → (N, 7) float32`` (numpy).
    batch : (N, C, S, S) float32 prepared inputs (:func:`input_array`).

    Returns
    -------
    (N, 7) float32 logits.
    """
    if not tta:
        return runner(batch)
    views = (batch, batch[..., ::-1], batch[..., ::-1, :], batch[..., ::-1, ::-1])
    return torch.stack([torch.from_numpy(runner(v)) for v in views]).mean(0).numpy()


@dataclass
class Classifier(modelfile.LoadedModel):
    """A classifier model file loaded for inference (:meth:`load`).

    Attributes
    ----------
    runner : the network seam, ``(N, C, S, S) float32 normalised → (N, 7) float32 logits`` (numpy).
    image_size : side S of the square input, in pixels.
    mask_mode : "none", "crop" or "channel" (how the lesion mask enters, see the module docstring).
    crop_margin : border around the lesion box for "crop".
    temperature : T of the calibration, logits / T before the softmax.
    tta : average the logits over the four flips.
    shades_of_gray_p : Minkowski norm of the colour constancy applied before the network, or None (off).
    normalisation : (mean, std) of the RGB input normalisation, each (3,) float32 in [0, 1] units: the model
        file's ``config.normalisation``, or for files without it (written before it was recorded, all MobileNetV2)
        its encoder's (:func:`dermoseg.models.classifier.input_normalisation`).
    path, info : the file and its provenance.
    """

    runner: Callable[[np.ndarray], np.ndarray]
    image_size: int
    mask_mode: str
    crop_margin: float
    temperature: float
    tta: bool
    shades_of_gray_p: float | None
    normalisation: tuple[np.ndarray, np.ndarray]
    path: Path
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, model: str | Path | None = None, engine: str | None = None,
             threads: int | None = None) -> "Classifier":
        """Load a classifier file (None or "default": the shipped ``weights/classifier.pt``); float16 weights are
        converted to float32.

        Parameters
        ----------
        engine : "onnx" (ONNX Runtime on the file's export ``X.onnx``), "torch" (eager PyTorch), or None: ONNX
            Runtime when the export is there (it is for the shipped classifier), else PyTorch
            (:func:`dermoseg.engine.make_runner`).
        threads : compute threads (None: the CPUs available to the process).

        Raises
        ------
        dermoseg.errors.ModelFileError
            If the file is missing, unreadable, not a dermoseg classifier, has other classes, an unknown encoder
            or a malformed normalisation.
        dermoseg.engine.ort_runner.OnnxFileError
            If ONNX Runtime is chosen and the export is missing, unreadable or made from another file.
        """
        from dermoseg.models.classifier import build_classifier
        path, payload = modelfile.read(model, "classifier")
        cfg = payload["config"]
        if list(cfg.get("classes", HAM_CLASSES)) != list(HAM_CLASSES):
            raise ModelFileError(f"{path}: classes {cfg.get('classes')} differ from {list(HAM_CLASSES)}")
        model = {**CLASSIFIER_MODEL_DEFAULTS, **cfg["model"]}

        def network() -> torch.nn.Module:
            net = build_classifier(cfg["model"], pretrained=False)
            net.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()})
            return net

        try:
            normalisation = recorded_normalisation(cfg)
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
        return cls(make_runner(network, path, engine, threads), int(cfg["image_size"]),
                   model["mask_mode"], float(model["crop_margin"]),
                   float(payload.get("temperature", 1.0)), bool(cfg.get("tta", True)),
                   model["shades_of_gray_p"], normalisation, path,
                   dict(payload.get("info", {})))


    @cached_property
    def ood(self) -> OodCheck | None:
        """The out-of-distribution flag stored beside the model file
        (:func:`dermoseg.classification.ood.load_check`), or None when the file has no ``.ood.json`` sidecar.

        Raises
        ------
        dermoseg.errors.ModelFileError
            If the sidecar is unreadable or was made for another model file.
        """
        return load_check(self.path)

    @property
    def uses_mask(self) -> bool:
        """True when the classifier needs the lesion mask (``mask_mode`` "crop" or "channel")."""
        return self.mask_mode != "none"


    def logits(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None,
               batch_size: int = 32) -> np.ndarray:
        """Uncalibrated logits of a list of images.

        Parameters
        ----------
        images : (H, W, 3) uint8 RGB arrays of any sizes.
        masks : matching (H, W) bool lesion masks; required when :attr:`uses_mask`, ignored otherwise.
        batch_size : images per network call.

        Returns
        -------
        (N, 7) float64 logits in :data:`HAM_CLASSES` order.

        Raises
        ------
        ValueError
            If an image is not (H, W, 3) uint8, or masks are needed and missing.
        """
        if self.uses_mask and masks is None:
            raise ValueError(f"this classifier uses the lesion mask (mask_mode '{self.mask_mode}'): give masks")
        out = []
        for i in range(0, len(images), batch_size):
            batch = np.stack([self.prepare(images[j], masks[j] if self.uses_mask else None)
                              for j in range(i, min(len(images), i + batch_size))])
            out.append(self.batch_logits(batch))
        return np.concatenate(out) if out else np.zeros((0, len(HAM_CLASSES)))

    def prepare(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The network input of one (H, W, 3) uint8 RGB image (and its (H, W) bool lesion mask when
        :attr:`uses_mask`): (C, S, S) float32 (:func:`prepare_image`, :func:`input_array`).

        Raises
        ------
        ValueError
            If the image is not (H, W, 3) uint8, or a needed mask is missing or mis-shaped.
        """
        return input_array(prepare_image(image, self.image_size, mask if self.uses_mask else None, self.mask_mode,
                                         self.crop_margin, self.shades_of_gray_p), self.normalisation)

    def batch_logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits of a prepared (N, C, S, S) float32 batch (:meth:`prepare`), averaged over the four flips when
        :attr:`tta`: (N, 7) float64 in :data:`HAM_CLASSES` order."""
        return flip_logits(self.runner, batch, self.tta).astype(np.float64)

    def calibrated(self, logits: np.ndarray) -> np.ndarray:
        """softmax(logits / T) of (N, 7) logits: (N, 7) float64 probabilities, rows summing to 1."""
        return probabilities(logits, self.temperature)

    def predict_batch(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None = None) -> np.ndarray:
        """Calibrated probabilities softmax(logits / T) of a list of images: (N, 7) float64 in [0, 1], rows
        summing to 1, columns in :data:`HAM_CLASSES` order. Research tool, not a medical device."""
        return self.calibrated(self.logits(images, masks))

    def predict(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities of one (H, W, 3) uint8 RGB image (with its (H, W) bool lesion mask for a
        mask-using classifier): (7,) float64 in :data:`HAM_CLASSES` order, summing to 1."""
        return self.predict_batch([image], None if mask is None else [mask])[0]

    def diagnosis_columns(self, image: np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
        """``segment --diagnose`` columns of one image: ``diagnosis_note``, ``top_class``, ``p_MEL`` …
        ``p_VASC``, and ``warning``: the out-of-distribution flag of ``dermoseg diagnose``
        (:meth:`dermoseg.classification.ood.OodCheck.warning`; "" when not flagged or without a flag file)."""
        logits = self.logits([image], None if mask is None else [mask])
        p = self.calibrated(logits)[0]
        ood = self.ood
        return {"diagnosis_note": DIAGNOSIS_NOTE, "top_class": HAM_CLASSES[int(np.argmax(p))],
                **{f"p_{c}": float(v) for c, v in zip(HAM_CLASSES, p)},
                "warning": ood.warning(logits[0]) if ood else ""}
