"""Diagnosis: lesion class from a dermoscopic image (paper title, §2 and §5; ISIC 2018 Task 3).

The classification wing: :class:`~dermoseg.classification.classifier.Classifier` (image → calibrated
probabilities), its training task (:mod:`.task`), evaluation (:mod:`.evaluate`), the ``diagnose`` job (:mod:`.job`)
and temperature scaling (:mod:`.calibration`).

The classifier maps an image (optionally with its lesion mask from the segmentation model) to probabilities
over the seven ISIC 2018 Task 3 classes (:data:`dermoseg.data.datasets.HAM_CLASSES`, in the challenge's column
order MEL, NV, BCC, AKIEC, BKL, DF, VASC), calibrated by temperature scaling (Guo et al. 2017).

Research tool, not a medical device: no output of this package is a diagnosis of a patient.
"""

from dermoseg.data.datasets import HAM_CLASSES

DISCLAIMER = ("Research tool, not a medical device: these class probabilities are the output of a model trained on "
              "HAM10000 images and are not a diagnosis. Do not use them for clinical decisions.")

__all__ = ["HAM_CLASSES", "DISCLAIMER"]
