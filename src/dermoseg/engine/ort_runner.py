"""ONNX Runtime as the network call of the shipped models: a runner reading an exported file and its metadata.

A runner is the one seam between a loaded model (which owns pre- and post-processing) and the network:
``runner(batch)`` takes a ``(N, 3, h, w) float32`` normalised batch and returns ``float32`` logits,
``(N, 1, h, w)`` for segmentation and ``(N, K)`` for classification. :class:`OrtRunner` does it with an ONNX
file written by :func:`dermoseg.engine.onnx_export.export_onnx` (ONNX Runtime's CPU execution provider;
https://onnxruntime.ai/docs/performance/tune-performance/threading.html for the thread settings).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dermoseg.engine.threads import inference_threads
from dermoseg.errors import DermosegError

FORMAT = "dermoseg-onnx-1"  # metadata tag of an exported file
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class OnnxFileError(DermosegError, RuntimeError):
    """An ONNX file is missing, unreadable, not a dermoseg export, or not exported from the given model file."""


def session_options(threads: int | None = None):
    """ONNX Runtime session options for a shared CPU: ``threads`` intra-op threads (default
    :func:`dermoseg.engine.threads.inference_threads`), one inter-op thread (sequential execution), and workers
    that sleep instead of spinning while they wait (``session.intra_op.allow_spinning`` = 0)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = inference_threads(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only
    return so


def encode_metadata(meta: dict[str, Any]) -> dict[str, str]:
    """Metadata values as ONNX ``metadata_props`` strings (JSON), with the format tag added."""
    return {"format": FORMAT, **{k: json.dumps(v) for k, v in meta.items()}}


def decode_metadata(props: dict[str, str], path: Path) -> dict[str, Any]:
    """Inverse of :func:`encode_metadata`; raises :class:`OnnxFileError` naming ``path`` if the tag is absent.
    Entries other tools added (e.g. ONNX Runtime's quantiser) that are not JSON are kept as strings."""
    if props.get("format") != FORMAT:
        raise OnnxFileError(f"{path}: not a dermoseg ONNX export (no '{FORMAT}' metadata tag)")
    meta: dict[str, Any] = {}
    for key, value in props.items():
        if key != "format":
            try:
                meta[key] = json.loads(value)
            except json.JSONDecodeError:
                meta[key] = value
    return meta


class OrtRunner:
    """ONNX Runtime session over an exported dermoseg network.

    Parameters
    ----------
    model : path of the ``.onnx`` file, or its serialised bytes (``path`` then only names it in messages).
    threads : intra-op threads (None: the CPUs available to the process, :func:`inference_threads`).
    path : the file's name for messages when ``model`` is bytes.

    Attributes
    ----------
    metadata : what the export recorded (``task``, ``input_size`` [C, H, W], ``mean``, ``std``, ``threshold``,
        ``tta``, ``class_names``, ``temperature``, ``source_sha256``, ``source_file``, ``model_card``).

    Raises
    ------
    OnnxFileError
        If the file is missing, not loadable by ONNX Runtime, or carries no dermoseg metadata.
    """

    engine = "onnx"

    def __init__(self, model: str | Path | bytes, threads: int | None = None, path: str | Path | None = None):
        import onnxruntime as ort
        self.path = Path(path if path is not None else model if not isinstance(model, bytes) else "<memory>")
        if not isinstance(model, bytes) and not self.path.is_file():
            raise OnnxFileError(f"{self.path}: ONNX file not found")
        try:
            self.session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                                session_options(threads), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/… kinds
            raise OnnxFileError(f"{self.path}: not a loadable ONNX file ({type(exc).__name__}: {exc})") from None
        self.metadata = decode_metadata(dict(self.session.get_modelmeta().custom_metadata_map), self.path)
        self.threads = self.session.get_session_options().intra_op_num_threads

    @property
    def network(self):
        """Raises AttributeError: an ONNX Runtime session has no PyTorch network (load the model with
        ``engine="torch"`` for one)."""
        raise AttributeError(f"{self.path}: runs on ONNX Runtime, which has no PyTorch network; load the model with "
                             "engine='torch'")

    def check_source(self, sha256: str,
                     advice: str = "remove it and export again (dermoseg export never overwrites a file), or use "
                                   "--engine torch") -> None:
        """Raise :class:`OnnxFileError` unless this file was exported from the model file with this sha256; the
        message ends with ``advice`` (what the calling command lets the user do about it)."""
        recorded = self.metadata.get("source_sha256")
        if recorded != sha256:
            raise OnnxFileError(f"{self.path}: exported from a model file with sha256 {str(recorded)[:12]}…, not "
                                f"{sha256[:12]}…; {advice}")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, h, w) float32 normalised batch → float32 logits ((N, 1, h, w) or (N, K))."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})[0]
