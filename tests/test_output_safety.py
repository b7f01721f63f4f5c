"""Issue #11 findings 1 and 4: a run never replaces a file it did not create, skips ground-truth masks and
earlier outputs found by a folder search, and finds an unwritable output folder before any work."""

from __future__ import annotations

import csv
import os
import shutil

import numpy as np
from PIL import Image

from dermoseg.cli import main


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_ground_truth_beside_the_images_is_never_overwritten(tmp_path, isic_samples, capsys):
    folder = tmp_path / "isic"
    folder.mkdir()
    for s in isic_samples[:2]:
        shutil.copy(s.image_path, folder)
        shutil.copy(s.mask_path, folder)  # the ISIC layout when masks are kept with the images
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["segment", str(folder), "--out", str(folder), "--no-tta"]) == 2
    err = capsys.readouterr().err
    assert f"{isic_samples[0].image_id}_segmentation.png: exists and was not written by dermoseg" in err
    assert "Traceback" not in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # refused before any work: nothing written
    # into another folder: the masks are skipped as inputs, with one summary line
    assert main(["segment", str(folder), "--out", str(tmp_path / "out"), "--no-tta"]) == 0
    assert "skipped 2 ground-truth mask(s)" in capsys.readouterr().err
    assert sorted(r["image_id"] for r in _rows(tmp_path / "out" / "results.csv")) == sorted(
        s.image_id for s in isic_samples[:2])


def test_earlier_outputs_and_ph2_lesion_masks_are_not_inputs(tmp_path, ph2_samples, capsys):
    study = tmp_path / "study"
    for s in ph2_samples[:2]:  # the official PH2 layout: IMDxxx/IMDxxx_Dermoscopic_Image/, IMDxxx/IMDxxx_lesion/
        shutil.copytree(s.image_path.parent.parent, study / "PH2 Dataset images" / s.image_id)
    assert main(["segment", str(study), "--out", str(study / "results"), "--no-tta"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 ground-truth mask(s)" in err and "unsupported" not in err
    # a second run over the same folder does not re-segment the first run's masks and overlays
    assert main(["segment", str(study), "--out", str(study / "results_v2"), "--no-tta"]) == 0
    err = capsys.readouterr().err
    assert "skipped 6 ground-truth mask(s)" in err  # 2 lesion masks + the first run's 2 masks and 2 overlays
    assert "unsupported" not in err  # the first run's results.csv and run.json are recognised as its own
    assert sorted(r["image_id"] for r in _rows(study / "results_v2" / "results.csv")) == sorted(
        s.image_id for s in ph2_samples[:2])


def test_binary_single_channel_images_are_recognised_as_masks(tmp_path, isic_samples, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(isic_samples[0].image_path, folder / "photo.jpg")
    truth = np.asarray(Image.open(isic_samples[0].mask_path).convert("L"))
    Image.fromarray(truth).save(folder / "annotation01.png")  # 0/255, no telling name
    Image.fromarray((truth > 128).astype(np.uint8)).save(folder / "annotation02.png")  # 0/1
    gray = np.asarray(Image.open(isic_samples[0].image_path).convert("L"))
    Image.fromarray(gray).save(folder / "gray_photo.png")  # a grayscale photograph is an input
    assert main(["segment", str(folder), "--out", str(tmp_path / "out"), "--no-tta", "--no-measure"]) == 0
    assert "skipped 2 ground-truth mask(s)" in capsys.readouterr().err
    assert sorted(r["image_id"] for r in _rows(tmp_path / "out" / "results.csv")) == ["gray_photo", "photo"]


def test_a_users_own_results_table_is_not_replaced(tmp_path, isic_samples, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("my own notes\n")
    assert main(["segment", str(isic_samples[0].image_path), "--out", str(out), "--no-tta"]) == 2
    assert "results.csv: exists and was not written by dermoseg" in capsys.readouterr().err
    assert (out / "results.csv").read_text() == "my own notes\n" and not (out / "run.json").exists()


def test_unwritable_output_folder_is_found_before_any_work(tmp_path, isic_samples, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # a file where the output folder's parent should be: nothing can be created there
    started = []

    def no_work(*args, **kwargs):
        started.append(True)
        raise RuntimeError("work started")

    import dermoseg.preprocess.batch as preprocess_batch
    import dermoseg.segmentation.evaluate as evaluation
    from dermoseg.classification.classifier import Classifier
    from dermoseg.segmentation.segmenter import Segmenter
    monkeypatch.setattr(Segmenter, "load", staticmethod(no_work))
    monkeypatch.setattr(Classifier, "load", staticmethod(no_work))
    monkeypatch.setattr(evaluation, "evaluate_model", no_work)
    monkeypatch.setattr(evaluation, "evaluate_dirs", no_work)
    monkeypatch.setattr(preprocess_batch, "preprocess_files", no_work)
    image = str(isic_samples[0].image_path)
    truth = str(isic_samples[0].mask_path.parent)
    for argv in (["segment", image], ["diagnose", image], ["preprocess", image], ["evaluate", "--dataset", "ph2"],
                 ["evaluate", "--pred", truth, "--truth", truth]):
        assert main(argv + ["--out", str(blocker / "out")]) == 2, argv
        err = capsys.readouterr().err
        assert f"{blocker / 'out'}: output folder is not writable" in err, (argv, err)
        assert started == [], argv


def test_atomic_writes_never_change_the_process_umask(tmp_path, monkeypatch):
    """The batch jobs write from several threads at once (pipeline stages, tables): a writer that set the umask to 0
    for a moment, even to read it, would let a file or folder made by another thread in that moment be
    world-writable. The written file still gets the permissions any new file would (0666 & ~umask)."""
    from dermoseg.io import write_text
    umask = os.umask(0o022)
    os.umask(umask)

    def forbidden(_mask):
        raise AssertionError("os.umask called while writing")

    monkeypatch.setattr(os, "umask", forbidden)
    write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_second_run_or_resume_into_the_same_folder_accepts_its_own_readme_and_sheet(tmp_path, isic_samples, capsys):
    """diagnose's README.txt and preprocess's --sheet are written after the batch, when run.json had already been
    finished listing only the files present: the next run or --resume into that folder refused them as "not
    written by dermoseg"."""
    image = tmp_path / "a.jpg"
    shutil.copy(isic_samples[0].image_path, image)
    for command in (["diagnose", str(image), "--out", str(tmp_path / "d")],
                    ["preprocess", str(image), "--sheet", "--out", str(tmp_path / "p")]):
        assert main(command) == 0
        assert main([*command, "--resume"]) == 0, capsys.readouterr().err
        assert main(command) == 0, capsys.readouterr().err


def test_an_out_that_is_a_file_is_named_as_such(tmp_path, isic_samples, capsys):
    """--out naming an existing file said "output folder is not writable (File exists)"."""
    image = tmp_path / "a.jpg"
    shutil.copy(isic_samples[0].image_path, image)
    before = image.read_bytes()
    assert main(["segment", str(image), "--out", str(image)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and image.read_bytes() == before


def test_a_run_refused_before_any_work_leaves_no_folder_behind(tmp_path, isic_samples, capsys):
    """The output folders a command created are removed again when it fails while they are still empty; a
    folder that was there before, or that holds anything, is kept."""
    image = str(isic_samples[0].image_path)
    missing = str(tmp_path / "nosuch.pt")
    assert main(["segment", image, "--out", str(tmp_path / "new" / "deeper"), "--model", missing]) == 2
    assert "nosuch.pt" in capsys.readouterr().err and not (tmp_path / "new").exists()
    assert main(["diagnose", image, "--out", str(tmp_path / "diag"), "--model", missing]) == 2
    assert not (tmp_path / "diag").exists()
    (tmp_path / "mine").mkdir()  # the user's own (empty) folder stays
    assert main(["segment", image, "--out", str(tmp_path / "mine"), "--model", missing]) == 2
    assert (tmp_path / "mine").is_dir()
    # a successful command before does not stop the clean-up of the next one's folder
    assert main(["segment", image, "--out", str(tmp_path / "ok"), "--no-tta"]) == 0
    assert main(["segment", image, "--out", str(tmp_path / "after" / "ok"), "--model", missing]) == 2
    assert not (tmp_path / "after").exists() and (tmp_path / "ok" / "results.csv").is_file()
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")  # a run that failed on its only input keeps what it wrote (failures.csv)
    assert main(["segment", str(bad), "--out", str(tmp_path / "ran"), "--no-tta"]) == 1
    assert (tmp_path / "ran" / "failures.csv").is_file()


def test_a_failed_images_partial_outputs_are_removed(tmp_path, isic_samples, monkeypatch, capsys):
    """A disk that fills up between an image's mask and its overlay: the image is reported as failed and the
    mask this run wrote for it is removed (a mask without a row of results.csv would pass for a result); the
    other images' outputs stay."""
    import errno

    import dermoseg.segmentation.job as job
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for s in isic_samples[:3]:
        shutil.copy(s.image_path, folder / f"{s.image_id}.jpg")
    full = isic_samples[1].image_id
    real = job.write_image

    def write_image(path, picture):
        if path.name == f"{full}_overlay.jpg":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, picture)

    monkeypatch.setattr(job, "write_image", write_image)
    assert main(["segment", str(folder), "--out", str(out), "--no-tta", "--threads", "1"]) == 1
    assert f"{full}.jpg: could not write an output: No space left on device" in capsys.readouterr().err
    assert not (out / f"{full}_segmentation.png").exists()
    others = sorted(s.image_id for s in isic_samples[:3] if s.image_id != full)
    assert all((out / f"{i}_segmentation.png").is_file() for i in others)
    with open(out / "results.csv", newline="") as fh:
        assert sorted(r["image_id"] for r in csv.DictReader(fh)) == others


def test_an_input_whose_outputs_are_another_inputs_is_refused_alone(tmp_path, isic_samples, capsys):
    """preprocess writes <stem>.png, <stem>_hair.png, <stem>_frame.png: named explicitly, x.jpg and x_hair.jpg
    would both write x_hair.png. The second input fails with a message and x's outputs are whole; also when
    that second input is unreadable (its failure must not remove what x wrote)."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    shutil.copy(isic_samples[0].image_path, folder / "x.jpg")
    (folder / "x_hair.jpg").write_bytes(b"not an image")
    assert main(["preprocess", str(folder / "x.jpg"), str(folder / "x_hair.jpg"), "--out", str(out)]) == 1
    assert "x_hair.png is also an output of input 'x'" in capsys.readouterr().err
    assert all((out / f"x{s}.png").is_file() for s in ("", "_hair", "_frame"))
    with open(out / "preprocess.csv", newline="") as fh:
        assert [r["image_id"] for r in csv.DictReader(fh)] == ["x"]
