"""The training floor both wings stand on: Lightning fit, the checkpoint callback, seeding, log merging and the
in-memory data module.

Each wing's ``train`` seeds with :func:`seed_and_threads`, then :func:`fit` runs its task
(:class:`dermoseg.segmentation.task.SegmentationTask`, :class:`dermoseg.classification.task.ClassificationTask`)
on its data module (a :class:`CachedData`): it checkpoints every whole epoch (``last.ckpt``) and the best one,
resumes, and merges the per-session Lightning logs into one ``metrics.csv``. Devices, strategy (``ddp`` for several GPUs or nodes) and precision come from the config's
``trainer`` section (paper §4.2 trains with Adam; the optimiser belongs to each task).
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, EMAWeightAveraging, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from dermoseg.errors import ConfigError
from dermoseg.io import write_text


def subset(samples: list, n: int | None, seed: int, setting: str = "data.train_subset") -> list:
    """The first ``n`` samples of a seeded shuffle, in their original order (all of them if ``n`` is None or at
    least their number).

    Raises
    ------
    dermoseg.errors.ConfigError
        If ``n`` is given and is not a positive integer; the message names ``setting``."""
    if n is None:
        return samples
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{setting} must be a positive number of images, got {n!r}")
    order = np.random.default_rng(seed).permutation(len(samples))
    return [samples[i] for i in sorted(order[: int(n)])]


AUGMENT_SEED_STRIDE = 10_007  # a prime apart per DDP rank; loader workers add 1, 2, ... within it


def _seed_augmentation(dataset, seed: int) -> None:
    """Seed ``dataset.augment`` (an albumentations pipeline, which draws from its own generator), if it has one."""
    augment = getattr(dataset, "augment", None)
    if augment is not None:
        augment.set_random_seed(seed)


def _seed_worker(base: int, rank: int, worker_id: int) -> None:
    """``worker_init_fn`` of a loader worker: Lightning's own seeding of NumPy, ``random`` and torch in the worker
    (which a loader with its own ``worker_init_fn`` does not get), then the worker's copy of the augmentation."""
    from lightning.fabric.utilities.seed import pl_worker_init_function
    pl_worker_init_function(worker_id, rank)
    _seed_augmentation(torch.utils.data.get_worker_info().dataset, base + 1 + worker_id)


class CachedData(L.LightningDataModule):
    """Loaders over a ``train_set`` and a ``val_set`` that a subclass builds in ``setup``: batch size
    ``trainer.batch_size``, ``data.num_workers`` worker processes (default 0, the data are cached in memory)."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.cfg = cfg
        self.train_set = self.val_set = None

    def _loader(self, dataset, shuffle: bool, sampler=None) -> DataLoader:
        """Batches of ``dataset``: shuffled (or drawn by ``sampler``) with the last partial batch dropped when
        ``shuffle``, else in order. A dataset's ``augment`` pipeline (seeded from the run's seed,
        :func:`dermoseg.data.transforms.build_augmentation`) is reseeded for each DDP rank and each loader worker,
        so that their copies do not repeat one another's draws."""
        workers = int(self.cfg["data"].get("num_workers", 0))
        rank = self.trainer.global_rank if self.trainer is not None else 0
        base = int(self.cfg["seed"]) + AUGMENT_SEED_STRIDE * rank
        _seed_augmentation(dataset, base)
        return DataLoader(dataset, batch_size=int(self.cfg["trainer"]["batch_size"]), shuffle=shuffle and sampler is None,
                          sampler=sampler, num_workers=workers, persistent_workers=workers > 0, drop_last=shuffle,
                          worker_init_fn=functools.partial(_seed_worker, base, rank) if workers else None)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training batches; the last partial batch is dropped."""
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches in split order, unaugmented."""
        return self._loader(self.val_set, False)


def git_commit() -> str:
    """The current git commit of the working tree (``unknown`` outside a checkout; ``+dirty`` if modified)."""
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@dataclass
class FitResult:
    """What :func:`fit` leaves: the best checkpoint, its monitored score (None if no epoch was scored), seconds
    spent, epochs completed, and
    whether this process is the global rank 0 (under DDP every process returns here; only rank 0 exports)."""

    best_checkpoint: Path
    best_score: float | None
    seconds: float
    epochs_completed: int
    is_global_zero: bool = True
    initial_weights: dict[str, str] | None = None  # trainer.init_from: {"file", "sha256"}

    def info(self, score_name: str) -> dict[str, Any]:
        """Provenance for an exported model file: time, score, epochs, machine, commit, dermoseg version and
        command line, and the file the run started from (``init_from``, with its sha256) when it did."""
        import shlex

        from dermoseg import __version__
        from dermoseg.provenance import command_line
        return {"train_seconds_this_session": round(self.seconds, 1), f"best_{score_name}": self.best_score,
                "epochs_completed": self.epochs_completed,
                "machine": f"{platform.machine()} {torch.get_num_threads()} threads", "commit": git_commit(),
                "dermoseg_version": __version__, "command_line": shlex.join(command_line()),
                **({"init_from": self.initial_weights} if self.initial_weights else {})}


class EpochEndCheckpoint(Checkpoint):
    """Write ``path`` (the resumable ``last.ckpt``) after every whole training epoch, its validation included,
    replacing the previous one atomically.

    Lightning's own ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only in an epoch where the monitored
    checkpoint improved, so a resume restarted from the best epoch rather than the latest; and an epoch cut short
    by ``trainer.max_time`` is not saved, so a resume never starts mid-epoch.

    It is a :class:`~lightning.pytorch.callbacks.Checkpoint` so that Lightning runs it with the checkpoint
    callbacks, in list order, after the best-epoch ``ModelCheckpoint`` given before it: ``last.ckpt`` then holds
    that epoch's best score and path, and a resume keeps choosing the best epoch over every session (as a plain
    callback it ran first, saved the previous epoch's best-so-far, and a resumed run forgot its best epoch).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._whole_epoch = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._whole_epoch = False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        self._whole_epoch = batch_idx + 1 >= trainer.num_training_batches

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._whole_epoch and not trainer.sanity_checking:
            tmp = self.path.with_name(self.path.name + ".tmp")
            trainer.save_checkpoint(tmp)  # called on every rank (it synchronises them); only rank 0 writes
            if trainer.is_global_zero:
                tmp.replace(self.path)


RUN_FILES = ("config.yaml", "metrics.csv", "checkpoints", "logs", "model.pt")  # what a training run leaves
# Settings a resumed run may change: its name, how long and where it trains, not what it learns.
RESUMABLE_CHANGES = {"name", "trainer.epochs", "trainer.max_time_minutes", "trainer.num_threads",
                     "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.strategy",
                     "trainer.precision", "trainer.sync_batchnorm", "data.num_workers", "data.root"}


def _first_process() -> bool:
    """Whether this is a run's first process (global rank 0 by Lightning's reading of RANK, LOCAL_RANK,
    SLURM_PROCID, …): DDP workers it starts, or its sibling tasks, must not check or write the run folder."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only
    return getattr(rank_zero_only, "rank", 0) == 0


def check_run_folder(out_dir: Path, cfg: dict[str, Any], resume: bool) -> None:
    """Before a training run writes anything: a fresh run (not ``resume``) needs an output folder without a
    training run's files (:data:`RUN_FILES`: it would replace them and mix their epochs into ``metrics.csv``); a
    resumed run must have the settings of the run it continues (its ``config.yaml``; both completed with the
    task's defaults, so that a file written before a setting existed compares equal), except those in
    :data:`RESUMABLE_CHANGES`. A resumed folder without ``checkpoints/last.ckpt`` starts over only when nothing
    would be lost: a run stopped in its first epoch (its ``config.yaml`` and logs only) or no run at all (with a
    note); one holding a ``model.pt`` or ``metrics.csv``, or a run's files without ``config.yaml``, is refused.
    Only the run's first process checks: DDP workers (Lightning's global rank > 0) start after it wrote.

    Raises
    ------
    OutputFolderError
        Naming the folder and the first file found, the first setting that differs (old and new value), fewer
        epochs than the run's ``last.ckpt`` has already trained, or what a resume without a checkpoint would
        replace.
    """
    from dermoseg.config import TASK_DEFAULTS, ConfigError, first_difference, merge, read_yaml_mapping
    from dermoseg.provenance import OutputFolderError
    if not _first_process():
        return
    if not resume:
        found = next((name for name in RUN_FILES if os.path.lexists(out_dir / name)), None)
        if found is not None:
            raise OutputFolderError(f"{out_dir}: holds a training run ({found}); continue it with --resume, or "
                                    "choose another --out")
        return
    saved, last = out_dir / "config.yaml", out_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():  # nothing to continue from: only a run stopped in its first epoch may start over
        kept = next((name for name in ("model.pt", "metrics.csv") if os.path.lexists(out_dir / name)), None)
        kept = kept or (None if saved.is_file() else next((n for n in RUN_FILES if os.path.lexists(out_dir / n)), None))
        if kept is not None:
            raise OutputFolderError(f"{out_dir}: --resume, but it holds {kept} and no checkpoints/last.ckpt to "
                                    "continue from; starting over would replace it (choose another --out)")
        if not saved.is_file():
            print(f"note: {out_dir}: no training run to resume there; starting one", file=sys.stderr)
            return
    try:
        old = read_yaml_mapping(saved, "training config")
        old = merge(TASK_DEFAULTS[old.get("task", "segmentation")], old, str(saved))
    except (ConfigError, KeyError) as exc:
        raise OutputFolderError(f"{saved}: unreadable as a training config ({exc}); choose another --out") from None
    if last.is_file():  # Lightning would refuse it only after the data had loaded, with its own words
        try:  # memory-mapped: only the epoch counter is read, not the weights and optimiser state
            done = int(torch.load(last, map_location="cpu", weights_only=False, mmap=True)["epoch"]) + 1
        except Exception as exc:  # a truncated or foreign file: torch raises several kinds
            raise OutputFolderError(f"{last}: unreadable checkpoint ({type(exc).__name__}: {exc}); choose another "
                                    "--out") from None
        if int(cfg["trainer"]["epochs"]) < done:
            raise OutputFolderError(f"{out_dir}: --resume with trainer.epochs = {cfg['trainer']['epochs']}, but the "
                                    f"run has already trained {done} epochs; give at least {done}")
    differs = first_difference(old, merge(TASK_DEFAULTS[cfg.get("task", "segmentation")], cfg), RESUMABLE_CHANGES)
    if differs is not None:
        key, was, now = differs
        raise OutputFolderError(f"{saved}: --resume with {key} = {now!r}, but the run being resumed used {was!r}; "
                                "only the run's name, the trainer's epochs, time limit and machine may change (or "
                                "choose another --out)")


@contextlib.contextmanager
def run_folder(out_dir: Path, cfg: dict[str, Any], resume: bool) -> Iterator[None]:
    """The run's hold on its folder, around everything a training command does (data loading, training, export):
    the folder's lock (:func:`dermoseg.provenance.acquire_folder`), then :func:`check_run_folder` under it (so no
    other run can write between the check and this run); the lock is released when the block ends, and a folder
    this created and left empty (a refusal included) is removed. DDP workers and sibling tasks
    (:func:`_first_process`) do nothing: their first process holds the folder.

    Raises
    ------
    OutputFolderError
        As :func:`check_run_folder` and :func:`dermoseg.provenance.acquire_folder`.
    """
    from dermoseg.provenance import acquire_folder, release_folders
    if not _first_process():
        yield
        return
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    took = acquire_folder(out_dir)
    try:
        check_run_folder(out_dir, cfg, resume)
        yield
    finally:
        if took:
            release_folders([out_dir])
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()


def fit(task: L.LightningModule, data: L.LightningDataModule, cfg: dict[str, Any], out_dir: Path, monitor: str,
        resume: bool = False) -> FitResult:
    """The run driver shared by segmentation and classification training.

    Writes ``config.yaml``, trains with Lightning (``trainer`` section: accelerator, devices, num_nodes,
    strategy, precision, sync_batchnorm; so several GPUs or nodes work by configuration, ``strategy: ddp``),
    keeps ``checkpoints/last.ckpt`` every epoch and ``checkpoints/best.ckpt`` (highest ``monitor``), logs each
    session to ``logs/version_N`` and merges them into ``metrics.csv`` (one row per epoch). ``resume``
    continues from ``last.ckpt``. ``trainer.ema_decay`` (e.g. 0.998 per step) keeps an exponential moving
    average of the weights (Polyak & Juditsky 1992; Lightning's ``EMAWeightAveraging``): validation, both
    checkpoints' ``state_dict`` and so the exported model are the averaged weights, and a resume restores both.
    Under DDP every process runs this function; checkpoints, logs and
    ``metrics.csv`` are written by global rank 0 only, and the tasks log their figures synchronised over ranks.

    The folder's checks and lock are the caller's (:func:`run_folder`, as both wings' ``train`` functions do);
    ``config.yaml`` is written once the data are read and the trainer is built, and ``metrics.csv`` also after an
    interrupted session.

    Raises
    ------
    dermoseg.errors.ConfigError
        If Lightning refuses the trainer settings (``devices: 0``, an unknown accelerator).
    KeyboardInterrupt
        Ctrl-C or SIGTERM (``dermoseg.cli.Terminated``) during training, after Lightning's own clean-up.
    """
    import yaml

    from lightning.fabric.utilities.exceptions import MisconfigurationException

    tcfg = cfg["trainer"]
    ckpt_dir = out_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, mode="max", save_top_k=1,
                           every_n_epochs=1)
    last = ckpt_dir / "last.ckpt"
    logger = CSVLogger(save_dir=str(out_dir), name="logs")  # one version folder per session (resumes included)
    max_time = {"minutes": float(tcfg["max_time_minutes"])} if tcfg.get("max_time_minutes") else None
    callbacks = [best, EpochEndCheckpoint(last), TQDMProgressBar(refresh_rate=10)]  # best first: see EpochEndCheckpoint
    if tcfg.get("ema_decay"):  # validation, checkpoints and so the exported model use the averaged weights
        callbacks.append(EMAWeightAveraging(decay=float(tcfg["ema_decay"])))
    try:
        trainer = L.Trainer(max_epochs=int(tcfg["epochs"]), accelerator=tcfg["accelerator"], devices=tcfg["devices"],
                            num_nodes=int(tcfg.get("num_nodes") or 1), strategy=tcfg["strategy"],
                            precision=tcfg["precision"], sync_batchnorm=bool(tcfg.get("sync_batchnorm")),
                            logger=logger, callbacks=callbacks, log_every_n_steps=10, deterministic=False,
                            max_time=max_time, num_sanity_val_steps=0)
    except (MisconfigurationException, ValueError) as exc:  # e.g. devices: 0, an unknown accelerator
        raise ConfigError(f"trainer settings refused by Lightning: {exc}") from None
    initial = {"file": str(tcfg["init_from"]), "sha256": load_initial_weights(task, tcfg["init_from"])} \
        if tcfg.get("init_from") else None
    data.setup("fit")  # the data are read before the run folder gets anything: a missing folder leaves no run
    if _first_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    start = time.time()
    try:
        trainer.fit(task, datamodule=data, ckpt_path=str(last) if resume and last.is_file() else None)
    except SystemExit as exc:  # Lightning ends an interrupted fit (Ctrl-C, SIGTERM) with sys.exit(1): give the
        if isinstance(exc.__context__, KeyboardInterrupt):  # interrupt back, so the command reports it as one
            raise exc.__context__ from None
        raise
    finally:
        if trainer.is_global_zero:  # the finished epochs, also of an interrupted session
            merge_epoch_metrics(out_dir / "logs", out_dir / "metrics.csv")
    elapsed = time.time() - start
    score = float(best.best_model_score) if best.best_model_score is not None else None  # JSON has no NaN
    return FitResult(Path(best.best_model_path or last), score, elapsed, int(trainer.current_epoch),
                     trainer.is_global_zero, initial)


OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}  # optimizer.name of both wings
SCHEDULERS = ("cosine", "none")  # optimizer.scheduler of both wings


def check_optimizer(opt: dict[str, Any], warm_up: bool) -> None:
    """Raise :class:`ConfigError` for an ``optimizer`` section a wing cannot run: ``name`` not one of
    :data:`OPTIMIZERS`, ``scheduler`` not one of :data:`SCHEDULERS`, or, where the wing's schedule has no
    warm-up (``warm_up`` False: segmentation), a non-zero ``warmup_epochs``. Called when a task is built and by
    ``dermoseg train`` before any data is loaded, so the error comes in seconds, not after image caching."""
    if opt["name"] not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name must be one of {', '.join(OPTIMIZERS)}, got {opt['name']!r}")
    if opt["scheduler"] not in SCHEDULERS:
        raise ConfigError(f"optimizer.scheduler must be one of {', '.join(SCHEDULERS)}, got {opt['scheduler']!r}")
    if not warm_up and float(opt["warmup_epochs"]) != 0:
        raise ConfigError(f"optimizer.warmup_epochs must be 0 here (this schedule is a cosine decay stepped per "
                          f"epoch, without warm-up), got {opt['warmup_epochs']!r}")


def build_optimizer(parameters, opt: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimiser of ``opt`` (the merged ``optimizer`` section, checked by :func:`check_optimizer`): Adam
    (Kingma & Ba 2015; the paper's, §4.2) or AdamW (decoupled weight decay, Loshchilov & Hutter 2019) at ``lr``
    with ``weight_decay``. Each wing's task adds its own learning-rate schedule for ``scheduler: cosine``.

    Raises
    ------
    ConfigError
        If ``name`` is not one of :data:`OPTIMIZERS` or ``scheduler`` not one of :data:`SCHEDULERS`.
    """
    check_optimizer(opt, warm_up=True)
    return OPTIMIZERS[opt["name"]](parameters, lr=float(opt["lr"]), weight_decay=float(opt["weight_decay"]))


def load_initial_weights(task: L.LightningModule, model_file: str | Path) -> str:
    """Start a run from the weights of an earlier model file (``trainer.init_from``): fine-tuning, e.g. at a larger
    input size, instead of from ImageNet. The file's network must be the one ``task.model`` is (same state-dict
    keys and shapes); a resume then replaces these weights with the checkpoint's as usual.

    Parameters
    ----------
    task : the Lightning task; its ``model`` attribute receives the weights (float32), and its ``model_kind``
        ("segmentation" or "classifier", :mod:`dermoseg.modelfile`) is the kind of file it accepts.
    model_file : a dermoseg model file (``.pt``) of the task's kind; a relative path is taken from the working
        directory (like ``data.root``), "default" is the shipped model of that kind.

    Returns
    -------
    The file's sha256 (64 hex digits), recorded in the exported model's ``info.init_from``.

    Raises
    ------
    ConfigError
        Naming the file, if it is not a readable dermoseg model file of the task's kind or its weights do not fit the
        network.
    """
    from dermoseg import modelfile
    from dermoseg.errors import DermosegError
    try:
        path, payload = modelfile.read(model_file, task.model_kind)
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in payload["state_dict"].items()}
        task.model.load_state_dict(state)
    except (DermosegError, RuntimeError) as exc:
        raise ConfigError(f"trainer.init_from {model_file}: {exc}") from None
    sha256 = modelfile.file_sha256(path)
    print(f"initial weights: {path} (sha256 {sha256})", flush=True)
    return sha256


def seed_and_threads(cfg: dict[str, Any]) -> None:
    """Seed Python, NumPy and torch from ``cfg["seed"]`` and apply ``trainer.num_threads`` if set."""
    L.seed_everything(int(cfg["seed"]), workers=True)
    if cfg["trainer"].get("num_threads"):
        torch.set_num_threads(int(cfg["trainer"]["num_threads"]))


def merge_epoch_metrics(log_dir: Path, out: Path) -> Path:
    """Merge the per-session Lightning CSV logs (``logs/version_*/metrics.csv``) into one row per epoch.

    Lightning writes train and validation figures of an epoch on separate rows, and a resumed run starts a new
    log; this keeps, for each epoch, the latest session's values of every column. Written atomically.
    """
    import pandas as pd

    frames = []
    for i, f in enumerate(sorted(log_dir.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))):
        df = pd.read_csv(f)
        df["_session"] = i
        frames.append(df)
    if not frames:
        return out
    df = pd.concat(frames, ignore_index=True)
    df = df[df["epoch"].notna()]
    merged = df.sort_values("_session").groupby("epoch").last().drop(columns=["_session"], errors="ignore")
    merged = merged.reset_index().sort_values("epoch")
    write_text(out, merged.to_csv(index=False))
    return out


def __getattr__(name: str):
    # ``dermoseg.training.train`` was the segmentation trainer until the two-wing layout (issue 10).
    if name == "train":
        import warnings
        warnings.warn("dermoseg.training.train moved to dermoseg.segmentation.task.train; the old name goes in "
                      "the next release", DeprecationWarning, stacklevel=2)
        from dermoseg.segmentation.task import train
        return train
    raise AttributeError(f"module 'dermoseg.training' has no attribute '{name}'")
