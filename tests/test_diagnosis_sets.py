"""Issue 13: external diagnosis test sets, the out-of-distribution flag, cross-fitted calibration.

Hand-computed cases for melanoma vs nevus (AUC, sensitivity at 90% specificity, nevi called melanoma), k-fold
cross-fitted ECE, the entropy flag and its sidecar; real images for the loaders, ``evaluate-diagnosis`` and the
``warning`` of ``diagnose``.
"""

from __future__ import annotations

import collections
import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dermoseg import modelfile
from dermoseg.classification import HAM_CLASSES, ood
from dermoseg.classification.classifier import Classifier
from dermoseg.classification.evaluate import cross_fitted_ece, cross_fitted_probabilities, melanoma_vs_nevus
from dermoseg.cli import main
from dermoseg.data.datasets import load_isic2018_diagnosis
from dermoseg.data.evalsets import diagnosis_samples
from dermoseg.errors import DatasetError, ModelFileError
from dermoseg.io import read_image, write_image
from test_classification import _one_thread  # noqa: F401  (autouse: one torch thread, as there)

MEL, NV = HAM_CLASSES.index("MEL"), HAM_CLASSES.index("NV")
REPO = Path(__file__).resolve().parents[1]


def _count(items) -> dict:
    return dict(collections.Counter(items))


def _mel_nv_probs(p_mel):
    """(N, 7) rows with P(MEL) = p, P(NV) = 1 - p."""
    probs = np.zeros((len(p_mel), len(HAM_CLASSES)))
    probs[:, MEL], probs[:, NV] = p_mel, 1 - np.asarray(p_mel)
    return probs


# ------------------------------------------------------------------------------ melanoma vs nevus, by hand
def test_melanoma_vs_nevus_hand_case():
    nevi = [0.0, 0.1, 0.2, 0.3, 0.4, 0.45, 0.55, 0.6, 0.65, 0.9]
    melanomas = [0.62, 0.95, 0.35, 0.8]
    bcc = [[0.99, 0, 0.01, 0, 0, 0, 0]]  # a BCC case called MEL: left out of melanoma vs nevus
    probs = np.r_[_mel_nv_probs(nevi + melanomas), bcc]
    labels = np.array([NV] * 10 + [MEL] * 4 + [HAM_CLASSES.index("BCC")])
    groups = ["common nevus"] * 5 + ["atypical nevus"] * 5 + ["melanoma"] * 4 + ["BCC"]
    s = melanoma_vs_nevus(labels, groups, probs)
    assert (s["melanoma"], s["nevus"]) == (4, 10)
    # pairs ranked right: 0.62 beats 8 nevi, 0.95 all 10, 0.35 beats 4, 0.8 beats 9 -> 31 / 40
    assert s["auc"] == pytest.approx(31 / 40)
    # at most one nevus (of 10) at or above the threshold: 0.8 (the nevus 0.9 is the one) -> 0.95, 0.8 caught
    assert s["sensitivity_at_90_specificity"] == 0.5 and s["threshold_at_90_specificity"] == 0.8
    # arg-max MEL when P(MEL) > 0.5: nevi 0.55, 0.6, 0.65, 0.9; melanomas 0.62, 0.95, 0.8
    assert s["nevi_called_melanoma"] == 4 and s["melanomas_called_melanoma"] == 3
    assert s["argmax_called_mel"] == {"atypical nevus": 0.8, "common nevus": 0.0, "melanoma": 0.75}
    # common nevi 0..0.4: 5 + 5 + 4 + 5 = 19 of 20 pairs; atypical 0.45..0.9: 3 + 5 + 0 + 4 = 12 of 20
    assert s["auc_by_nevus_group"] == {"atypical nevus": pytest.approx(12 / 20), "common nevus": pytest.approx(19 / 20)}
    with pytest.raises(ValueError):
        melanoma_vs_nevus(labels[:10], groups[:10], probs[:10])  # no melanoma


def test_melanoma_score_is_p_mel_given_melanoma_or_nevus_by_hand():
    """A melanoma whose probability the model spreads over BKL (P(MEL) 0.3, P(NV) 0.1, P(BKL) 0.6) and a nevus
    with P(MEL) 0.4, P(NV) 0.6: the plain P(MEL) ranks the nevus first (AUC 0), the score 0.3 / 0.4 = 0.75
    against 0.4 ranks the melanoma first (AUC 1); an image with neither class scores 0.5."""
    from dermoseg.classification.evaluate import melanoma_score
    probs = np.zeros((3, len(HAM_CLASSES)))
    probs[0, [MEL, NV, HAM_CLASSES.index("BKL")]] = 0.3, 0.1, 0.6
    probs[1, [MEL, NV]] = 0.4, 0.6
    probs[2, HAM_CLASSES.index("DF")] = 1.0
    np.testing.assert_allclose(melanoma_score(probs), [0.75, 0.4, 0.5])
    s = melanoma_vs_nevus(np.array([MEL, NV]), ["melanoma", "nevus"], probs[:2])
    assert (s["auc"], s["auc_p_mel"]) == (1.0, 0.0)


# --------------------------------------------------------------------------- cross-fitted ECE, by hand
def test_cross_fitted_ece_hand_case():
    # Two folds of a two-class problem. Fold A: logits (2, 0), 3 of 4 labelled 0 -> its own NLL-optimal T solves
    # sigmoid(2 / T) = 3/4, T_A = 2 / ln 3. Fold B: logits (1, 0), 2 of 3 labelled 0 -> T_B = 1 / ln 2.
    logits = np.array([[2.0, 0.0]] * 4 + [[1.0, 0.0]] * 3)
    labels = np.array([0, 0, 0, 1, 0, 0, 1])
    folds = [np.arange(4), np.arange(4, 7)]
    probs, temps = cross_fitted_probabilities(logits, labels, folds=folds)
    assert temps == [pytest.approx(1 / math.log(2), rel=1e-4), pytest.approx(2 / math.log(3), rel=1e-4)]
    # fold A scored with T_B: sigmoid(2 ln 2) = 4/5; fold B with T_A: sigmoid(ln 3 / 2) = √3 / (1 + √3)
    assert probs[:4, 0] == pytest.approx([0.8] * 4, rel=1e-4)
    p_b = math.sqrt(3) / (1 + math.sqrt(3))
    assert probs[4:, 0] == pytest.approx([p_b] * 3, rel=1e-4)
    # ECE: fold A in one bin, confidence 0.8, accuracy 3/4; fold B in another, confidence p_b, accuracy 2/3
    ece, _ = cross_fitted_ece(logits, labels, folds=folds)
    assert ece == pytest.approx(4 / 7 * 0.05 + 3 / 7 * (2 / 3 - p_b), abs=1e-4)
    # in-sample each fold would be perfectly calibrated by its own T: cross-fitting is what makes the ECE > 0
    assert ece > 0.03


def test_cross_fitting_holds_each_case_out_once_and_refuses_bad_folds():
    rng = np.random.default_rng(3)
    logits, labels = rng.normal(size=(23, 7)) * 3, rng.integers(0, 7, 23)
    probs, temps = cross_fitted_probabilities(logits, labels, k=5)
    assert len(temps) == 5 and probs.shape == (23, 7) and np.allclose(probs.sum(1), 1)
    # every row is softmax(logits / T) for one of the five temperatures
    for z, p in zip(logits, probs):
        assert min(np.abs(np.exp(z / t) / np.exp(z / t).sum() - p).max() for t in temps) < 1e-12
    with pytest.raises(ValueError, match="k"):
        cross_fitted_probabilities(logits, labels, k=1)
    with pytest.raises(ValueError, match="exactly once"):
        cross_fitted_probabilities(logits, labels, folds=[np.arange(10), np.arange(9, 23)])


# ----------------------------------------------------------------------------- the OOD flag, by hand
def test_entropy_and_percentile_threshold_hand_cases(tmp_path):
    assert ood.entropy(np.full((1, 7), 1 / 7))[0] == pytest.approx(math.log(7))
    assert ood.entropy(np.eye(7)[:1])[0] == 0.0
    assert ood.entropy(np.array([[0.5, 0.5, 0, 0, 0, 0, 0]]))[0] == pytest.approx(math.log(2))
    # rows spread uniformly over 1..5 classes: entropies 0, ln 2, ln 3, ln 4, ln 5
    logits = np.full((5, 7), -1000.0)
    for m in range(5):
        logits[m, : m + 1] = 0.0
    check = ood.fit_check(logits, 1.0, "0" * 64, "five rows", percentile=75)
    assert check.threshold == pytest.approx(math.log(4))  # linear interpolation: position 0.75 * 4 = 3
    assert list(check.flags(logits)) == [False, False, False, False, True]
    assert check.warning(logits[4]).startswith("unlike the training images") and check.warning(logits[0]) == ""
    hot = ood.fit_check(logits, 1.0, "0" * 64, "five rows", percentile=90)
    assert hot.threshold == pytest.approx(math.log(4) + 0.6 * (math.log(5) - math.log(4)))
    with pytest.raises(ValueError):
        ood.fit_check(logits[:, :6], 1.0, "0" * 64, "bad")


def test_flag_effect_hand_case():
    labels = np.array([MEL, MEL, NV, NV, NV, MEL])
    probs = _mel_nv_probs([0.9, 0.2, 0.7, 0.1, 0.3, 0.6])  # arg-max right: yes, no, no, yes, yes, yes
    flagged = np.array([True, True, True, False, False, False])
    e = ood.flag_effect(labels, probs, flagged)
    assert e["share_flagged"] == 0.5
    assert e["flagged"] == {"images": 3, "accuracy": pytest.approx(1 / 3), "melanoma": 2,
                            "melanoma_auc": pytest.approx(0.5)}  # 0.9 > 0.7, 0.2 < 0.7
    assert e["unflagged"] == {"images": 3, "accuracy": 1.0, "melanoma": 1, "melanoma_auc": 1.0}


def test_sidecar_is_tied_to_the_model_file(tmp_path, data_root, capsys):
    model = tmp_path / "clf.pt"
    shutil.copy(modelfile.shipped("classifier"), model)
    logits = np.random.default_rng(0).normal(size=(50, 7))
    check = ood.fit_check(logits, 1.3, modelfile.file_sha256(model), "fifty rows")
    sidecar = ood.write_sidecar(model, check)
    assert sidecar == tmp_path / "clf.ood.json"
    assert Classifier.load(model).ood == check
    assert ood.load_check(tmp_path / "other.pt") is None  # no sidecar: nothing is flagged
    with pytest.raises(ModelFileError, match="another file"):
        ood.write_sidecar(model, ood.fit_check(logits, 1.3, "f" * 64, "fifty rows"))
    record = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**record, "model_sha256": "e" * 64}))
    with pytest.raises(ModelFileError, match="another classifier file"):
        Classifier.load(model).ood
    image = next((data_root / "ham10000" / "images").glob("*.jpg"))
    assert main(["diagnose", str(image), "--out", str(tmp_path / "out"), "--model", str(model)]) == 2
    assert "clf.ood.json: made for another classifier file" in capsys.readouterr().err
    assert not (tmp_path / "out" / "predictions.csv").exists()  # refused before any image
    sidecar.write_text("{not json")
    with pytest.raises(ModelFileError, match="unreadable"):
        ood.load_check(model)


def test_shipped_classifier_has_its_threshold_from_the_validation_split():
    model = Classifier.load()
    assert model.ood is not None and model.ood.model_sha256 == model.sha256
    assert model.ood.percentile == ood.PERCENTILE and model.ood.temperature == model.temperature
    assert 0 < model.ood.threshold < math.log(len(HAM_CLASSES))
    assert "HAM10000 validation split" in model.ood.fitted_on


# ----------------------------------------------------------------------------------- real data
def test_isic_diagnosis_metadata_and_named_sets(data_root, tmp_path):
    dx = load_isic2018_diagnosis(data_root / "isic2018_task1")
    assert sorted(_count(dx.values()).items()) == [("MEL", 131), ("NV", 478)]
    isic = diagnosis_samples("isic2018_task1", data_root)
    assert len(isic) == 609 and all(HAM_CLASSES[s.label] == dx[s.image_id] for s in isic)
    ph2 = diagnosis_samples("ph2", data_root)
    assert _count(s.group for s in ph2) == {"melanoma": 40, "atypical nevus": 80, "common nevus": 80}
    assert all((s.label == MEL) == (s.group == "melanoma") for s in ph2)
    ham = diagnosis_samples("ham10000_val", data_root)  # nevi grouped by how they were confirmed (dx_type)
    nevus_groups = {s.group for s in ham if HAM_CLASSES[s.label] == "NV"}
    assert {"NV (histo)", "NV (follow_up)"} <= nevus_groups and all(g.startswith("NV (") for g in nevus_groups)
    assert {s.group for s in ham if HAM_CLASSES[s.label] != "NV"} == set(HAM_CLASSES) - {"NV"}
    bad = tmp_path / "isic"
    bad.mkdir()
    (bad / "metadata.csv").write_text("image_id,diagnosis\nISIC_1,NV\nISIC_2,SCC\n")
    with pytest.raises(DatasetError, match="ISIC_2 has unknown diagnosis 'SCC'"):
        load_isic2018_diagnosis(bad)
    with pytest.raises(DatasetError, match="not found"):
        load_isic2018_diagnosis(tmp_path)


def test_evaluate_diagnosis_on_isic_images_and_its_logit_cache(tmp_path, data_root, capsys):
    out = tmp_path / "eval"
    args = ["evaluate-diagnosis", "--dataset", "isic2018_task1", "--limit", "8", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    summary = json.loads((out / "isic2018_task1" / "summary.json").read_text())
    assert summary["role"] == "external test" and summary["images"] == 8
    assert summary["dataset"].startswith("the first 8 images only (--limit) of: ISIC 2018 Task 1")
    # the figures follow from the written predictions and the metadata
    pred = pd.read_csv(out / "isic2018_task1" / "predictions.csv")
    dx = load_isic2018_diagnosis(data_root / "isic2018_task1")
    labels = np.array([HAM_CLASSES.index(dx[i]) for i in pred["image"]])
    from sklearn.metrics import roc_auc_score
    auc = roc_auc_score(labels == MEL, pred["MEL"] / (pred["MEL"] + pred["NV"]))
    assert summary["melanoma_vs_nevus"]["auc"] == pytest.approx(auc, abs=1e-6)
    assert summary["melanoma_vs_nevus"]["auc_p_mel"] == pytest.approx(roc_auc_score(labels == MEL, pred["MEL"]), abs=1e-6)
    assert summary["melanoma_vs_nevus"]["nevi_called_melanoma"] == int(
        ((pred[list(HAM_CLASSES)].to_numpy().argmax(1) == MEL) & (labels == NV)).sum())
    overview = list(csv.DictReader(open(out / "summary.csv")))
    assert [r["set"] for r in overview] == ["isic2018_task1"]
    # --reuse-logits reads the saved logits: with logits that single out the melanomas, the AUC becomes 1 ...
    assert auc < 1
    npz = out / "isic2018_task1" / "logits.npz"
    with np.load(npz) as c:
        ids, logits, sha = c["ids"], c["logits"].copy(), c["model_sha256"]
    logits[:, MEL] = np.where(labels == MEL, 10.0, -10.0)
    np.savez(npz, ids=ids, logits=logits, model_sha256=sha)
    assert main(args + ["--reuse-logits"]) == 0
    tampered = json.loads((out / "isic2018_task1" / "summary.json").read_text())["melanoma_vs_nevus"]["auc"]
    assert tampered == 1.0
    # ... but not when they were made by another model file: then the network runs again, and that is said
    np.savez(npz, ids=ids, logits=logits, model_sha256=np.array("0" * 64))
    capsys.readouterr()
    assert main(args + ["--reuse-logits"]) == 0
    assert f"note: {npz}: not reused, it was made by another model file; running the network" in capsys.readouterr().err
    again = json.loads((out / "isic2018_task1" / "summary.json").read_text())["melanoma_vs_nevus"]["auc"]
    assert again == pytest.approx(auc, abs=1e-6)


def test_diagnose_warns_about_inputs_unlike_the_training_images(tmp_path, data_root, capsys):
    """The validation images with the highest and the lowest prediction entropy (committed ood_scores.csv of the
    shipped model): the first is flagged (warning column and stderr), the second is not."""
    scores = pd.read_csv(REPO / "docs/results/diagnosis/ham10000_val/ood_scores.csv")
    high, low = scores.loc[scores["entropy"].idxmax(), "image"], scores.loc[scores["entropy"].idxmin(), "image"]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in (high, low):
        write_image(inputs / f"{name}.png", read_image(data_root / "ham10000" / "images" / f"{name}.jpg"))
    out = tmp_path / "out"
    assert main(["diagnose", str(inputs), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    rows = {r["image"]: r for r in csv.DictReader(open(out / "image_sources.csv"))}
    assert list(rows[high]) == ["image", "file", "warning"]
    assert rows[high]["warning"].startswith("unlike the training images") and rows[low]["warning"] == ""
    assert f"{high}.png: unlike the training images" in err and low not in err
    assert list(pd.read_csv(out / "predictions.csv").columns) == ["image", *HAM_CLASSES]  # still the ISIC format


def test_a_limited_set_without_melanomas_says_why_it_has_no_auc(tmp_path, capsys):
    """Try-out finding: the first 6 PH2 images are all nevi; the summary gave a null AUC with no reason and called
    the set "all 200 images"."""
    out = tmp_path / "eval"
    assert main(["evaluate-diagnosis", "--dataset", "ph2", "--limit", "6", "--out", str(out)]) == 0
    summary = json.loads((out / "ph2" / "summary.json").read_text())
    assert summary["melanoma_vs_nevus"] is None and summary["images"] == 6
    assert summary["melanoma_vs_nevus_note"] == "not computed: 0 melanomas and 6 nevi among these images"
    assert summary["dataset"].startswith("the first 6 images only (--limit)")
    row = pd.read_csv(out / "summary.csv").iloc[0]  # the counts are there even without an AUC (they were empty)
    assert (row["set"], row["melanoma"], row["nevus"]) == ("ph2", 0, 6)
    capsys.readouterr()
    # another set into the same folder: the earlier set's folder is not in this summary.csv, and that is said
    assert main(["evaluate-diagnosis", "--dataset", "isic2018_task1", "--limit", "2", "--out", str(out)]) == 0
    assert f"note: {out / 'ph2'} holds an earlier evaluation" in capsys.readouterr().err
    assert list(pd.read_csv(out / "summary.csv")["set"]) == ["isic2018_task1"]


def test_a_refused_set_leaves_no_run_json_and_a_missing_mask_dir_is_named(tmp_path, capsys):
    """Try-out findings: evaluate-diagnosis refused over a user's own OUT/ph2/predictions.csv left OUT/run.json
    behind marked failed; a --mask-dir that does not exist was silently ignored."""
    out = tmp_path / "eval"
    (out / "ph2").mkdir(parents=True)
    (out / "ph2" / "predictions.csv").write_text("mine\n")
    assert main(["evaluate-diagnosis", "--dataset", "ph2", "--limit", "2", "--out", str(out)]) == 2
    assert "predictions.csv: exists and was not written by dermoseg" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["ph2"] and (out / "ph2" / "predictions.csv").read_text() == "mine\n"
    assert main(["evaluate-diagnosis", "--dataset", "ph2", "--mask-dir", str(tmp_path / "none"),
                 "--out", str(tmp_path / "other")]) == 2
    assert "--mask-dir folder not found" in capsys.readouterr().err
    # try-out findings: the mask options given to the shipped classifier (no mask) were silently ignored, and a
    # wrong data folder left OUT/run.json and OUT/ph2/run.json marked failed
    (tmp_path / "masks").mkdir()
    for extra in (["--mask-dir", str(tmp_path / "masks")], ["--segmentation-model", "fast"]):
        assert main(["evaluate-diagnosis", "--dataset", "ph2", "--limit", "2", "--out", str(tmp_path / "m"), *extra]) == 2
        assert "this classifier does not use the lesion mask" in capsys.readouterr().err
    assert main(["evaluate-diagnosis", "--dataset", "ph2", "--limit", "2", "--out", str(tmp_path / "w"),
                 "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "PH2_dataset.txt not found" in capsys.readouterr().err
    assert not (tmp_path / "m").exists() and not (tmp_path / "w").exists()
