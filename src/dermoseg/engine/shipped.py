"""Names of the shipped models, and what an ONNX export of a loaded model records and is checked on.

:data:`SHIPPED` is the one name → file mapping: ``--model default`` (the codec), ``--model fast`` (the small
segmenter, once shipped) and ``--model classifier``; any other value is a path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SHIPPED = {"default": "segmentation.pt", "fast": "segmentation_fast.pt", "classifier": "classifier.pt"}
THRESHOLD = 0.5  # the segment command's default lesion threshold, recorded in segmentation exports


def resolve_model(value: str | Path | None, default: str = "default") -> Path:
    """The model file for a ``--model`` value: a shipped name (:data:`SHIPPED`), a path, or None for ``default``.

    Raises
    ------
    FileNotFoundError
        For a shipped name whose file is not in this installation (the message lists the shipped names).
    """
    name = default if value is None else str(value)
    if name in SHIPPED:
        path = WEIGHTS_DIR / SHIPPED[name]
        if not path.is_file():
            present = [k for k, f in SHIPPED.items() if (WEIGHTS_DIR / f).is_file()]
            raise FileNotFoundError(f"model '{name}' is not shipped with this version ({path.name} missing); "
                                    f"shipped: {', '.join(present)}")
        return path
    return Path(name)


def model_card_name(model_path: Path) -> str | None:
    """The model card's file name (``X.md`` beside ``X.pt``) if there is one."""
    card = model_path.with_suffix(".md")
    return card.name if card.is_file() else None


def load_for_export(model_path: Path):
    """Load a segmentation or classification model file (told apart by its format tag).

    Returns
    -------
    ``(model, network, metadata, prepare)``: the loaded model, its PyTorch network, the ONNX metadata
    (task, input size, normalisation, threshold, TTA, class names, temperature, source sha256, source file name,
    model card) and ``prepare(image (H, W, 3) uint8) -> (C, S, S) float32``, the model's own preprocessing.
    """
    from dermoseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from dermoseg.inference import ModelFileError, load_model
    try:
        model = load_model(model_path)
        task = "segmentation"
    except ModelFileError as exc:
        if "not a dermoseg segmentation model" not in str(exc):
            raise
        from dermoseg.classification.diagnose import load_classifier
        model = load_classifier(model_path)
        task = "classification"
    meta: dict[str, Any] = {"task": task, "input_size": [3, model.image_size, model.image_size],
                            "mean": IMAGENET_MEAN.tolist(), "std": IMAGENET_STD.tolist(), "tta": model.tta,
                            "source_sha256": model.sha256, "source_file": model_path.name,
                            "model_card": model_card_name(model_path)}
    if task == "segmentation":
        from dermoseg.data.transforms import resize_image, to_tensor
        meta.update(threshold=THRESHOLD, class_names=["background", "lesion"])
        prepare = lambda im: to_tensor(resize_image(im, model.image_size)).numpy()  # noqa: E731
    else:
        from dermoseg.classification import HAM_CLASSES
        from dermoseg.classification.model import input_tensor, prepare_image
        if model.mask_mode != "none":
            raise ValueError(f"{model_path}: classifiers that use the lesion mask (mask_mode '{model.mask_mode}') "
                             "cannot be exported yet")
        meta.update(class_names=list(HAM_CLASSES), temperature=model.temperature)
        prepare = lambda im: input_tensor(prepare_image(im, model.image_size)).numpy()  # noqa: E731
    return model, model.network, meta, prepare


def check_images(data_root: Path, count: int = 8) -> list[Path]:
    """``count`` real images spread evenly over the ISIC 2018, PH2 and HAM10000 copies under ``data_root``
    (the export check's default); empty if none is there."""
    from dermoseg.io import find_images
    folders = [data_root / "isic2018_task1" / "ISIC2018_Task1-2_Training_Input",
               data_root / "ph2" / "PH2Dataset" / "PH2 Dataset images", data_root / "ham10000" / "images"]
    picked: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            files, _ = find_images([str(folder)])
            files = [f for f in files if "_lesion" not in f.stem and "_roi" not in f.stem.lower()]
            n = -(-count // len(folders))
            picked += [files[i * len(files) // n] for i in range(n)] if files else []
    return picked[:count]


def export_model(model_path: Path, out: Path, images: Sequence[Path]):
    """``dermoseg export``: export a model file to ONNX after checking it on ``images`` (real image files).

    Returns
    -------
    :class:`dermoseg.engine.onnx_export.ExportReport`.

    Raises
    ------
    ValueError
        If fewer than 2 check images are given.
    dermoseg.io.ImageReadError, dermoseg.inference.ModelFileError, FileExistsError,
    dermoseg.engine.onnx_export.ExportCheckError
        As the steps do.
    """
    from dermoseg.engine.onnx_export import export_onnx
    from dermoseg.io import read_image
    if len(images) < 2:
        raise ValueError("the export check needs at least 2 real images (--check-images)")
    _, network, meta, prepare = load_for_export(model_path)
    batch = np.stack([prepare(read_image(p)) for p in images]).astype(np.float32)
    return export_onnx(network, meta, out, batch)
