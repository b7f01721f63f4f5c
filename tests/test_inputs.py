"""Issue #11 finding 6: transparency is composited over the skin colour and never counted as lesion; the
folder search finds every format Pillow reads and counts what it skips; a folder named like an image is
reported; diagnose warns on tiny/blank/grayscale inputs and maps image ids to source files."""

from __future__ import annotations

import csv
import shutil

import numpy as np
from PIL import Image

from dermoseg.cli import main
from dermoseg.io import read_image
from dermoseg.metrics import confusion, dice
from dermoseg.segmentation.segmenter import Segmenter


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_transparency_is_composited_over_the_border_colour():
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[...] = (200, 150, 120, 255)  # opaque "skin" all round
    rgba[10:30, 10:40] = (0, 0, 0, 0)  # a transparent hole whose hidden colour is black
    rgba[15:20, 15:20] = (10, 20, 30, 128)  # half transparent
    from dermoseg.io import composite_background
    out = composite_background(rgba[..., :3], rgba[..., 3])
    assert (out[12, 12] == (200, 150, 120)).all() and (out[0, 0] == (200, 150, 120)).all()
    assert np.abs(out[17, 17].astype(int) - (105, 85, 75)).max() <= 1  # half-way between the two


def test_transparent_rows_are_not_lesion(tmp_path, isic_samples):
    s = next(s for s in isic_samples if s.image_id == "ISIC_0000000")
    image = read_image(s.image_path)
    h = image.shape[0]
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    rgba[: h // 3, :, 3] = 0  # the top third transparent, its colours kept underneath
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    assert main(["segment", str(tmp_path / "cut.png"), "--out", str(tmp_path / "out")]) == 0
    mask = np.asarray(Image.open(tmp_path / "out" / "cut_segmentation.png")) > 128
    assert not mask[: h // 3].any()
    reference = Segmenter.load().segment(image).mask  # the opaque image
    assert dice(confusion(mask[h // 3:], reference[h // 3:])) > 0.9


def test_folder_search_finds_every_readable_format_and_counts_the_rest(tmp_path, isic_samples, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    image = Image.open(isic_samples[0].image_path).convert("RGB").resize((128, 128))
    for ext, fmt in ((".jfif", "JPEG"), (".jpe", "JPEG"), (".gif", "GIF"), (".ppm", "PPM"), (".jp2", "JPEG2000")):
        image.save(folder / f"a{ext}", fmt)
    image.convert("L").save(folder / "b.pgm")
    (folder / "notes.txt").write_text("x")
    (folder / "table.csv").write_text("x")
    (folder / "X.jpg").mkdir()  # a folder named like an image
    assert main(["segment", str(folder), "--out", str(tmp_path / "out"), "--no-tta", "--no-measure"]) == 1
    err = capsys.readouterr().err
    assert "skipped 2 file(s) of unsupported type (.csv: 1, .txt: 1)" in err
    assert f"{folder / 'X.jpg'}: is a folder, not an image file" in err
    assert sorted(r["file"].rsplit(".", 1)[1] for r in _rows(tmp_path / "out" / "results.csv")) == [
        "gif", "jfif", "jp2", "jpe", "pgm", "ppm"]


def test_diagnose_warns_like_segment_and_maps_ids_to_files(tmp_path, isic_samples, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(isic_samples[0].image_path, folder / "real.jpg")
    shutil.copy(isic_samples[1].image_path, folder / "sub" / "real.jpg")  # same stem: made unique
    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(folder / "blank.png")
    Image.fromarray(read_image(isic_samples[0].image_path)[:20, :24]).save(folder / "tiny.png")
    Image.open(isic_samples[2].image_path).convert("L").save(folder / "gray.png")
    assert main(["diagnose", str(folder), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    for name, words in (("blank.png", "uniform"), ("tiny.png", "24x20"), ("gray.png", "grayscale")):
        assert any(name in line and words in line for line in err.splitlines() if line.startswith("warning:")), name
    with open(tmp_path / "out" / "predictions.csv") as fh:
        assert fh.readline() == "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\n"
    sources = {r["image"]: r for r in _rows(tmp_path / "out" / "image_sources.csv")}
    assert sources["real"]["file"] == str(folder / "real.jpg")
    assert sources["real__2"]["file"] == str(folder / "sub" / "real.jpg")
    assert sources["real"]["warning"] == "" and "grayscale" in sources["gray"]["warning"]
    assert {r["image"] for r in _rows(tmp_path / "out" / "predictions.csv")} == set(sources)


def test_check_rgb_names_what_it_got():
    """The one image check behind segment, measure, clean and colour constancy: a file name, an empty array, a
    grayscale or float array are each refused with what was given; a valid image comes back as is."""
    import numpy as np
    import pytest

    from dermoseg.inputs import check_rgb
    good = np.zeros((2, 3, 3), np.uint8)
    assert check_rgb(good) is good
    cases = [("lesion.jpg", "got str; read the file with dermoseg.io.read_image"),
             (np.zeros((0, 0, 3), np.uint8), r"got \(0, 0, 3\) uint8"),
             (np.zeros((4, 4), np.uint8), r"got \(4, 4\) uint8"),
             (np.zeros((4, 4, 3), np.float32), r"got \(4, 4, 3\) float32"),
             ([[0, 0, 0]], "got list$")]
    for value, message in cases:
        with pytest.raises(ValueError, match=message):
            check_rgb(value)


def test_the_api_refuses_a_threshold_outside_the_open_unit_interval(isic_samples):
    """Try-out finding: Segmenter.segment(image, threshold=-1) made every pixel lesion and 2 or NaN none, while the
    CLI refuses such values. 0.5 and 0.3 work; 0, -1, 1, 2 and NaN are a ValueError naming the threshold."""
    import math

    import pytest

    from dermoseg.segmentation.segmenter import probability_to_mask
    seg = Segmenter.load("fast", quality=False)
    image = read_image(isic_samples[0].image_path)[::4, ::4].copy()
    assert seg.segment(image, threshold=0.3).mask.sum() >= seg.segment(image, threshold=0.5).mask.sum() > 0
    for bad in (0.0, -1.0, 1.0, 2.0, math.nan):
        with pytest.raises(ValueError, match="threshold must be in \\(0, 1\\)"):
            seg.segment(image, threshold=bad)
    # hand case: probabilities 0.2 / 0.6 / 0.9 in a row, threshold 0.5 keeps the two above it
    assert probability_to_mask(np.array([[0.2, 0.6, 0.9]], np.float32), 0.5).tolist() == [[False, True, True]]


def test_the_api_result_carries_the_warning_of_results_csv(isic_samples):
    """Try-out finding: Segmenter.segment gave no warning for a blank image, which `segment` writes in results.csv;
    Segmentation.warning is that column's text."""
    seg = Segmenter.load("fast", quality=False)
    image = read_image(isic_samples[0].image_path)[::4, ::4].copy()
    assert seg.segment(image).warning == ""
    blank = seg.segment(np.full((128, 128, 3), (200, 150, 120), np.uint8)).warning
    assert blank.startswith("image is nearly uniform")


def test_read_image_names_a_folder_as_a_folder(tmp_path):
    """Try-out finding: read_image on a folder that exists said "no such file"."""
    import pytest

    from dermoseg.io import ImageReadError
    with pytest.raises(ImageReadError, match="is a folder, not an image file"):
        read_image(tmp_path)
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.jpg")
