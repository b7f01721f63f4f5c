"""Issue #11 finding 2: evaluate reads 0/1 masks as binary, refuses photographs and other non-binary masks
(naming the file), counts empty-truth images apart, and has --subset and --skip-bad."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from dermoseg.cli import main


@pytest.fixture
def pairs(tmp_path, isic_samples):
    """pred/ and truth/ folders with three real ISIC ground truths (the predictions are copies of them)."""
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    for s in isic_samples[:3]:
        shutil.copy(s.mask_path, truth)
        shutil.copy(s.mask_path, pred)
    return pred, truth, [s.image_id for s in isic_samples[:3]]


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def test_zero_one_masks_are_read_as_binary(tmp_path, pairs):
    pred, truth, ids = pairs
    for i in ids:  # the truths as 0/1 PNGs; the predictions stay 0/255
        m = np.asarray(Image.open(truth / f"{i}_segmentation.png").convert("L")) > 128
        Image.fromarray(m.astype(np.uint8)).save(truth / f"{i}_segmentation.png")
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(tmp_path / "e")]) == 0
    summary = _summary(tmp_path / "e")
    assert summary["dice"] == 1.0 and summary["images"] == 3


def test_a_photograph_given_as_mask_is_refused_naming_the_file(tmp_path, pairs, isic_samples, capsys):
    pred, truth, ids = pairs
    (pred / f"{ids[1]}_segmentation.png").unlink()
    Image.open(isic_samples[1].image_path).convert("L").save(pred / f"{ids[1]}_segmentation.png")  # gray photo
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth)]) == 2
    err = capsys.readouterr().err
    assert f"{pred / ids[1]}_segmentation.png: not a binary mask" in err and "Traceback" not in err
    # --skip-bad scores the pairs that can be scored and lists the others
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--skip-bad",
                 "--out", str(tmp_path / "e")]) == 0
    summary = _summary(tmp_path / "e")
    assert summary["images"] == 2 and summary["dice"] == 1.0
    assert [s["image_id"] for s in summary["skipped"]] == [ids[1]] and "not a binary mask" in summary["skipped"][0]["reason"]


def test_a_refused_evaluation_leaves_no_output_folder_or_running_record(tmp_path, pairs, capsys):
    """A missing prediction stops evaluate (exit 2) before it writes anything: the --out folder it would have
    created is gone, not left holding a run.json that says the run is still going."""
    pred, truth, ids = pairs
    (pred / f"{ids[2]}_segmentation.png").unlink()
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(tmp_path / "e")]) == 2
    assert "no prediction" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_colour_photograph_and_missing_pairs_with_skip_bad(tmp_path, pairs, isic_samples):
    pred, truth, ids = pairs
    shutil.copy(isic_samples[0].image_path, pred / f"{ids[0]}_segmentation.jpg")  # a colour photo, second file
    (pred / f"{ids[0]}_segmentation.png").unlink()
    (pred / f"{ids[2]}_segmentation.png").unlink()  # no prediction at all
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--skip-bad",
                 "--out", str(tmp_path / "e")]) == 0
    skipped = {s["image_id"]: s["reason"] for s in _summary(tmp_path / "e")["skipped"]}
    assert "colour image, not a binary mask" in skipped[ids[0]] and "no prediction" in skipped[ids[2]]
    assert _summary(tmp_path / "e")["images"] == 1


def test_empty_truth_is_counted_with_its_convention_and_subset(tmp_path, pairs):
    pred, truth, ids = pairs
    empty = np.zeros((64, 64), np.uint8)
    Image.fromarray(empty).save(truth / "blank_segmentation.png")
    Image.fromarray(empty).save(pred / "blank_segmentation.png")
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(tmp_path / "e")]) == 0
    summary = _summary(tmp_path / "e")
    assert summary["empty_truth_images"] == 1 and "ISIC 2018 scorer" in summary["empty_truth_convention"]
    (tmp_path / "subset.txt").write_text(f"# two ids\n{ids[0]}\n{ids[2]}\n")
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--subset", str(tmp_path / "subset.txt"),
                 "--out", str(tmp_path / "s")]) == 0
    assert _summary(tmp_path / "s")["images"] == 2 and _summary(tmp_path / "s")["empty_truth_images"] == 0
    with open(tmp_path / "s" / "per_image.csv") as fh:
        assert [line.split(",")[0] for line in fh][1:] == [ids[0], ids[2]]


def test_dataset_subset(tmp_path, ph2_samples, capsys):
    (tmp_path / "ids.txt").write_text("image_id\nIMD002\n")
    assert main(["evaluate", "--dataset", "ph2", "--subset", str(tmp_path / "ids.txt"), "--no-tta",
                 "--out", str(tmp_path / "e")]) == 0
    assert _summary(tmp_path / "e")["images"] == 1
    (tmp_path / "bad.txt").write_text("IMD999\n")
    assert main(["evaluate", "--dataset", "ph2", "--subset", str(tmp_path / "bad.txt"), "--no-tta"]) == 2
    assert "subset id 'IMD999' is not in ph2" in capsys.readouterr().err


def test_a_second_evaluation_into_a_folder_keeps_only_its_own_saved_masks(tmp_path, ph2_samples):
    """Try-out finding: --save-masks with two images, then with one, into the same folder left both masks beside
    a summary of one image."""
    (tmp_path / "two.txt").write_text("image_id\nIMD002\nIMD003\n")
    (tmp_path / "one.txt").write_text("image_id\nIMD003\n")
    for ids, expected in (("two.txt", ["IMD002", "IMD003"]), ("one.txt", ["IMD003"])):
        assert main(["evaluate", "--dataset", "ph2", "--subset", str(tmp_path / ids), "--no-tta", "--save-masks",
                     "--model", "fast", "--out", str(tmp_path / "e")]) == 0
        masks = sorted(p.name.removesuffix("_segmentation.png") for p in (tmp_path / "e" / "masks").iterdir())
        assert masks == expected and _summary(tmp_path / "e")["images"] == len(expected)


def test_a_missing_data_folder_points_at_data_root(tmp_path, capsys):
    """Try-out finding: run from another folder, the relative default data root names a folder that is not there;
    the error now says which option sets it and where it pointed."""
    assert main(["evaluate", "--dataset", "ph2", "--data-root", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "PH2 folder not found" in err and "--data-root" in err and str(tmp_path / "nowhere") in err


def test_subset_files_as_users_write_them(tmp_path):
    """Try-out finding: a CSV saved by Excel (byte-order mark, CRLF) gave the id '\\ufeffimage_id', and segment's
    own results.csv (first column ``file``) gave the id 'file'. A plain list, a list with comments, a CSV with an
    ``image_id`` or ``image`` column, with or without the mark, all give the ids."""
    from dermoseg.segmentation.evaluate import read_subset
    cases = {"plain.txt": "IMD002\nIMD004\n\n# a comment\nIMD002\n",
             "excel.csv": "\ufeffimage_id,x\r\nIMD002,1\r\nIMD004,2\r\n",
             "results.csv": "file,image_id,width\nin/IMD002.jpg,IMD002,767\nin/IMD004.jpg,IMD004,767\n",
             "predictions.csv": "image,MEL,NV\nIMD002,0.1,0.9\nIMD004,0.2,0.8\n",
             "first_column.csv": "IMD002,0.1\nIMD004,0.2\n"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert read_subset(tmp_path / name) == ["IMD002", "IMD004"], name


def test_dermoseg_data_is_the_data_folder_when_data_root_is_not_given(tmp_path, data_root, monkeypatch, capsys):
    """Try-out finding: the scripts read $DERMOSEG_DATA but the commands did not. Now it stands in for an absent
    --data-root (a given one wins), and --pred/--truth do not count it as a --data-root given for nothing."""
    monkeypatch.setenv("DERMOSEG_DATA", str(tmp_path / "elsewhere"))
    ids = tmp_path / "ids.txt"
    ids.write_text("IMD002\n")
    assert main(["evaluate", "--dataset", "ph2", "--subset", str(ids), "--no-tta"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "elsewhere" / "ph2") in err and "$DERMOSEG_DATA" in err
    assert main(["evaluate", "--dataset", "ph2", "--subset", str(ids), "--no-tta", "--data-root", str(data_root),
                 "--model", "fast"]) == 0
    capsys.readouterr()
    monkeypatch.setenv("DERMOSEG_DATA", str(data_root))
    assert main(["evaluate", "--dataset", "ph2", "--subset", str(ids), "--no-tta", "--model", "fast"]) == 0
    assert main(["evaluate", "--pred", str(tmp_path / "p"), "--truth", str(tmp_path / "t")]) == 2
    assert "prediction folder not found" in capsys.readouterr().err


def test_a_run_stopped_after_it_began_is_not_left_running(tmp_path, pairs, monkeypatch, capsys):
    """Review finding: Ctrl-C while evaluate wrote its report (or any error after run.json was started) left
    run.json saying "running"; the command line now finishes every run it started, as interrupted or failed."""
    import dermoseg.segmentation.evaluate as evaluation
    pred, truth, _ = pairs

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluation, "write_report", stop)
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(tmp_path / "e")]) == 130
    record = json.loads((tmp_path / "e" / "run.json").read_text())
    assert record["status"] == "interrupted" and record["finished"]
    assert not (tmp_path / "e" / ".dermoseg-run.lock").exists()
