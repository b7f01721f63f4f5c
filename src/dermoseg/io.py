"""Reading, validating and writing images and masks: the only module that touches image files.

Every reader raises :class:`ImageReadError` naming the file and the problem, so that batch commands can
report a bad file and go on. Every writer is atomic (temporary file in the same folder, then ``os.replace``),
so an interrupted run never leaves a half-written output, and no function here ever writes to an input path.
"""

from __future__ import annotations

import io as _io
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from dermoseg.errors import ImageReadError, ImageTooLargeError, UnsupportedImageError

# Extensions of the formats read_image reads (Pillow); JPEG 2000 only where Pillow was built with OpenJPEG.
IMAGE_EXTENSIONS = tuple([".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif",
                          ".ppm", ".pgm", ".pbm", ".pnm"] + ([".jp2", ".j2k"] if features.check_codec("jpg_2000") else []))
# Gray level above which a pixel of a mask file that dermoseg wrote (0/255) is lesion: the binarisation of the
# official ISIC 2018 scorer (isic-challenge-scoring), used wherever a predicted mask file is read back.
MASK_FILE_THRESHOLD = 128

# Images larger than this many pixels are still read (a 6000x4000 JPEG is 24 Mpx); beyond it PIL's
# decompression-bomb guard would refuse them, which is not what a user with a large dermatoscope wants.
Image.MAX_IMAGE_PIXELS = 400_000_000


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any common image file as RGB.

    Handles grayscale, palette, CMYK, 16-bit (scaled to 8 bits), EXIF-rotated files (the EXIF orientation is
    applied, so the array is upright as a viewer shows it) and transparency: an image with an alpha channel is
    composited over its own background colour, the mean colour of the opaque pixels on the image border (the
    skin around the lesion), so that transparent regions look like skin and are not taken for lesion (over
    white when no border pixel is opaque); see :func:`composite_background`.

    Parameters
    ----------
    path : file path (any format of :data:`IMAGE_EXTENSIONS`).

    Returns
    -------
    (H, W, 3) uint8 RGB array, values 0..255.

    Raises
    ------
    ImageReadError
        If the file is missing, empty, truncated, or not an image (:class:`UnsupportedImageError`); the
        message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: " + ("is a folder, not an image file" if path.is_dir() else "no such file"))
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    return _decode(path, str(path), None)[0]


def decode_image(data: bytes, name: str, max_pixels: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode an image held in memory (an upload) exactly as :func:`read_image` and :func:`read_alpha` read a
    file with these bytes.

    The format is found from the content, never from ``name``; the pixel count is checked from the header
    before the pixels are decoded, so an oversize image costs no memory.

    Parameters
    ----------
    data : the encoded bytes (any format of :data:`IMAGE_EXTENSIONS`).
    name : how to name the image in error messages (nothing is written or opened under it).
    max_pixels : refuse images with more than this many pixels (width × height); None: no limit beyond
        :data:`PIL.Image.MAX_IMAGE_PIXELS`.

    Returns
    -------
    (rgb, alpha): the (H, W, 3) uint8 RGB array of :func:`read_image`, and the (H, W) uint8 opacity of
    :func:`read_alpha` (None without transparency).

    Raises
    ------
    ImageReadError
        If ``data`` is empty or truncated; :class:`UnsupportedImageError` if it is not an image;
        :class:`ImageTooLargeError` if it has more than ``max_pixels`` pixels.
    """
    if len(data) == 0:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    return _decode(_io.BytesIO(data), name, max_pixels)


def _decode(source, name: str, max_pixels: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Open, check the size of, load, EXIF-rotate and convert one image (``source``: a path or a file object);
    returns RGB and the opacity (None without transparency)."""
    try:
        with Image.open(source) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise ImageTooLargeError(f"{name}: image is {im.width}x{im.height} = {im.width * im.height:,} "
                                         f"pixels, more than the limit of {max_pixels:,}")
            im.load()
            im = ImageOps.exif_transpose(im)
            alpha = np.ascontiguousarray(np.asarray(im.convert("RGBA"))[..., 3]) if _has_alpha(im) else None
            return _to_rgb8(im), alpha
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"{name}: image dimensions too large (over {2 * Image.MAX_IMAGE_PIXELS:,} "
                                 "pixels)") from None
    except MemoryError:
        raise ImageTooLargeError(f"{name}: image too large to hold in memory") from None
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"{name}: not a readable image (not in any image format this tool reads)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{name}: not a readable image ({exc})") from None


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
    if _has_alpha(im):
        rgba = np.asarray(im.convert("RGBA"))
        return composite_background(rgba[..., :3], rgba[..., 3])
    if im.mode in ("RGB;16", "RGBA;16") or (im.mode.startswith("RGB") and np.asarray(im).dtype == np.uint16):
        arr = np.asarray(im).astype(np.float64) / 257.0
        return np.clip(arr[..., :3] + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "La", "LA", "PA", "RGBa") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info)


def read_alpha(path: str | os.PathLike) -> np.ndarray | None:
    """The opacity of an image file with transparency, upright like :func:`read_image`'s array.

    Parameters
    ----------
    path : image file (already read successfully by :func:`read_image`).

    Returns
    -------
    (H, W) uint8 alpha (0 = fully transparent, 255 = opaque), or None for a file without transparency (only
    the header is read then).

    Raises
    ------
    ImageReadError
        If the file cannot be read.
    """
    try:
        with Image.open(path) as im:
            if not _has_alpha(im):
                return None
            im.load()
            return np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(im).convert("RGBA"))[..., 3])
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{path}: not a readable image ({exc})") from None


def composite_background(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite an image with transparency over its background colour.

    The background is the mean colour of the fully opaque pixels on the image's border (one pixel wide), i.e.
    the skin around a centred lesion; white if no border pixel is opaque. Each pixel becomes
    ``alpha/255 · rgb + (1 − alpha/255) · background``.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 RGB.
    alpha : (H, W) uint8 opacity, 255 = opaque.

    Returns
    -------
    (H, W, 3) uint8 RGB.
    """
    edge_rgb = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    edge_alpha = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
    opaque = edge_rgb[edge_alpha == 255]
    background = opaque.mean(0) if len(opaque) else np.full(3, 255.0)
    a = alpha[..., None].astype(np.float32) / 255.0
    out = rgb.astype(np.float32) * a + background.astype(np.float32) * (1.0 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


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


NEAR_BINARY_SHARE = 0.98  # a mask with at least this share of pixels within 10 grey levels of 0 or 255 is binary


def read_binary_mask(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Read a mask that must be binary, for scoring: 0/255 (ISIC, PH2, ``dermoseg segment``) or 0/1.

    A 0/1 mask is read as 1 = lesion (not as a nearly black image); a 0/255 mask, and a nearly binary one
    (JPEG-compressed or anti-aliased edges: at least :data:`NEAR_BINARY_SHARE` of its pixels within 10 grey
    levels of 0 or 255), is binarised at > 128 as the ISIC 2018 scorer does. Anything else (a photograph, a
    probability map, a colour image) is refused.

    Parameters
    ----------
    path : mask file (PNG, BMP, 1-bit, 8- or 16-bit gray; RGB with three equal channels is accepted).

    Returns
    -------
    (mask, note): (H, W) bool, True = lesion; note is "" or a warning about a nearly binary mask.

    Raises
    ------
    ImageReadError
        If the file is missing, unreadable, a colour image, or not binary; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such mask file")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "1":
                return np.asarray(im, dtype=bool).copy(), ""
            arr = np.asarray(im.convert("RGB") if im.mode in ("P", "RGBA", "CMYK", "YCbCr", "LA") else im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageReadError(f"{path}: not a readable mask ({exc})") from None
    if arr.ndim == 3:
        if not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2])):
            raise ImageReadError(f"{path}: a colour image, not a binary mask (masks are 0/255 or 0/1 gray)")
        arr = arr[..., 0]
    if arr.dtype != np.uint8:  # 16-bit or 32-bit gray: scale to 8 bits
        arr = np.clip(arr.astype(np.float64) / (257.0 if arr.max() > 255 else 1.0) + 0.5, 0, 255).astype(np.uint8)
    values = np.unique(arr)
    if set(values.tolist()) <= {0, 1}:
        return arr == 1, ""
    if set(values.tolist()) <= {0, 255}:
        return arr > MASK_FILE_THRESHOLD, ""
    near = float(np.mean((arr <= 10) | (arr >= 245)))
    if near >= NEAR_BINARY_SHARE:
        return arr > MASK_FILE_THRESHOLD, f"not exactly binary ({len(values)} grey levels, {100 * (1 - near):.1f}% of pixels " \
                          "between 10 and 245); binarised at > 128"
    raise ImageReadError(f"{path}: not a binary mask ({len(values)} grey levels, {100 * (1 - near):.0f}% of pixels "
                         "between 10 and 245: a photograph or probability map?); masks must be 0/255 or 0/1")


def _read_umask() -> int:
    """The process umask. Setting it to read it back is the portable way, but the umask is process-wide, so that
    is done once, at import (before any writer thread exists); writers run in several threads (the batch
    pipeline), and a file another thread created while the umask was 0 would be world-writable."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the permissions any new file would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_SHA256_CACHE: dict[tuple, str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes as 64 hex digits (model files, pretrained weights). Raises OSError if unreadable.

    The digest is remembered per process under the key (resolved path, device, inode, size, modification time in
    ns): a file replaced (every write of this project renames a new file into place) or modified gets a new key."""
    # loading a model checks the same 11 MB file against its ONNX export, its sidecars and its run record
    import hashlib
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _SHA256_CACHE:
        _SHA256_CACHE[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return _SHA256_CACHE[key]


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path`` (a temporary file in the same folder, then a rename); parent folders
    are created. Returns the path."""
    _atomic_write_bytes(Path(path), data)
    return Path(path)


def write_torch(path: str | os.PathLike, obj) -> Path:
    """Atomically write a ``torch.save`` file (model files; serialised in memory, then :func:`write_bytes`)."""
    import io as _io
    import torch
    buf = _io.BytesIO()
    torch.save(obj, buf)
    return write_bytes(path, buf.getvalue())


def write_figure(path: str | os.PathLike, fig, dpi: int | str = 150) -> Path:
    """Atomically write a matplotlib figure as PNG at ``dpi`` and close it (every report figure goes here).

    Parameters
    ----------
    path : output ``.png``; parent folders are created.
    dpi : dots per inch, or "figure" for the figure's own.
    fig : a ``matplotlib.figure.Figure``; it is closed afterwards, also on error.
    """
    import matplotlib.pyplot as plt
    buf = _io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return write_bytes(path, buf.getvalue())


def encode_image(image: np.ndarray, suffix: str = ".png", jpeg_quality: int = 92) -> bytes:
    """Encode an image as the bytes of a file in the format of ``suffix`` (what :func:`write_image` writes).

    Parameters
    ----------
    image : (H, W) uint8 gray, (H, W) bool (encoded 0/255) or (H, W, 3) uint8 RGB.
    suffix : ``.png``, ``.jpg`` or any other format OpenCV encodes.
    jpeg_quality : 0..100, for ``.jpg`` only.

    Raises
    ------
    ValueError
        If the array has an unsupported shape or dtype, or OpenCV cannot encode ``suffix``.
    """
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"expected (H, W) or (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    suffix = suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if suffix in (".jpg", ".jpeg") else []
    try:
        ok, buf = cv2.imencode(suffix, arr, params)
    except cv2.error:
        ok = False
    if not ok:
        raise ValueError(f"could not encode as {suffix}")
    return buf.tobytes()


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
    try:
        data = encode_image(image, path.suffix, jpeg_quality)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    _atomic_write_bytes(path, data)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write a UTF-8 text file (CSV, JSON, Markdown); returns the path."""
    path = Path(path)
    _atomic_write_bytes(path, text.encode("utf-8"))
    return path
