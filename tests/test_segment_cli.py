"""``dermoseg segment`` end to end on real images with the shipped model, and bad inputs."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from dermoseg.cli import main
from dermoseg.data.splits import ISIC_SPLIT, read_split, select
from dermoseg.segmentation.segmenter import Segmenter
from dermoseg.io import read_image, read_mask
from dermoseg.metrics import dice, confusion

DICE_BAR = 0.80  # mean over the few real images below; the shipped model averages about 0.9 on the full sets


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_segment_real_isic_and_ph2_images_end_to_end(tmp_path, isic_samples, ph2_samples):
    val = select(isic_samples, read_split(ISIC_SPLIT), "val")[:3] + ph2_samples[:3]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for s in val:
        shutil.copy(s.image_path, inputs)
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    assert main(["segment", str(inputs), "--out", str(tmp_path / "out")]) == 0
    rows = {r["image_id"]: r for r in _rows(tmp_path / "out" / "results.csv")}
    assert set(rows) == {s.image_id for s in val}
    scores = []
    for s in val:
        mask_file = tmp_path / "out" / f"{s.image_id}_segmentation.png"
        pred = np.asarray(Image.open(mask_file))
        truth = read_mask(s.mask_path)
        assert pred.shape == truth.shape and set(np.unique(pred)) <= {0, 255}
        assert (tmp_path / "out" / f"{s.image_id}_overlay.jpg").is_file()
        assert int(rows[s.image_id]["lesion_area_px"]) == int((pred > 128).sum())
        scores.append(dice(confusion(pred > 128, truth)))
    assert np.mean(scores) > DICE_BAR, scores
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before  # inputs untouched


def test_bad_inputs_are_reported_and_the_batch_goes_on(tmp_path, isic_samples, capsys):
    good = tmp_path / "in" / "good.jpg"
    good.parent.mkdir()
    shutil.copy(isic_samples[0].image_path, good)
    (tmp_path / "in" / "zero.jpg").write_bytes(b"")
    (tmp_path / "in" / "text.jpg").write_text("this is not an image")
    (tmp_path / "in" / "truncated.jpg").write_bytes(isic_samples[1].image_path.read_bytes()[:3000])
    code = main(["segment", str(tmp_path / "in"), str(tmp_path / "missing_folder"), "--out", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    for name in ("zero.jpg", "text.jpg", "truncated.jpg", "missing_folder"):
        assert name in err
    assert "Traceback" not in err
    failures = _rows(tmp_path / "out" / "failures.csv")
    assert len(failures) == 4
    assert [r["image_id"] for r in _rows(tmp_path / "out" / "results.csv")] == ["good"]


def test_large_grayscale_rgba_and_16bit_inputs(tmp_path, ph2_samples):
    model = Segmenter.load()
    image = read_image(ph2_samples[0].image_path)
    big = np.asarray(Image.fromarray(image).resize((6000, 4000), Image.BILINEAR))
    seg = model.segment(big)
    assert seg.probability.shape == (4000, 6000) and seg.probability.dtype == np.float32
    truth = np.asarray(Image.fromarray(read_mask(ph2_samples[0].mask_path)).resize((6000, 4000), Image.NEAREST))
    assert dice(confusion(seg.mask, truth)) > 0.7
    Image.fromarray(image[..., 1]).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([image, np.full(image.shape[:2], 255, np.uint8)]), "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(image[..., 1].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert main(["segment", str(tmp_path / "*.png"), "--out", str(tmp_path / "out")]) == 0
    assert len(_rows(tmp_path / "out" / "results.csv")) == 3


def test_refuses_to_overwrite_inputs(tmp_path, isic_samples):
    folder = tmp_path / "x"
    folder.mkdir()
    shutil.copy(isic_samples[0].mask_path, folder / "a_segmentation.png")
    shutil.copy(isic_samples[0].image_path, folder / "a.jpg")
    before = (folder / "a_segmentation.png").read_bytes()
    main(["segment", str(folder / "a.jpg"), str(folder / "a_segmentation.png"), "--out", str(folder)])
    assert (folder / "a_segmentation.png").read_bytes() == before


def test_usage_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["segment", "x.jpg", "--out", str(tmp_path), "--model", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt: model file not found" in capsys.readouterr().err
    (tmp_path / "junk.pt").write_text("not a model")
    assert main(["segment", "x.jpg", "--out", str(tmp_path), "--model", str(tmp_path / "junk.pt")]) == 2
    assert main(["evaluate", "--pred", str(tmp_path / "p"), "--truth", str(tmp_path / "t")]) == 2
    assert "prediction folder not found" in capsys.readouterr().err
    # options that would be silently ignored are refused (try-out finding)
    for args, message in ((["segment", "x.jpg", "--out", str(tmp_path / "o"), "--classifier", "c.pt"], "--diagnose"),
                          (["evaluate", "--pred", "p", "--truth", "t", "--model", "m.pt", "--tta"],
                           "--model, --tta/--no-tta: only for --dataset"),
                          (["evaluate", "--pred", "p", "--truth", "t", "--split", "val", "--data-root", "."],
                           "--split, --data-root: only for --dataset"),  # even when given as their defaults
                          (["evaluate", "--dataset", "ph2", "--split", "all"], "--split: only for --dataset isic2018"),
                          (["evaluate", "--dataset", "ph2", "--save-masks"], "add --out")):
        assert main(args) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [["segment", "x.jpg", "--out", ""], ["segment", "", "--out", "O"],
                                  ["segment", "x.jpg", "--out", "O", "--model", " "],
                                  ["diagnose", "x.jpg", "--out", ""], ["preprocess", "x.jpg", "--out", ""],
                                  ["evaluate", "--dataset", "ph2", "--out", ""]])
def test_an_empty_path_is_refused_not_taken_for_the_current_folder(args, tmp_path, monkeypatch, capsys):
    """Try-out finding: `--out ''` (an unset shell variable) wrote predictions.csv, run.json and masks into the
    current folder, and an empty input searched it."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert "empty path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["segment", "evaluate", "train", "info"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert len(capsys.readouterr().out) > 200


def test_rerun_into_the_input_folder_skips_earlier_outputs(tmp_path, isic_samples):
    folder = tmp_path / "x"
    folder.mkdir()
    shutil.copy(isic_samples[0].image_path, folder / "good.jpg")
    (folder / "bad.jpg").write_bytes(b"")
    assert main(["segment", str(folder), "--out", str(folder), "--no-tta"]) == 1
    (folder / "bad.jpg").unlink()
    assert main(["segment", str(folder), "--out", str(folder), "--no-tta"]) == 0  # its own masks/overlays are not inputs
    assert [r["image_id"] for r in _rows(folder / "results.csv")] == ["good"]
    assert not (folder / "failures.csv").exists()  # the earlier run's failure list is gone
    assert (folder / "good_segmentation.png").stat().st_mode & 0o044  # readable by others, like any new file


def test_tiny_and_blank_images_are_segmented_but_flagged(tmp_path, isic_samples, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(isic_samples[0].image_path, folder / "real.jpg")
    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(folder / "blank.png")
    Image.fromarray(read_image(isic_samples[0].image_path)[:20, :24]).save(folder / "tiny.png")
    assert main(["segment", str(folder), "--out", str(tmp_path / "out"), "--no-tta"]) == 0  # warnings are not failures
    rows = {r["image_id"]: r for r in _rows(tmp_path / "out" / "results.csv")}
    assert set(rows) == {"real", "blank", "tiny"}
    assert rows["real"]["warning"] == ""
    assert "uniform" in rows["blank"]["warning"]
    assert "24x20" in rows["tiny"]["warning"]
    err = capsys.readouterr().err
    assert "warning:" in err and "blank.png" in err and "tiny.png" in err and "real.jpg" not in err


def test_input_warning_hand_made_cases():
    from dermoseg.segmentation.segmenter import input_warning
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    some = np.zeros((64, 64), bool)
    some[10:20, 10:20] = True
    assert input_warning(image, some) == ""
    assert input_warning(image, np.zeros((64, 64), bool)) == "no lesion found"
    assert "whole image" in input_warning(image, np.ones((64, 64), bool))
    assert "uniform" in input_warning(np.full((64, 64, 3), 7, np.uint8), some)
    # a flat colour is blank too (try-out finding: the spread of its three channel values hid it)
    assert "uniform" in input_warning(np.full((64, 64, 3), (90, 50, 30), np.uint8), some)
    ramp = np.full((64, 64, 3), (90, 50, 30), np.uint8)
    ramp[..., 0] += np.arange(64, dtype=np.uint8)[None, :] // 8  # one channel varies by 8 levels: not blank
    assert input_warning(ramp, some) == ""
    assert "pixels" in input_warning(image[:31], some[:31])
    # a tiny or blank image with an empty mask says both (a user filtering on "no lesion found" sees it)
    both = input_warning(np.full((64, 64, 3), 7, np.uint8), np.zeros((64, 64), bool))
    assert both.startswith("image is nearly uniform") and both.endswith("; no lesion found")


def test_a_model_file_with_cleaning_settings_this_version_lacks_is_refused_by_name(tmp_path):
    """A model file records the cleaning it was trained with; a setting this version does not know would clean
    differently from the training, so the file is refused when loaded, naming it (not on the first image)."""
    import torch

    from dermoseg import modelfile
    from dermoseg.errors import ModelFileError
    from dermoseg.segmentation.segmenter import Segmenter
    _, payload = modelfile.read("fast", "segmentation")
    payload["config"]["preprocess"] = {"enabled": True, "hair": {"closing_pz": 3}}
    torch.save(payload, tmp_path / "newer.pt")
    with pytest.raises(ModelFileError, match=r"newer.pt: recorded cleaning settings .*'preprocess.hair.closing_pz'"):
        Segmenter.load(tmp_path / "newer.pt", engine="torch", quality=False)
