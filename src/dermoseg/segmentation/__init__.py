"""The segmentation wing: :class:`~dermoseg.segmentation.segmenter.Segmenter` (image → probability → mask),
its training task, evaluation, the ``segment`` job and the lesion measurements (ABCD rule)."""
