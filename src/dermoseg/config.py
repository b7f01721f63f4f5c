"""Training configurations: YAML files under ``configs/``, merged over the defaults below.

The defaults are the single place where a setting has a value when a config file is silent; every other module
receives its settings from the merged configuration.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from dermoseg.errors import ConfigError

DATA_ROOT = "../shared/data"  # the data folder beside the checkout, when neither a config nor --data-root says

DEFAULTS: dict[str, Any] = {
    "name": "codec",
    "task": "segmentation",
    "seed": 2018,
    "data": {"root": DATA_ROOT, "image_size": 256, "num_workers": 0,
             "train_subset": None, "val_subset": None, "pseudo_labels": None},
    "model": {"architecture": "codec", "encoder": "mobilenet_v2", "aspp_rates": [3, 3, 6], "output_stride": 16},
    "loss": {"name": "dice_bce", "lesion_weight": 0.7, "background_weight": 0.3, "smooth": 1.0},
    "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "scheduler": "cosine", "warmup_epochs": 0},
    # batch_size is per process; with strategy "ddp" on D devices x num_nodes nodes the effective batch is the product
    "trainer": {"epochs": 20, "batch_size": 8, "accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto",
                "sync_batchnorm": False, "precision": "32-true", "num_threads": None, "max_time_minutes": None,
                "ema_decay": None, "init_from": None},
    "augment": {"enabled": True, "flip": True, "rotate_limit": 180, "scale": 0.1, "elastic_p": 0.15,
                "grid_p": 0.15, "color_jitter": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1,
                                                  "hue": 0.02, "p": 0.5}},
    "preprocess": {"enabled": False},
    "inference": {"tta": False},  # the exported model file's default for flip test-time augmentation
}


def read_yaml_mapping(path: str | os.PathLike, what: str = "config file",
                      error: type[Exception] = ConfigError) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping (an empty file reads as ``{}``).

    Parameters
    ----------
    path : the file.
    what : how to name the file in messages ("config file", "sweep file", ...).
    error : the exception class to raise, so that each command reports its own kind of error.

    Raises
    ------
    error
        If the file is missing, not valid YAML, or not a mapping; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a YAML mapping at the top level")
    return data


def merge(base: dict, override: dict | None, where: str = "overrides") -> dict:
    """``base`` with ``override`` merged in, mapping by mapping (the one deep merge of configurations).

    Parameters
    ----------
    base : the mapping merged into (deep-copied, never changed).
    override : its keys win; a nested mapping is merged into the base's mapping of the same key.
    where : how to name ``override`` in messages (a file name, ``overrides``).

    Raises
    ------
    ConfigError
        If ``override`` gives a non-mapping where ``base`` has a mapping.
    """
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key in out and isinstance(out[key], dict) and out[key] is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a mapping, got {value!r}")
            out[key] = merge(out[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def load_config(path: str | os.PathLike | None = None, overrides: dict | None = None) -> dict[str, Any]:
    """Read a YAML configuration and merge it over :data:`DEFAULTS`.

    A file may start from another one with ``base_config: OTHER.yaml`` (a path relative to the file's folder):
    the other file is read first (itself possibly with a base) and this file's keys are merged over it.

    Parameters
    ----------
    path : YAML file, or None for the defaults alone.
    overrides : a nested mapping applied last (used by the sweep command for grid cells).

    Returns
    -------
    The merged configuration (a new dict).

    Raises
    ------
    ConfigError
        If the file (or a base) is missing or not a YAML mapping, a section has the wrong type, or the bases
        form a cycle.
    """
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        cfg = merge(cfg, read_with_base(path), str(path))
    if overrides:
        cfg = merge(cfg, overrides, "overrides")
    return cfg


def read_with_base(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The YAML mapping of ``path`` merged over its ``base_config`` chain (bases first; ``base_config`` itself is
    dropped from the result). Raises :class:`ConfigError` on a missing file or a cycle of bases."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    base = raw.pop("base_config", None)
    if base is None:
        return raw
    base_path = path.parent / str(base)
    if base_path.resolve() in _seen or base_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: base_config '{base}' leads back to itself")
    return merge(read_with_base(base_path, (*_seen, path.resolve())), raw, str(path))
