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
from typing import Any

import numpy as np

from dermoseg.engine.ort_runner import INPUT_NAME, OUTPUT_NAME, OrtRunner, encode_metadata
from dermoseg.errors import DermosegError
from dermoseg.io import write_bytes

TOLERANCE = 1e-3   # largest probability difference accepted between ONNX Runtime and PyTorch
OPSET = 18


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
    z = np.asarray(logits, dtype=np.float64)
    if meta["task"] == "segmentation":
        return 1.0 / (1.0 + np.exp(-z))
    z = z / float(meta.get("temperature", 1.0))
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


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
    onnx.helper.set_model_props(proto, encode_metadata(meta))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


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
        [C, H, W]; the CLI adds normalisation, threshold, TTA, class names, temperature, source sha256 and model
        card (:func:`dermoseg.engine.model_metadata`).
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
