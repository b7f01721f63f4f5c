"""Loaders of the official layouts, the committed split, and image reading edge cases."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from dermoseg.data.datasets import DatasetError, load_isic2018_task1, load_ph2, load_ph2_diagnosis
from dermoseg.data.splits import ISIC_SPLIT, make_random_split, read_split, select
from dermoseg.inputs import scan_inputs
from dermoseg.io import ImageReadError, read_image, read_mask


def test_isic_loader_pairs_every_image_with_its_mask(isic_samples):
    assert len(isic_samples) == 2075
    for s in isic_samples[:20]:
        assert s.mask_path.name == f"{s.image_id}_segmentation.png"
        image, mask = read_image(s.image_path), read_mask(s.mask_path)
        assert image.shape[:2] == mask.shape and image.dtype == np.uint8
        assert 0 < mask.mean() < 1


def test_ph2_loader_finds_200_cases_with_masks_and_diagnosis(ph2_samples, data_root):
    assert len(ph2_samples) == 200
    image, mask = read_image(ph2_samples[0].image_path), read_mask(ph2_samples[0].mask_path)
    assert image.shape[:2] == mask.shape and 550 <= image.shape[0] <= 580
    diagnosis = load_ph2_diagnosis(data_root / "ph2")
    assert len(diagnosis) == 200 and set(diagnosis.values()) == {0, 1, 2}
    assert sum(v == 2 for v in diagnosis.values()) == 40  # PH2 has 40 melanomas


def test_ph2_loader_accepts_bmp(tmp_path, ph2_samples):
    case = tmp_path / "PH2 Dataset images" / "IMD999"
    (case / "IMD999_Dermoscopic_Image").mkdir(parents=True)
    (case / "IMD999_lesion").mkdir()
    Image.fromarray(read_image(ph2_samples[0].image_path)).save(case / "IMD999_Dermoscopic_Image" / "IMD999.bmp")
    Image.fromarray(read_mask(ph2_samples[0].mask_path)).convert("1").save(case / "IMD999_lesion" / "IMD999_lesion.bmp")
    samples = load_ph2(tmp_path)
    assert [s.image_id for s in samples] == ["IMD999"]
    assert np.array_equal(read_mask(samples[0].mask_path), read_mask(ph2_samples[0].mask_path))


def test_isic_loader_names_a_missing_mask(tmp_path, isic_samples):
    (tmp_path / "ISIC2018_Task1-2_Training_Input").mkdir()
    (tmp_path / "ISIC2018_Task1_Training_GroundTruth").mkdir()
    for s in isic_samples[:2]:
        shutil.copy(s.image_path, tmp_path / "ISIC2018_Task1-2_Training_Input")
    shutil.copy(isic_samples[0].mask_path, tmp_path / "ISIC2018_Task1_Training_GroundTruth")
    with pytest.raises(DatasetError, match=isic_samples[1].image_id):
        load_isic2018_task1(tmp_path)


def test_isic_loader_names_an_extra_mask(tmp_path, isic_samples):
    (tmp_path / "ISIC2018_Task1-2_Training_Input").mkdir()
    (tmp_path / "ISIC2018_Task1_Training_GroundTruth").mkdir()
    shutil.copy(isic_samples[0].image_path, tmp_path / "ISIC2018_Task1-2_Training_Input")
    for s in isic_samples[:2]:
        shutil.copy(s.mask_path, tmp_path / "ISIC2018_Task1_Training_GroundTruth")
    with pytest.raises(DatasetError, match="mask without an input image"):
        load_isic2018_task1(tmp_path)


def test_missing_dataset_folder_is_named(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_isic2018_task1(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="PH2 folder not found"):
        load_ph2(tmp_path)


def test_committed_split_is_85_15_covers_all_ids_and_is_reproducible(isic_samples):
    split = read_split(ISIC_SPLIT)
    ids = [s.image_id for s in isic_samples]
    assert set(split) == set(ids)
    n_val = sum(v == "val" for v in split.values())
    assert abs(n_val / len(ids) - 0.15) < 0.01
    assert make_random_split(ids, 0.15, 2018) == split  # the committed file is the seeded split
    train, val = select(isic_samples, split, "train"), select(isic_samples, split, "val")
    assert not {s.image_id for s in train} & {s.image_id for s in val}
    assert len(train) + len(val) == len(ids)


def test_read_image_handles_gray_rgba_16bit_and_exif(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :10] = (200, 10, 10)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png").shape == (20, 30, 3)
    rgba = np.dstack([rgb, np.full((20, 30), 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgb)
    Image.fromarray((np.arange(600, dtype=np.uint16).reshape(20, 30) * 100)).save(tmp_path / "deep.png")
    deep = read_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint8 and deep.max() > 200 and deep.min() == 0
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    im.save(tmp_path / "exif.jpg", exif=exif, quality=100)
    upright = read_image(tmp_path / "exif.jpg")
    assert upright.shape == (30, 20, 3)
    assert upright[:10, :, 0].mean() > 150 and upright[-10:, :, 0].mean() < 50  # red band now on top


@pytest.mark.parametrize("content,reason", [(b"", "empty"), (b"hello, not an image", "not a readable image")])
def test_read_image_names_the_file_and_the_problem(tmp_path, content, reason):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as info:
        read_image(bad)
    assert str(bad) in str(info.value)


def test_read_image_rejects_truncated_jpeg(tmp_path, isic_samples):
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(isic_samples[0].image_path.read_bytes()[:4000])
    with pytest.raises(ImageReadError, match="truncated.jpg"):
        read_image(bad)


def test_scan_inputs_expands_folders_and_globs_and_reports_misses(tmp_path, isic_samples):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for s in isic_samples[:3]:
        shutil.copy(s.image_path, tmp_path / "a" / "b")
    (tmp_path / "a" / "notes.txt").write_text("x")
    scan = scan_inputs([tmp_path / "a", str(tmp_path / "a" / "b" / "*.jpg"), tmp_path / "missing"])
    assert len(scan.files) == 3
    assert scan.problems == [(str(tmp_path / "missing"), "no such file or folder")]
    assert scan.unsupported == {".txt": 1}
