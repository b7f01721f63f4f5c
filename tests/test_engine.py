"""The inference engine's parts: CPU count from affinity and cgroups, the ordered pipeline, ONNX export and its
check, the ONNX Runtime runner's metadata (issue #14)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from dermoseg import modelfile
from dermoseg.classification.classifier import Classifier
from dermoseg.cli import main
from dermoseg.engine import ENGINES, make_runner, onnx_path_for
from dermoseg.engine.onnx_export import ExportCheckError, export_metadata, export_onnx
from dermoseg.engine.ort_runner import OnnxFileError, OrtRunner
from dermoseg.engine.pipeline import run_ordered
from dermoseg.engine.threads import available_cpus, cgroup_cpu_limit, inference_threads
from dermoseg.errors import ModelFileError
from dermoseg.io import file_sha256, read_image


# ------------------------------------------------------------------------------------------------ threads
def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_is_the_smallest_quota_on_the_path(tmp_path):
    _write(tmp_path / "cpu.max", "max 100000\n")
    _write(tmp_path / "user.slice" / "cpu.max", "300000 100000\n")
    _write(tmp_path / "user.slice" / "job" / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_limit(tmp_path, "0::/user.slice/job\n") == 1.5
    _write(tmp_path / "user.slice" / "job" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(tmp_path, "0::/user.slice/job\n") == 3.0


def test_cgroup_v1_quota_and_no_limit(tmp_path):
    _write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")
    _write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path, "4:cpu,cpuacct:/\n0::/\n") is None
    _write(tmp_path / "cpu" / "docker" / "c1" / "cpu.cfs_quota_us", "50000\n")
    _write(tmp_path / "cpu" / "docker" / "c1" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path, "4:cpu,cpuacct:/docker/c1\n") == 0.5


def test_threads_follow_affinity_and_the_request(monkeypatch):
    import os
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert inference_threads() == 1
    assert inference_threads(3) == 3
    with pytest.raises(ValueError, match="--threads"):
        inference_threads(0)


# ------------------------------------------------------------------------------------------------ pipeline
def test_pipeline_keeps_input_order_fails_items_alone_and_bounds_work_in_flight():
    started, done = [], []

    def read(i, _):
        started.append(i)
        if i == 3:
            raise KeyError("bad file")
        time.sleep(0.002 * (i % 3))
        return i * 10

    def infer(i, v):
        time.sleep(0.002 * ((i + 1) % 2))
        return v + 1

    out = []
    for item, result in run_ordered(range(12), [read, infer, lambda i, v: str(v)], depth=2, expected=(KeyError,)):
        done.append(item)
        out.append((item, result))
        assert len(started) - len(done) <= 2 * 3 + 3  # queues of 2 after each of 3 stages, plus one item per stage
        time.sleep(0.003)
    assert [i for i, _ in out] == list(range(12))
    assert isinstance(out[3][1], KeyError)
    assert [r for i, r in out if i != 3] == [str(i * 10 + 1) for i in range(12) if i != 3]


def test_pipeline_reraises_an_unexpected_error_and_stops_its_threads():
    before = threading.active_count()

    def infer(i, v):
        if i == 2:
            raise ZeroDivisionError("bug")
        return i

    with pytest.raises(ZeroDivisionError):
        list(run_ordered(range(100), [lambda i, v: i, infer], expected=(KeyError,)))
    assert threading.active_count() == before


# ------------------------------------------------------------------------------------------- ONNX export
@pytest.fixture(scope="module")
def torch_classifier():
    return Classifier.load(engine="torch", threads=1)


@pytest.fixture(scope="module")
def check_batch(isic_samples, ph2_samples, torch_classifier):
    return np.stack([torch_classifier.prepare(read_image(s.image_path)) for s in isic_samples[:2] + ph2_samples[:2]])


def test_export_refuses_to_write_a_graph_that_disagrees_with_pytorch(tmp_path, check_batch, torch_classifier):
    import torch

    class Skewed(torch.nn.Module):
        """The real classifier, with a graph that differs when exported (a broken exporter's behaviour)."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            logits = self.net(x)
            return logits + 0.05 * torch.arange(7.0) if torch.compiler.is_exporting() else logits

    network = torch_classifier.network
    meta, _ = export_metadata(torch_classifier)
    out = tmp_path / "skewed.onnx"
    with pytest.raises(ExportCheckError, match="differs from PyTorch"):
        export_onnx(Skewed(network), meta, out, check_batch)
    assert not out.exists() and not list(tmp_path.iterdir())
    report = export_onnx(network, meta, out, check_batch)
    assert report.max_prob_diff <= 1e-3 and out.is_file()
    runner = OrtRunner(out, threads=1)
    assert runner.metadata["task"] == "classification" and runner.metadata["temperature"] == meta["temperature"]
    for n in (1, 3):  # dynamic batch size
        assert runner(check_batch[:n]).shape == (n, 7)
    with pytest.raises(FileExistsError):
        export_onnx(network, meta, out, check_batch)


def test_shipped_onnx_files_record_their_source_and_metadata():
    for kind in ("segmentation", "classifier"):
        pt = modelfile.shipped(kind)
        runner = OrtRunner(onnx_path_for(pt), threads=1)
        meta = runner.metadata
        runner.check_source(file_sha256(pt))
        assert meta["source_file"] == pt.name and meta["model_card"] == pt.with_suffix(".md").name
        assert len(meta["mean"]) == 3 and len(meta["std"]) == 3 and isinstance(meta["tta"], bool)
    assert OrtRunner(onnx_path_for(modelfile.shipped("segmentation")), 1).metadata["threshold"] == 0.5
    assert OrtRunner(onnx_path_for(modelfile.shipped("classifier")), 1).metadata["class_names"][0] == "MEL"
    # what the image needs before the network, for users of the ONNX file outside dermoseg
    assert OrtRunner(onnx_path_for(modelfile.shipped("segmentation")), 1).metadata["preprocess"] == {"enabled": False}
    assert OrtRunner(onnx_path_for(modelfile.shipped("classifier")), 1).metadata["shades_of_gray_p"] is None


def test_a_stale_or_missing_onnx_file_is_refused(tmp_path, capsys, torch_classifier):
    import shutil
    pt = tmp_path / "model.pt"
    shutil.copy(modelfile.shipped("classifier"), pt)

    def build():
        return torch_classifier.network

    assert make_runner(build, pt).engine == "torch"  # no export beside it: PyTorch, with a note
    assert "has no ONNX export" in capsys.readouterr().err
    with pytest.raises(OnnxFileError, match="not found"):
        make_runner(build, pt, engine="onnx")
    shutil.copy(onnx_path_for(modelfile.shipped("segmentation")), onnx_path_for(pt))
    with pytest.raises(OnnxFileError, match="remove it and export again"):
        make_runner(build, pt)
    with pytest.raises(ValueError, match="unknown engine"):
        make_runner(build, pt, engine="tensorrt")
    assert ENGINES == ("onnx", "torch")


def test_model_names_resolve_to_shipped_files(tmp_path):
    assert modelfile.resolve(None, "segmentation") == modelfile.resolve("default", "segmentation")
    assert modelfile.resolve(tmp_path / "x.pt", "segmentation") == tmp_path / "x.pt"
    fast = modelfile.WEIGHTS_DIR / modelfile.PRESETS["segmentation"]["fast"]
    if fast.is_file():
        assert modelfile.resolve("fast", "segmentation") == fast
    else:
        with pytest.raises(ModelFileError, match="'fast' segmentation model is not shipped"):
            modelfile.resolve("fast", "segmentation")
    assert modelfile.kind_of("classifier") == "classifier" and modelfile.kind_of(None) == "segmentation"
    assert modelfile.kind_of(str(modelfile.shipped("classifier"))) == "classifier"
    # "classifier" names the shipped classifier wherever a classifier is expected (diagnose --model, serve
    # --classifier), as it does for info and export; where a segmentation model goes it is named as such
    assert modelfile.resolve("classifier", "classifier") == modelfile.shipped("classifier")
    with pytest.raises(ModelFileError, match="the shipped classifier, not a segmentation model"):
        modelfile.resolve("classifier", "segmentation")
    # an ONNX export given as the model: the .pt beside it is named only when it exists (an export of a shipped
    # model, written elsewhere, pointed at a .pt that was never there)
    shipped_onnx = modelfile.WEIGHTS_DIR / "segmentation.onnx"
    with pytest.raises(ModelFileError, match=r"give the \.pt file it was exported from \(segmentation\.pt\)"):
        modelfile.kind_of(shipped_onnx)
    copy = tmp_path / "fast.onnx"
    copy.write_bytes(b"not read")
    with pytest.raises(ModelFileError, match=r"exported from, or the shipped model's name \(default, fast, classifier\)"):
        modelfile.kind_of(copy)
    with pytest.raises(ModelFileError, match=r"shipped model's name \(default, classifier\)"):  # no segmentation preset
        modelfile.read(copy, "classifier")


def test_export_command_writes_a_checked_file_and_refuses_to_overwrite(tmp_path, isic_samples, ph2_samples, capsys):
    images = [str(s.image_path) for s in isic_samples[:2] + ph2_samples[:1]]
    out = tmp_path / "seg.onnx"
    assert main(["export", "--model", "default", "--format", "onnx", "--out", str(out), "--check-images", *images]) == 0
    assert "largest probability difference" in capsys.readouterr().out
    runner = OrtRunner(out, threads=1)
    assert runner.metadata["task"] == "segmentation"
    runner.check_source(file_sha256(modelfile.shipped("segmentation")))
    before = out.read_bytes()
    assert main(["export", "--out", str(out), "--check-images", *images]) == 2
    assert "never overwritten" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["export", "--out", str(tmp_path / "seg.pt"), "--check-images", *images]) == 2
    assert "must end in .onnx" in capsys.readouterr().err and not (tmp_path / "seg.pt").exists()
