"""A corpus of 24 kinds of bad or unusual input files: every batch command gives one-line messages (no
traceback), goes on past each bad file, processes the good ones and never modifies, renames or removes an
input. Built in the test's temporary folder from a real ISIC image."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dermoseg.cli import main


def _png_header(width: int, height: int) -> bytes:
    """A PNG claiming ``width`` x ``height`` (8-bit RGB) in a valid IHDR chunk, with almost no pixel data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def build_corpus(folder, real_jpg) -> dict[str, str]:
    """Write the corpus into ``folder``; returns {file name: kind}. ``good.jpg`` is the one ordinary image."""
    image = Image.open(real_jpg).convert("RGB").resize((160, 120))
    rgb = np.asarray(image)
    jpeg = io.BytesIO()
    image.save(jpeg, "JPEG")
    data = jpeg.getvalue()
    kinds = {}

    def put(name, kind, content=None, save=None):
        kinds[name] = kind
        path = folder / name
        if content is not None:
            path.write_bytes(content)
        elif save is not None:
            save(path)

    shutil.copy(real_jpg, folder / "good.jpg")
    kinds["good.jpg"] = "ordinary image"
    put("zero.jpg", "zero bytes", b"")
    put("truncated.jpg", "truncated JPEG", data[: len(data) // 3])
    put("text.jpg", "text renamed .jpg", b"this is not an image\n")
    put("page.png", "HTML named .png", b"<!doctype html><html><body>404</body></html>")
    put("document.tif", "PDF named .tif", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    put("badheader.bmp", "BMP with a broken header", b"BM" + os.urandom(60))
    put("corrupt.png", "PNG with corrupted data", None, lambda p: p.write_bytes(
        (lambda b: b[:200] + bytes(x ^ 0xFF for x in b[200:400]) + b[400:])(_png_bytes(image))))
    put("huge.png", "header claims 100000 x 100000 pixels", _png_header(100_000, 100_000))
    put("one.png", "1 x 1 pixel", None, lambda p: Image.fromarray(rgb[:1, :1]).save(p))
    put("tiny.png", "3 x 2 pixels", None, lambda p: Image.fromarray(rgb[:2, :3]).save(p))
    put("white.png", "blank white", None, lambda p: Image.fromarray(np.full_like(rgb, 255)).save(p))
    put("deep.png", "16-bit grayscale PNG", None, lambda p: Image.fromarray(rgb[..., 1].astype(np.uint16) * 257).save(p))
    put("cmyk.jpg", "CMYK JPEG", None, lambda p: image.convert("CMYK").save(p, "JPEG"))
    put("palette.png", "palette PNG with transparency", None,
        lambda p: image.convert("P").save(p, transparency=0))
    put("la.png", "grayscale + alpha", None, lambda p: image.convert("LA").save(p))
    put("float.tif", "32-bit float TIFF", None,
        lambda p: Image.fromarray(rgb[..., 0].astype(np.float32) / 255.0, "F").save(p))
    put("animated.gif", "animated GIF", None,
        lambda p: image.save(p, save_all=True, append_images=[image.rotate(90)], duration=100))
    put("rotated.jpg", "EXIF orientation 6", None, lambda p: image.save(p, exif=_exif_rotation(6)))
    (folder / "folder.jpg").mkdir()
    kinds["folder.jpg"] = "a folder named like an image"
    os.symlink(folder / "loop_b.jpg", folder / "loop_a.jpg")
    os.symlink(folder / "loop_a.jpg", folder / "loop_b.jpg")
    kinds["loop_a.jpg"] = kinds["loop_b.jpg"] = "symbolic link loop"
    os.symlink(folder / "nowhere.jpg", folder / "dangling.jpg")
    kinds["dangling.jpg"] = "broken symbolic link"
    put("locked.jpg", "no read permission", data)
    os.chmod(folder / "locked.jpg", 0)
    odd = os.fsdecode(b"latin\xe9.jpg")
    put(odd, "file name not valid UTF-8", data)
    long_name = "x" * 236 + ".jpg"  # legal, but <stem>_segmentation.png is longer than 255 bytes
    put(long_name, "name too long for the outputs", data)
    put("comma, quote\" and\nnewline.jpg", "CSV-hostile name", data)
    return kinds


def _png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _exif_rotation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def _snapshot(folder):
    """Name, type and content hash of everything in the folder (links not followed)."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.is_symlink():
            out[p.name] = ("link", os.readlink(p))
        elif p.is_dir():
            out[p.name] = ("dir",)
        else:
            out[p.name] = ("file", os.stat(p).st_mode, hashlib.sha256(open(p, "rb").read()).hexdigest())
    return out


@pytest.fixture
def corpus(tmp_path, isic_samples):
    folder = tmp_path / "corpus"
    folder.mkdir()
    kinds = build_corpus(folder, isic_samples[0].image_path)
    assert len(set(kinds.values())) >= 23
    yield folder
    os.chmod(folder / "locked.jpg", 0o644)


@pytest.mark.parametrize("command,table,key", [("segment", "results.csv", "image_id"),
                                               ("preprocess", "preprocess.csv", "image_id"),
                                               ("diagnose", "predictions.csv", "image")])
def test_every_batch_command_survives_the_corpus(tmp_path, corpus, command, table, key, capsys):
    before = _snapshot(corpus)
    argv = [command, str(corpus), "--out", str(tmp_path / "out")] + (["--no-tta"] if command == "segment" else [])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected" not in err, err
    assert _snapshot(corpus) == before  # no input modified, renamed or removed
    with open(tmp_path / "out" / "failures.csv", newline="", encoding="utf-8") as fh:
        failures = {os.path.basename(r["file"]): r["reason"] for r in csv.DictReader(fh)}
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(failures)  # one line per failure
    for name in ("zero.jpg", "truncated.jpg", "text.jpg", "page.png", "document.tif", "badheader.bmp",
                 "corrupt.png", "huge.png", "folder.jpg", "loop_a.jpg", "dangling.jpg", "latin\\xe9.jpg"):
        assert name in failures, (name, sorted(failures))
    assert "too large" in failures["huge.png"] and "not valid UTF-8" in failures["latin\\xe9.jpg"]
    with open(tmp_path / "out" / table, newline="", encoding="utf-8") as fh:
        done = {r[key] for r in csv.DictReader(fh)}
    for stem in ("good", "one", "tiny", "white", "deep", "cmyk", "palette", "la", "float", "animated", "rotated",
                 "locked", "comma, quote\" and\nnewline"):
        assert stem in done, (stem, sorted(done))
    assert "x" * 236 in done or ("x" * 236 + ".jpg") in failures  # written, or refused with a reason


def test_evaluate_skip_bad_on_broken_masks(tmp_path, isic_samples, capsys):
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    ids = [s.image_id for s in isic_samples[:6]]
    for s in isic_samples[:6]:
        shutil.copy(s.mask_path, truth)
    shutil.copy(isic_samples[0].mask_path, pred)
    (pred / f"{ids[1]}_segmentation.png").write_bytes(b"")
    (pred / f"{ids[2]}_segmentation.png").write_bytes(isic_samples[2].mask_path.read_bytes()[:300])
    (pred / f"{ids[3]}_segmentation.png").write_text("not a mask")
    shutil.copy(isic_samples[4].image_path, pred / f"{ids[4]}_segmentation.jpg")
    Image.open(isic_samples[5].mask_path).convert("L").resize((100, 100)).save(pred / f"{ids[5]}_segmentation.png")
    before = _snapshot(pred)
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--skip-bad", "--out", str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    import json
    summary = json.loads((tmp_path / "e" / "summary.json").read_text())
    assert summary["images"] == 1 and sorted(s["image_id"] for s in summary["skipped"]) == sorted(ids[1:])
    assert _snapshot(pred) == before
