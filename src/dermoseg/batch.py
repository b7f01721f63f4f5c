"""One job over many image files: what every batch command (segment, preprocess, diagnose) shares.

:func:`run_batch` checks the output folder before any work (writable; no output would replace a file that
dermoseg did not write: :mod:`dermoseg.provenance`), finds the inputs (:mod:`dermoseg.inputs`: files, folders
searched recursively, glob patterns; ground-truth masks and earlier outputs skipped with a summary line), reads
each image, hands it to the command's own ``process`` function and appends its row to the command's tables as
soon as it is done (:mod:`dermoseg.tables`), so an interrupted run keeps every finished row, and ``resume``
skips inputs whose rows and outputs are complete. A file that cannot be read, whose name is not valid UTF-8,
whose outputs cannot be written, or that ``process`` rejects with a :class:`BatchItemError`, is recorded with its
reason and the batch goes on; failures are printed on stderr and appended to ``failures.csv``. ``run.json``
records the provenance and the files written. Every per-image file is written atomically (:mod:`dermoseg.io`).

The images flow through a bounded pipeline (:func:`dermoseg.engine.pipeline.run_ordered`): reading and the
command's CPU work before the network, the network, and the work after it (masks, overlays, measurements,
writes) run in three threads, so a command that splits its work into :class:`Stages` keeps the network busy
while the next image is decoded and the last one written. Rows and failures still come in input order and are
the same as one image at a time.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from dermoseg import interrupts, provenance
from dermoseg.engine.pipeline import run_ordered
from dermoseg.errors import DermosegError
from dermoseg.inputs import display_name, name_problem, scan_inputs
from dermoseg.io import ImageReadError, read_image
from dermoseg.tables import CsvTable, format_value, read_rows

PIPELINE_DEPTH = 1  # images waiting between two stages: enough to keep the network busy; at most 5 images are held
# at a time (one per stage, one per queue), which bounds memory on 30-megapixel inputs


class BatchItemError(DermosegError, ValueError):
    """Raised by a ``process`` function to report one input as failed (the message is the reason) and go on."""


@dataclass
class Stages:
    """A command's per-image work split around the network, so that images overlap in :func:`run_batch`.

    Attributes
    ----------
    prepare : ``f(image) -> x``: the work before the network (cleaning, resizing, normalising), ``image``
        (H, W, 3) uint8 RGB.
    infer : ``f(x) -> y``: the network call.
    finish : ``f(path, stem, image, y) -> row``: the work after it; writes the image's files.

    Each may raise :class:`BatchItemError` to fail this input only.
    """

    prepare: Callable[[np.ndarray], Any]
    infer: Callable[[Any], Any]
    finish: Callable[[Path, str, np.ndarray, Any], dict[str, Any]]

    @classmethod
    def single(cls, process: Callable[[Path, str, np.ndarray], dict[str, Any]]) -> "Stages":
        """All of a ``process(path, stem, image) -> row`` function as the last stage (only reading overlaps)."""
        return cls(lambda image: None, lambda x: None, lambda path, stem, image, y: process(path, stem, image))


@dataclass
class BatchReport:
    """What a batch command did: result rows, failures ``(input, reason)``, warnings ``(input, message)``, the
    output folder and how many inputs a resumed run found already done."""

    out_dir: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    resumed: int = 0
    found: int | None = None  # images the input search found for this run (None: not counted)

    @property
    def exit_code(self) -> int:
        """0 if every input was processed, 1 if any failed or the search found no image at all (every file
        skipped as a mask or an earlier output, say: nothing was done, which is not a success)."""
        return 1 if self.failures or self.found == 0 else 0

    def summary_line(self, verb: str, what: str, where: Path) -> str:
        """The command's last line: "<verb> N image(s)[, M already done], K failed; <what> in <where>", or, when the
        search found no image, that nothing was written."""
        if self.found == 0:
            return f"{verb} 0 image(s), {len(self.failures)} failed; no image found to process, nothing written"
        resumed = f", {self.resumed} already done" if self.resumed else ""
        return f"{verb} {len(self.rows)} image(s){resumed}, {len(self.failures)} failed; {what} in {where}"


def rows_to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Format rows as CSV text with the given leading columns (extra keys follow in first-seen order); floats
    are written with 6 significant digits."""
    extra = [k for r in rows for k in r if k not in columns]
    header = columns + list(dict.fromkeys(extra))
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: format_value(v) for k, v in r.items()})
    return buf.getvalue()


def unique_stems(paths: Sequence[Path], earlier: Mapping[str, Collection[str]] | None = None) -> list[str]:
    """Output stems for the inputs, distinct: the file stem, with ``__2``, ``__3``… appended when it is already
    taken, by an input with the same stem or by one whose own stem is such a name (``x.jpg``, ``b/x.jpg`` and
    ``x__2.jpg`` give ``x``, ``x__2``, ``x__2__2``).

    ``earlier``: for a resumed run, ``{stem: names}`` of the inputs the run being continued met: each one's
    resolved path (``run.json`` ``sources``) and its path as then written (the tables' ``file`` cells). An input
    known by either name — its resolved path first, so that the same file written another way (relative,
    absolute, through a symlink) is found, then its path as written now, so that an archive moved or mounted
    elsewhere and named the same way is found too — keeps its stem; every other input avoids those stems, so a
    new ``x.jpg`` from another folder becomes ``x__2`` instead of replacing the earlier ``x``'s outputs."""
    by_path: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for stem, names in (earlier or {}).items():
        for name in names:
            (by_path if Path(name).is_absolute() else by_name).setdefault(name, stem)
    used: set[str] = set(earlier or {})
    last: dict[str, int] = {}
    out = []
    for p in paths:
        known = by_path.get(str(p.resolve())) or by_path.get(str(p)) or by_name.get(str(p))
        if known is not None:
            out.append(known)
            continue
        n = last.get(p.stem, 1)
        stem = p.stem if n == 1 else f"{p.stem}__{n}"
        while stem in used:
            n += 1
            stem = f"{p.stem}__{n}"
        last[p.stem] = n
        used.add(stem)
        out.append(stem)
    return out


def _earlier_inputs(sources: Mapping[str, Path], tables: Sequence[CsvTable]) -> dict[str, set[str]]:
    """``{stem: names}`` of the inputs a resumed run's folder knows (:func:`unique_stems`): the resolved paths of
    its ``run.json`` ``sources`` and the ``file`` cells of the tables' rows (the only names a folder written
    before ``sources`` were recorded has). Raises OSError if a table cannot be read."""
    earlier: dict[str, set[str]] = {stem: {str(path)} for stem, path in sources.items()}
    for t in tables:
        if t.path.is_file():
            for row in read_rows(t.path)[1]:
                if row.get(t.key) and row.get("file"):
                    earlier.setdefault(row[t.key], set()).add(row["file"])
    return earlier


def print_messages(report: BatchReport) -> None:
    """Print each warning and failure to stderr, one line each (names that are not UTF-8 shown escaped)."""
    for name, message in report.warnings:
        print(f"warning: {display_name(name)}: {message}", file=sys.stderr)
    for name, reason in report.failures:
        print(f"error: {display_name(name)}: {reason}", file=sys.stderr)


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


def _refuse_stale_outputs(out_dir: Path, own: dict[str, list[Path]], planned: list[Path],
                          input_paths: set[Path]) -> None:
    """Before a fresh (not ``--resume``) run: refuse a folder holding per-image outputs of an earlier run (listed in
    its ``run.json``, still there, named like this run's ``<stem>_<kind>`` outputs, e.g. ``*_segmentation.png``)
    that this run would neither replace nor read as an input (``input_paths``, resolved). Left there, they would
    sit beside this run's outputs as if it had made them, without a row in its table, and ``evaluate --pred`` on
    the folder would score them.

    Raises
    ------
    dermoseg.provenance.OutputFolderError
        Naming the folder, how many such files there are and one of them; nothing has been written.
    """
    here = out_dir.resolve()
    suffixes = {o.name[len(stem):] for stem, paths in own.items() for o in paths  # "_segmentation.png", not ".png"
                if o.parent.resolve() == here and o.name.startswith(stem + "_")}
    replaced = {o.name for o in planned if o.parent.resolve() == here}
    stale = sorted(n for n in provenance.read_manifest(out_dir) if "/" not in n and n not in replaced
                   and any(n.endswith(s) for s in suffixes) and os.path.lexists(out_dir / n)
                   and (out_dir / n).resolve() not in input_paths)
    if stale:
        raise provenance.OutputFolderError(
            f"{out_dir}: holds {len(stale)} per-image output(s) of an earlier run that this run would not replace "
            f"(e.g. {stale[0]}); they would be mixed with this run's. Continue that run with --resume, or choose "
            "another --out")


def run_batch(inputs: Sequence[str], out_dir: str | Path,
              process: Callable[[Path, str, np.ndarray], dict[str, Any]] | Stages, *, desc: str,
              outputs: Callable[[str], list[Path]] | None = None,
              is_own_output: Callable[[Path], bool] | None = None, progress: bool = True,
              shard: tuple[int, int] | None = None, tables: Sequence[CsvTable] = (), resume: bool = False,
              settings: dict[str, Any] | None = None, models: list[dict[str, str]] | None = None,
              extra_outputs: Sequence[Path] = ()) -> BatchReport:
    """Apply ``process`` to every image found in ``inputs``; write its rows as they come; record the failures.

    Parameters
    ----------
    inputs : files, folders (searched recursively) and glob patterns (:func:`dermoseg.inputs.scan_inputs`).
    out_dir : output folder (created; checked writable before any input is read).
    process : ``f(path, stem, image) -> row`` with ``image`` (H, W, 3) uint8 RGB from
        :func:`dermoseg.io.read_image`, or the same work split into :class:`Stages`; it writes its own per-image
        files and may raise :class:`BatchItemError` to fail this input only (an OSError while writing also fails
        this input only). A row without ``"seconds"`` gets the time spent on the image (reading + its stages,
        not the time it waited for others); a non-empty ``"warning"`` value is also reported on stderr (the input
        still counts as processed).
    desc : progress-bar label; also the command name in ``run.json``.
    outputs : ``f(stem) -> paths`` the command writes for one input; an input that would be overwritten by one
        of them fails with "choose another --out" and nothing is written for it.
    is_own_output : ``f(path) -> bool`` for further files the command writes (besides the name patterns and
        ``run.json`` lists of :mod:`dermoseg.inputs`); such files found by a folder or pattern search are
        skipped (an input named explicitly is always processed).
    progress : show a progress bar on stderr.
    shard : ``(I, N)``: process only shard I of N of the images found (:func:`parse_shard`), so that N machines
        given the same ``inputs`` over the same archive split it between them: the k-th image (0-based, in the
        sorted order of :func:`dermoseg.inputs.scan_inputs`) belongs to shard ``k % N + 1``. Shards are disjoint,
        together they are every image, and output names are those of an unsharded run (stems are made unique
        over all the images, not per shard).
    tables : the command's result tables; each row is appended to every table as soon as it is made.
    resume : keep the rows of an earlier run into ``out_dir`` and skip inputs that have a row in every table
        and all their ``outputs`` on disk. Inputs are matched to the earlier run's by their resolved path (the
        ``sources`` of its ``run.json``) or their path as written in its tables (:func:`unique_stems`).
    settings, models : recorded in ``run.json`` (:class:`dermoseg.provenance.RunRecord`).
    extra_outputs : further files the command writes at the end (a contact sheet, a README).

    Returns
    -------
    A :class:`BatchReport` (rows made by this run, in input order). ``failures.csv`` holds this run's failures
    (an earlier one is removed), failures and warnings are printed.

    Raises
    ------
    dermoseg.provenance.OutputFolderError
        Before any work, if ``out_dir`` is not writable, another process is writing into it (its lock,
        :func:`dermoseg.provenance.acquire_folder`), an output would replace a file that no dermoseg run wrote
        there, ``resume`` continues a run made with other settings or models (the table would mix them), or a
        fresh run would leave per-image outputs of an earlier run beside its own (:func:`_refuse_stale_outputs`),
        or every input's outputs (of this shard) would overwrite an input (``preprocess in --out in``).
        A fresh run then removes the earlier outputs of the images it will process before the first one.
    """
    out_dir = provenance.ensure_writable(out_dir)  # before the input search, which can take a while
    # the lock first: "another run is writing here" comes before what its files would suggest; start_run keeps it
    took = provenance.acquire_folder(out_dir)
    try:  # released here if the run cannot start (start_run included); once started, its record holds it
        scan = scan_inputs(list(inputs), extra_skip=is_own_output)
        files = scan.files
        if not files:  # nothing to do: said, and nothing written (no tables, no run.json; exit status 1)
            if took:
                provenance.release_folders([out_dir])
            for line in scan.summary_lines():
                print(line, file=sys.stderr)
            report = BatchReport(out_dir, failures=list(scan.problems), found=0)
            print_messages(report)
            return report
        input_paths = {p.resolve() for p in files}
        sources = provenance.check_resumable(out_dir, desc, settings or {}, models or []) if resume else {}
        jobs = list(zip(files, unique_stems(files, _earlier_inputs(sources, tables) if resume else None)))
        if shard is not None:
            index, count = shard
            jobs = jobs[index - 1::count]
        own = {stem: (outputs(stem) if outputs else []) for _, stem in jobs}  # each input's output files
        owner: dict[Path, str] = {}  # output file -> the first input (stem) writing it
        for _, stem in jobs:
            for o in own[stem]:
                owner.setdefault(o, stem)
        planned = [*(t.path for t in tables), out_dir / "failures.csv", *extra_outputs]
        overwrites_input = {o for _, stem in jobs for o in own[stem] if o.resolve() in input_paths}  # resolved once
        per_image = [o for _, stem in jobs for o in own[stem] if o not in overwrites_input]
        planned += per_image
        clash = {stem: next((o for o in own[stem] if o in overwrites_input), None) for _, stem in jobs}
        if jobs and all(clash.values()):  # no image could be written: refused before any file is
            raise provenance.OutputFolderError(f"{out_dir}: every input's outputs would overwrite an input (e.g. "
                                               f"{clash[jobs[0][1]].name}); choose another --out")
        if not resume:
            _refuse_stale_outputs(out_dir, own, planned, input_paths)
        record = provenance.start_run(out_dir, desc, planned, settings or {}, models or [], after=extra_outputs,
                                      sources={**sources, **{stem: path.resolve() for path, stem in jobs}},
                                      took_lock=took)
    except BaseException:
        if took:
            provenance.release_folders([out_dir])
        raise
    if not resume:  # a fresh run replaces the earlier outputs of its images now, not one by one, so that an
        for o in per_image:  # interrupted or failed run never leaves another run's masks beside its own rows
            if os.path.lexists(o):  # (start_run checked that dermoseg wrote each of them)
                o.unlink()
    for line in scan.summary_lines():
        print(line, file=sys.stderr)
    report = BatchReport(out_dir, found=len(files))  # before sharding: an empty shard of a full archive is fine
    failures = CsvTable(out_dir / "failures.csv", ["file", "reason"], key="file", extra=False)
    if (out_dir / "failures.csv").exists():
        (out_dir / "failures.csv").unlink()

    def fail(name: str, reason: str) -> None:
        report.failures.append((name, reason))
        if not failures.path.exists():
            failures.start()
        failures.append({"file": display_name(name), "reason": reason})

    stages = process if isinstance(process, Stages) else Stages.single(process)
    spent: dict[Path, float] = {}

    def timed(fn):  # adds the stage's time to the image's total
        def stage(job, value):
            start = time.perf_counter()
            try:
                return fn(job, value)
            finally:
                spent[job[0]] = spent.get(job[0], 0.0) + time.perf_counter() - start
        return stage

    existed: dict[str, set[Path]] = {}  # for each input that reached its writing stage: its outputs there before

    def discard_partial(stem: str) -> None:
        """Remove what this run wrote for an input that failed while writing (a mask written before the overlay
        hit a full disk): an output with no row in the table would look like a result. Only inputs that reached
        the writing stage, and only outputs that were not there when it began, are touched."""
        for o in own[stem]:
            if stem in existed and o not in existed[stem]:
                with contextlib.suppress(OSError):
                    o.unlink()

    def prepare(job, _):
        path, stem = job
        if clash[stem] is not None:
            raise BatchItemError(f"output {clash[stem].name} would overwrite an input; choose another --out")
        shared = next((o for o in own[stem] if owner[o] != stem), None)  # x_hair.jpg's x_hair.png is x's hair mask
        if shared is not None:
            raise BatchItemError(f"output {shared.name} is also an output of input '{owner[shared]}'; rename one "
                                 "of the two")
        problem = name_problem(path)
        if problem:
            raise BatchItemError(problem)
        image = read_image(path)
        return image, stages.prepare(image)

    def infer(job, value):
        image, x = value
        return image, stages.infer(x)

    def finish(job, value):
        image, y = value
        existed[job[1]] = {o for o in own[job[1]] if os.path.lexists(o)}  # just before this input's writes
        return stages.finish(job[0], job[1], image, y)

    status = "interrupted"
    tabled: set[str] = set()  # inputs whose row reached the tables
    try:
        for name, reason in scan.problems:
            fail(name, reason)
        for t in tables:
            t.start(resume)
        todo = []
        for path, stem in jobs:
            if resume and tables and all(t.done(stem) for t in tables) and all(o.exists() for o in own[stem]):
                report.resumed += 1
            else:
                todo.append((path, stem))
        pipeline = run_ordered(todo, [timed(prepare), timed(infer), timed(finish)], depth=PIPELINE_DEPTH,
                               expected=(ImageReadError, BatchItemError, OSError))
        # closing: however the loop ends (Ctrl-C while a row is appended included), the stage threads are stopped
        # and joined here, before run.json's final list of outputs, so that no file is written after that list
        with contextlib.closing(pipeline):
            for (path, stem), row in tqdm(pipeline, total=len(todo), desc=desc, unit="img", disable=not progress):
                seconds = spent.pop(path, 0.0)
                if isinstance(row, Exception):
                    discard_partial(stem)
                    fail(str(path), f"could not write an output: {row.strerror or row}" if isinstance(row, OSError)
                         else str(row).removeprefix(f"{path}: "))
                    continue
                row.setdefault("seconds", round(seconds, 3))
                if row.get("warning"):
                    report.warnings.append((str(path), row["warning"]))
                with interrupts.deferred():  # Ctrl-C now would leave a row in one table only, or a row whose
                    for t in tables:  # outputs the clean-up below removes: it takes effect after this step
                        t.append(row)
                    report.rows.append(row)
                    tabled.add(stem)
        status = "complete"
    finally:
        if status != "complete":  # Ctrl-C: an image caught between its writes and its row leaves no orphan files
            for stem in set(existed) - tabled:  # (the stage threads are joined by now; --resume redoes it)
                discard_partial(stem)
        record.finish(status, [{"file": display_name(n), "reason": r} for n, r in report.failures],
                      processed=len(report.rows), failed=len(report.failures), resumed=report.resumed,
                      skipped_masks_or_outputs=len(scan.masks_skipped),
                      skipped_unsupported=sum(scan.unsupported.values()))
    print_messages(report)
    return report
