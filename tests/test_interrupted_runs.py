"""Issue #11 finding 3: tables are written row by row (valid after Ctrl-C, never a stale table), --resume
skips finished images, a file name that is not UTF-8 fails alone, Ctrl-C at start-up prints no traceback."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dermoseg.cli import main

REPO = Path(__file__).resolve().parents[1]


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def four_images(tmp_path, isic_samples):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, s in enumerate(isic_samples[:4]):
        shutil.copy(s.image_path, folder / f"im{i}.jpg")
    return folder


def _interrupt_on(monkeypatch, module, name, after):
    """Make ``module.name`` raise KeyboardInterrupt (as Ctrl-C does) on its call number ``after + 1``."""
    original, calls = getattr(module, name), []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) > after:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


def test_segment_interrupted_keeps_finished_rows_and_resume_completes(tmp_path, four_images, monkeypatch, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(four_images), "--out", str(out), "--no-tta", "--no-measure"]) == 0
    assert len(_rows(out / "results.csv")) == 4
    import dermoseg.segmentation.job as segment
    with monkeypatch.context() as m:
        _interrupt_on(m, segment, "draw_overlay", 2)  # Ctrl-C while the third image is being written
        assert main(["segment", str(four_images), "--out", str(out), "--no-tta", "--no-measure"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    rows = _rows(out / "results.csv")
    assert [r["image_id"] for r in rows] == ["im0", "im1"]  # this run's rows, not the earlier run's stale table
    # and only this run's masks: the earlier run's im2 and im3 went when the fresh run began (review finding: the
    # earlier run's im3 and this run's unrowed im2 were left for evaluate --pred to score)
    assert sorted(p.name for p in out.glob("*_segmentation.png")) == ["im0_segmentation.png", "im1_segmentation.png"]
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    done = {p: (out / f"{p}_segmentation.png").stat().st_mtime_ns for p in ("im0", "im1")}
    assert main(["segment", str(four_images), "--out", str(out), "--no-tta", "--no-measure", "--resume"]) == 0
    assert "2 already done" in capsys.readouterr().out
    assert [r["image_id"] for r in _rows(out / "results.csv")] == ["im0", "im1", "im2", "im3"]
    assert {p: (out / f"{p}_segmentation.png").stat().st_mtime_ns for p in done} == done  # not redone


def test_ctrl_c_between_an_images_writes_and_its_row_leaves_no_orphan_mask(tmp_path, four_images, monkeypatch):
    """Try-out finding: Ctrl-C after an image's mask was written but before its overlay and row left the mask on
    disk with no row, where evaluate --pred would pick it up. It is removed now; --resume makes it again."""
    out = tmp_path / "out"
    import dermoseg.segmentation.job as segment
    with monkeypatch.context() as m:
        _interrupt_on(m, segment, "draw_overlay", 2)  # the third image's mask is written, then Ctrl-C
        assert main(["segment", str(four_images), "--out", str(out), "--no-tta", "--no-measure"]) == 130
    assert [r["image_id"] for r in _rows(out / "results.csv")] == ["im0", "im1"]
    assert sorted(p.name for p in out.glob("*_segmentation.png")) == ["im0_segmentation.png", "im1_segmentation.png"]
    assert set(json.loads((out / "run.json").read_text())["outputs"]) >= {"im0_segmentation.png", "im1_overlay.jpg"}
    assert main(["segment", str(four_images), "--out", str(out), "--no-tta", "--no-measure", "--resume"]) == 0
    assert len(list(out.glob("*_segmentation.png"))) == 4


def test_sigterm_ends_a_run_like_ctrl_c(tmp_path, four_images, monkeypatch, capsys):
    """Try-out finding: SIGTERM (kill, timeout, SLURM, docker stop) killed the process at once: a mask without a
    row, and run.json saying "running". It now ends the run as Ctrl-C does (exit 143): rows and masks agree,
    run.json says interrupted, --resume completes."""
    import dermoseg.segmentation.job as segment
    out = tmp_path / "out"
    original, calls = segment.draw_overlay, []

    def overlay_then_term(*args, **kwargs):  # the third image: its mask is written, then SIGTERM arrives
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs in the main thread meanwhile
        return original(*args, **kwargs)

    monkeypatch.setattr(segment, "draw_overlay", overlay_then_term)
    assert main(["segment", str(four_images), "--out", str(out), "--no-tta", "--no-measure"]) == 143
    assert "terminated" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored for the caller
    rows = [r["image_id"] for r in _rows(out / "results.csv")]
    assert sorted(p.name.removesuffix("_segmentation.png") for p in out.glob("*_segmentation.png")) == rows
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    monkeypatch.undo()
    assert main(["segment", str(four_images), "--out", str(out), "--no-tta", "--no-measure", "--resume"]) == 0
    assert len(_rows(out / "results.csv")) == 4


def test_preprocess_and_diagnose_tables_survive_an_interruption(tmp_path, four_images, monkeypatch):
    import dermoseg.preprocess.batch as preprocess_batch
    from dermoseg.classification.classifier import Classifier
    _interrupt_on(monkeypatch, preprocess_batch, "clean_image", 1)
    _interrupt_on(monkeypatch, Classifier, "calibrated", 3)  # diagnose's last step per image, after the network
    assert main(["preprocess", str(four_images), "--out", str(tmp_path / "pre")]) == 130
    assert [r["image_id"] for r in _rows(tmp_path / "pre" / "preprocess.csv")] == ["im0"]
    assert main(["diagnose", str(four_images), "--out", str(tmp_path / "dx")]) == 130
    predictions = _rows(tmp_path / "dx" / "predictions.csv")
    assert [r["image"] for r in predictions] == ["im0", "im1", "im2"]
    assert list(predictions[0]) == ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]  # ISIC format
    assert main(["diagnose", str(four_images), "--out", str(tmp_path / "dx"), "--resume"]) == 130  # 4th call fails
    monkeypatch.undo()
    assert main(["diagnose", str(four_images), "--out", str(tmp_path / "dx"), "--resume"]) == 0
    assert [r["image"] for r in _rows(tmp_path / "dx" / "predictions.csv")] == ["im0", "im1", "im2", "im3"]


@pytest.mark.parametrize("command, tables", [("diagnose", ["predictions.csv", "image_sources.csv"]),
                                             ("segment", ["results.csv"])])
def test_ctrl_c_while_a_row_is_appended_takes_effect_after_all_tables(tmp_path, four_images, monkeypatch, command,
                                                                     tables):
    """Try-out finding: Ctrl-C landing while an image's row was being written (after the fsync, before the run
    noted the row) left predictions.csv one row longer than image_sources.csv, and segment's clean-up removed
    the mask and overlay of an image whose row was on disk. The interruption now takes effect after the image's
    rows are in every table: the tables agree, and every row's outputs exist."""
    from dermoseg.tables import CsvTable
    original, calls = CsvTable.append, []

    def append_then_ctrl_c(self, row):
        original(self, row)
        calls.append(self.path.name)
        if len(calls) == 1:  # the first table of the first image: Ctrl-C arrives now
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler runs in the main thread meanwhile

    monkeypatch.setattr(CsvTable, "append", append_then_ctrl_c)
    out = tmp_path / "out"
    assert main([command, str(four_images), "--out", str(out), *(["--no-measure"] if command == "segment" else [])]) \
        == 130
    keys = [[r.get("image", r.get("image_id")) for r in _rows(out / t)] for t in tables]
    assert all(k == ["im0"] for k in keys), keys  # the first image's rows in every table, and no other
    if command == "segment":
        assert sorted(p.name for p in out.glob("im0_*")) == ["im0_overlay.jpg", "im0_segmentation.png"]
    assert json.loads((out / "run.json").read_text())["counts"]["processed"] == 1


@pytest.mark.parametrize("command", ["segment", "preprocess", "diagnose"])
def test_a_file_name_that_is_not_utf8_fails_alone(tmp_path, isic_samples, command, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(isic_samples[0].image_path, folder / "good.jpg")
    odd = os.path.join(os.fsencode(folder), b"bad\xff\xfename.jpg")  # Latin-1 bytes: not valid UTF-8
    shutil.copy(isic_samples[1].image_path, odd)
    argv = [command, str(folder), "--out", str(tmp_path / "out")] + (["--no-tta"] if command == "segment" else [])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "bad\\xff\\xfename.jpg: file name is not valid UTF-8" in err and "Traceback" not in err
    table = {"segment": "results.csv", "preprocess": "preprocess.csv", "diagnose": "predictions.csv"}[command]
    assert [r.get("image_id", r.get("image")) for r in _rows(tmp_path / "out" / table)] == ["good"]
    assert [r["file"] for r in _rows(tmp_path / "out" / "failures.csv")] == [str(folder / "bad\\xff\\xfename.jpg")]
    assert os.path.exists(odd)


def test_ctrl_c_during_start_up_prints_no_traceback(tmp_path, isic_samples, monkeypatch, capsys):
    import dermoseg.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(cli, "build_parser", interrupted)
        try:
            code = main(["segment", "x.jpg", "--out", str(tmp_path)])
        except KeyboardInterrupt:
            code = "KeyboardInterrupt escaped main()"
        assert code == 130
    assert capsys.readouterr().err == "interrupted\n"
    # a real SIGINT while the command is still importing its libraries
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        # 40 images, so that the run outlasts the presses: a press swallowed while a library imports (some catch
        # everything) must find the next one still in dermoseg's hands, never a run that already ended with 0
        # started with Ctrl-C's default action, as from a terminal: a test run launched as a background job
        # ('pytest &' in a script) inherits SIGINT ignored, and Python then installs no handler at all, so every
        # press would be lost and the run end with 0 (the one failure this test ever had, session 7). A handled
        # (not ignored) SIGINT in this process is reset to the default action by exec, so the child gets it
        # without code run between fork and exec (preexec_fn, unsafe beside threads)
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            # the console script, as a user runs it (under ``python -m dermoseg.cli`` CPython itself still ended
            # about 1 run in 3 with -2 after dermoseg's clean 130, when the press landed in a library's import)
            proc = subprocess.Popen([str(Path(sys.executable).with_name("dermoseg")), "segment",
                                     *(str(s.image_path) for s in isic_samples[:40]), "--out", str(tmp_path / "out")],
                                    env=env, stderr=stderr, text=True)
        finally:  # None: a handler not set from Python; the default action is the nearest to it
            signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)
    # Ctrl-C is pressed again and again until the process has ended, as an impatient user would: a single signal
    # can land in the interpreter's own start-up, before Python has installed its handler, and the presses after
    # dermoseg's answer land in its clean-up and in the interpreter's shutdown, which they used to abort (SIGABRT
    # from a native thread pool, or -2); dermoseg now ignores every press after the first it answers
    time.sleep(0.4)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    proc.wait(timeout=120)
    err = log.read_text()
    assert proc.returncode == 130 and "Traceback" not in err and err.count("interrupted") == 1, (proc.returncode, err)


def test_resume_refuses_other_settings(tmp_path, isic_samples, capsys):
    shutil.copy(isic_samples[0].image_path, tmp_path / "a.jpg")
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "a.jpg"), "--out", str(out), "--no-tta", "--no-measure"]) == 0
    before = (out / "results.csv").read_bytes()
    assert main(["segment", str(tmp_path / "a.jpg"), "--out", str(out), "--no-tta", "--no-measure", "--resume",
                 "--threshold", "0.3"]) == 2
    assert "--resume with threshold = 0.3, but the run being resumed used 0.5" in capsys.readouterr().err
    assert (out / "results.csv").read_bytes() == before
    assert main(["segment", str(tmp_path / "a.jpg"), "--out", str(out), "--no-tta", "--no-measure", "--resume"]) == 0


def test_resume_redoes_an_image_whose_output_is_missing_without_a_second_row(tmp_path, isic_samples):
    """An image with a row but a deleted mask was segmented again on --resume and got a second row in
    results.csv (two rows for one image_id)."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        shutil.copy(isic_samples[i].image_path, src / f"im{i}.jpg")
    out = tmp_path / "out"
    argv = ["segment", str(src), "--out", str(out), "--no-tta", "--no-measure"]
    assert main(argv) == 0
    first = _rows(out / "results.csv")
    (out / "im0_segmentation.png").unlink()
    assert main([*argv, "--resume"]) == 0
    rows = _rows(out / "results.csv")
    assert sorted(r["image_id"] for r in rows) == ["im0", "im1"] and (out / "im0_segmentation.png").is_file()
    assert {r["image_id"]: r["lesion_area_px"] for r in rows} == {r["image_id"]: r["lesion_area_px"] for r in first}


def test_sigterm_stops_training_cleanly_and_a_callers_handler_survives_ctrl_c(tmp_path, data_root, four_images,
                                                                              monkeypatch, capsys):
    """Review findings: Lightning turned an interrupt inside training into sys.exit(1), past the command's own
    handling (no "terminated", no metrics.csv); and a first Ctrl-C left a caller's SIGTERM handler ignored."""
    cfg = tmp_path / "long.yaml"
    cfg.write_text(f"base_config: {REPO / 'configs' / 'smoke.yaml'}\ndata: {{root: {data_root}}}\n"
                   "trainer: {epochs: 500}\n")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "dermoseg.cli", "train", "--config", str(cfg), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not (out / "checkpoints" / "last.ckpt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err, err[-2000:]
    assert (out / "metrics.csv").is_file() and not (out / ".dermoseg-run.lock").exists()

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        import dermoseg.segmentation.job as segment
        with monkeypatch.context() as m:
            _interrupt_on(m, segment, "draw_overlay", 1)
            assert main(["segment", str(four_images), "--out", str(tmp_path / "o"), "--no-tta", "--no-measure"]) == 130
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)
