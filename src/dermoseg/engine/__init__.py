"""Runners: the one seam through which a loaded model calls its network.

A runner is a callable ``runner(batch) -> logits`` taking a numpy ``(N, C, h, w)`` float32 normalised batch and
returning numpy float32 logits, ``(N, K, h, w)`` for segmentation or ``(N, K)`` for classification.
:class:`dermoseg.segmentation.segmenter.Segmenter` and :class:`dermoseg.classification.classifier.Classifier`
own the pre- and post-processing around it, so another runtime only has to provide this callable.
"""

from dermoseg.engine.torch_runner import TorchRunner

__all__ = ["TorchRunner"]
