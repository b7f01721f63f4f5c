"""ONNX Runtime (the default engine) and eager PyTorch give the same results through the one loading path
(issue #14): on 20 real ISIC and PH2 images the largest lesion-probability difference is ≤ 1e-3 and at most
0.1% of each mask's pixels differ, for the default and the fast segmenter; the classifier's calibrated probabilities agree to 1e-3 on real HAM10000
images. The batch job's pipeline gives exactly the one-image path's masks, in input order."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from dermoseg.classification.classifier import Classifier
from dermoseg.data.splits import ISIC_SPLIT, read_split, select
from dermoseg.io import read_image, read_mask
from dermoseg.segmentation.job import segment_files
from dermoseg.segmentation.segmenter import Segmenter

MAX_PROB_DIFF = 1e-3
MAX_MASK_DIFF = 0.001  # fraction of a mask's pixels


@pytest.fixture(scope="module")
def segmenters():
    return {e: Segmenter.load(engine=e, threads=1) for e in ("onnx", "torch")}


@pytest.fixture(scope="module")
def parity_images(isic_samples, ph2_samples):
    return select(isic_samples, read_split(ISIC_SPLIT), "val")[:10] + ph2_samples[:10]


def test_default_engine_is_onnx_runtime_with_the_shipped_models(segmenters):
    assert Segmenter.load().runner.engine == "onnx"
    assert Classifier.load().runner.engine == "onnx"
    assert segmenters["torch"].runner.engine == "torch"
    assert segmenters["torch"].network is segmenters["torch"].runner.network
    with pytest.raises(AttributeError, match="engine='torch'"):
        segmenters["onnx"].network


@pytest.mark.parametrize("name", ["default", "fast"])
def test_segmentation_engines_agree_on_20_real_images(name, parity_images):
    models = {e: Segmenter.load(name, engine=e, threads=1) for e in ("onnx", "torch")}
    worst_prob, worst_mask = 0.0, 0.0
    for s in parity_images:
        image = read_image(s.image_path)
        a, b = (models[e].segment(image) for e in ("onnx", "torch"))
        worst_prob = max(worst_prob, float(np.abs(a.probability - b.probability).max()))
        worst_mask = max(worst_mask, float((a.mask != b.mask).mean()))
        assert a.mask.shape == image.shape[:2] and a.mask.any()
    assert worst_prob <= MAX_PROB_DIFF, worst_prob
    assert worst_mask <= MAX_MASK_DIFF, worst_mask


def test_classifier_engines_agree_on_real_images(data_root):
    from dermoseg.data.datasets import load_ham10000
    images = [read_image(s.image_path) for s in load_ham10000(data_root / "ham10000")[:6]]
    a, b = (Classifier.load(engine=e, threads=1).predict_batch(images) for e in ("onnx", "torch"))
    assert np.abs(a - b).max() <= MAX_PROB_DIFF


def test_batch_job_gives_the_one_image_masks_in_input_order(tmp_path, segmenters, parity_images):
    inputs = tmp_path / "in"
    inputs.mkdir()
    chosen = parity_images[::4]
    for s in chosen:
        shutil.copy(s.image_path, inputs)
    (inputs / "broken.jpg").write_bytes(b"not an image")
    model = segmenters["onnx"]
    report = segment_files([str(inputs)], tmp_path / "out", model, progress=False)
    assert [f for f, _ in report.failures] == [str(inputs / "broken.jpg")]
    ids = [r["image_id"] for r in report.rows]
    assert ids == sorted(s.image_id for s in chosen)
    for s in chosen:
        expected = model.segment(read_image(s.image_path)).mask
        assert np.array_equal(read_mask(tmp_path / "out" / f"{s.image_id}_segmentation.png"), expected)
