"""Which files a batch command takes as inputs: folder search, supported formats and the skip rules.

A folder search (``dermoseg segment DIR``) finds every file whose extension is a format OpenCV or Pillow reads
(:data:`IMAGE_EXTENSIONS`), and leaves out, with one summary line each:

- files with other extensions (counted as unsupported, by extension);
- ground-truth masks and dermoseg's own outputs, recognised by the name patterns of the known layouts
  (:data:`MASK_NAME`: ISIC ``_segmentation``, PH2 ``_lesion``, ``_mask``, dermoseg ``_overlay``, ``_hair``,
  ``_frame``), by being listed as an output in a dermoseg ``run.json`` in the same folder
  (:mod:`dermoseg.provenance`), or by being a binary single-channel image (values only {0, 255} or {0, 1}:
  a mask, never a photograph).

A folder whose name looks like an image (``X.jpg/``), a broken or looping symbolic link and a file name that is
not valid UTF-8 are reported as problems. A file named explicitly on the command line is always taken as an
input (the user asked for it). Nothing here reads more than a file's header, except the pixels of
single-channel images (to tell a mask from a grayscale photograph).
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from dermoseg.io import IMAGE_EXTENSIONS

MASK_NAME = re.compile(r"_(segmentation|lesion|mask|overlay|hair|frame)$", re.IGNORECASE)
MIN_SIDE = 32     # pixels; smaller inputs get a warning (the models see 224-256 px squares)
BLANK_STD = 2.0   # grey levels; an image flatter than this in every channel gets a warning


@dataclass
class InputScan:
    """What :func:`scan_inputs` found: the input files, problems ``(input, reason)`` and what it left out."""

    files: list[Path] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    masks_skipped: list[Path] = field(default_factory=list)
    unsupported: Counter = field(default_factory=Counter)

    def summary_lines(self) -> list[str]:
        """One line per kind of file left out (none when nothing was left out)."""
        lines = []
        if self.masks_skipped:
            lines.append(f"skipped {len(self.masks_skipped)} ground-truth mask(s) or earlier dermoseg output(s) "
                         "(name ending _segmentation/_lesion/_mask/_overlay/_hair/_frame, listed in a run.json, "
                         "or a binary single-channel image); name a file explicitly to process it anyway")
        if self.unsupported:
            kinds = ", ".join(f"{ext or '(none)'}: {n}" for ext, n in sorted(self.unsupported.items()))
            lines.append(f"skipped {sum(self.unsupported.values())} file(s) of unsupported type ({kinds})")
        return lines


def display_name(path: str | os.PathLike) -> str:
    """The path as printable text: bytes that are not valid UTF-8 are shown as ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def name_problem(path: Path) -> str:
    """Why a file name cannot be used for the outputs, or "" (a name that is not valid UTF-8 cannot go into the
    UTF-8 results table)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return "file name is not valid UTF-8; rename the file"
    return ""


LOSSY = (".jpg", ".jpeg", ".jpe", ".jfif")  # masks are not stored lossy (their values would not stay 0/255)


def is_binary_single_channel(path: Path) -> bool:
    """True if ``path`` is a one-channel image whose values are only {0, 255} or {0, 1} (a mask). RGB files,
    JPEG files (not opened at all: a folder of dermoscopic photographs costs no extra read) and unreadable files
    give False (a bad file is reported later, by the reader)."""
    if path.suffix.lower() in LOSSY:
        return False
    try:
        with Image.open(path) as im:
            if im.mode == "1":
                return True
            if im.mode not in ("L", "I;16", "I;16B", "I;16L", "I"):
                return False
            values = np.unique(np.asarray(im))
    except Exception:  # any decoder error: not a mask we can recognise; the batch reader reports the file
        return False
    return set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}


def _listed_outputs(folder: Path, cache: dict[Path, set[str]]) -> set[str]:
    if folder not in cache:
        from dermoseg.provenance import read_manifest
        cache[folder] = read_manifest(folder)
    return cache[folder]


def _search_folder(folder: Path, scan: InputScan, is_output: Callable[[Path], bool],
                   listed: Callable[[Path], bool]) -> list[Path]:
    hits, skipped = [], len(scan.masks_skipped)
    for p in sorted(folder.rglob("*")):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                scan.problems.append((str(p), "is a folder, not an image file"))
            continue
        if not p.is_file():
            if p.is_symlink():
                scan.problems.append((str(p), "broken or looping symbolic link"))
            continue
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            if not listed(p):  # an earlier run's tables and run.json are not worth a mention
                scan.unsupported[p.suffix.lower()] += 1
        elif is_output(p):
            scan.masks_skipped.append(p)
        else:
            hits.append(p)
    if not hits:
        masks = len(scan.masks_skipped) - skipped
        scan.problems.append((str(folder), "folder contains no image files"
                              + (f" ({masks} mask(s) or earlier output(s) skipped)" if masks else "")))
    return hits


def scan_inputs(inputs: Iterable[str | os.PathLike], extra_skip: Callable[[Path], bool] | None = None) -> InputScan:
    """Expand files, folders (searched recursively) and glob patterns into the list of input images.

    Parameters
    ----------
    inputs : paths or glob patterns as typed on a command line.
    extra_skip : ``f(path) -> bool``, a command's own rule for files found by a search that it wrote itself
        (e.g. ``preprocess``'s cleaned ``<stem>.png``); counted with the masks.

    Returns
    -------
    An :class:`InputScan`: image paths without duplicates in a stable order (sorted within each folder or
    pattern); problems for inputs that matched nothing, folders named like images and broken links; the masks
    and earlier outputs left out of folder and pattern searches; unsupported files counted by extension.
    """
    scan = InputScan()
    manifests: dict[Path, set[str]] = {}

    def listed(p: Path) -> bool:
        own = _listed_outputs(p.parent, manifests)
        return p.name in own or (p.name == "run.json" and bool(own))

    def is_output(p: Path) -> bool:
        return (bool(MASK_NAME.search(p.stem)) or listed(p) or (extra_skip is not None and extra_skip(p))
                or is_binary_single_channel(p))

    found: list[Path] = []
    for item in inputs:
        item = str(item)
        path = Path(item)
        if path.is_dir():
            found.extend(_search_folder(path, scan, is_output, listed))
        elif path.is_file():
            found.append(path)
        elif path.is_symlink():
            scan.problems.append((item, "broken or looping symbolic link"))
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            hits, skipped = [], len(scan.masks_skipped)
            for p in matches:
                if p.is_dir():
                    if p.suffix.lower() in IMAGE_EXTENSIONS:
                        scan.problems.append((str(p), "is a folder, not an image file"))
                elif p.is_file():
                    if is_output(p):
                        scan.masks_skipped.append(p)
                    else:
                        hits.append(p)
            masks = len(scan.masks_skipped) - skipped
            if not hits and not matches:
                scan.problems.append((item, "glob pattern matched no file"))
            elif not hits and masks:
                scan.problems.append((item, f"glob pattern matched only masks or earlier outputs ({masks} skipped; "
                                            "name a file to process it anyway)"))
            found.extend(hits)
        else:
            scan.problems.append((item, "no such file or folder"))
    seen: set[Path] = set()
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            scan.files.append(p)
    return scan


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Return ``image`` if it is an (H, W, 3) uint8 RGB array with H, W ≥ 1 (what every image function here
    takes), else raise ValueError saying what it got (for a file name: read it with
    :func:`dermoseg.io.read_image` first)."""
    if not isinstance(image, np.ndarray):
        hint = "; read the file with dermoseg.io.read_image first" if isinstance(image, (str, os.PathLike)) else ""
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image array, got {type(image).__name__}{hint}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image with H, W >= 1, got {image.shape} {image.dtype}")
    return image


def image_warning(image: np.ndarray) -> str:
    """Why results on this image are likely unreliable, or "" (shared by ``segment`` and ``diagnose``).

    Checks, in order: an image under :data:`MIN_SIDE` pixels on a side; a nearly uniform image (the standard
    deviation of every colour channel over the pixels under :data:`BLANK_STD` grey levels, e.g. a blank or failed
    capture, whatever its colour); a grayscale image (all three
    channels equal: colour features and the models, trained on colour images, are unreliable). The uniformity and
    grayscale checks look at a strided view (at most about 256 px a side), cheap on 30 Mpx inputs.

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.
    """
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        return f"image is only {w}x{h} pixels (< {MIN_SIDE}); results are unreliable"
    step = max(1, min(h, w) // 256)
    view = image[::step, ::step]
    if float(view.reshape(-1, 3).std(axis=0).max()) < BLANK_STD:  # per channel: a flat brown is blank too
        return "image is nearly uniform (blank?); results are unreliable"
    if np.array_equal(view[..., 0], view[..., 1]) and np.array_equal(view[..., 1], view[..., 2]):
        return "grayscale image: the models and colour measurements expect colour; results are unreliable"
    return ""
