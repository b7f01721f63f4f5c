"""Where a result came from, and which files a run may write: the ``run.json`` sidecar of every output folder.

Every command that writes a results table (``results.csv``, ``preprocess.csv``, ``predictions.csv``,
``per_image.csv`` / ``summary.json``) writes ``run.json`` beside it: the dermoseg version, the engine, the model
files (name, path, sha256), the settings (threshold, test-time augmentation, preprocessing, ...), the command
line, start and end time (UTC, ISO 8601), the outcome, a batch's failures, and the list of files the run wrote
(``outputs``, paths relative to the folder). When several runs write into one folder (``segment`` then ``evaluate --out`` there, or a
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
MAX_FAILURES_RECORDED = 100  # failures listed in a run.json record
_open_runs: list["RunRecord"] = []  # records started and not yet finished by this process
_held_locks: dict[Path, int] = {}  # the lock files this process holds, with their open descriptors


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


def remove_earlier_outputs(folder: str | os.PathLike, subfolder: str, planned: Iterable[str | os.PathLike]) -> None:
    """Remove the files directly inside ``folder/subfolder`` that an earlier dermoseg run listed in the folder's
    ``run.json`` and that this run will not write again (``planned``): left there, they would pass for this run's
    (an earlier evaluation's saved masks beside this one's summary). Nothing else is touched, whatever
    ``run.json`` names."""
    folder = Path(folder)
    keep = {Path(p).resolve() for p in planned}
    inside = (folder / subfolder).resolve()
    for name in read_manifest(folder):
        path = folder / name
        resolved = path.resolve()
        if resolved.parent == inside and resolved not in keep and os.path.lexists(path):
            path.unlink()


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


def check_resumable(folder: str | os.PathLike, command: str, settings: dict[str, Any],
                    models: list[dict[str, str]]) -> dict[str, Path]:
    """Before ``--resume``: the run being continued (the latest run of ``command`` in the folder's ``run.json`` or
    its ``earlier_runs``; another command may have written to the folder since) must have the same settings and
    model files (by sha256), or its rows and the new ones would not be comparable.

    Returns
    -------
    The ``sources`` that ``command``'s runs into the folder recorded (:class:`RunRecord`): ``{output stem:
    resolved input path}`` of every input they set out to process, so that a resumed run gives an input already
    met the same stem and a new input with the same file name another one (:func:`dermoseg.batch.unique_stems`);
    empty when there is no run to continue or it predates the record.

    Raises
    ------
    OutputFolderError
        Naming the first difference; nothing has been written.
    """
    latest = read_run(folder)
    runs = [] if latest is None else [latest, *reversed(latest.get("earlier_runs", []))]
    previous = next((r for r in runs if r.get("command") == command), None)  # another command may have run since
    if previous is None:
        return {}  # nothing of this command to continue: a fresh table
    from dermoseg.config import first_difference
    differs = first_difference(previous.get("settings", {}), settings)  # nested: preprocess.hair.enabled
    if differs is not None:
        key, old, new = differs
        raise OutputFolderError(f"{Path(folder) / RUN_FILE}: --resume with {key} = {new!r}, but the run being "
                                f"resumed used {old!r}; use the same settings or another --out")
    old_models = sorted((m.get("role"), m.get("sha256")) for m in previous.get("models", []))
    if old_models != sorted((m["role"], m["sha256"]) for m in models):
        raise OutputFolderError(f"{Path(folder) / RUN_FILE}: --resume with other model files than the run being "
                                "resumed; use the same models or another --out")
    sources = (latest.get("sources") or {}).get(command) if isinstance(latest.get("sources"), dict) else None
    return {str(k): Path(v) for k, v in sources.items()} if isinstance(sources, dict) else {}


def _lock_holder(lock: Path) -> str:
    """Who a lock file says holds it ("process N on HOST"), or "another process" if it says nothing readable."""
    try:
        host, pid = lock.read_text(encoding="utf-8").split()
        return f"process {int(pid)} on {host}"
    except (OSError, ValueError):
        return "another process"


def acquire_folder(folder: str | os.PathLike, warn: bool = True) -> bool:
    """Take ``folder``'s :data:`LOCK_FILE` so that two runs never write into one folder at once (their rows would
    interleave: duplicated or lost). The lock is an exclusive ``flock`` on the open file, so the operating system
    drops it when the process ends however it ends (killed, crashed): a lock file left behind by an ended run
    holds nothing. The file names the holder (host and process id) for the message. Taking a folder this process
    already holds does nothing. On a file system without ``flock`` (some NFS, CIFS or FUSE mounts) the run goes
    on unlocked, with a warning on stderr (unless ``warn`` is False); on NFS mounted ``nolock`` the lock only
    sees processes of one host.

    Returns
    -------
    True if this call took the lock (the caller releases it), False if it was held already or cannot be taken.

    Raises
    ------
    OutputFolderError
        If another process holds it, naming the folder and the holder.
    """
    import fcntl
    lock = Path(folder).resolve() / LOCK_FILE
    if lock in _held_locks:
        return False
    for _ in range(5):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputFolderError(f"{folder}: another dermoseg run ({_lock_holder(lock)}) is writing into this "
                                    "folder; wait for it to end or choose another --out") from None
        except OSError as exc:  # ENOLCK, EOPNOTSUPP, ENOSYS: no flock on this file system
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(lock)
            if warn:
                print(f"warning: {folder}: cannot lock the folder here ({exc.strerror or exc}); two runs into it at "
                      "once would not be noticed", file=sys.stderr)
            return False
        try:  # the previous holder may have removed the file between our open and our lock: lock the new one
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
            _held_locks[lock] = fd
            return True
        os.close(fd)
    raise OutputFolderError(f"{folder}: could not take {lock}; other runs keep taking it")


def held_folders() -> set[Path]:
    """The folders (resolved) whose lock (:func:`acquire_folder`) this process holds now."""
    return {lock.parent for lock in _held_locks}


def release_folders(folders: Iterable[str | os.PathLike] | None = None) -> None:
    """Drop and remove the locks this process holds on ``folders`` (all of them when None); a folder it does not
    hold is passed over. Each lock file is removed while still locked, then closed."""
    chosen = set(_held_locks) if folders is None else {Path(f).resolve() / LOCK_FILE for f in folders}
    for lock in chosen & set(_held_locks):
        fd = _held_locks.pop(lock)
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


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
    sources : a batch's ``{output stem: input file}`` (resolved paths; :func:`check_resumable` reads them back),
        kept in ``run.json`` under the command's name beside those of the folder's other commands; None leaves
        the folder's ``sources`` as they were.
    """

    def __init__(self, folder: str | os.PathLike, command: str, settings: dict[str, Any],
                 models: list[dict[str, str]], claimed: Iterable[str], after: Iterable[str] = (),
                 sources: dict[str, Path] | None = None):
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
            previous = {k: v for k, v in earlier.items() if k not in ("outputs", "earlier_runs", "sources")}
            self.record["earlier_runs"] = (list(earlier.get("earlier_runs", [])) + [previous])[-KEEP_EARLIER:]
        kept = earlier.get("sources") if earlier is not None and isinstance(earlier.get("sources"), dict) else {}
        if sources is not None:
            kept = {**kept, command: {stem: str(path) for stem, path in sources.items()}}
        if kept:
            self.record["sources"] = kept
        self.outputs = read_manifest(self.folder) | set(claimed)
        self.after = set(after) & self.outputs
        self.holds_lock = False  # whether finish() releases the folder's lock (start_run sets it when it took it)
        self._write()
        _open_runs.append(self)

    def _write(self) -> None:
        present = sorted(o for o in self.outputs if o in self.after or os.path.lexists(self.folder / o))
        claimed = present if self.record["status"] != "running" else sorted(self.outputs)
        write_text(self.folder / RUN_FILE, json.dumps({**self.record, "outputs": claimed}, indent=2) + "\n")

    def finish(self, status: str = "complete", failures: list[dict[str, str]] | None = None, **counts: Any) -> None:
        """Record the end time, the outcome (``complete``/``interrupted``/``failed``), counts and, for a batch,
        its ``failures`` (``{"file", "reason"}`` each, the first :data:`MAX_FAILURES_RECORDED`: kept in
        ``earlier_runs`` when a later run into the folder replaces ``failures.csv``); the output list keeps only
        files that exist; the folder's lock is released."""
        self.record.update(finished=_now(), status=status, counts=counts)
        if failures is not None:  # the first MAX_FAILURES_RECORDED (counts has how many there were)
            self.record["failures"] = failures[:MAX_FAILURES_RECORDED]
        self._write()
        if self.holds_lock:
            release_folders([self.folder])
            self.holds_lock = False
        if self in _open_runs:
            _open_runs.remove(self)


def open_runs() -> list["RunRecord"]:
    """The runs this process started and has not finished (their run.json says "running")."""
    return list(_open_runs)


def finish_open_runs(status: str, keep: Iterable["RunRecord"] = ()) -> None:
    """Finish every run of this process whose record still says "running" (a command stopped by an error or
    Ctrl-C before its own :meth:`RunRecord.finish`), except those in ``keep`` (runs started before the command,
    by an API caller), with ``status`` ("failed" or "interrupted"), so that no ``run.json`` claims a run goes on
    after its command ended."""
    kept = {id(r) for r in keep}
    for record in list(_open_runs):
        if id(record) not in kept:
            record.finish(status)


def start_run(folder: str | os.PathLike, command: str, paths: Iterable[str | os.PathLike],
              settings: dict[str, Any], models: list[dict[str, str]],
              after: Iterable[str | os.PathLike] = (), sources: dict[str, Path] | None = None,
              took_lock: bool | None = None) -> RunRecord:
    """Before any work: check ``folder`` is writable (:func:`ensure_writable`), take its lock
    (:func:`acquire_folder`, released by :meth:`RunRecord.finish`), check that none of ``paths`` would replace a
    file dermoseg did not write (:func:`claim_outputs`), and write the starting ``run.json``.
    ``after``, ``sources``: as in :class:`RunRecord`. ``took_lock``: the result of the caller's own
    :func:`acquire_folder` on ``folder`` (taken before its own checks), handed to the record instead of taking
    the lock here; if the record cannot be started, that lock stays the caller's to release.

    Raises
    ------
    OutputFolderError
        As :func:`ensure_writable`, :func:`acquire_folder` and :func:`claim_outputs`.
    """
    folder = ensure_writable(folder)
    took = acquire_folder(folder) if took_lock is None else took_lock
    try:
        record = RunRecord(folder, command, settings, models, claim_outputs(folder, paths),
                           {_relative(folder, Path(p)) for p in after}, sources)
    except BaseException:
        if took and took_lock is None:
            release_folders([folder])
        raise
    record.holds_lock = took
    return record
