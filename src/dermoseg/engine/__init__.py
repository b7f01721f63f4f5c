"""Runners: the one seam through which a loaded model calls its network, and the choice between them.

A runner is a callable ``runner(batch) -> logits`` taking a numpy ``(N, C, h, w)`` float32 normalised batch and
returning numpy float32 logits, ``(N, K, h, w)`` for segmentation or ``(N, K)`` for classification.
:class:`dermoseg.segmentation.segmenter.Segmenter` and :class:`dermoseg.classification.classifier.Classifier`
own the pre- and post-processing around it, so another runtime only has to provide this callable.

Two runners exist (issue #14): :class:`dermoseg.engine.ort_runner.OrtRunner` (ONNX Runtime, the default) and
:class:`TorchRunner` (eager PyTorch). :func:`make_runner` chooses between them; the ONNX file of a model file
``X.pt`` is ``X.onnx`` beside it, written by ``dermoseg export`` and accepted only if the source sha256 it
records is the model file's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

ENGINES = ("onnx", "torch")

__all__ = ["ENGINES", "TorchRunner", "make_runner", "onnx_path_for"]


def __getattr__(name: str):
    """``TorchRunner`` is imported on first use, so that importing this package (the CLI does, for
    :data:`ENGINES`) does not import torch."""
    if name == "TorchRunner":
        from dermoseg.engine.torch_runner import TorchRunner
        return TorchRunner
    raise AttributeError(f"module 'dermoseg.engine' has no attribute '{name}'")


def onnx_path_for(model_path: str | Path) -> Path:
    """Where the ONNX export of a model file lives: ``X.onnx`` beside ``X.pt``."""
    return Path(model_path).with_suffix(".onnx")


def stale_export(model_path: str | Path, advice: str) -> str | None:
    """Why the ONNX export beside ``model_path`` (:func:`onnx_path_for`) cannot run it — exported from another
    file, or not loadable — as a message ending with ``advice``; None when it is that file's export or there is
    none (PyTorch runs then)."""
    from dermoseg.engine.ort_runner import OnnxFileError, OrtRunner
    from dermoseg.io import file_sha256
    onnx_file = onnx_path_for(model_path)
    if not onnx_file.is_file():
        return None
    try:
        OrtRunner(onnx_file, threads=1).check_source(file_sha256(model_path), advice)
    except OnnxFileError as exc:
        return str(exc)
    return None


def make_runner(build_network: Callable[[], object], model_path: str | Path, engine: str | None = None,
                threads: int | None = None):
    """The runner of a model file.

    Parameters
    ----------
    build_network : ``() -> torch.nn.Module`` with the file's weights loaded (called for the torch engine only).
    model_path : the ``.pt`` file; its ONNX export is :func:`onnx_path_for`.
    engine : "onnx", "torch", or None: ONNX Runtime when an ONNX export lies beside the file, otherwise PyTorch
        with a note on stderr (a model trained here has no export until ``dermoseg export`` writes one).
    threads : compute threads (None: the CPUs available to the process,
        :func:`dermoseg.engine.threads.inference_threads`).

    Returns
    -------
    An :class:`~dermoseg.engine.ort_runner.OrtRunner` or a :class:`TorchRunner`.

    Raises
    ------
    ValueError
        For an unknown engine.
    dermoseg.engine.ort_runner.OnnxFileError
        If ONNX Runtime is to be used and the ONNX file is missing (``engine="onnx"``), unreadable, or exported
        from another model file (its recorded sha256 differs from the ``.pt`` file's).
    """
    from dermoseg.engine.ort_runner import OrtRunner
    from dermoseg.engine.threads import inference_threads
    from dermoseg.engine.torch_runner import TorchRunner
    from dermoseg.io import file_sha256
    if engine not in (None, *ENGINES):
        raise ValueError(f"unknown engine '{engine}' (choose from {', '.join(ENGINES)})")
    onnx_file = onnx_path_for(model_path)
    threads = inference_threads(threads)
    if engine == "torch":
        return TorchRunner(build_network(), threads)
    if engine is None and not onnx_file.is_file():
        print(f"note: {Path(model_path).name} has no ONNX export ({onnx_file.name}); running it on PyTorch "
              f"('dermoseg export --model {model_path} --out {onnx_file} --check-images IMAGE IMAGE...' makes it "
              "faster)", file=sys.stderr)
        return TorchRunner(build_network(), threads)
    runner = OrtRunner(onnx_file, threads)
    runner.check_source(file_sha256(model_path))
    return runner
