"""The PyTorch runner: a network in eval mode on CPU, called on numpy batches (see :mod:`dermoseg.engine`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dermoseg.engine.threads import configure_torch


class TorchRunner:
    """Call a PyTorch network on numpy batches.

    Parameters
    ----------
    network : the module; it is put in eval mode with channels-last weights (about twice as fast on CPU for
        these depthwise-separable networks).
    threads : PyTorch intra-op threads (:func:`dermoseg.engine.threads.configure_torch`), or None to leave
        PyTorch's setting as it is (training sets its own). PyTorch has one process-wide pool, so the last runner
        made with a thread count sets it for all.

    Notes
    -----
    ``runner(batch)``: ``(N, C, h, w)`` float32 numpy → ``(N, K, h, w)`` or ``(N, K)`` float32 numpy logits,
    under ``torch.inference_mode``.
    """

    engine = "torch"

    def __init__(self, network: nn.Module, threads: int | None = None):
        if threads is not None:
            configure_torch(threads)
        self.threads = torch.get_num_threads()
        self.network = network.eval().to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        return self.network(x.contiguous(memory_format=torch.channels_last)).numpy()
