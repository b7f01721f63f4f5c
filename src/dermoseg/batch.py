"""One job over many image files: what every batch command (segment, preprocess, diagnose) shares.

:func:`run_batch` finds the inputs (files, folders searched recursively, glob patterns), skips what an earlier
run wrote into the output folder, refuses to overwrite an input, reads each image, hands it to the command's
own ``process`` function and collects one result row per image. A file that cannot be read, or that ``process``
rejects with a :class:`BatchItemError`, is recorded with its reason and the batch goes on; failures are printed
on stderr and written to ``failures.csv``. Every file is written atomically (:mod:`dermoseg.io`).
"""

from __future__ import annotations

import csv
import io as _io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from dermoseg.errors import DermosegError
from dermoseg.io import ImageReadError, find_images, read_image, write_text


class BatchItemError(DermosegError, ValueError):
    """Raised by a ``process`` function to report one input as failed (the message is the reason) and go on."""


@dataclass
class BatchReport:
    """What a batch command did: result rows, failures ``(input, reason)``, warnings ``(input, message)`` and
    the output folder."""

    out_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 if every input was processed, 1 if any failed."""
        return 1 if self.failures else 0


def rows_to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Format rows as CSV text with the given leading columns (extra keys follow in first-seen order); floats
    are written with 6 significant digits."""
    extra = [k for r in rows for k in r if k not in columns]
    header = columns + list(dict.fromkeys(extra))
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output stems for the inputs: the file stem, with ``__2``, ``__3``… appended when two inputs share one."""
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        n = seen.get(p.stem, 0) + 1
        seen[p.stem] = n
        out.append(p.stem if n == 1 else f"{p.stem}__{n}")
    return out


def write_failures(report: BatchReport) -> None:
    """Print each failure and warning to stderr and write ``failures.csv`` (file, reason) when there are failures;
    a ``failures.csv`` left by an earlier run into the same folder is removed when this run has none."""
    for name, message in report.warnings:
        print(f"warning: {name}: {message}", file=sys.stderr)
    for name, reason in report.failures:
        print(f"error: {name}: {reason}", file=sys.stderr)
    target = report.out_dir / "failures.csv"
    if report.failures:
        rows = [{"file": n, "reason": r} for n, r in report.failures]
        write_text(target, rows_to_csv(rows, ["file", "reason"]))
    elif target.is_file():
        target.unlink()


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → ``(I, N)``: shard I (1-based) of N.

    Raises
    ------
    BatchItemError
        Unless ``text`` is two integers with 1 ≤ I ≤ N.
    """
    i, sep, n = str(text).partition("/")
    try:
        index, count = int(i), int(n)
    except ValueError:
        index = count = 0
    if not sep or not 1 <= index <= count:
        raise BatchItemError(f"--shard expects I/N with 1 <= I <= N (e.g. 2/8), got '{text}'")
    return index, count


def run_batch(inputs: Sequence[str], out_dir: str | Path,
              process: Callable[[Path, str, np.ndarray], dict[str, Any]], *, desc: str,
              outputs: Callable[[str], list[Path]] | None = None,
              is_own_output: Callable[[Path], bool] | None = None, progress: bool = True,
              shard: tuple[int, int] | None = None) -> BatchReport:
    """Apply ``process`` to every image found in ``inputs``; collect its rows and the failures.

    Parameters
    ----------
    inputs : files, folders (searched recursively) and glob patterns (:func:`dermoseg.io.find_images`).
    out_dir : output folder (created).
    process : ``f(path, stem, image) -> row`` with ``image`` (H, W, 3) uint8 RGB from
        :func:`dermoseg.io.read_image`; it writes its own per-image files and may raise :class:`BatchItemError`
        to fail this input only. A row without ``"seconds"`` gets the wall time of reading + processing; a
        non-empty ``"warning"`` value is also reported on stderr (the input still counts as processed).
    desc : progress-bar label.
    outputs : ``f(stem) -> paths`` the command writes for one input; an input that would be overwritten by one
        of them fails with "choose another --out" and nothing is written for it.
    is_own_output : ``f(path) -> bool`` for files an earlier run of the command wrote; such files found inside
        ``out_dir`` by a folder or pattern search are skipped (an input named explicitly is always processed).
    progress : show a progress bar on stderr.
    shard : ``(I, N)``: process only shard I of N of the images found (:func:`parse_shard`), so that N machines
        given the same ``inputs`` over the same archive split it between them: the k-th image (0-based, in the
        sorted order of :func:`dermoseg.io.find_images`) belongs to shard ``k % N + 1``. Shards are disjoint,
        together they are every image, and output names are those of an unsharded run (stems are made unique
        over all the images, not per shard).

    Returns
    -------
    A :class:`BatchReport` (rows in input order). ``failures.csv`` is written (or a stale one removed) and
    failures are printed; the caller writes its own results table.
    """
    out_dir = Path(out_dir)
    files, problems = find_images(list(inputs))
    if is_own_output is not None:
        named = {Path(i).resolve() for i in inputs if Path(i).is_file()}
        out_res = out_dir.resolve()
        files = [p for p in files if p.resolve() in named or p.parent.resolve() != out_res or not is_own_output(p)]
    out_dir.mkdir(parents=True, exist_ok=True)
    report = BatchReport(out_dir, failures=list(problems))
    input_paths = {p.resolve() for p in files}
    jobs = list(zip(files, unique_stems(files)))
    if shard is not None:
        index, count = shard
        jobs = jobs[index - 1::count]
    for path, stem in tqdm(jobs, desc=desc, unit="img", disable=not progress):
        start = time.perf_counter()
        clash = next((o for o in (outputs(stem) if outputs else []) if o.resolve() in input_paths), None)
        if clash is not None:
            report.failures.append((str(path), f"output {clash.name} would overwrite an input; choose another --out"))
            continue
        try:
            image = read_image(path)
            row = process(path, stem, image)
        except (ImageReadError, BatchItemError) as exc:
            report.failures.append((str(path), str(exc).removeprefix(f"{path}: ")))
            continue
        row.setdefault("seconds", round(time.perf_counter() - start, 3))
        if row.get("warning"):
            report.warnings.append((str(path), row["warning"]))
        report.rows.append(row)
    write_failures(report)
    return report
