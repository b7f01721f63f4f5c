"""Export a network to ONNX with the metadata inference needs, and refuse to write a file that disagrees.

The network is exported with PyTorch's ONNX exporter (``torch.onnx.export(dynamo=True)``, opset 18) with a
dynamic batch dimension; the spatial size is fixed at the model's input size (every dermoseg model resizes its
input to one square size). Before anything is written, ONNX Runtime runs the exported graph on real images
already prepared by the model's own preprocessing, once as one batch and once image by image, and compares the
probabilities (sigmoid for segmentation, temperature softmax for classification) with PyTorch's: a largest
difference over ``tolerance`` (default 1e-3, issue #14's parity bar) is an :class:`ExportCheckError` and no file
is written. The file is then written atomically (:func:`dermoseg.io.write_bytes`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dermoseg.engine.ort_runner import (
    INPUT_NAME,
    OUTPUT_NAME,
    OrtRunner,
    encode_metadata,
)
from dermoseg.errors import DermosegError
from dermoseg.io import write_bytes

TOLERANCE = 1e-3   # largest probability difference accepted between ONNX Runtime and PyTorch
OPSET = 18
FLOAT16_MIN_SIZE = 256  # smallest initializer (values) stored as float16 when all its values are float16 numbers


class ExportCheckError(DermosegError, RuntimeError):
    """The exported graph disagrees with PyTorch on the check images; nothing was written."""


@dataclass
class ExportReport:
    """What an export wrote and how close ONNX Runtime came to PyTorch on the check images."""

    path: Path
    images: int
    max_prob_diff: float
    size_bytes: int


def probabilities(logits: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Logits → probabilities as the model's task defines them: sigmoid for ``task`` "segmentation",
    softmax(logits / ``temperature``) over the last axis for "classification". float64 in [0, 1]."""
    from scipy.special import expit

    from dermoseg.classification.calibration import probabilities as calibrated
    z = np.asarray(logits, dtype=np.float64)
    return expit(z) if meta["task"] == "segmentation" else calibrated(z, float(meta.get("temperature", 1.0)))


def onnx_bytes(network, input_size: tuple[int, int, int], meta: dict[str, Any]) -> bytes:
    """Serialised ONNX model of ``network`` for ``(N, *input_size)`` float32 inputs, dynamic N, with ``meta``
    stored as metadata (:func:`dermoseg.engine.ort_runner.encode_metadata`). The exporter's progress messages
    and warnings are silenced."""
    import onnx
    import torch
    network = network.eval().float().to(memory_format=torch.contiguous_format)
    example = torch.zeros(2, *input_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet("torch.onnx"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(network, (example,), dynamo=True, opset_version=OPSET, verbose=False,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: batch},), optimize=True)
    proto = program.model_proto
    store_float16_initializers(proto)
    onnx.helper.set_model_props(proto, encode_metadata(meta))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def store_float16_initializers(proto, min_size: int = FLOAT16_MIN_SIZE) -> int:
    """Store, in place, each float32 initializer of ``proto``'s main graph whose every value is a float16 number
    (as in a ``dermoseg combine-segmenters --half`` file, whose batch norm is folded before rounding) as float16,
    followed by a ``Cast`` back to float32 under its old name.

    Parameters
    ----------
    proto : an ``onnx.ModelProto``; only its main graph's initializers are changed (a subgraph that reads one
        still finds it, now as the Cast's output, in the outer scope).
    min_size : initializers with fewer values than this are left as they are (≥ 1).

    Returns
    -------
    The number of initializers converted (int ≥ 0; 0 for an ordinary float32 network, whose weights are not
    float16 numbers). The graph computes exactly what it did (the cast is exact), in float32; ONNX Runtime's
    constant folding evaluates the casts once when a session is created, so inference speed is unchanged, while
    the file shrinks by 2 bytes per such value. An initializer that is also a graph input (older IR versions)
    is left as it is, as is one whose new names (``<name>__float16``, the node ``<name>__to_float32``) are taken.
    """
    import onnx
    from onnx import numpy_helper
    graph = proto.graph
    taken = ({i.name for i in graph.input} | {t.name for t in graph.initializer} | {n.name for n in graph.node}
             | {o for n in graph.node for o in n.output})
    inputs = {i.name for i in graph.input}
    casts = []
    for init in graph.initializer:
        name = init.name
        if (init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_size or name in inputs
                or f"{name}__float16" in taken or f"{name}__to_float32" in taken):
            continue
        values = numpy_helper.to_array(init)
        half = values.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), values, equal_nan=True):
            continue
        init.CopyFrom(numpy_helper.from_array(half, f"{name}__float16"))
        casts.append(onnx.helper.make_node("Cast", [init.name], [name], to=onnx.TensorProto.FLOAT,
                                           name=f"{name}__to_float32"))
    for i, node in enumerate(casts):
        graph.node.insert(i, node)
    return len(casts)


@contextlib.contextmanager
def _quiet(logger_name: str):
    log = logging.getLogger(logger_name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def export_onnx(network, meta: dict[str, Any], out: str | Path, check_batch: np.ndarray,
                tolerance: float = TOLERANCE) -> ExportReport:
    """Export ``network`` to ``out`` after checking ONNX Runtime against PyTorch.

    Parameters
    ----------
    network : a ``torch.nn.Module`` mapping (N, C, H, W) float32 to logits.
    meta : metadata to record; must hold ``task`` ("segmentation" | "classification") and ``input_size``
        [C, H, W] (:func:`export_metadata` gives all a loaded model's).
    out : the ``.onnx`` file to write; an existing file is never overwritten.
    check_batch : (N, C, H, W) float32 real images prepared by the model's preprocessing, N ≥ 2.
    tolerance : largest accepted probability difference.

    Returns
    -------
    An :class:`ExportReport`.

    Raises
    ------
    FileExistsError
        If ``out`` exists.
    ValueError
        If ``check_batch`` has the wrong shape or fewer than 2 images.
    ExportCheckError
        If ONNX Runtime's probabilities differ from PyTorch's by more than ``tolerance`` on any image, as a
        batch or one by one.
    """
    import torch
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: exists; choose another --out (an existing file is never overwritten)")
    size = tuple(int(v) for v in meta["input_size"])
    if check_batch.ndim != 4 or tuple(check_batch.shape[1:]) != size or len(check_batch) < 2:
        raise ValueError(f"check images must be (N >= 2, {', '.join(map(str, size))}), got {check_batch.shape}")
    data = onnx_bytes(network, size, meta)
    runner = OrtRunner(data, threads=None, path=out)
    with torch.inference_mode():
        reference = probabilities(network(torch.from_numpy(check_batch)).numpy(), meta)
    batched = probabilities(runner(check_batch), meta)
    single = np.concatenate([probabilities(runner(check_batch[i:i + 1]), meta) for i in range(len(check_batch))])
    diff = float(max(np.abs(batched - reference).max(), np.abs(single - reference).max()))
    if not diff <= tolerance:
        raise ExportCheckError(f"{out}: ONNX Runtime differs from PyTorch by {diff:.2e} in probability on the "
                               f"{len(check_batch)} check images (tolerance {tolerance:g}); nothing written")
    write_bytes(out, data)
    return ExportReport(out, len(check_batch), diff, len(data))


def export_metadata(model) -> tuple[dict[str, Any], Callable[[np.ndarray], np.ndarray]]:
    """What the ONNX file of a loaded model records, and the model's own preprocessing for the check images.

    Parameters
    ----------
    model : a :class:`dermoseg.segmentation.segmenter.Segmenter` or
        :class:`dermoseg.classification.classifier.Classifier`.

    Returns
    -------
    ``(meta, prepare)``: ``meta`` holds task, input size [C, H, W], normalisation (mean and std of RGB in
    [0, 1]: ImageNet's for segmentation, the classifier's own ``normalisation``), TTA default, class names, the
    default threshold (segmentation) or the temperature (classification), the source file's name and sha256 and
    its model card's name (``X.md`` beside ``X.pt``, or None), and the image preparation the network expects before the normalisation: the cleaning settings
    (``preprocess``, segmentation) or the Shades of Gray norm (``shades_of_gray_p``, classification; None = none); ``prepare(image (H, W, 3) uint8) -> (C, S, S) float32`` is the model's preprocessing.

    Raises
    ------
    ValueError
        For a classifier that takes the lesion mask (its input needs a segmentation first).
    """
    from dermoseg.classification import HAM_CLASSES
    from dermoseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from dermoseg.segmentation.segmenter import THRESHOLD, Segmenter
    card = model.path.with_suffix(".md")
    meta: dict[str, Any] = {"input_size": [3, model.image_size, model.image_size], "mean": IMAGENET_MEAN.tolist(),
                            "std": IMAGENET_STD.tolist(), "tta": bool(model.tta), "source_file": model.path.name,
                            "source_sha256": model.sha256, "model_card": card.name if card.is_file() else None}
    if isinstance(model, Segmenter):
        meta.update(task="segmentation", threshold=THRESHOLD, class_names=["background", "lesion"],
                    preprocess=dict(model.preprocess))
        return meta, lambda image: model.prepare(image)[0]
    if model.uses_mask:
        raise ValueError(f"{model.path}: a classifier that takes the lesion mask (mask_mode '{model.mask_mode}') "
                         "cannot be exported yet")
    meta.update(task="classification", temperature=float(model.temperature), class_names=list(HAM_CLASSES),
                shades_of_gray_p=model.shades_of_gray_p, mean=[float(v) for v in model.normalisation[0]],
                std=[float(v) for v in model.normalisation[1]])
    return meta, model.prepare


def check_images(data_root: Path, count: int = 8) -> list[Path]:
    """``count`` real images spread evenly over the ISIC 2018, PH2 and HAM10000 copies under ``data_root`` (the
    export check's default); empty if none is there."""
    from dermoseg.inputs import scan_inputs
    folders = [data_root / "isic2018_task1" / "ISIC2018_Task1-2_Training_Input",
               data_root / "ph2" / "PH2Dataset" / "PH2 Dataset images", data_root / "ham10000" / "images"]
    per_folder = -(-count // len(folders))
    picked: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            files = scan_inputs([str(folder)]).files  # ground-truth masks beside the images are left out
            picked += [files[i * len(files) // per_folder] for i in range(per_folder)] if files else []
    return picked[:count]


def export_model(model: str | Path | None, out: str | Path, images: list[Path]) -> ExportReport:
    """``dermoseg export``: export a model file to ONNX after checking it on real images.

    Parameters
    ----------
    model : a ``--model`` value: a path, "default", "fast" (segmentation presets) or "classifier"
        (:func:`dermoseg.modelfile.kind_of`).
    out : the ``.onnx`` file to write (never overwritten).
    images : real image files for the check (≥ 2), prepared by the model's own preprocessing.

    Returns
    -------
    An :class:`ExportReport`.

    Raises
    ------
    ValueError
        If fewer than 2 check images are given, or for a mask-using classifier.
    dermoseg.errors.ModelFileError, dermoseg.errors.ImageReadError, FileExistsError, ExportCheckError
        As :func:`dermoseg.modelfile.read`, :func:`dermoseg.io.read_image` and :func:`export_onnx` raise them.
    """
    from dermoseg import modelfile
    from dermoseg.io import read_image
    if len(images) < 2:
        raise ValueError("the export check needs at least 2 real images")
    if modelfile.kind_of(model) == "classifier":
        from dermoseg.classification.classifier import Classifier
        loaded = Classifier.load(None if str(model) == "classifier" else model, engine="torch")
    else:
        from dermoseg.segmentation.segmenter import Segmenter
        loaded = Segmenter.load(model, engine="torch", quality=False)  # a stale quality sidecar: no block
    meta, prepare = export_metadata(loaded)
    batch = np.stack([prepare(read_image(p)) for p in images]).astype(np.float32)
    return export_onnx(loaded.network, meta, out, batch)
