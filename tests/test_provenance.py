"""Issue #11 finding 7: run.json beside every results table; mm measurements; --mm-per-pixel checks;
'dermoseg info' on the classifier; '%' in preprocess --help."""

from __future__ import annotations

import csv
import datetime as dt
import json
import shutil

import pytest

from dermoseg import __version__
from dermoseg.cli import main
from dermoseg.io import file_sha256


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def one_image(tmp_path, isic_samples):
    shutil.copy(isic_samples[0].image_path, tmp_path / "a.jpg")
    return tmp_path / "a.jpg"


def _run_json(folder, engine="onnx"):
    """The folder's run.json, checked; ``engine``: the runtime the run's models ran on (ONNX Runtime by default;
    None for a run without a model)."""
    record = json.loads((folder / "run.json").read_text())
    assert record["dermoseg_version"] == __version__ and record["engine"] == engine and record["status"] == "complete"
    assert all(m["engine"] == engine for m in record["models"] if m["role"] != "quality"), record["models"]
    for key in ("started", "finished"):
        assert dt.datetime.fromisoformat(record[key]).tzinfo is not None
    for m in record["models"]:
        assert m["sha256"] == file_sha256(m["path"])
    return record


def test_segment_run_json_and_mm_measurements(tmp_path, one_image):
    out = tmp_path / "out"
    assert main(["segment", str(one_image), "--out", str(out), "--no-tta", "--mm-per-pixel", "0.02"]) == 0
    record = _run_json(out)
    assert record["command_line"].startswith("dermoseg segment") and "--mm-per-pixel 0.02" in record["command_line"]
    assert [m["file"] for m in record["models"]] == ["segmentation.pt"]
    assert record["engine"] == "onnx" and record["models"][0]["engine"] == "onnx"  # the default engine ran
    assert record["models"][0]["onnx_sha256"] == file_sha256(record["models"][0]["onnx_path"])
    assert record["settings"]["threshold"] == 0.5 and record["settings"]["tta"] is False
    assert record["settings"]["preprocess"] is False and record["settings"]["mm_per_pixel"] == 0.02
    assert {"results.csv", "a_segmentation.png", "a_overlay.jpg"} <= set(record["outputs"])
    row = _rows(out / "results.csv")[0]
    assert float(row["area_mm2"]) == pytest.approx(int(row["lesion_area_px"]) * 0.02 ** 2, rel=1e-5)
    assert float(row["perimeter_mm"]) == pytest.approx(float(row["perimeter_px"]) * 0.02, rel=1e-5)
    assert float(row["diameter_mm"]) == pytest.approx(float(row["diameter_px"]) * 0.02, rel=1e-5)


def test_run_json_records_the_engine_that_ran(tmp_path, one_image):
    """run.json said "engine": "torch" for every run, even the default ONNX Runtime one."""
    out = tmp_path / "torch"
    assert main(["segment", str(one_image), "--out", str(out), "--no-tta", "--no-measure", "--engine", "torch"]) == 0
    record = _run_json(out, engine="torch")
    assert record["engine"] == "torch" and record["models"][0]["engine"] == "torch"
    assert "onnx_path" not in record["models"][0]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-0.1"])
def test_mm_per_pixel_must_be_finite_and_positive(tmp_path, one_image, value, capsys):
    assert main(["segment", str(one_image), "--out", str(tmp_path / "o"), f"--mm-per-pixel={value}"]) == 2
    assert "(--mm-per-pixel) must be a finite number > 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_diagnose_preprocess_and_evaluate_write_run_json(tmp_path, one_image, isic_samples):
    assert main(["diagnose", str(one_image), "--out", str(tmp_path / "dx")]) == 0
    record = _run_json(tmp_path / "dx")
    assert [m["file"] for m in record["models"]] == ["classifier.pt"] and "temperature" in record["settings"]
    assert main(["preprocess", str(one_image), "--out", str(tmp_path / "pre")]) == 0
    assert "hair" in _run_json(tmp_path / "pre", engine=None)["settings"]["preprocess_settings"]
    truth = isic_samples[0].mask_path.parent
    pred = tmp_path / "pred"
    pred.mkdir()
    shutil.copy(isic_samples[0].mask_path, pred)
    sub = tmp_path / "ids.txt"
    sub.write_text(isic_samples[0].image_id + "\n")
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--subset", str(sub),
                 "--out", str(tmp_path / "ev")]) == 0
    record = _run_json(tmp_path / "ev", engine=None)
    assert record["settings"]["truth"] == str(truth) and {"summary.json", "per_image.csv"} <= set(record["outputs"])


def test_info_accepts_the_classifier_file(capsys):
    from dermoseg.modelfile import shipped
    assert main(["info", "--model", str(shipped("classifier"))]) == 0
    out = capsys.readouterr().out
    assert "classifier.pt" in out and "parameters:" in out and "GMAC" in out
    # try-out finding: the classifier's shipped name where a segmentation model goes was "model file not found"
    assert main(["combine-segmenters", "fast", "classifier", "--out", "x.pt"]) == 2
    assert "classifier: the shipped classifier, not a segmentation model" in capsys.readouterr().err
    # try-out finding: a size the ensemble cannot take was an "unexpected ValueError"
    assert main(["info", "--model", "classifier", "--size", "192", "192"]) == 2
    err = capsys.readouterr().err
    assert "cannot count at --size 192 192" in err and "unexpected" not in err


def test_info_takes_the_shipped_name_classifier_and_names_an_onnx_file(tmp_path, capsys):
    """`info --model classifier` said "classifier: model file not found" (export takes the name), and an .onnx
    file given as --model got "not a readable model file (UnpicklingError ...)"."""
    from dermoseg.modelfile import shipped
    assert main(["info", "--model", "classifier"]) == 0
    assert "classifier.pt" in capsys.readouterr().out
    onnx = shipped("classifier").with_suffix(".onnx")
    for command in (["info", "--model", str(onnx)], ["segment", str(onnx), "--model", str(onnx), "--out", str(tmp_path / "o")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "ONNX export" in err and "classifier.pt" in err and "Unpickling" not in err


@pytest.mark.parametrize("command, phrase", [("preprocess", "hair %, hair count"),
                                             ("fit-quality", "for a 10% review rate"),
                                             ("evaluate-quality", "when 10% of images"),
                                             ("evaluate-diagnosis", "at 90% specificity")])
def test_help_prints_percent_signs(capsys, command, phrase):
    """argparse expands % in option help (written %%) but prints a description as it is (written %)."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert phrase in text and "%%" not in text


def test_a_second_run_into_the_folder_keeps_the_first_runs_record(tmp_path, one_image, isic_samples):
    out = tmp_path / "out"
    assert main(["segment", str(one_image), "--out", str(out), "--no-tta", "--no-measure"]) == 0
    truth = tmp_path / "truth"
    truth.mkdir()
    shutil.copy(isic_samples[0].mask_path, truth / "a_segmentation.png")
    assert main(["evaluate", "--pred", str(out), "--truth", str(truth), "--out", str(out)]) == 0
    record = _run_json(out, engine=None)
    assert record["command"] == "evaluate" and [r["command"] for r in record["earlier_runs"]] == ["segment"]
    assert record["earlier_runs"][0]["models"][0]["file"] == "segmentation.pt"
    assert {"results.csv", "a_segmentation.png", "summary.json"} <= set(record["outputs"])


def test_resume_checks_the_last_run_of_the_same_command_even_after_another_command(tmp_path, isic_samples, capsys):
    """segment, then diagnose into the same folder, then segment --resume with another threshold: the check looked
    only at the latest run.json record (diagnose), passed, and results.csv mixed rows of thresholds 0.5 and 0.9."""
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    shutil.copy(isic_samples[0].image_path, a)
    shutil.copy(isic_samples[1].image_path, b)
    out = str(tmp_path / "out")
    assert main(["segment", str(a), "--out", out, "--no-measure", "--no-tta"]) == 0
    assert main(["diagnose", str(b), "--out", out]) == 0
    capsys.readouterr()
    assert main(["segment", str(a), str(b), "--out", out, "--no-measure", "--no-tta", "--resume",
                 "--threshold", "0.9"]) == 2
    assert "threshold = 0.9, but the run being resumed used 0.5" in capsys.readouterr().err
    assert main(["segment", str(a), str(b), "--out", out, "--no-measure", "--no-tta", "--resume"]) == 0
    assert [r["image_id"] for r in _rows(tmp_path / "out" / "results.csv")] == ["a", "b"]


def test_mm_per_pixel_with_no_measure_is_refused(tmp_path, one_image, capsys):
    """--mm-per-pixel was silently ignored with --no-measure: no mm column at all, no message."""
    assert main(["segment", str(one_image), "--out", str(tmp_path / "o"), "--no-measure", "--mm-per-pixel", "0.02"]) == 2
    assert "--mm-per-pixel" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_file_sha256_is_remembered_only_while_the_file_is_unchanged(tmp_path):
    import hashlib

    from dermoseg.io import file_sha256, write_bytes
    path = write_bytes(tmp_path / "model.pt", b"first")
    assert file_sha256(path) == file_sha256(path) == hashlib.sha256(b"first").hexdigest()
    write_bytes(path, b"other")  # same size, replaced in place as every write of the project does
    assert file_sha256(path) == hashlib.sha256(b"other").hexdigest()


def test_a_fresh_run_refuses_a_folder_holding_masks_it_would_not_replace(tmp_path, isic_samples, capsys):
    """Try-out finding: segment a and b into a folder, then a fresh segment of b alone with another model into the
    same folder: a's mask and overlay stayed, listed in run.json as if the new run had made them, and evaluate
    --pred would score them. Now the fresh run is refused (nothing written); re-running on the same images, or
    --resume, is allowed."""
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    shutil.copy(isic_samples[0].image_path, a)
    shutil.copy(isic_samples[1].image_path, b)
    out = tmp_path / "out"
    assert main(["segment", str(a), str(b), "--out", str(out), "--no-measure", "--no-tta", "--model", "fast"]) == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(["segment", str(b), "--out", str(out), "--no-measure", "--no-tta", "--model", "fast"]) == 2
    err = capsys.readouterr().err
    assert "holds 2 per-image output(s) of an earlier run" in err and "a_overlay.jpg" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert main(["segment", str(a), str(b), "--out", str(out), "--no-measure", "--no-tta", "--model", "fast"]) == 0
    assert main(["segment", str(b), "--out", str(out), "--no-measure", "--no-tta", "--model", "fast", "--resume"]) == 0


def _hold_lock(folder):
    """A separate process holding ``folder``'s lock (started and ready); kill it to end the hold."""
    import subprocess
    import sys
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom dermoseg.provenance import "
                               "acquire_folder\nacquire_folder(sys.argv[1])\nprint('ready', flush=True)\n"
                               "time.sleep(60)", str(folder)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    return holder


def test_a_locked_folder_is_named_before_what_its_files_suggest(tmp_path, one_image, capsys):
    """Try-out finding: a run into a folder another run was writing, with other inputs, was told the folder holds
    an earlier run's outputs and to use --resume, which then met the lock; the lock comes first now."""
    out = tmp_path / "out"
    other = tmp_path / "b.jpg"
    other.write_bytes(one_image.read_bytes())
    assert main(["segment", str(one_image), "--out", str(out), "--no-tta", "--no-measure", "--model", "fast"]) == 0
    holder = _hold_lock(out)
    try:
        capsys.readouterr()
        assert main(["segment", str(other), "--out", str(out), "--no-tta", "--no-measure", "--model", "fast"]) == 2
        err = capsys.readouterr().err
        assert f"another dermoseg run (process {holder.pid} on " in err and "per-image output" not in err
    finally:
        holder.kill()
        holder.wait()


def test_a_batch_takes_its_folder_lock_once_and_keeps_it_until_it_ends(tmp_path, one_image, monkeypatch):
    """Review finding: the lock was probed (taken and dropped) and then taken again by start_run, leaving a window
    in which another run could take the folder. It is taken once now, held while the images are processed, and
    gone after the run."""
    from dermoseg import provenance
    taken, held_during = [], []
    acquire = provenance.acquire_folder

    def counting(folder, *args, **kwargs):
        took = acquire(folder, *args, **kwargs)
        taken.append(took)
        return took
    monkeypatch.setattr(provenance, "acquire_folder", counting)
    read = __import__("dermoseg.batch", fromlist=["read_image"]).read_image

    def reading(path):
        held_during.append(set(provenance.held_folders()))
        return read(path)
    monkeypatch.setattr("dermoseg.batch.read_image", reading)
    out = tmp_path / "out"
    assert main(["segment", str(one_image), "--out", str(out), "--no-tta", "--no-measure", "--model", "fast"]) == 0
    assert taken == [True] and held_during == [{out.resolve()}]
    assert out.resolve() not in provenance.held_folders() and not (out / provenance.LOCK_FILE).exists()


def test_two_runs_never_write_into_one_folder_at_once(tmp_path, one_image, capsys):
    """Try-out finding: a second segment into a folder another one was still writing gave 41 rows for 40 images.
    A run holds a lock on its folder: while another process holds it, a run is refused naming that process;
    once that process is killed (no clean-up of its own) the lock is free; the lock file is gone after a run,
    also after a refused one."""
    from dermoseg.provenance import LOCK_FILE
    out = tmp_path / "out"
    out.mkdir()
    holder = _hold_lock(out)
    try:
        assert main(["segment", str(one_image), "--out", str(out), "--no-tta", "--no-measure"]) == 2
        assert f"another dermoseg run (process {holder.pid} on " in capsys.readouterr().err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written, its lock left alone
    finally:
        holder.kill()
        holder.wait()
    assert (out / LOCK_FILE).exists()  # left by the killed process, but holding nothing
    assert main(["segment", str(one_image), "--out", str(out), "--no-tta", "--no-measure"]) == 0
    assert not (out / LOCK_FILE).exists() and (out / "results.csv").is_file()
    (out / "results.csv").write_text("mine")  # a failed run (a claim refused) releases the lock too
    (out / "run.json").unlink()
    assert main(["segment", str(one_image), "--out", str(out), "--no-tta", "--no-measure"]) == 2
    assert not (out / LOCK_FILE).exists()


def test_a_runs_failures_stay_in_run_json_when_a_later_run_replaces_failures_csv(tmp_path, one_image, capsys):
    """Try-out finding: segment into a diagnose run's folder replaced its failures.csv, and the list of files
    diagnose could not read was lost. Each run's failures are also in its run.json record, kept in earlier_runs."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a picture")
    out = tmp_path / "out"
    assert main(["diagnose", str(one_image), str(bad), "--out", str(out)]) == 1
    assert main(["segment", str(one_image), "--out", str(out), "--no-tta", "--no-measure"]) == 0
    assert not (out / "failures.csv").exists()  # this run had none
    record = _run_json(out, engine="onnx")
    assert record["failures"] == [] and record["earlier_runs"][-1]["command"] == "diagnose"
    (failure,) = record["earlier_runs"][-1]["failures"]
    assert failure["file"].endswith("bad.jpg") and failure["reason"]


def test_a_failing_command_leaves_an_api_callers_run_and_lock_alone(tmp_path, capsys):
    """Review finding: a failing main() finished every open run of the process, also one an API caller had
    started (marked failed, its folder lock released)."""
    from dermoseg.provenance import LOCK_FILE, held_folders, start_run
    record = start_run(tmp_path / "api", "mine", [], {}, [])
    assert main(["evaluate", "--pred", str(tmp_path / "none"), "--truth", str(tmp_path / "none")]) == 2
    capsys.readouterr()
    assert json.loads((tmp_path / "api" / "run.json").read_text())["status"] == "running"
    assert (tmp_path / "api").resolve() in held_folders()
    record.finish()
    assert json.loads((tmp_path / "api" / "run.json").read_text())["status"] == "complete"
    assert not (tmp_path / "api" / LOCK_FILE).exists()
