"""Where a result came from, and which files a run may write: the ``run.json`` sidecar of every output folder.

Every command that writes a results table (``results.csv``, ``preprocess.csv``, ``predictions.csv``,
``per_image.csv`` / ``summary.json``) writes ``run.json`` beside it: the dermoseg version, the engine, the model
files (name, path, sha256), the settings (threshold, test-time augmentation, preprocessing, ...), the command
line, start and end time (UTC, ISO 8601), the outcome, a batch's failures, and the list of files the run wrote (``outputs``, paths
relative to the folder). When several runs write into one folder (``segment`` then ``evaluate --out`` there, or a
``--resume``), the earlier records are kept in ``earlier_runs`` (the last :data:`KEEP_EARLIER`), so each file
stays traceable to the run that wrote it.

That list is also what makes overwriting safe: before any work, :func:`claim_outputs` refuses to replace an
existing file that no earlier dermoseg run in that folder listed as its own output (a ground-truth mask beside
the images, a user's own ``results.csv``), naming the file; the claimed names are recorded before the first
output is written, so an interrupted run's files stay recognisable as dermoseg's.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shlex
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

from dermoseg.errors import DermosegError
from dermoseg.io import file_sha256, write_text

RUN_FILE = "run.json"
LOCK_FILE = ".dermoseg-run.lock"  # held while a run writes into a folder (hidden: folder searches skip it)
KEEP_EARLIER = 20
_command_line: list[str] | None = None
_held_locks: set[Path] = set()  # the lock files this process holds


class OutputFolderError(DermosegError, OSError):
    """The output folder cannot be written, or an output would replace a file dermoseg did not write."""


def set_command_line(argv: Iterable[str]) -> None:
    """Record the command's arguments (without the program name) for the ``run.json`` files of this process."""
    global _command_line
    _command_line = ["dermoseg", *argv]


def command_line() -> list[str]:
    """The recorded command line, or ``sys.argv`` when none was recorded."""
    return list(_command_line) if _command_line is not None else list(sys.argv)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def ensure_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and its parents) and check that a file can be created in it, before any work.

    Returns
    -------
    The folder as a Path.

    Raises
    ------
    OutputFolderError
        If the folder cannot be created or written (permission, read-only file system, a file in the way);
        the message names the folder.
    """
    folder = Path(folder)
    if os.path.lexists(folder) and not folder.is_dir():
        raise OutputFolderError(f"{folder}: is a file, not a folder; choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dermoseg-write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputFolderError(f"{folder}: output folder is not writable ({exc.strerror or exc})") from None
    return folder


def read_run(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The ``run.json`` of ``folder`` if it is a dermoseg one, else None."""
    path = Path(folder) / RUN_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("tool") == "dermoseg" else None


def read_manifest(folder: str | os.PathLike) -> set[str]:
    """Names (relative to ``folder``, ``/``-separated) of the files dermoseg runs wrote there; empty if none."""
    record = read_run(folder)
    outputs = record.get("outputs", []) if record else []
    return {str(o) for o in outputs if isinstance(o, str)}


def _relative(folder: Path, path: Path) -> str:
    return Path(os.path.relpath(Path(path).absolute(), folder.absolute())).as_posix()


def claim_outputs(folder: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> set[str]:
    """Check that none of ``paths`` (inside ``folder``) would replace a file that dermoseg did not write.

    A path may be written when it does not exist, or when the folder's ``run.json`` lists it as an earlier
    dermoseg output. ``run.json`` itself may be replaced only if it is a dermoseg one.

    Returns
    -------
    The claimed names relative to ``folder`` (to record with :class:`RunRecord`).

    Raises
    ------
    OutputFolderError
        Naming the first file that exists and was not written by dermoseg (nothing has been written then).
    """
    folder = Path(folder)
    own = read_manifest(folder)
    if (folder / RUN_FILE).exists() and read_run(folder) is None:
        raise OutputFolderError(f"{folder / RUN_FILE}: exists and was not written by dermoseg; refusing to "
                                "overwrite it (choose another --out)")
    names = set()
    for p in paths:
        name = _relative(folder, Path(p))
        if (os.path.lexists(p)) and name not in own:
            raise OutputFolderError(f"{p}: exists and was not written by dermoseg; refusing to overwrite it "
                                    "(choose another --out, or move the file)")
        names.add(name)
    return names


def _dotted(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"a.b.c": value}``."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        out.update(_dotted(value, f"{prefix}{key}.") if isinstance(value, dict) and value else {f"{prefix}{key}": value})
    return out


def check_resumable(folder: str | os.PathLike, command: str, settings: dict[str, Any],
                    models: list[dict[str, str]]) -> None:
    """Before ``--resume``: the run being continued (the latest run of ``command`` in the folder's ``run.json`` or
    its ``earlier_runs``; another command may have written to the folder since) must have the same settings and
    model files (by sha256), or its rows and the new ones would not be comparable.

    Raises
    ------
    OutputFolderError
        Naming the first difference; nothing has been written.
    """
    latest = read_run(folder)
    runs = [] if latest is None else [latest, *reversed(latest.get("earlier_runs", []))]
    previous = next((r for r in runs if r.get("command") == command), None)  # another command may have run since
    if previous is None:
        return  # nothing of this command to continue: a fresh table
    old = _dotted(json.loads(json.dumps(previous.get("settings", {}))))
    new = _dotted(json.loads(json.dumps(settings)))
    for key in sorted(set(old) | set(new)):  # a nested setting by its own dotted name (preprocess.hair.enabled)
        if old.get(key) != new.get(key):
            raise OutputFolderError(f"{Path(folder) / RUN_FILE}: --resume with {key} = {new.get(key)!r}, but the run "
                                    f"being resumed used {old.get(key)!r}; use the same settings or another --out")
    old_models = sorted((m.get("role"), m.get("sha256")) for m in previous.get("models", []))
    if old_models != sorted((m["role"], m["sha256"]) for m in models):
        raise OutputFolderError(f"{Path(folder) / RUN_FILE}: --resume with other model files than the run being "
                                "resumed; use the same models or another --out")


def _lock_holder(lock: Path) -> tuple[str, int] | None:
    """(host, pid) written in a lock file, or None if it is unreadable or malformed."""
    try:
        host, pid = lock.read_text(encoding="utf-8").split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _running(host: str, pid: int) -> bool:
    """Whether the process ``pid`` of ``host`` may still run: True for another host (it cannot be checked from
    here), else whether this machine has such a process."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def acquire_folder(folder: Path) -> None:
    """Take ``folder``'s :data:`LOCK_FILE` (created exclusively, holding this host's name and process id), so that
    two runs never write into one folder at once (their rows would interleave: duplicated or lost). A lock left
    by a process that has ended (killed, machine restarted) is taken over; one of this process (an earlier call in
    the same Python session) too.

    Raises
    ------
    OutputFolderError
        If another process that may still run holds it, naming the folder, the process and the lock file.
    """
    lock = Path(folder) / LOCK_FILE
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None and holder != (socket.gethostname(), os.getpid()) and _running(*holder):
                raise OutputFolderError(
                    f"{folder}: another dermoseg run (process {holder[1]} on {holder[0]}) is writing into this folder; "
                    f"wait for it to end or choose another --out (if it has ended, delete {lock})") from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)  # stale, or ours: take it over
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{socket.gethostname()} {os.getpid()}\n")
        _held_locks.add(lock)
        return
    raise OutputFolderError(f"{folder}: could not take {lock}; another run keeps taking it")


def release_folders(folder: str | os.PathLike | None = None) -> None:
    """Remove the lock file of ``folder`` (:func:`acquire_folder`), or, with None, every lock this process holds
    (the command line does so on exit, whatever the outcome)."""
    locks = set(_held_locks) if folder is None else {Path(folder) / LOCK_FILE} & _held_locks
    for lock in locks:
        _held_locks.discard(lock)
        with contextlib.suppress(OSError):
            if _lock_holder(lock) == (socket.gethostname(), os.getpid()):
                os.unlink(lock)


def model_record(role: str, path: str | os.PathLike, runner: Any = None) -> dict[str, str]:
    """``{"role", "file", "path", "sha256"}`` of a model file; with the ``runner`` it was loaded on
    (:func:`dermoseg.engine.make_runner`), also the ``engine`` that runs it (``onnx``/``torch``) and, for ONNX
    Runtime, the ``onnx_path`` and ``onnx_sha256`` of the export actually run."""
    path = Path(path)
    record = {"role": role, "file": path.name, "path": str(path.resolve()), "sha256": file_sha256(path)}
    engine = getattr(runner, "engine", None)  # a bare callable (tests, other runtimes) names no engine
    if engine is not None:
        record["engine"] = engine
        if engine == "onnx":
            record.update(onnx_path=str(Path(runner.path).resolve()), onnx_sha256=file_sha256(runner.path))
    return record


def _engines(models: list[dict[str, str]]) -> tuple[str | None, dict[str, str]]:
    """The engine(s) the run's models ran on (``onnx``, ``torch``, ``onnx+torch``; None without models) and the
    versions of their libraries."""
    names = sorted({m["engine"] for m in models if "engine" in m})
    versions = {}
    for name in names:
        if name == "onnx":
            import onnxruntime
            versions["onnxruntime"] = onnxruntime.__version__
        else:
            import torch
            versions["torch"] = torch.__version__
    return ("+".join(names) or None), versions


class RunRecord:
    """The ``run.json`` of one run: written at the start (claiming the outputs) and again at the end.

    Parameters
    ----------
    folder : output folder.
    command : subcommand name (``segment``, ``evaluate``, ...).
    settings : JSON-serialisable settings (threshold, tta, preprocess, ...).
    models : :func:`model_record` entries.
    claimed : names from :func:`claim_outputs`; the files of earlier runs still present stay listed.
    after : claimed names the command writes after :meth:`finish` (a README, a contact sheet): listed even though
        they do not exist yet when the record is finished.
    """

    def __init__(self, folder: str | os.PathLike, command: str, settings: dict[str, Any],
                 models: list[dict[str, str]], claimed: Iterable[str], after: Iterable[str] = ()):
        from dermoseg import __version__
        self.folder = Path(folder)
        engine, engine_versions = _engines(models)
        self.record: dict[str, Any] = {
            "tool": "dermoseg", "dermoseg_version": __version__, "command": command,
            "command_line": shlex.join(command_line()), "engine": engine, "engine_version": engine_versions,
            "python": sys.version.split()[0], "models": models, "settings": settings, "started": _now(),
            "finished": None, "status": "running", "counts": {}}
        earlier = read_run(self.folder)
        if earlier is not None:
            previous = {k: v for k, v in earlier.items() if k not in ("outputs", "earlier_runs")}
            self.record["earlier_runs"] = (list(earlier.get("earlier_runs", [])) + [previous])[-KEEP_EARLIER:]
        self.outputs = read_manifest(self.folder) | set(claimed)
        self.after = set(after) & self.outputs
        self._write()

    def _write(self) -> None:
        present = sorted(o for o in self.outputs if o in self.after or os.path.lexists(self.folder / o))
        claimed = present if self.record["status"] != "running" else sorted(self.outputs)
        write_text(self.folder / RUN_FILE, json.dumps({**self.record, "outputs": claimed}, indent=2) + "\n")

    def finish(self, status: str = "complete", failures: list[dict[str, str]] | None = None, **counts: Any) -> None:
        """Record the end time, the outcome (``complete``/``interrupted``/``failed``), counts and, for a batch,
        its ``failures`` (``{"file", "reason"}`` each: kept in ``earlier_runs`` when a later run into the folder
        replaces ``failures.csv``); the output list keeps only files that exist."""
        self.record.update(finished=_now(), status=status, counts=counts)
        if failures is not None:
            self.record["failures"] = failures
        self._write()
        release_folders(self.folder)


def start_run(folder: str | os.PathLike, command: str, paths: Iterable[str | os.PathLike],
              settings: dict[str, Any], models: list[dict[str, str]],
              after: Iterable[str | os.PathLike] = ()) -> RunRecord:
    """Before any work: check ``folder`` is writable (:func:`ensure_writable`), take its lock
    (:func:`acquire_folder`, released by :meth:`RunRecord.finish`), check that none of ``paths`` would replace a
    file dermoseg did not write (:func:`claim_outputs`), and write the starting ``run.json``.
    ``after``: those of ``paths`` written once the run is finished (:class:`RunRecord`).

    Raises
    ------
    OutputFolderError
        As :func:`ensure_writable`, :func:`acquire_folder` and :func:`claim_outputs`.
    """
    folder = ensure_writable(folder)
    acquire_folder(folder)
    try:
        return RunRecord(folder, command, settings, models, claim_outputs(folder, paths),
                         {_relative(folder, Path(p)) for p in after})
    except BaseException:
        release_folders(folder)
        raise
