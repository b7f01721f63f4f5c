"""Issue 12, item 2: the per-image quality estimate and review flag (dermoseg.segmentation.quality) on real images."""

from __future__ import annotations

import copy
import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dermoseg.cli import main
from dermoseg.data.splits import ISIC_SPLIT, read_split, select
from dermoseg.engine import TorchRunner
from dermoseg.errors import ModelFileError
from dermoseg.io import file_sha256, read_image, read_mask
from dermoseg.metrics import image_metrics
from dermoseg.segmentation import quality as Q
from dermoseg.segmentation.segmenter import Segmenter


@pytest.fixture(scope="module")
def shipped():
    model = Segmenter.load()
    assert model.quality is not None, "the shipped model has no quality sidecar (dermoseg fit-quality --model default)"
    return model


@pytest.fixture(scope="module")
def images(isic_samples, ph2_samples):
    """Three real images with their truths: two of the ISIC validation split, one PH2."""
    picked = select(isic_samples, read_split(ISIC_SPLIT), "val")[:2] + ph2_samples[:1]
    return [(s.image_id, read_image(s.image_path), read_mask(s.mask_path, 0)) for s in picked]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_quality_is_in_0_1_and_review_follows_the_stored_threshold(shipped, images):
    for _, image, _ in images:
        seg = shipped.segment(image)
        assert 0.0 <= seg.quality <= 1.0
        assert seg.review == (seg.quality <= shipped.quality.review_threshold)
    no_tta = shipped.segment(images[0][1], tta=False)  # one pass: no disagreement to measure
    assert no_tta.quality is None and no_tta.review is None


def test_a_clearly_wrong_model_and_corrupted_probabilities_score_lower(shipped, images):
    """Hand-made cases on real images: the shipped model's mask (real Jaccard high) must score higher than the
    mask of a clearly wrong model (the shipped network with every convolution weight scaled by 1 + 0.4·N(0, 1),
    seeded), and quality must fall as blob-like noise, independent per pass, corrupts the passes' logits."""
    network = copy.deepcopy(Segmenter.load(engine="torch").network)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in network.parameters():
            if weight.dim() == 4:
                weight.mul_(1 + 0.4 * torch.randn(weight.shape, generator=generator))
    wrong = Segmenter(TorchRunner(network.eval()), shipped.image_size, {}, shipped.path, tta=True,
                      quality=shipped.quality)
    rng = np.random.default_rng(0)
    for image_id, image, truth in images:
        right = shipped.segment(image)
        assert image_metrics(right.mask, truth)["jaccard"] > 0.7, image_id
        bad = wrong.segment(image)
        assert image_metrics(bad.mask, truth)["jaccard"] < 0.6, image_id
        assert bad.quality < right.quality - 0.2, (image_id, bad.quality, right.quality)
        passes = shipped.pass_logits(shipped.prepare(image))
        noise = np.stack([_blobs(n) for n in rng.normal(size=passes.shape).astype(np.float32)])
        scores = [shipped.quality.predict(Q.signals(passes + a * noise, image)) for a in (0.0, 2.0, 6.0)]
        assert scores[0] > scores[1] > scores[2], (image_id, scores)


def test_an_empty_mask_is_flagged_for_review_with_quality_0(shipped, images):
    """Every image of the task holds a lesion, so an empty mask is wrong whatever the regression says (before
    this rule it rated one near 1: two empty flip passes agree perfectly). Both ways a mask comes out empty: the
    passes find no lesion, or every pixel the passes saw is excluded as fully transparent."""
    _, image, _ = images[0]
    passes = shipped.pass_logits(shipped.prepare(image))
    found = shipped.segmentation(image, passes)
    assert found.mask.any() and found.quality > 0.5 and not found.review
    nothing = shipped.segmentation(image, np.full_like(passes, -10.0))  # confident background everywhere
    assert not nothing.mask.any() and nothing.quality == 0.0 and nothing.review is True
    hidden = shipped.segmentation(image, passes, exclude=np.ones(image.shape[:2], bool))
    assert not hidden.mask.any() and hidden.quality == 0.0 and hidden.review is True
    rows = [Q.signals(passes, image), Q.signals(np.full_like(passes, -10.0), image)]
    assert shipped.quality.predict(rows).tolist() == [found.quality, 0.0]


def _blobs(noise: np.ndarray) -> np.ndarray:
    """Smooth (1, S, S) white noise into blobs of about 15 px, rescaled to unit standard deviation."""
    out = cv2.GaussianBlur(noise[0], (0, 0), 5.0)
    return (out / out.std())[None]


def test_results_csv_has_quality_and_review_read_from_the_sidecar(tmp_path, shipped, isic_samples):
    """The review threshold comes from the sidecar beside the model file: moving it moves every review flag."""
    model = tmp_path / "m.pt"
    shutil.copy(shipped.path, model)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for s in select(isic_samples, read_split(ISIC_SPLIT), "val")[:2]:
        shutil.copy(s.image_path, inputs)

    def run(threshold):
        sidecar = shipped.quality.to_json() | {"review_threshold": threshold}
        Q.sidecar_path(model).write_text(json.dumps(sidecar))
        out = tmp_path / f"out_{threshold}"
        assert main(["segment", str(inputs), "--out", str(out), "--model", str(model)]) == 0
        return _rows(out / "results.csv")

    low, high = run(0.0), run(1.0)
    roles = {m["role"]: m["sha256"] for m in json.loads((tmp_path / "out_1.0" / "run.json").read_text())["models"]}
    assert roles["quality"] == file_sha256(Q.sidecar_path(model))  # run.json names the sidecar behind the flags
    assert [r["review"] for r in low] == ["False", "False"] and [r["review"] for r in high] == ["True", "True"]
    assert [r["quality"] for r in low] == [r["quality"] for r in high]
    assert all(0.0 <= float(r["quality"]) <= 1.0 for r in low)
    no_tta = tmp_path / "no_tta"
    assert main(["segment", str(inputs), "--out", str(no_tta), "--model", str(model), "--no-tta"]) == 0
    assert all(r["quality"] == "" and r["review"] == "" for r in _rows(no_tta / "results.csv"))


def test_a_sidecar_for_another_model_file_is_refused(tmp_path, shipped):
    model = tmp_path / "m.pt"
    shutil.copy(shipped.path, model)
    assert Segmenter.load(model).quality is None  # no sidecar: no quality
    Q.sidecar_path(model).write_text(json.dumps(shipped.quality.to_json() | {"model_sha256": "0" * 64}))
    with pytest.raises(ModelFileError, match="fit-quality"):
        Segmenter.load(model)
    Q.sidecar_path(model).write_text("{not json")
    with pytest.raises(ModelFileError, match="not a valid quality sidecar"):
        Segmenter.load(model)
    with pytest.raises(ModelFileError, match="not a dermoseg quality sidecar"):
        shipped.quality.save(model)  # a file that is not ours is never replaced


def test_fit_and_evaluate_reproduce_the_committed_sidecar_and_figures_from_the_cached_signals(tmp_path, shipped):
    """fit-quality and evaluate-quality on a copy of the shipped model, with the committed per-image signals as
    cache (docs/results/quality; no network run), give the committed sidecar and summary; the threshold flags 10%
    of the validation split."""
    committed = Path(__file__).resolve().parents[1] / "docs" / "results" / "quality"
    cache = tmp_path / "cache"
    cache.mkdir()
    for f in committed.glob("*_signals.*"):
        shutil.copy(f, cache)
    tables = sorted(cache.glob("*_signals.csv"))
    stamps = [f.stat().st_mtime_ns for f in tables]
    model = tmp_path / "m.pt"
    shutil.copy(shipped.path, model)
    assert main(["fit-quality", "--model", str(model), "--cache", str(cache)]) == 0
    fitted = Segmenter.load(model).quality
    np.testing.assert_allclose(fitted.coef, shipped.quality.coef, rtol=1e-9, atol=1e-12)
    assert fitted.review_threshold == pytest.approx(shipped.quality.review_threshold, abs=1e-12)
    val = [{k: (v if k == "image_id" else float(v)) for k, v in r.items()} for r in _rows(cache / "isic2018_val_signals.csv")]
    assert abs((fitted.predict(val) <= fitted.review_threshold).mean() - 0.10) <= 1 / len(val)
    assert main(["evaluate-quality", "--model", str(model), "--cache", str(cache)]) == 0
    ours, theirs = (json.loads((d / "summary.json").read_text()) for d in (cache, committed))
    assert ours["sets"] == theirs["sets"] and ours["variants"] == theirs["variants"]
    assert [f.stat().st_mtime_ns for f in tables] == stamps  # the cached signals were reused, not recomputed


def test_detection_figures_hand_computed():
    # 10 images, failures (Jaccard < 0.65) at ids 0 and 5; 10% flagged = the single lowest score (id 0)
    jaccard = np.array([0.1, 0.9, 0.8, 0.7, 0.95, 0.5, 0.85, 0.9, 0.75, 0.99])
    score = np.array([0.2, 0.9, 0.8, 0.7, 0.95, 0.85, 0.6, 0.91, 0.75, 0.99])
    f = Q.detection_figures(score, jaccard, review_threshold=0.7)
    assert f["failures"] == 2 and f["flagged"] == 1 and f["caught_at_flagged"] == 0.5
    # failures scored 0.2 and 0.85; 8 non-failures, of which 0.9, 0.95, 0.91, 0.99 score above 0.85: AUROC of -score
    # = P(failure scored lower) = (8 + 4) / 16
    assert f["auroc"] == pytest.approx(12 / 16)
    assert f["flagged_at_threshold"] == pytest.approx(0.3) and f["caught_at_threshold"] == 0.5


@pytest.mark.parametrize("command", ["fit-quality", "evaluate-quality"])
def test_quality_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0 and "--model" in capsys.readouterr().out


def test_serve_answers_carry_the_same_quality_as_the_cli(shipped, images):
    from dermoseg.serve.pipeline import Pipeline
    _, image, _ = images[0]
    result = Pipeline().segment(image, "a.jpg")
    seg = shipped.segment(image)
    assert result.quality["quality"] == pytest.approx(seg.quality) and result.quality["review"] == seg.review
    assert float(result.row["quality"]) == pytest.approx(seg.quality)
    assert Pipeline().segment(image, "a.jpg", tta=False).quality is None
