"""Diagnosis (issue 5): the HAM10000 split, the shipped classifier end to end on real images, agreement with the
official ISIC 2018 Task 3 scorer, calibration and metrics on hand-worked cases, training plumbing, bad inputs."""

from __future__ import annotations

import collections
import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dermoseg import metrics as cm
from dermoseg import modelfile
from dermoseg.classification import calibration
from dermoseg.classification.classifier import Classifier, crop_to_mask, prepare_image
from dermoseg.classification.evaluate import truth_csv
from dermoseg.classification.job import predictions_csv
from dermoseg.cli import main
from dermoseg.data.datasets import HAM_CLASSES, load_ham10000
from dermoseg.data.splits import HAM_SPLIT, make_grouped_stratified_split, read_split, select

REPO = Path(__file__).resolve().parents[1]
SCORER = Path(sys.executable).parent / "isic-challenge-scoring"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The suite is meant to run beside a training job on a 2-core machine: one thread avoids oversubscription.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ham(data_root):
    return load_ham10000(data_root / "ham10000")


@pytest.fixture(scope="module")
def val_few(ham):
    """Three validation images of each class (21), so that every class is present."""
    val = select(ham, read_split(HAM_SPLIT), "val")
    by_class = collections.defaultdict(list)
    for s in val:
        by_class[s.label].append(s)
    return [s for k in range(len(HAM_CLASSES)) for s in by_class[k][:3]]


# ------------------------------------------------------------------------------------------------ split
def test_committed_split_groups_lesions_and_keeps_class_shares(ham):
    split = read_split(HAM_SPLIT)
    assert set(split) == {s.image_id for s in ham}
    sides = collections.defaultdict(set)
    for s in ham:
        sides[s.lesion_id].add(split[s.image_id])
    assert all(len(v) == 1 for v in sides.values()), "a lesion has images on both sides of the split"
    val_share = np.mean([split[s.image_id] == "val" for s in ham])
    assert 0.13 <= val_share <= 0.17
    for k, c in enumerate(HAM_CLASSES):
        members = [s for s in ham if s.label == k]
        share = np.mean([split[s.image_id] == "val" for s in members])
        assert abs(share - 0.15) <= 0.03, f"{c}: {share:.3f} of its images in validation"
    # the committed file is what the documented call produces (seed 2018, 15%)
    again = make_grouped_stratified_split([s.image_id for s in ham], [s.lesion_id for s in ham],
                                          [s.label for s in ham], 0.15, 2018)
    assert again == split


def test_grouped_split_never_splits_a_multi_image_lesion():
    # hand-made: 40 lesions of 1-4 images each, two classes
    ids, groups, labels = [], [], []
    for g in range(40):
        for j in range(1 + g % 4):
            ids.append(f"img{g}_{j}")
            groups.append(f"les{g}")
            labels.append(g % 2)
    split = make_grouped_stratified_split(ids, groups, labels, 0.25, seed=7)
    for g in set(groups):
        assert len({split[i] for i, gg in zip(ids, groups) if gg == g}) == 1
    val_lesions = {g for i, g in zip(ids, groups) if split[i] == "val"}
    assert len(val_lesions) == 10  # 25% of 20 lesions per class, both classes


# ---------------------------------------------------------------------------------------- metrics by hand
def _probs_for(pred: list[int], k: int = 7) -> np.ndarray:
    p = np.full((len(pred), k), 0.02)
    p[np.arange(len(pred)), pred] = 1 - 0.02 * (k - 1)
    return p


def test_balanced_accuracy_hand_case_and_official_scorer(tmp_path):
    # two images per class; classes 0-2 get one of their two wrong, classes 3-6 both right:
    # recalls 0.5, 0.5, 0.5, 1, 1, 1, 1 -> (1.5 + 4) / 7
    labels = np.repeat(np.arange(7), 2)
    pred = labels.copy()
    pred[[1, 3, 5]] = [4, 4, 1]
    probs = _probs_for(list(pred))
    expected = (1.5 + 4) / 7
    assert cm.balanced_accuracy(labels, probs) == pytest.approx(expected, abs=1e-12)
    ids = [f"ISIC_{i:07d}" for i in range(len(labels))]
    (tmp_path / "pred.csv").write_text(predictions_csv(ids, probs))
    (tmp_path / "truth.csv").write_text(truth_csv(ids, labels))
    from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore
    score = ClassificationScore.from_file(tmp_path / "truth.csv", tmp_path / "pred.csv",
                                          ClassificationMetric.BALANCED_ACCURACY)
    assert score.overall == pytest.approx(expected, abs=1e-9)
    # per-class sensitivity / specificity by hand: class 4 is predicted for 2 + 2 images, 2 of them wrong
    sens, spec = cm.sensitivity_specificity(labels, probs)
    assert sens[0] == 0.5 and sens[4] == 1.0
    assert spec[4] == pytest.approx(10 / 12) and spec[1] == pytest.approx(11 / 12)


def test_tied_maximum_counts_as_undecided_like_the_scorer():
    probs = np.array([[0.5, 0.5, 0, 0, 0, 0, 0], [0.9, 0.1, 0, 0, 0, 0, 0]])
    assert list(cm.predicted_labels(probs)) == [-1, 0]
    assert cm.balanced_accuracy(np.array([0, 0]), probs) == 0.5


def test_sensitivity_at_specificity_hand_case():
    # 10 negatives scored 0..9, 4 positives scored 8.5, 9.5, 3.5, 20: at specificity >= 0.9 (at most one
    # negative, the 9, above the threshold) the threshold 8.5 catches 8.5, 9.5 and 20 -> sensitivity 3/4
    neg, pos = np.arange(10.0), np.array([8.5, 9.5, 3.5, 20.0])
    truth = np.r_[np.zeros(10, bool), np.ones(4, bool)]
    sens, thr = cm.sensitivity_at_specificity(truth, np.r_[neg, pos], 0.9)
    assert sens == 0.75 and thr == 8.5
    # 4 negatives, one scored above every positive: only "nothing is positive" keeps specificity >= 0.9; the
    # threshold is None there, not the ROC's infinity (try-out: "Infinity" in summary.json is not JSON)
    assert cm.sensitivity_at_specificity(np.array([0, 0, 0, 0, 1], bool), np.array([0.1, 0.2, 0.3, 0.9, 0.5])) \
        == (0.0, None)
    # AUC = share of (positive, negative) pairs ranked right: 8.5 beats 9 negatives, 9.5 beats 10, 3.5 beats 4,
    # 20 beats 10 -> 33 / 40
    assert cm.binary_auc(truth, np.r_[neg, pos]) == pytest.approx(33 / 40)


def test_paired_bootstrap_hand_cases():
    labels = np.array([0, 0, 1, 1, 2, 2])
    onehot = np.eye(3)
    right = onehot[labels]
    half = onehot[[0, 1, 1, 0, 2, 2]]  # class 0: 1/2, class 1: 1/2, class 2: 2/2 -> balanced accuracy 2/3
    same = cm.paired_bootstrap(labels, right, right, n_resamples=200)
    assert same["difference"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0 and same["p_b_not_better"] == 1
    worse = cm.paired_bootstrap(labels, right, half, n_resamples=500)
    assert worse["a"] == 1.0 and worse["b"] == pytest.approx(2 / 3) and worse["difference"] == pytest.approx(-1 / 3)
    assert worse["ci_high"] <= 0 and worse["p_b_not_better"] == 1  # b never beats a
    # stratified resampling keeps every class: the per-class recalls move in steps of 1/2, so the differences do too
    assert worse["ci_low"] >= -1.0 - 1e-12
    with pytest.raises(ValueError, match="shapes"):
        cm.paired_bootstrap(labels, right, right[:5])
    with pytest.raises(ValueError, match="n_resamples"):
        cm.paired_bootstrap(labels, right, right, n_resamples=10)


def test_temperature_scaling_recovers_a_known_temperature_and_keeps_the_argmax():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, size=(20000, 7))
    true_t = 2.0
    p = calibration.probabilities(z, true_t)
    labels = np.array([rng.choice(7, p=row) for row in p])
    t = calibration.fit_temperature(z, labels)
    assert t == pytest.approx(true_t, rel=0.05)
    assert calibration.nll(z, labels, t) < calibration.nll(z, labels, 1.0)
    ece_before = calibration.expected_calibration_error(calibration.probabilities(z), labels)
    ece_after = calibration.expected_calibration_error(calibration.probabilities(z, t), labels)
    assert ece_after < 0.02 < ece_before
    assert (calibration.probabilities(z, t).argmax(1) == z.argmax(1)).all()


def test_ece_hand_case():
    # every prediction at confidence 0.9, 6 of 10 right: one bin, |0.6 - 0.9| = 0.3
    probs = np.tile([0.9, 0.1 / 6, 0.1 / 6, 0.1 / 6, 0.1 / 6, 0.1 / 6, 0.1 / 6], (10, 1))
    labels = np.array([0] * 6 + [1] * 4)
    assert calibration.expected_calibration_error(probs, labels) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        calibration.fit_temperature(np.zeros((3, 7)), np.array([0, 1, 7]))
    with pytest.raises(ValueError):
        calibration.nll(np.zeros((3, 7)), np.array([0, 1, 2]), temperature=0)


# --------------------------------------------------------------------------------- predictions.csv format
def test_predictions_csv_rows_sum_exactly_to_one_and_bad_rows_are_refused():
    rng = np.random.default_rng(1)
    probs = calibration.probabilities(rng.normal(size=(5, 7)) * 4)
    text = predictions_csv([f"a{i}" for i in range(5)], probs)
    lines = text.splitlines()
    assert lines[0] == "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"
    from decimal import Decimal
    for line in lines[1:]:
        assert sum(Decimal(v) for v in line.split(",")[1:]) == 1
    with pytest.raises(ValueError):
        predictions_csv(["a", "a"], probs[:2])
    with pytest.raises(ValueError):
        predictions_csv(["a"], np.full((1, 7), 0.5))
    with pytest.raises(ValueError):
        predictions_csv(["a"], probs[:1, :6])


# ------------------------------------------------------------------------- the shipped classifier, end to end
def test_diagnose_real_images_scored_by_the_official_scorer(tmp_path, val_few, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for s in val_few:
        shutil.copy(s.image_path, inputs)
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (inputs / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    assert main(["diagnose", str(inputs), "--out", str(out)]) == 1  # two bad files -> exit 1, others done
    stdout = capsys.readouterr().out
    assert "not a medical device" in stdout
    assert "not a medical device" in (out / "README.txt").read_text()
    failures = list(csv.DictReader(open(out / "failures.csv")))
    assert sorted(Path(r["file"]).name for r in failures) == ["broken.jpg", "empty.png"]
    pred = pd.read_csv(out / "predictions.csv")
    assert list(pred.columns) == ["image", *HAM_CLASSES]
    assert sorted(pred["image"]) == sorted(s.image_id for s in val_few)
    assert np.allclose(pred[list(HAM_CLASSES)].sum(1), 1.0, atol=1e-7)
    truth = out.parent / "truth.csv"
    truth.write_text(truth_csv([s.image_id for s in val_few], np.array([s.label for s in val_few])))
    # the official command line accepts the file ...
    run = subprocess.run([str(SCORER), "classification", str(truth), str(out / "predictions.csv")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "balanced_accuracy" in run.stdout
    # ... and its balanced accuracy equals ours on the same predictions
    from isic_challenge_scoring.classification import ClassificationMetric, ClassificationScore
    official = ClassificationScore.from_file(truth, out / "predictions.csv", ClassificationMetric.BALANCED_ACCURACY)
    label_of = {s.image_id: s.label for s in val_few}
    ours = cm.balanced_accuracy(np.array([label_of[i] for i in pred["image"]]), pred[list(HAM_CLASSES)].to_numpy())
    assert abs(ours - official.overall) < 1e-6
    # the shipped model is far better than chance (1/7) on these 21 images (3 per class)
    assert ours >= 0.5


def test_shipped_classifier_loads_calibrated_and_matches_its_card():
    model = Classifier.load(engine="torch")  # the PyTorch network, to check its float16 storage became float32
    assert model.path == modelfile.shipped("classifier")
    assert modelfile.shipped("classifier").stat().st_size <= 20 * 1024 * 1024
    assert all(p.dtype == torch.float32 for p in model.network.parameters())
    assert 0.2 < model.temperature < 5.0
    card = (modelfile.shipped("classifier").parent / "classifier.md").read_text()
    assert "not a medical device" in card.lower()
    assert f"{model.info['val_balanced_accuracy_tta']:.3f}" in card
    assert model.info["val_balanced_accuracy_tta"] >= 0.70  # the first bar


def test_bad_model_files_are_refused(tmp_path):
    from dermoseg.errors import ModelFileError
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError):
        Classifier.load(junk)
    other = tmp_path / "other.pt"
    torch.save({"format": "dermoseg-segmentation-1"}, other)
    with pytest.raises(ModelFileError, match="not a dermoseg classifier"):
        Classifier.load(other)
    assert main(["diagnose", str(tmp_path), "--out", str(tmp_path / "o"), "--model", str(junk)]) == 2
    assert main(["diagnose", str(tmp_path / "nothing_here"), "--out", str(tmp_path / "o2")]) == 1


def test_mask_inputs_crop_and_channel():
    image = np.zeros((100, 200, 3), np.uint8)
    mask = np.zeros((100, 200), bool)
    mask[40:60, 50:90] = True  # 20 x 40 box; margin 0.25 -> 5 rows and 10 columns each side
    assert crop_to_mask(image, mask, 0.25).shape == (30, 60, 3)
    assert crop_to_mask(image, np.zeros_like(mask)).shape == image.shape
    assert prepare_image(image, 64, mask, "channel").shape == (64, 64, 4)
    assert prepare_image(image, 64, mask, "crop").shape == (64, 64, 3)
    with pytest.raises(ValueError):
        prepare_image(image, 64, None, "crop")
    with pytest.raises(ValueError):
        prepare_image(image, 64, mask[:50], "channel")
    with pytest.raises(ValueError):
        prepare_image(image.astype(np.float32), 64)


# ------------------------------------------------------------------------------------ EfficientNet-Lite0 encoder
def test_efficientnet_lite0_classifier_freezes_its_stem_and_exports_to_onnx(tmp_path, ham):
    """The classifier on EfficientNet-Lite0: freeze_stages 4 freezes exactly the stem and the blocks up to stride 4
    (as for MobileNetV2), the mask channel starts as a zero filter, and a model file with this encoder records the
    Lite input scaling and exports to ONNX Runtime within the export tolerance (as the shipped classifier does)."""
    from dermoseg.engine.onnx_export import export_metadata, export_onnx
    from dermoseg.engine.ort_runner import OrtRunner
    from dermoseg.data.transforms import resize_image
    from dermoseg.io import read_image
    from dermoseg.models.classifier import LesionClassifier, build_classifier, input_normalisation
    cfg = {"encoder": "efficientnet_lite0", "freeze_stages": 4, "mask_mode": "none"}
    torch.manual_seed(0)
    net = build_classifier(cfg).train()
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {f"encoder.features.{n}" for n, _ in net.encoder.features[:4].named_parameters()} and frozen
    stages = net.encoder.features
    assert stages[3].project[0].out_channels == 24 and stages[4].depthwise[0].stride == (2, 2)  # stride 4 ends at 4
    assert not any(m.training for i in range(4) for m in stages[i].modules()) and stages[4].training
    x = torch.randn(2, 3, 192, 192)
    with torch.no_grad():
        assert net.eval()(x).shape == (2, len(HAM_CLASSES))
        torch.manual_seed(0)
        with_mask = LesionClassifier(in_channels=4, encoder="efficientnet_lite0", freeze_stages=4).eval()
        assert torch.equal(with_mask(torch.cat([x, torch.ones(2, 1, 192, 192)], 1)), net(x))
    with pytest.raises(ValueError, match="freeze_stages"):
        build_classifier({**cfg, "freeze_stages": 19}, pretrained=False)
    with pytest.raises(ValueError, match="unknown classifier encoder"):
        build_classifier({"encoder": "efficientnet_b0"}, pretrained=False)
    lite_scaling = {"mean": [127 / 255] * 3, "std": [128 / 255] * 3}
    path = modelfile.write(tmp_path / "lite.pt", "classifier", {"model": cfg, "image_size": 192, "tta": False,
                           "classes": list(HAM_CLASSES), "normalisation": lite_scaling}, net.state_dict(), {},
                           temperature=1.0)
    model = Classifier.load(path, engine="torch", threads=1)
    mean, std = input_normalisation("efficientnet_lite0")
    assert np.allclose(model.normalisation[0], mean) and np.allclose(model.normalisation[1], std)
    image = read_image(ham[0].image_path)
    by_hand = (resize_image(image, 192).astype(np.float32) - 127.0) / 128.0  # the Lite builder's scaling
    np.testing.assert_allclose(model.prepare(image), by_hand.transpose(2, 0, 1), atol=1e-5)
    meta, prepare = export_metadata(model)
    batch = np.stack([prepare(read_image(s.image_path)) for s in ham[:4]])
    report = export_onnx(model.network, meta, tmp_path / "lite.onnx", batch)
    assert report.max_prob_diff <= 1e-3
    onnx_meta = OrtRunner(tmp_path / "lite.onnx", threads=1).metadata
    assert np.allclose(onnx_meta["mean"], mean) and np.allclose(onnx_meta["std"], std)


# ------------------------------------------------------------------------------------------ training plumbing
def test_smoke_classifier_training_resumes_and_exports(tmp_path, data_root):
    from dermoseg.classification.task import train_classifier
    from dermoseg.config import load_config
    cfg = load_config(REPO / "configs" / "classifier_mobilenet_v2.yaml", {
        "data": {"root": str(data_root), "image_size": 64, "train_subset": 300},
        "model": {"freeze_stages": 8}, "trainer": {"epochs": 1, "batch_size": 32, "max_time_minutes": None}})
    out = tmp_path / "run"
    model_path = train_classifier(cfg, out)
    first = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    cfg["trainer"]["epochs"] = 2
    train_classifier(cfg, out, resume=True)
    second = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert second["global_step"] == 2 * first["global_step"]
    with open(out / "metrics.csv", newline="") as fh:
        epochs = {int(r["epoch"]) for r in csv.DictReader(fh) if r.get("val_balanced_accuracy")}
    assert epochs == {0, 1}
    model = Classifier.load(model_path)
    assert model.image_size == 64 and model.temperature > 0
    assert "val_ece_after" in model.info and model.info["val_images"] > 0
    # the out-of-distribution threshold is written beside the model, for this file and its temperature (issue 13)
    assert (out / "model.ood.json").is_file() and model.ood.model_sha256 == model.sha256
    assert model.ood.temperature == model.temperature and 0 < model.ood.threshold < math.log(len(HAM_CLASSES))


# ------------------------------------------------------------------------------ segment --diagnose --mm-per-pixel
def _whole_image_segmenter(path: Path) -> Path:
    """A segmentation model file whose network calls every pixel lesion (head weights 0, bias +5), so that the
    measurements of its mask are known by hand: the whole image."""
    from dermoseg.models import build_model
    model_cfg = {"architecture": "codec", "encoder": "mobilenet_v2", "aspp_rates": [3, 3, 6], "output_stride": 16}
    net = build_model(model_cfg, pretrained=False)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(5.0)
    torch.save({"format": "dermoseg-segmentation-1", "config": {"model": model_cfg, "image_size": 64,
                "preprocess": {"enabled": False}}, "state_dict": net.state_dict(), "info": {}}, path)
    return path


def test_segment_adds_measurements_and_diagnosis_columns(tmp_path, val_few, capsys):
    seg = _whole_image_segmenter(tmp_path / "whole.pt")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for s in val_few[:2]:
        shutil.copy(s.image_path, inputs)
    out = tmp_path / "seg"
    assert main(["segment", str(inputs), "--out", str(out), "--model", str(seg), "--diagnose",
                 "--mm-per-pixel", "0.05"]) == 0
    assert "not a medical device" in capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2
    h = w = 224  # the HAM10000 copy; the whole image is the lesion
    for r in rows:
        assert int(r["lesion_area_px"]) == h * w
        assert float(r["asymmetry_major"]) < 1e-9 and float(r["asymmetry_minor"]) < 1e-9
        assert float(r["diameter_px"]) == pytest.approx(math.hypot(h, w), abs=1e-3)
        assert float(r["diameter_mm"]) == pytest.approx(0.05 * math.hypot(h, w), abs=1e-3)
        # a square: (4n)^2 / (4 pi n^2) = 4/pi; the chain-code estimator reads axis-aligned edges about 2% short
        # and through the boundary pixels' centres (n - 1 per side), hence the 6% tolerance
        assert float(r["compactness"]) == pytest.approx(4 / math.pi, rel=0.06)
        assert 0 <= int(r["colour_count"]) <= 6
        assert r["diagnosis_note"] == "research tool, not a medical device"
        p = np.array([float(r[f"p_{c}"]) for c in HAM_CLASSES])
        assert p.sum() == pytest.approx(1.0, abs=1e-4) and r["top_class"] == HAM_CLASSES[int(p.argmax())]
    # the same probabilities as 'dermoseg diagnose' on the same files
    assert main(["diagnose", str(inputs), "--out", str(tmp_path / "diag")]) == 0
    pred = pd.read_csv(tmp_path / "diag" / "predictions.csv").set_index("image")
    for r in rows:
        assert np.allclose([float(r[f"p_{c}"]) for c in HAM_CLASSES], pred.loc[r["image_id"]].to_numpy(), atol=1e-5)
    # without --diagnose: measurements, no diagnosis; a bad --mm-per-pixel is a usage error
    assert main(["segment", str(inputs), "--out", str(tmp_path / "seg2"), "--model", str(seg)]) == 0
    header = open(tmp_path / "seg2" / "results.csv").readline()
    assert "compactness" in header and "p_MEL" not in header and "diameter_mm" in header
    assert main(["segment", str(inputs), "--out", str(tmp_path / "seg3"), "--model", str(seg),
                 "--mm-per-pixel", "-1"]) == 2


def test_mask_channel_classifier_trains_and_needs_masks(tmp_path, data_root, ham):
    """The mask ablation's plumbing: masks read from a folder of <id>_segmentation.png, a 4-channel network,
    and inference that refuses to run without masks."""
    from dermoseg.classification.job import diagnose_files
    from dermoseg.classification.task import train_classifier
    from dermoseg.config import load_config
    from dermoseg.io import read_image, write_image
    mask_dir = tmp_path / "masks"
    disc = np.zeros((224, 224), bool)
    disc[(np.arange(224)[:, None] - 112) ** 2 + (np.arange(224)[None] - 112) ** 2 < 80 ** 2] = True
    write_image(mask_dir / "template.png", disc)
    png = (mask_dir / "template.png").read_bytes()
    for s in ham:
        (mask_dir / f"{s.image_id}_segmentation.png").write_bytes(png)
    cfg = load_config(REPO / "configs" / "classifier_mobilenet_v2_crop.yaml", {
        "data": {"root": str(data_root), "image_size": 64, "train_subset": 300, "mask_dir": str(mask_dir)},
        "model": {"mask_mode": "channel", "freeze_stages": 8},
        "trainer": {"epochs": 1, "batch_size": 32, "max_time_minutes": None}})
    model = Classifier.load(train_classifier(cfg, tmp_path / "run"))
    assert model.mask_mode == "channel" and model.network.in_channels == 4
    image = read_image(ham[0].image_path)
    p = model.predict_batch([image], [disc])
    assert p.shape == (1, 7) and abs(p.sum() - 1) < 1e-9
    with pytest.raises(ValueError, match="mask"):
        model.predict_batch([image])
    with pytest.raises(ValueError, match="segmentation model"):
        diagnose_files([str(ham[0].image_path)], tmp_path / "d", model)
    # scoring can read the masks 'dermoseg segment' already wrote instead of segmenting again
    from dermoseg.classification.evaluate import sample_logits
    from dermoseg.io import ImageReadError
    from_folder = sample_logits(model, ham[:5], mask_dir=mask_dir)
    direct = model.logits([read_image(s.image_path) for s in ham[:5]], [disc] * 5)
    np.testing.assert_allclose(from_folder, direct, rtol=1e-6, atol=1e-6)
    with pytest.raises(ImageReadError, match="_segmentation.png"):
        sample_logits(model, ham[:1], mask_dir=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="mask folder"):
        sample_logits(model, ham[:1])


def test_random_resized_crops_come_out_at_the_training_size(ham):
    """A cache larger than the input (``data.cache_size``) and random-resized crops: every item is the size the
    network is trained and run at, and two draws of the same image differ."""
    from dermoseg.classification.task import CachedClassificationDataset
    from dermoseg.data.transforms import build_augmentation
    aug = build_augmentation({"random_resized_crop": {"scale": [0.35, 1.0]}, "flip": False, "blur_p": 1.0,
                              "jpeg_p": 1.0}, 96)
    ds = CachedClassificationDataset(ham[:2], 96, augment=aug, cache_size=128, shades_of_gray_p=6)
    assert ds.images.shape == (2, 128, 128, 3)
    a, b = ds[0][0], ds[0][0]
    assert a.shape == b.shape == (3, 96, 96) and not torch.equal(a, b)
    with pytest.raises(ValueError, match="output size"):
        build_augmentation({"random_resized_crop": {"scale": [0.5, 1.0]}})
    from dermoseg.errors import ConfigError
    from dermoseg.training import subset
    for bad in (64, 0, 99999, "abc"):  # smaller than the input, zero, absurdly large, not a number
        with pytest.raises(ConfigError, match="data.cache_size"):
            CachedClassificationDataset(ham[:2], 96, cache_size=bad)
    for bad in (-3, 0, 2.5):  # a negative subset kept all but three images
        with pytest.raises(ConfigError, match="data.train_subset"):
            subset(ham, bad, 0)


def test_class_balanced_sampling_draws_every_class_equally_often(data_root):
    """``data.sampling: class_balanced``: an epoch draws as many images as the training set holds, with
    replacement, each class about 1/7 of them although nevi are ~2/3 of the images; the default shuffle draws
    each image once; another value is refused."""
    from collections import Counter

    from dermoseg.classification.task import ClassificationData
    from dermoseg.config import load_config
    from dermoseg.errors import ConfigError

    def data(sampling):
        cfg = load_config(REPO / "configs" / "classifier_mobilenet_v2.yaml", {
            "data": {"root": str(data_root), "image_size": 16, "train_subset": 1400, "sampling": sampling}})
        d = ClassificationData(cfg)
        d.setup()
        return d
    balanced = data("class_balanced")
    labels = balanced.train_set.labels
    assert Counter(labels.tolist()).most_common(1)[0][1] > 0.5 * len(labels)  # nevi dominate the images
    drawn = Counter(labels[list(balanced.train_dataloader().sampler)].tolist())
    assert sum(drawn.values()) == len(labels) and set(drawn) == set(range(7))
    assert all(abs(n - len(labels) / 7) < 0.3 * len(labels) / 7 for n in drawn.values()), drawn
    shuffled = data("shuffle")
    assert sorted(shuffled.train_dataloader().sampler) == list(range(len(labels)))
    with pytest.raises(ConfigError, match="data.sampling must be one of shuffle, class_balanced"):
        data("oversample").train_dataloader()


def test_histo_nevus_share_re_divides_the_nevus_draws_by_hand():
    """Hand case: one melanoma, one excised nevus, two follow-up nevi, one BCC. With share 0.5 the excised nevus
    carries half of the nevus class's weight (3 → 1.5 and 0.75 each); with class-balanced draws the class total
    1 is divided the same way; the other classes keep their weights; a bad share or a split without both kinds
    of nevi is refused."""
    from dermoseg.classification.task import sampling_weights
    from dermoseg.errors import ConfigError

    mel, nv, bcc = (HAM_CLASSES.index(c) for c in ("MEL", "NV", "BCC"))
    labels = np.array([mel, nv, nv, nv, bcc])
    kinds = np.array(["histo", "histo", "follow_up", "follow_up", "histo"], dtype=object)
    assert sampling_weights(labels, kinds, "shuffle") is None
    np.testing.assert_allclose(sampling_weights(labels, kinds, "shuffle", 0.5), [1, 1.5, 0.75, 0.75, 1])
    np.testing.assert_allclose(sampling_weights(labels, kinds, "shuffle", 0.25), [1, 0.75, 1.125, 1.125, 1])
    np.testing.assert_allclose(sampling_weights(labels, kinds, "class_balanced", 0.5), [1, 0.5, 0.25, 0.25, 1])
    np.testing.assert_allclose(sampling_weights(labels, kinds, "class_balanced"), [1, 1 / 3, 1 / 3, 1 / 3, 1])
    for bad in (0, 1, 1.5, -0.2, True, "half"):
        with pytest.raises(ConfigError, match="data.histo_nevus_share must be null or a number between 0 and 1"):
            sampling_weights(labels, kinds, "shuffle", bad)
    with pytest.raises(ConfigError, match="it has 0 and 3"):
        sampling_weights(labels, np.array(["histo", "consensus", "follow_up", "follow_up", "histo"]), "shuffle", 0.5)


def test_histo_nevus_share_draws_excised_nevi_as_often_as_the_others(data_root):
    """On real HAM10000 training images (a seeded 1400), ``data.histo_nevus_share: 0.5`` draws excised nevi about
    as often as all other nevi (they are about a quarter of the nevi) and draws each class as often as a shuffle
    does; the share is checked before the images are loaded."""
    from dermoseg.classification.task import ClassificationData
    from dermoseg.config import load_config
    from dermoseg.errors import ConfigError

    def data(share):
        return ClassificationData(load_config(REPO / "configs" / "classifier_mobilenet_v2.yaml", {
            "data": {"root": str(data_root), "image_size": 16, "train_subset": 1400, "histo_nevus_share": share}}))
    d = data(0.5)
    d.setup()
    labels, kinds = d.train_set.labels, d.train_dx_types
    nevus = labels == HAM_CLASSES.index("NV")
    assert 0.15 < (nevus & (kinds == "histo")).sum() / nevus.sum() < 0.35
    drawn = np.array(list(d.train_dataloader().sampler))
    assert len(drawn) == len(labels)
    drawn_nevi = kinds[drawn[nevus[drawn]]]
    histo = int((drawn_nevi == "histo").sum())
    other = len(drawn_nevi) - histo
    assert abs(histo - other) < 0.2 * (histo + other), (histo, other)
    assert abs(nevus[drawn].sum() - nevus.sum()) < 0.1 * nevus.sum()
    with pytest.raises(ConfigError, match="histo_nevus_share"):
        data(2).setup()


def test_the_ood_warning_never_reads_as_a_figure_above_itself():
    """Hand case: an entropy a hair above the threshold is printed with as many decimals as it takes to differ
    (two decimals gave '1.34 nats is above 1.34'); an entropy at the threshold is not flagged."""
    from dermoseg.classification.ood import OodCheck, entropy
    logits = np.log(np.array([[0.6, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05]]))
    h = float(entropy(np.exp(logits))[0])
    check = OodCheck(threshold=h - 0.0004, temperature=1.0, percentile=95.0, model_sha256="0" * 64, fitted_on="x")
    text = check.warning(logits)
    shown = text.split("prediction entropy ")[1].split(" nats is above ")
    above = shown[1].split(",")[0]
    assert shown[0] != above and float(shown[0]) > float(above) and len(above.split(".")[1]) >= 3, text
    assert OodCheck(h, 1.0, 95.0, "0" * 64, "x").warning(logits) == ""
