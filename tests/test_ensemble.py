"""Classifier ensembles (issue 13): the in-network area resize against OpenCV and a hand-worked case, the ensemble
as the mean of its members' calibrated probabilities on real HAM10000 images (members of different input sizes),
its file through calibration, ONNX export and the out-of-distribution sidecar, and the members it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dermoseg import modelfile
from dermoseg.classification.classifier import Classifier
from dermoseg.classification.ensemble import ensemble_config, extract_member
from dermoseg.cli import main
from dermoseg.data.datasets import load_ham10000
from dermoseg.data.splits import HAM_SPLIT, read_split, select
from dermoseg.errors import ModelFileError
from dermoseg.io import read_image
from dermoseg.models.ensemble import area_resize_matrix
from test_classification import _one_thread  # noqa: F401  (autouse: one torch thread, as there)


@pytest.fixture(scope="module")
def val_images(data_root):
    samples = select(load_ham10000(data_root / "ham10000"), read_split(HAM_SPLIT), "val")
    return samples[::60][:12]


def _single(tmp_path: Path, index: int, name: str, size: int | None = None, temperature_factor: float = 1.0,
            **changes) -> Path:
    """Member ``index`` of the shipped ensemble (0: MobileNetV2 at 192 px, 1: EfficientNet-Lite0 at 224 px) as a
    single-network classifier file, optionally declaring another input size, temperature or model config."""
    _, payload = modelfile.read("default", "classifier")
    member = payload["config"]["model"]["members"][index]
    prefix = f"members.{index}."
    state = {k[len(prefix):]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
    config = {"model": {**member["model"], **changes}, "image_size": size or member["image_size"],
              "classes": payload["config"]["classes"], "normalisation": member["normalisation"], "tta": True}
    return modelfile.write(tmp_path / name, "classifier", config, state, {},
                           temperature=member["temperature"] * temperature_factor)


def test_area_resize_matrix_hand_case_and_opencv():
    # 3 → 2 samples: output 0 covers input [0, 1.5), output 1 covers [1.5, 3)
    np.testing.assert_allclose(area_resize_matrix(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]], atol=1e-6)
    np.testing.assert_allclose(area_resize_matrix(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]], atol=1e-6)
    x = np.random.default_rng(0).random((224, 224)).astype(np.float32)
    r = area_resize_matrix(224, 192)
    np.testing.assert_allclose(r @ x @ r.T, cv2.resize(x, (192, 192), interpolation=cv2.INTER_AREA), atol=1e-5)
    with pytest.raises(ValueError, match="shrinks only"):
        area_resize_matrix(192, 224)


@pytest.mark.parametrize("second", ["hotter_192", "lite0_224"])
def test_ensemble_is_the_mean_of_its_members_calibrated_probabilities(tmp_path, val_images, second):
    """The ensemble file's probabilities (T = 1, no flips) are the mean of the members' own calibrated probabilities
    on real images, each member fed its own size: exactly for two 192 px members (the second with twice the
    temperature), up to the input's uint8 rounding for the shipped pair, 192 px MobileNetV2 and 224 px
    EfficientNet-Lite0 (the ensemble shrinks the 224 px input to 192 in float; the member alone resizes to uint8
    first)."""
    small = _single(tmp_path, 0, "mobilenet_v2.pt")
    large = (_single(tmp_path, 0, "hot.pt", temperature_factor=2.0) if second == "hotter_192"
             else _single(tmp_path, 1, "lite0.pt"))
    config, state, records = ensemble_config([small, large])
    size = 192 if second == "hotter_192" else 224
    assert config["image_size"] == size and [m["image_size"] for m in config["model"]["members"]] == [192, size]
    assert records[1]["sha256"] == modelfile.file_sha256(large)
    path = modelfile.write(tmp_path / "ensemble.pt", "classifier", config, state, {}, temperature=1.0)
    ensemble = Classifier.load(path, engine="torch", threads=1)
    members = [Classifier.load(m, engine="torch", threads=1) for m in (small, large)]
    for m in (ensemble, *members):
        m.tta = False
    images = [read_image(s.image_path) for s in val_images]
    alone = [m.predict_batch(images) for m in members]
    expected = np.mean(alone, axis=0)
    got = ensemble.predict_batch(images)
    np.testing.assert_allclose(got, expected, atol=1e-5 if second == "hotter_192" else 1e-2)
    assert np.allclose(got.sum(1), 1.0)
    # and it is not simply one of the members
    assert min(np.abs(got - p).max() for p in alone) > 3 * np.abs(got - expected).max()


def test_ensemble_file_is_calibrated_exported_and_flagged(tmp_path, val_images, data_root):
    """write_calibrated fits the ensemble's own temperature and OOD threshold on (here a few) validation images; the
    file exports to ONNX within the export tolerance and `dermoseg diagnose` runs it with the flag."""
    from dermoseg.classification.task import CachedClassificationDataset, write_calibrated
    from dermoseg.engine.onnx_export import export_model
    config, state, _ = ensemble_config([_single(tmp_path, 0, "small.pt"), _single(tmp_path, 0, "large.pt", 224)])
    unit = tuple(np.asarray(config["normalisation"][k], np.float32) for k in ("mean", "std"))
    val_set = CachedClassificationDataset(val_images, 224, normalisation=unit)
    path = write_calibrated(tmp_path / "ens.pt", config, state, {}, val_set)
    info = json.loads(path.with_suffix(".json").read_text())
    assert info["temperature"] > 0 and info["info"]["val_images"] == len(val_images)
    assert json.loads(path.with_suffix(".ood.json").read_text())["model_sha256"] == modelfile.file_sha256(path)
    report = export_model(path, tmp_path / "ens.onnx", [s.image_path for s in val_images[:3]])
    assert report.max_prob_diff <= 1e-3
    onnx_model = Classifier.load(path, engine="onnx", threads=1)
    torch_model = Classifier.load(path, engine="torch", threads=1)
    image = read_image(val_images[0].image_path)
    np.testing.assert_allclose(onnx_model.predict(image), torch_model.predict(image), atol=1e-3)
    with pytest.raises(ValueError, match=r"takes \(N, 3, 224, 224\) input, got \(1, 3, 192, 192\)"):
        torch_model.network(torch.zeros(1, 3, 192, 192))
    out = tmp_path / "diag"
    assert main(["diagnose", str(val_images[0].image_path), "--model", str(path), "--out", str(out)]) == 0
    assert (out / "predictions.csv").read_text().count("\n") == 2


def test_unusable_members_are_refused_by_name(tmp_path, capsys):
    with pytest.raises(ModelFileError, match="at least two"):
        ensemble_config(["default"])
    single = _single(tmp_path, 0, "single.pt")
    crop = _single(tmp_path, 0, "crop.pt", mask_mode="crop")
    with pytest.raises(ModelFileError, match="crop.pt: an ensemble member must take plain RGB"):
        ensemble_config([single, crop])
    with pytest.raises(ModelFileError, match="classifier.pt: is an ensemble already"):
        ensemble_config([single, "default"])
    wrong_weights = _single(tmp_path, 0, "wrong.pt", encoder="efficientnet_lite0")  # MobileNetV2 weights
    with pytest.raises(ModelFileError, match="wrong.pt: not usable as an ensemble member"):
        ensemble_config([single, wrong_weights])
    assert main(["combine-classifiers", str(single), str(single), "--out", str(tmp_path / "e.json")]) != 0
    assert "must end in .pt" in capsys.readouterr().err and not (tmp_path / "e.json").exists()
    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"not ours")
    assert main(["combine-classifiers", "default", "default", "--out", str(taken)]) != 0
    assert "never overwritten" in capsys.readouterr().err and taken.read_bytes() == b"not ours"


def test_an_ensemble_member_is_written_back_as_a_classifier_file_of_its_own(tmp_path, data_root):
    """extract_member (experiments/ensemble_member.py): member 1 of the shipped ensemble comes out with exactly its weights, input
    size, normalisation and temperature, loads as an ordinary classifier, and gives the probabilities the
    ensemble's own member network gives; a non-ensemble file, a missing member and an existing output are refused."""
    from dermoseg.classification.classifier import input_tensor, prepare_image, recorded_normalisation
    from dermoseg.models.classifier import build_classifier

    _, ensemble = modelfile.read("classifier", "classifier")
    out = extract_member("classifier", 1, tmp_path / "member.pt")
    _, member = modelfile.read(out, "classifier")
    entry = ensemble["config"]["model"]["members"][1]
    assert member["config"]["model"] == entry["model"] and member["config"]["image_size"] == entry["image_size"]
    assert member["config"]["normalisation"] == entry["normalisation"] and member["temperature"] == entry["temperature"]
    assert member["state_dict"].keys() == {k[len("members.1."):] for k in ensemble["state_dict"] if k.startswith("members.1.")}
    assert all(torch.equal(v, ensemble["state_dict"][f"members.1.{k}"]) for k, v in member["state_dict"].items())
    image = read_image(sorted(load_ham10000(data_root / "ham10000"), key=lambda s: s.image_id)[0].image_path)
    p = Classifier.load(out, engine="torch").predict_batch([image])
    assert p.shape == (1, 7) and abs(p.sum() - 1) < 1e-9 and np.all(p >= 0)

    def network(config, state):
        net = build_classifier(config["model"], pretrained=False)
        net.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in state.items()})
        return net.eval()
    x = torch.from_numpy(prepare_image(image, 224).astype(np.float32) / 255).permute(2, 0, 1)[None]  # [0, 1] RGB
    mean, std = (torch.tensor(entry["normalisation"][k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        inside = network(ensemble["config"], ensemble["state_dict"]).members[1]((x - mean) / std)
        alone = network(member["config"], member["state_dict"])(input_tensor(prepare_image(image, 224),
                                                                             recorded_normalisation(member["config"]))[None])
    torch.testing.assert_close(alone, inside, rtol=1e-4, atol=1e-4)
    with pytest.raises(ModelFileError, match="not an ensemble"):
        extract_member(out, 0, tmp_path / "again.pt")
    with pytest.raises(ModelFileError, match="has members 0 to 1, not 2"):
        extract_member("classifier", 2, tmp_path / "two.pt")
    with pytest.raises(FileExistsError, match="never overwritten"):
        extract_member("classifier", 1, out)
    (tmp_path / "other.json").write_text("not ours")  # a file beside the output counts too
    with pytest.raises(FileExistsError, match="other.json: already exists"):
        extract_member("classifier", 1, tmp_path / "other.pt")
    assert (tmp_path / "other.json").read_text() == "not ours" and not (tmp_path / "other.pt").exists()
