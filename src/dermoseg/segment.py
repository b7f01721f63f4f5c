"""The main job: segment a batch of dermoscopic images into ISIC-named masks, overlays and a results table.

For each image ``<stem>``: ``<stem>_segmentation.png`` (0/255, the input's size; ISIC 2018 Task 1 naming, which
the official scorer reads), ``<stem>_overlay.jpg`` (lesion contour on the image) and a row of ``results.csv``.
A file that cannot be read is reported with its reason in ``failures.csv`` and on stderr; the batch goes on.
"""

from __future__ import annotations

import csv
import io as _io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from tqdm import tqdm

from dermoseg.inference import SegmentationModel, predict_probability, probability_to_mask
from dermoseg.io import ImageReadError, find_images, read_image, write_image, write_text

RESULT_COLUMNS = ["file", "image_id", "height", "width", "lesion_area_px", "lesion_area_pct", "bbox_x", "bbox_y",
                  "bbox_width", "bbox_height", "mean_lesion_probability", "seconds"]


@dataclass
class BatchReport:
    """What a batch command did: result rows, failures ``(input, reason)``, and the output folder."""

    out_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 if every input was processed, 1 if any failed."""
        return 1 if self.failures else 0


def rows_to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Format rows as CSV text with the given leading columns (extra keys follow in first-seen order)."""
    extra = [k for r in rows for k in r if k not in columns]
    header = columns + list(dict.fromkeys(extra))
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def draw_overlay(image: np.ndarray, mask: np.ndarray, color=(0, 255, 0), truth: np.ndarray | None = None,
                 truth_color=(255, 0, 255)) -> np.ndarray:
    """The image with the lesion contour drawn on it (and, if given, the ground-truth contour in a second colour).

    Parameters
    ----------
    image : (H, W, 3) uint8 RGB.
    mask, truth : (H, W) bool.

    Returns
    -------
    (H, W, 3) uint8 RGB copy; the input is not changed.
    """
    out = image.copy()
    thickness = max(2, round(max(image.shape[:2]) / 250))
    for m, c in ((truth, truth_color), (mask, color)):
        if m is not None and m.any():
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(out, contours, -1, c, thickness)
    return out


def mask_geometry(mask: np.ndarray) -> dict[str, Any]:
    """Area (pixels and % of the image) and bounding box (x, y, width, height in pixels) of a (H, W) bool mask;
    an empty mask gives area 0 and an empty bounding box."""
    area = int(mask.sum())
    ys, xs = np.nonzero(mask)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)) if area else ("", "", 0, 0)
    return {"lesion_area_px": area, "lesion_area_pct": 100.0 * area / mask.size, "bbox_x": bbox[0],
            "bbox_y": bbox[1], "bbox_width": bbox[2], "bbox_height": bbox[3]}


def unique_stems(paths: list[Path]) -> list[str]:
    """Output stems for the inputs: the file stem, with ``__2``, ``__3``… appended when two inputs share one."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        out.append(p.stem if n == 1 else f"{p.stem}__{n}")
    return out


def segment_files(inputs: list[str], out_dir: str | Path, model: SegmentationModel, threshold: float = 0.5,
                  tta: bool | None = None, preprocess: bool | None = None,
                  extra_columns: Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]] | None = None,
                  progress: bool = True) -> BatchReport:
    """Segment every image found in ``inputs`` and write the outputs into ``out_dir``.

    Parameters
    ----------
    inputs : files, folders (searched recursively) and glob patterns.
    out_dir : output folder (created).
    model : a loaded segmentation model.
    threshold : lesion where probability > threshold, in (0, 1).
    tta : flip test-time augmentation; None follows the model file.
    preprocess : apply black-frame and hair removal before the model; None follows the model file's setting.
    extra_columns : optional ``f(image, mask, prob) -> dict`` adding columns to each row (measurements,
        diagnosis).
    progress : show a progress bar on stderr.

    Returns
    -------
    A :class:`BatchReport`; ``results.csv`` and, if any input failed, ``failures.csv`` are written atomically.
    """
    out_dir = Path(out_dir)
    files, failures = find_images(inputs)
    named = {Path(i).resolve() for i in inputs if Path(i).is_file()}
    files = [p for p in files if p.resolve() in named or not is_own_output(p, out_dir)]  # skip earlier outputs
    out_dir.mkdir(parents=True, exist_ok=True)
    report = BatchReport(out_dir, failures=list(failures))
    input_paths = {p.resolve() for p in files}
    use_pre = bool(model.preprocess.get("enabled")) if preprocess is None else preprocess
    cleaner = None
    if use_pre:
        from dermoseg.preprocess import clean_image
        cleaner = lambda im: clean_image(im, model.preprocess).image  # noqa: E731
    for path, stem in zip(tqdm(files, desc="segment", unit="img", disable=not progress), unique_stems(files)):
        start = time.perf_counter()
        mask_path, overlay_path = out_dir / f"{stem}_segmentation.png", out_dir / f"{stem}_overlay.jpg"
        if mask_path.resolve() in input_paths or overlay_path.resolve() in input_paths:
            report.failures.append((str(path), f"output {mask_path.name} would overwrite an input; choose another --out"))
            continue
        try:
            image = read_image(path)
        except ImageReadError as exc:
            report.failures.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        model_input = cleaner(image) if cleaner else image
        prob = predict_probability(model, model_input, tta=tta)
        mask = probability_to_mask(prob, threshold)
        write_image(mask_path, mask)
        write_image(overlay_path, draw_overlay(image, mask))
        row = {"file": str(path), "image_id": stem, "height": image.shape[0], "width": image.shape[1],
               **mask_geometry(mask),
               "mean_lesion_probability": float(prob[mask].mean()) if mask.any() else 0.0}
        if extra_columns is not None:
            row.update(extra_columns(image, mask, prob))
        row["seconds"] = round(time.perf_counter() - start, 3)
        report.rows.append(row)
    write_text(out_dir / "results.csv", rows_to_csv(report.rows, RESULT_COLUMNS))
    write_failures(report)
    return report


def is_own_output(path: Path, out_dir: Path) -> bool:
    """True for a mask or overlay that ``segment`` wrote into ``out_dir`` earlier (never re-segment those)."""
    return path.parent.resolve() == out_dir.resolve() and path.name.endswith(("_segmentation.png", "_overlay.jpg"))


def write_failures(report: BatchReport) -> None:
    """Print each failure to stderr and write ``failures.csv`` (file, reason) when there are any; a
    ``failures.csv`` left by an earlier run into the same folder is removed when this run has none."""
    for name, reason in report.failures:
        print(f"error: {name}: {reason}", file=sys.stderr)
    target = report.out_dir / "failures.csv"
    if report.failures:
        rows = [{"file": n, "reason": r} for n, r in report.failures]
        write_text(target, rows_to_csv(rows, ["file", "reason"]))
    elif target.is_file():
        target.unlink()
