"""The ``dermoseg preprocess`` batch: clean many images, write the clean images, masks, a table and a sheet.

For each input ``<stem>``: ``<stem>.png`` (the cleaned image, the input's height and width),
``<stem>_hair.png`` and ``<stem>_frame.png`` (masks 0/255, same size), and a row of ``preprocess.csv``. A file
that cannot be read is reported with its reason (stderr and ``failures.csv``) and skipped.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np

from dermoseg.batch import BatchReport, run_batch
from dermoseg.io import write_image
from dermoseg.tables import CsvTable
from dermoseg.preprocess import CleanResult, clean_image, resolve_settings

COLUMNS = ["file", "image_id", "height", "width", "hair_pct", "n_hairs", "mode", "frame_found", "frame_pct",
           "seconds"]
SHEET_NAME = "preprocess_sheet.png"


def preprocess_files(inputs: list[str], out_dir: str | Path, cfg: Mapping[str, Any] | None = None,
                     sheet: bool = False, progress: bool = True, sheet_max: int = 48,
                     resume: bool = False) -> BatchReport:
    """Clean every image found in ``inputs`` (files, folders searched recursively, glob patterns).

    Parameters
    ----------
    inputs : paths or glob patterns.
    out_dir : output folder (created).
    cfg : preprocessing settings overriding the shipped defaults (see :func:`dermoseg.preprocess.clean_image`).
    sheet : also write ``preprocess_sheet.png``: before/after thumbnails with the hair (green) and frame
        (magenta) masks, for the first ``sheet_max`` images.
    progress : show a progress bar on stderr.
    resume : keep the rows of an earlier run into ``out_dir`` and skip the images already done (the sheet then
        shows only the images cleaned by this run).

    Returns
    -------
    A :class:`~dermoseg.batch.BatchReport`; each row is appended to ``preprocess.csv`` as soon as its image is
    done (failures to ``failures.csv``); ``run.json`` records the settings. Its ``exit_code`` is 1 if any input
    failed.

    Raises
    ------
    PreprocessConfigError
        If ``cfg`` is invalid (checked before any file is read).
    """
    settings = resolve_settings(cfg)  # fail early on a bad setting, before a long batch
    out_dir = Path(out_dir)
    thumbs: list[np.ndarray] = []

    def outputs(stem: str) -> list[Path]:
        return [out_dir / f"{stem}.png", out_dir / f"{stem}_hair.png", out_dir / f"{stem}_frame.png"]

    def process(path: Path, stem: str, image: np.ndarray) -> dict[str, Any]:
        start = time.perf_counter()
        result = clean_image(image, cfg)
        seconds = time.perf_counter() - start
        for target, picture in zip(outputs(stem), (result.image, result.hair_mask, result.frame_mask)):
            write_image(target, picture)
        if sheet and len(thumbs) < sheet_max:
            thumbs.append(sheet_row(image, result, stem))
        return {"file": str(path), "image_id": stem, "height": image.shape[0], "width": image.shape[1],
                "hair_pct": round(result.hair_pct, 3), "n_hairs": result.n_hairs, "mode": result.mode,
                "frame_found": int(result.frame_found), "frame_pct": round(result.frame_pct, 3),
                "seconds": round(seconds, 4)}

    report = run_batch(inputs, out_dir, process, desc="preprocess", outputs=outputs, is_own_output=is_own_output,
                       progress=progress, tables=[CsvTable(out_dir / "preprocess.csv", COLUMNS, key="image_id")],
                       resume=resume, settings={"preprocess_settings": settings},
                       extra_outputs=[out_dir / SHEET_NAME] if sheet else [])
    if sheet and thumbs:
        write_image(out_dir / SHEET_NAME, contact_sheet(thumbs))
    return report


def is_own_output(path: Path) -> bool:
    """True for a file ``preprocess`` writes: a hair or frame mask, or a cleaned ``<stem>.png`` whose masks lie
    beside it (never clean those again when found in the output folder)."""
    if path.name.endswith(("_hair.png", "_frame.png")) or path.name == SHEET_NAME:
        return True
    return path.suffix == ".png" and path.with_name(f"{path.stem}_hair.png").is_file()


def sheet_row(image: np.ndarray, result: CleanResult, label: str, size: int = 192) -> np.ndarray:
    """Three thumbnails side by side: the input, the masks over it (hair green, frame magenta), the result.

    Returns an (size + 16, 3 size, 3) uint8 RGB strip with ``label`` written above it.
    """
    overlay = image.copy()
    overlay[result.frame_mask] = (overlay[result.frame_mask] * 0.3 + np.array([255, 0, 255]) * 0.7).astype(np.uint8)
    overlay[result.hair_mask] = (0, 255, 0)
    tiles = [cv2.resize(t, (size, size), interpolation=cv2.INTER_AREA) for t in (image, overlay, result.image)]
    strip = np.full((size + 16, 3 * size, 3), 255, np.uint8)
    strip[16:] = np.hstack(tiles)
    text = f"{label}  hair {result.hair_pct:.1f}% N={result.n_hairs} {result.mode}  frame {result.frame_pct:.1f}%"
    cv2.putText(strip, text[:70], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def contact_sheet(strips: list[np.ndarray], columns: int = 2) -> np.ndarray:
    """Arrange equal-size strips in a grid (row-major), padding with white; returns (H, W, 3) uint8 RGB."""
    blank = np.full_like(strips[0], 255)
    cells = strips + [blank] * (-len(strips) % columns)
    rows = [np.hstack(cells[k:k + columns]) for k in range(0, len(cells), columns)]
    return np.vstack(rows)
