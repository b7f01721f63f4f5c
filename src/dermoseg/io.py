"""Reading, validating and writing images and masks: the only module that touches image files.

Every reader raises :class:`ImageReadError` naming the file and the problem, so that batch commands can
report a bad file and go on. Every writer is atomic (temporary file in the same folder, then ``os.replace``),
so an interrupted run never leaves a half-written output, and no function here ever writes to an input path.
"""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dermoseg.errors import ImageReadError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Gray level above which a pixel of a mask file that dermoseg wrote (0/255) is lesion: the binarisation of the
# official ISIC 2018 scorer (isic-challenge-scoring), used wherever a predicted mask file is read back.
MASK_FILE_THRESHOLD = 128

# Images larger than this many pixels are still read (a 6000x4000 JPEG is 24 Mpx); beyond it PIL's
# decompression-bomb guard would refuse them, which is not what a user with a large dermatoscope wants.
Image.MAX_IMAGE_PIXELS = 400_000_000


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any common image file as RGB.

    Handles grayscale, palette, RGBA (alpha dropped, composited on white), 16-bit (scaled to 8 bits) and
    EXIF-rotated files (the EXIF orientation is applied, so the array is upright as a viewer shows it).

    Parameters
    ----------
    path : file path (JPEG, PNG, BMP, TIFF, WebP).

    Returns
    -------
    (H, W, 3) uint8 RGB array, values 0..255.

    Raises
    ------
    ImageReadError
        If the file is missing, empty, truncated, or not an image; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb8(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None


def _to_rgb8(im: Image.Image) -> np.ndarray:
    """Convert a PIL image of any mode to (H, W, 3) uint8 RGB."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        arr = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    if im.mode in ("RGB;16", "RGBA;16") or (im.mode.startswith("RGB") and np.asarray(im).dtype == np.uint16):
        arr = np.asarray(im).astype(np.float64) / 257.0
        return np.clip(arr[..., :3] + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def read_mask(path: str | os.PathLike, threshold: int = 0) -> np.ndarray:
    """Read a binary lesion mask.

    Parameters
    ----------
    path : mask file (PNG 0/255, 1-bit BMP, ...).
    threshold : a pixel is lesion where its gray value is ``> threshold`` (0 for PH2/ISIC ground truth;
        :data:`MASK_FILE_THRESHOLD` for predicted masks, as the ISIC 2018 scorer binarises them).

    Returns
    -------
    (H, W) bool array, True = lesion.

    Raises
    ------
    ImageReadError
        If the file is missing, empty or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such mask file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty mask file (0 bytes)")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "1":
                return np.asarray(im, dtype=bool).copy()
            gray = np.asarray(im.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: not a readable mask ({exc})") from None
    return gray > threshold


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the permissions any new file would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes as 64 hex digits (model files, pretrained weights). Raises OSError if unreadable."""
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (a temporary file in the same folder, then a rename); parent folders
    are created. Returns the path."""
    _atomic_write_bytes(Path(path), data)
    return Path(path)


def write_figure(path: str | os.PathLike, fig, dpi: int | str = 150) -> Path:
    """Atomically write a matplotlib figure as PNG at ``dpi`` and close it (every report figure goes here).

    Parameters
    ----------
    path : output ``.png``; parent folders are created.
    dpi : dots per inch, or "figure" for the figure's own.
    fig : a ``matplotlib.figure.Figure``; it is closed afterwards, also on error.
    """
    import io as _io
    import matplotlib.pyplot as plt
    buf = _io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return write_bytes(path, buf.getvalue())


def write_image(path: str | os.PathLike, image: np.ndarray, jpeg_quality: int = 92) -> Path:
    """Atomically write an image; the format follows the suffix (``.png``, ``.jpg``).

    Parameters
    ----------
    path : output path; parent folders are created.
    image : (H, W) uint8 gray, (H, W) bool (written 0/255) or (H, W, 3) uint8 RGB.
    jpeg_quality : 0..100, for ``.jpg`` only.

    Returns
    -------
    The path written.

    Raises
    ------
    ValueError
        If the array has an unsupported shape or dtype, or the suffix is not an image format OpenCV writes.
    """
    path = Path(path)
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"{path}: expected (H, W) or (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix.lower(), arr, params)
    if not ok:
        raise ValueError(f"{path}: could not encode as {path.suffix}")
    _atomic_write_bytes(path, buf.tobytes())
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write a UTF-8 text file (CSV, JSON, Markdown); returns the path."""
    path = Path(path)
    _atomic_write_bytes(path, text.encode("utf-8"))
    return path


def find_images(inputs: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files, folders (searched recursively) and glob patterns into a sorted list of image files.

    Parameters
    ----------
    inputs : paths or glob patterns as typed on a command line.

    Returns
    -------
    (images, problems): the image paths found, without duplicates, in a stable order; and a list of
    ``(input, reason)`` for inputs that matched nothing (missing path, empty folder, glob without match).
    """
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in inputs:
        item = str(item)
        path = Path(item)
        if path.is_dir():
            hits = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                          and not p.name.startswith("."))
            if not hits:
                problems.append((item, "folder contains no image files"))
            found.extend(hits)
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(item):
            hits = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not hits:
                problems.append((item, "glob pattern matched no file"))
            found.extend(hits)
        else:
            problems.append((item, "no such file or folder"))
    seen: set[Path] = set()
    unique = []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, problems
