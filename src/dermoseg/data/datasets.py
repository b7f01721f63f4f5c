"""Dataset layouts: ISIC 2018 Task 1, PH2 and HAM10000, as lists of samples with their files.

The loaders follow the official release layouts (paper §4.1; Codella et al. 2019, Mendonça et al. 2013,
Tschandl et al. 2018), accept any image resolution, and check pairing up front: a missing or extra mask raises :class:`DatasetError` naming the file.
Reading the pixels is left to :mod:`dermoseg.io`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from dermoseg.errors import DatasetError
from dermoseg.io import IMAGE_EXTENSIONS

ISIC_IMAGE_DIR = "ISIC2018_Task1-2_Training_Input"
ISIC_MASK_DIR = "ISIC2018_Task1_Training_GroundTruth"
PH2_IMAGE_ROOT = ("PH2Dataset", "PH2 Dataset images")
PH2_TABLE = ("PH2Dataset", "PH2_dataset.txt")
HAM_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")  # ISIC 2018 Task 3 column order


@dataclass(frozen=True)
class SegmentationSample:
    """One image/ground-truth pair. ``image_id`` is the official id (``ISIC_0000000``, ``IMD002``)."""

    image_id: str
    image_path: Path
    mask_path: Path


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} folder not found")
    return path


def load_isic2018_task1(root: str | Path) -> list[SegmentationSample]:
    """List the image/mask pairs of an ISIC 2018 Task 1 training folder.

    Layout: ``root/ISIC2018_Task1-2_Training_Input/ISIC_x.jpg`` with
    ``root/ISIC2018_Task1_Training_GroundTruth/ISIC_x_segmentation.png``.

    Parameters
    ----------
    root : the folder holding the two official sub-folders.

    Returns
    -------
    Samples sorted by id.

    Raises
    ------
    DatasetError
        If a folder is missing, an image has no mask, or a mask has no image (the file is named).
    """
    root = Path(root)
    image_dir = _require_dir(root / ISIC_IMAGE_DIR, "ISIC 2018 Task 1 input")
    mask_dir = _require_dir(root / ISIC_MASK_DIR, "ISIC 2018 Task 1 ground-truth")
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.stem.startswith("ISIC_")}
    masks = {}
    for p in mask_dir.iterdir():
        m = re.fullmatch(r"(ISIC_\d+)_segmentation", p.stem)
        if m and p.suffix.lower() in IMAGE_EXTENSIONS:
            masks[m.group(1)] = p
    if not images:
        raise DatasetError(f"{image_dir}: no ISIC_*.jpg images")
    for image_id in sorted(images):
        if image_id not in masks:
            raise DatasetError(f"{images[image_id]}: no ground-truth mask {mask_dir / (image_id + '_segmentation.png')}")
    for image_id in sorted(masks):
        if image_id not in images:
            raise DatasetError(f"{masks[image_id]}: mask without an input image in {image_dir}")
    return [SegmentationSample(i, images[i], masks[i]) for i in sorted(images)]


def load_isic2018_diagnosis(root: str | Path) -> dict[str, str]:
    """Diagnosis of the ISIC 2018 Task 1 images where it is known, from ``root/metadata.csv``
    (``image_id,diagnosis,...``; the ISIC 2019 metadata, Codella et al. 2019; empty where unknown).

    Returns
    -------
    ``{image_id: class}`` with class one of :data:`HAM_CLASSES` (MEL, NV, ...); rows with an empty diagnosis are
    left out.

    Raises
    ------
    DatasetError
        If the file is missing, has no ``image_id``/``diagnosis`` columns, or names a class outside
        :data:`HAM_CLASSES` (the row is named).
    """
    meta = Path(root) / "metadata.csv"
    if not meta.is_file():
        raise DatasetError(f"{meta}: ISIC 2018 Task 1 diagnosis metadata not found")
    out = {}
    with meta.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"image_id", "diagnosis"} <= set(reader.fieldnames or ()):
            raise DatasetError(f"{meta}: expected columns image_id and diagnosis, got {reader.fieldnames}")
        for row in reader:
            dx = row["diagnosis"].strip().upper()
            if not dx:
                continue
            if dx not in HAM_CLASSES:
                raise DatasetError(f"{meta}: image {row['image_id']} has unknown diagnosis '{row['diagnosis']}'")
            out[row["image_id"].strip()] = dx
    return out


def _single_image_in(folder: Path, stem: str) -> Path | None:
    for ext in (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        for candidate in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def load_ph2(root: str | Path) -> list[SegmentationSample]:
    """List the 200 image/mask pairs of the PH2 database.

    Layout: ``root/PH2Dataset/PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/IMDxxx.{bmp,png,jpg}`` with
    ``IMDxxx/IMDxxx_lesion/IMDxxx_lesion.{bmp,png,jpg}``. ``root`` may also be the ``PH2Dataset`` folder or the
    ``PH2 Dataset images`` folder itself.

    Returns
    -------
    Samples sorted by id.

    Raises
    ------
    DatasetError
        If the folder is missing or a case lacks its image or lesion mask (the file is named).
    """
    root = Path(root)
    candidates = [root.joinpath(*PH2_IMAGE_ROOT), root / PH2_IMAGE_ROOT[1], root]
    image_root = next((c for c in candidates if c.is_dir() and any(c.glob("IMD*"))), None)
    if image_root is None:
        raise DatasetError(f"{root}: PH2 folder not found (expected '{'/'.join(PH2_IMAGE_ROOT)}/IMDxxx')")
    samples = []
    for case in sorted(p for p in image_root.iterdir() if p.is_dir() and re.fullmatch(r"IMD\d+", p.name)):
        image = _single_image_in(case / f"{case.name}_Dermoscopic_Image", case.name)
        mask = _single_image_in(case / f"{case.name}_lesion", f"{case.name}_lesion")
        if image is None:
            raise DatasetError(f"{case / (case.name + '_Dermoscopic_Image')}: no {case.name}.bmp/.png/.jpg image")
        if mask is None:
            raise DatasetError(f"{case / (case.name + '_lesion')}: no {case.name}_lesion.bmp/.png/.jpg mask")
        samples.append(SegmentationSample(case.name, image, mask))
    if not samples:
        raise DatasetError(f"{image_root}: no IMDxxx case folders")
    return samples


def load_ph2_diagnosis(root: str | Path) -> dict[str, int]:
    """Clinical diagnosis of each PH2 case from the official ``PH2_dataset.txt``.

    Returns
    -------
    ``{image_id: code}`` with 0 = common nevus, 1 = atypical nevus, 2 = melanoma.

    Raises
    ------
    DatasetError
        If the table is missing or has no parsable rows.
    """
    root = Path(root)
    table = next((p for p in (root.joinpath(*PH2_TABLE), root / PH2_TABLE[1]) if p.is_file()), None)
    if table is None:
        raise DatasetError(f"{root}: PH2_dataset.txt not found")
    out = {}
    for line in table.read_text(encoding="utf-8", errors="replace").splitlines():
        cells = [c.strip() for c in line.split("||")]
        if len(cells) > 4 and re.fullmatch(r"IMD\d+", cells[1]) and cells[3].isdigit():
            out[cells[1]] = int(cells[3])
    if not out:
        raise DatasetError(f"{table}: no diagnosis rows")
    return out


@dataclass(frozen=True)
class ClassificationSample:
    """One HAM10000 image with its lesion id, class label (index into :data:`HAM_CLASSES`) and how the diagnosis
    was confirmed (HAM10000's ``dx_type``: ``histo`` histopathology, ``follow_up`` unchanged at digital follow-up,
    ``consensus`` expert consensus, ``confocal`` reflectance confocal microscopy; Tschandl et al. 2018)."""

    image_id: str
    lesion_id: str
    image_path: Path
    label: int
    dx_type: str = ""


def load_ham10000(root: str | Path) -> list[ClassificationSample]:
    """List HAM10000 images with their diagnosis (ISIC 2018 Task 3 training data).

    Layout: ``root/images/ISIC_x.jpg`` and ``root/HAM10000_metadata.csv`` (lesion_id, image_id, dx, dx_type, ...;
    an absent ``dx_type`` column leaves it empty).
    Rows whose image is not present are skipped (the shared copy holds one image per lesion).

    Raises
    ------
    DatasetError
        If the metadata file or image folder is missing, or a ``dx`` value is not one of the seven classes.
    """
    root = Path(root)
    meta = root / "HAM10000_metadata.csv"
    image_dir = _require_dir(root / "images", "HAM10000 images")
    if not meta.is_file():
        raise DatasetError(f"{meta}: HAM10000 metadata not found")
    samples = []
    with meta.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            dx = row["dx"].strip().upper()
            if dx not in HAM_CLASSES:
                raise DatasetError(f"{meta}: image {row['image_id']} has unknown dx '{row['dx']}'")
            path = image_dir / f"{row['image_id']}.jpg"
            if path.is_file():
                samples.append(ClassificationSample(row["image_id"], row["lesion_id"], path, HAM_CLASSES.index(dx),
                                                    (row.get("dx_type") or "").strip()))
    if not samples:
        raise DatasetError(f"{image_dir}: no images listed in {meta}")
    return sorted(samples, key=lambda s: s.image_id)
