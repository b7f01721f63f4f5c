"""The ``dermoseg preprocess`` command: outputs, table, contact sheet and bad inputs (issue 3, part 2)."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

from dermoseg.cli import main
from dermoseg.io import read_image
from dermoseg.preprocess.batch import COLUMNS, SHEET_NAME


@pytest.fixture(scope="module")
def two_real(isic_samples, ph2_samples):
    """One hairy ISIC image and one PH2 image (copied at test time into a temporary folder, never committed)."""
    by_id = {s.image_id: s for s in list(isic_samples) + list(ph2_samples)}
    return [by_id["ISIC_0012508"].image_path, by_id["IMD049"].image_path]


def _masks_ok(path, shape):
    arr = np.asarray(Image.open(path))
    assert arr.shape == shape, path
    assert set(np.unique(arr)) <= {0, 255}, path


def test_folder_with_bad_files(tmp_path, two_real, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    shutil.copy(two_real[0], src / "a.jpg")
    shutil.copy(two_real[1], src / "sub" / "b.jpg")
    (src / "empty.jpg").write_bytes(b"")
    (src / "notes.jpg").write_text("this is text, not a JPEG")
    out = tmp_path / "out"
    code = main(["preprocess", str(src), "--out", str(out), "--sheet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "empty.jpg" in err and "notes.jpg" in err
    for stem, original in (("a", two_real[0]), ("b", two_real[1])):
        image = read_image(original)
        clean = read_image(out / f"{stem}.png")
        assert clean.shape == image.shape
        _masks_ok(out / f"{stem}_hair.png", image.shape[:2])
        _masks_ok(out / f"{stem}_frame.png", image.shape[:2])
        assert not (clean == image).all(), "a hairy image came back unchanged"
    with open(out / "preprocess.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image_id"] for r in rows] == ["a", "b"]
    assert list(rows[0])[: len(COLUMNS)] == COLUMNS
    for r in rows:
        assert 0 < float(r["hair_pct"]) < 100 and int(r["n_hairs"]) > 0 and r["mode"] in ("sparse", "dense")
        assert r["frame_found"] in ("0", "1") and 0 <= float(r["frame_pct"]) <= 100 and float(r["seconds"]) > 0
    hair = np.asarray(Image.open(out / "a_hair.png")) > 0
    assert abs(100 * hair.mean() - float(rows[0]["hair_pct"])) < 0.01
    with open(out / "failures.csv", newline="") as fh:
        failed = {r["file"].split("/")[-1] for r in csv.DictReader(fh)}
    assert failed == {"empty.jpg", "notes.jpg"}
    sheet = np.asarray(Image.open(out / SHEET_NAME))
    assert sheet.ndim == 3 and sheet.shape[0] > 100


def test_all_good_exit_zero_and_no_sheet_unless_asked(tmp_path, two_real):
    out = tmp_path / "out"
    assert main(["preprocess", str(two_real[0]), "--out", str(out)]) == 0
    assert (out / "ISIC_0012508.png").is_file()
    assert not (out / SHEET_NAME).exists() and not (out / "failures.csv").exists()


def test_missing_folder_is_reported(tmp_path, capsys):
    code = main(["preprocess", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert code == 1
    captured = capsys.readouterr()
    assert "no such file or folder" in captured.err and "no image found to process, nothing written" in captured.out
    assert not (tmp_path / "out").exists()  # try-out finding: an output folder with empty tables was left


def test_output_that_would_overwrite_an_input_is_refused(tmp_path, two_real, capsys):
    Image.open(two_real[0]).save(tmp_path / "x.png")
    before = (tmp_path / "x.png").read_bytes()
    assert main(["preprocess", str(tmp_path / "x.png"), "--out", str(tmp_path)]) == 2
    assert "every input's outputs would overwrite an input (e.g. x.png)" in capsys.readouterr().err
    assert (tmp_path / "x.png").read_bytes() == before
    # try-out finding: it was refused image by image, leaving failures.csv, preprocess.csv and run.json there
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_bad_settings_file_is_an_error(tmp_path, two_real, capsys):
    cfg = tmp_path / "pre.yaml"
    cfg.write_text("preprocess:\n  hair:\n    closing_px: -3\n")
    code = main(["preprocess", str(two_real[0]), "--out", str(tmp_path / "out"), "--config", str(cfg)])
    assert code == 2
    assert "preprocess.hair.closing_px" in capsys.readouterr().err
    assert not (tmp_path / "out" / "ISIC_0012508.png").exists()
    cfg.write_text("hair:\n  closing_pz: 11\n")  # a misspelt key: an error naming file and key, no run
    code = main(["preprocess", str(two_real[0]), "--out", str(tmp_path / "out"), "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and f"{cfg}: unknown setting 'preprocess.hair.closing_pz'" in err and "Warning" not in err
    assert not (tmp_path / "out").exists()
    # try-out findings: NaN passed every range test (it turned hair detection off, or crashed after the run had
    # started), and a section given twice lost its first copy without a word
    for text, message in (("hair: {threshold_low: .nan}\n", "preprocess.hair.threshold_low must be a finite number"),
                          ("hair: {closing_px: .nan}\n", "preprocess.hair.closing_px must be a finite number"),
                          ("hair: {enabled: false}\nhair: {closing_px: 5}\n", "key 'hair' appears twice")):
        cfg.write_text(text)
        code = main(["preprocess", str(two_real[0]), "--out", str(tmp_path / "out"), "--config", str(cfg)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "unexpected" not in err, err
        assert not (tmp_path / "out").exists()


def test_settings_file_is_applied(tmp_path, two_real):
    cfg = tmp_path / "pre.yaml"
    cfg.write_text("hair:\n  enabled: false\n")
    out = tmp_path / "out"
    assert main(["preprocess", str(two_real[0]), "--out", str(out), "--config", str(cfg)]) == 0
    with open(out / "preprocess.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert row["mode"] == "none" and float(row["hair_pct"]) == 0


def test_rerun_into_the_input_folder_skips_its_own_outputs(tmp_path, two_real):
    folder = tmp_path / "x"
    folder.mkdir()
    shutil.copy(two_real[0], folder / "a.jpg")
    assert main(["preprocess", str(folder), "--out", str(folder), "--sheet"]) == 0
    assert main(["preprocess", str(folder), "--out", str(folder)]) == 0  # a.png, a_hair.png... are not inputs now
    with open(folder / "preprocess.csv", newline="") as fh:
        assert [r["image_id"] for r in csv.DictReader(fh)] == ["a"]


def test_resume_names_the_one_cleaning_setting_that_changed(tmp_path, two_real, capsys):
    """Try-out finding: a --resume with another cleaning setting printed both 30-key settings mappings; it names
    the nested setting now."""
    out = tmp_path / "out"
    assert main(["preprocess", str(two_real[0]), "--out", str(out)]) == 0
    off = tmp_path / "off.yaml"
    off.write_text("hair: {enabled: false}\n")
    capsys.readouterr()
    assert main(["preprocess", str(two_real[0]), "--out", str(out), "--resume", "--config", str(off)]) == 2
    err = capsys.readouterr().err
    assert "--resume with preprocess_settings.hair.enabled = False, but the run being resumed used True" in err
    assert len(err) < 300


def test_a_search_that_finds_only_earlier_outputs_is_not_a_success(tmp_path, two_real, capsys):
    """Try-out finding: `segment 'p/*.png'` over preprocess outputs skipped every file (they are listed in a
    run.json) and exited 0 having done nothing; it exits 1 now, and the skip line says how to process them."""
    assert main(["preprocess", str(two_real[0]), "--out", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    assert main(["segment", str(tmp_path / "p" / "*.png"), "--out", str(tmp_path / "s"), "--no-tta"]) == 1
    err = capsys.readouterr().err
    assert "name a file explicitly to process it anyway" in err
    # and an error line says the pattern gave nothing to do, as for a folder (later try-out finding)
    assert "*.png: glob pattern matched only masks or earlier outputs" in err
    cleaned = next((tmp_path / "p").glob("ISIC_*[0-9].png"))  # named explicitly, a cleaned image is segmented
    assert main(["segment", str(cleaned), "--out", str(tmp_path / "s2"), "--no-tta", "--no-measure"]) == 0


def test_preprocess_resume_says_how_many_were_already_done(tmp_path, two_real, capsys):
    """Try-out finding: a preprocess --resume with everything done said only "cleaned 0 image(s), 0 failed"."""
    assert main(["preprocess", str(two_real[0]), "--out", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    assert main(["preprocess", str(two_real[0]), "--out", str(tmp_path / "p"), "--resume"]) == 0
    assert "cleaned 0 image(s), 1 already done, 0 failed" in capsys.readouterr().out
