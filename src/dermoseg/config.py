"""Training configurations: YAML files under ``configs/``, merged over the defaults below.

The defaults are the single place where a setting has a value when a config file is silent; every other module
receives its settings from the merged configuration.
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from dermoseg.errors import ConfigError

DATA_ROOT = "../shared/data"  # the data folder beside the checkout, when neither a config nor --data-root says

TRAINER_DEFAULTS: dict[str, Any] = {
    # batch_size is per process; with strategy "ddp" on D devices x num_nodes nodes the effective batch is the product
    "epochs": 20, "batch_size": 8, "accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto",
    "sync_batchnorm": False, "precision": "32-true", "num_threads": None, "max_time_minutes": None,
    "ema_decay": None, "init_from": None}

# dermoseg.data.transforms.build_augmentation's settings (both wings)
AUGMENT_DEFAULTS: dict[str, Any] = {
    "enabled": True, "flip": True, "rotate_limit": 180, "scale": 0.1, "elastic_p": 0.15, "grid_p": 0.15,
    "color_jitter": {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.02, "p": 0.5},
    "random_resized_crop": None, "blur_p": 0.0, "jpeg_p": 0.0}

# The networks' settings: the builders (dermoseg.models.build_model, build_classifier) and the model-file readers
# fill a key a model configuration lacks from these tables, so a run's defaults and an older model file agree.
SEGMENTATION_MODEL_DEFAULTS: dict[str, Any] = {
    "architecture": "codec", "encoder": "mobilenet_v2", "aspp_rates": [3, 3, 6], "output_stride": 16}
# Architecture-specific keys a segmentation model config may add (not written into every run's config):
# pretrained (None: true for the ImageNet encoders), encoder_layers (None: all 18 MobileNetV2 blocks; the fast
# preset keeps 14), ASPP and decoder widths, the paper encoder's width, U-Net's width.
SEGMENTATION_MODEL_OPTIONS: dict[str, Any] = {
    "pretrained": None, "encoder_layers": None, "aspp_channels": 256, "decoder_channels": 256, "encoder_width": 512,
    "width": 32}
CLASSIFIER_MODEL_DEFAULTS: dict[str, Any] = {
    "encoder": "mobilenet_v2", "pretrained": True, "dropout": 0.2, "mask_mode": "none", "crop_margin": 0.2,
    "freeze_stages": 0, "shades_of_gray_p": None}

DEFAULTS: dict[str, Any] = {  # a segmentation run (task: segmentation, the default task)
    "name": "codec",
    "task": "segmentation",
    "seed": 2018,
    "data": {"root": DATA_ROOT, "image_size": 256, "num_workers": 0,
             "train_subset": None, "val_subset": None, "pseudo_labels": None},
    "model": SEGMENTATION_MODEL_DEFAULTS,
    "loss": {"name": "dice_bce", "lesion_weight": 0.7, "background_weight": 0.3, "smooth": 1.0},
    # scheduler: cosine decay stepped per epoch, without warm-up (warmup_epochs stays 0: it is here because every
    # earlier run recorded it, and a non-zero value is refused by the segmentation task)
    "optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0, "scheduler": "cosine", "warmup_epochs": 0},
    "trainer": TRAINER_DEFAULTS,
    "augment": AUGMENT_DEFAULTS,
    "preprocess": {"enabled": False},
    "inference": {"tta": False},  # the exported model file's default for flip test-time augmentation
}

CLASSIFICATION_DEFAULTS: dict[str, Any] = {  # a lesion classifier run (task: classification)
    "name": "classifier",
    "task": "classification",
    "seed": 2018,
    "data": {"root": DATA_ROOT, "image_size": 192, "num_workers": 0, "train_subset": None, "split": None,
             "mask_dir": None, "cache_size": None, "sampling": "shuffle",
             "histo_nevus_share": None},
    "model": CLASSIFIER_MODEL_DEFAULTS,
    "loss": {"class_weight_power": 1.0, "label_smoothing": 0.0},
    "optimizer": {"name": "adamw", "lr": 5e-4, "weight_decay": 1e-4, "scheduler": "cosine", "warmup_epochs": 0},
    "trainer": TRAINER_DEFAULTS,
    "augment": AUGMENT_DEFAULTS,
}

TASK_DEFAULTS = {"segmentation": DEFAULTS, "classification": CLASSIFICATION_DEFAULTS}

# Settings a file may give beyond the defaults; ``preprocess`` is checked by dermoseg.preprocess.settings.
EXTRA_KEYS = {"segmentation": {("model",): set(SEGMENTATION_MODEL_OPTIONS)}, "classification": {}}
OPEN_SECTIONS = {("preprocess",)}
# Settings whose value may take several kinds, passed on as given (Lightning's devices: 1, "auto" or [0, 1];
# precision: 32 or "16-mixed")
ANY_KIND = {("trainer", "devices"), ("trainer", "precision")}


def dotted(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level, ``{"trainer.epochs": 8, ...}``; an empty mapping stays a value."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def first_difference(old: Mapping[str, Any], new: Mapping[str, Any], allowed: Iterable[str] = ()
                     ) -> tuple[str, Any, Any] | None:
    """``(dotted key, old value, new value)`` of the first setting (in sorted order of :func:`dotted` keys) that
    differs between two nested mappings, leaving out the keys in ``allowed``; None if they agree. Values are
    compared as JSON would give them back (a tuple equals a list)."""
    a, b = dotted(json.loads(json.dumps(old))), dotted(json.loads(json.dumps(new)))
    skip = set(allowed)
    for key in sorted(set(a) | set(b)):
        if key not in skip and a.get(key) != b.get(key):
            return key, a.get(key), b.get(key)
    return None


def _whole(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _number(v: Any) -> float | None:
    """A setting's value as a finite float (YAML 1.1 reads ``1e-3`` as text), or None if it is not one."""
    if isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _between(low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False
             ) -> Callable[[Any], bool]:
    """A range test for :data:`RANGES`: the value is a finite number (:func:`_number`) from ``low`` to ``high``,
    either end excluded when ``*_open``."""
    def test(v: Any) -> bool:
        f = _number(v)
        return f is not None and (f > low if low_open else f >= low) and (f < high if high_open else f <= high)
    return test


# Settings whose kind (check_keys) is not enough: {(section, key): (test, what it must be)}; None passes where the
# default is None (an optional setting left unset).
RANGES: dict[tuple[str, ...], tuple[Callable[[Any], bool], str]] = {
    **{("trainer", k): (lambda v: _whole(v, 1), "a whole number >= 1")
       for k in ("epochs", "batch_size", "num_nodes", "num_threads")},
    ("trainer", "max_time_minutes"): (_between(0), "a number >= 0 (0: no limit)"),
    ("trainer", "ema_decay"): (_between(0, 1, low_open=True, high_open=True), "a number in (0, 1)"),
    **{("data", k): (lambda v: _whole(v, 1), "a whole number >= 1")
       for k in ("image_size", "train_subset", "val_subset", "cache_size")},
    ("data", "num_workers"): (lambda v: _whole(v, 0), "a whole number >= 0"),
    ("optimizer", "lr"): (_between(0, low_open=True), "a number > 0"),
    **{(section, k): (_between(0), "a number >= 0")
       for section, k in (("optimizer", "weight_decay"), ("optimizer", "warmup_epochs"), ("loss", "lesion_weight"),
                          ("loss", "background_weight"), ("loss", "smooth"), ("loss", "class_weight_power"))},
    ("augment", "scale"): (_between(0, 1, high_open=True), "a number in [0, 1) (zoom range 1 - scale to 1 + scale)"),
    ("loss", "label_smoothing"): (_between(0, 1, high_open=True), "a number in [0, 1)"),
    **{("augment", k): (_between(0, 1), "a probability in [0, 1]")
       for k in ("elastic_p", "grid_p", "blur_p", "jpeg_p")},
    ("augment", "rotate_limit"): (_between(0, 180), "a number of degrees in [0, 180]"),
}


def check_ranges(given: dict[str, Any], where: str) -> None:
    """Raise :class:`ConfigError` naming ``where`` and the dotted key for the first setting of ``given`` (one
    file's own mapping) outside its range in :data:`RANGES` (``batch_size: -1``, ``epochs: 1.5``, ``lr: -1``,
    ``epochs: 0``), before any data is read; None, an unset optional setting, passes."""
    for (section, key), (test, what) in RANGES.items():
        part = given.get(section)
        if isinstance(part, dict) and key in part and part[key] is not None and not test(part[key]):
            raise ConfigError(f"{where}: setting '{section}.{key}' must be {what}, got {part[key]!r}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the last one
    silently, so a second ``hair:`` section would replace the first without a word)."""


def _unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, (str, int, float, bool)) and key is not None:  # e.g. "? [a, b]": no setting's name
            raise yaml.constructor.ConstructorError(None, None, f"a key must be a name, got {key!r}",
                                                    key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key '{key}' appears twice in one mapping",
                                                    key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


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
        If the file is missing, not valid YAML (a key given twice in one mapping included), or not a mapping; the
        message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}  # noqa: S506 (safe)
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{path}: not valid YAML ({exc})") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a YAML text file (not UTF-8 text; a model or image file?)") from None
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
    """Read a YAML configuration and merge it over its task's defaults (:data:`TASK_DEFAULTS`).

    A file may start from another one with ``base_config: OTHER.yaml`` (a path relative to the file's folder):
    the other file is read first (itself possibly with a base) and this file's keys are merged over it. The task
    (``task: segmentation``, the default, or ``classification``) picks the defaults, and every setting the file
    or the overrides give must be one of them (or of :data:`EXTRA_KEYS`), so a misspelt key is an error rather
    than a silently ignored line.

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
        If the file (or a base) is missing or not a YAML mapping, names an unknown task or setting (the message
        names the file and the dotted key), gives a setting of the wrong kind or outside its range
        (:func:`check_ranges`), a section has the wrong type, or the bases form a cycle.
    """
    chain = read_chain(path) if path is not None else []
    raw: dict[str, Any] = {}
    for file, mapping in chain:
        raw = merge(raw, mapping, str(file))
    task = (overrides or {}).get("task", raw.get("task", "segmentation"))
    if task not in TASK_DEFAULTS:
        raise ConfigError(f"{path or 'overrides'}: unknown task '{task}' (choose from {', '.join(TASK_DEFAULTS)})")
    defaults = TASK_DEFAULTS[task]
    for file, mapping in [*chain, ("overrides", overrides or {})]:  # each file answers for its own lines
        check_keys(mapping, defaults, EXTRA_KEYS[task], str(file))
        check_ranges(mapping, str(file))
    merged = merge(merge(defaults, raw, str(path)), overrides, "overrides")
    if "preprocess" in merged:  # the open section's own check on the merged settings, now rather than at export
        from dermoseg.preprocess.settings import PreprocessConfigError, resolve_settings
        try:
            resolve_settings(merged["preprocess"])
        except PreprocessConfigError as exc:
            raise ConfigError(f"{path or 'overrides'}: {exc}") from None
    return merged


def check_keys(given: dict[str, Any], defaults: dict[str, Any], extra: dict[tuple[str, ...], set[str]], where: str,
               _section: tuple[str, ...] = ()) -> None:
    """Raise :class:`ConfigError` naming ``where`` and the dotted key for the first setting of ``given`` that is
    neither in ``defaults`` nor in ``extra`` (``{section path: allowed keys}``), or whose value is not of its
    default's kind (:func:`_same_kind`: ``lr: fast`` fails here, before minutes of data loading, not in the
    optimiser). A default of None (an optional setting such as ``data.pseudo_labels``), the ``extra`` keys and
    the sections of :data:`OPEN_SECTIONS` are checked by their own readers, not here."""
    for key, value in given.items():
        dotted = ".".join((*_section, key))
        if key not in defaults:
            if key in extra.get(_section, ()):
                continue
            known = sorted({*defaults, *extra.get(_section, ())})
            raise ConfigError(f"{where}: unknown setting '{dotted}' (known here: {', '.join(known)})")
        if (*_section, key) in OPEN_SECTIONS:
            continue
        if isinstance(defaults[key], dict) and isinstance(value, dict):
            check_keys(value, defaults[key], extra, where, (*_section, key))
        elif (*_section, key) not in ANY_KIND and not _same_kind(defaults[key], value):
            raise ConfigError(f"{where}: setting '{dotted}' must be {_KINDS[type(defaults[key])]}, got {value!r}")


_KINDS = {bool: "true or false", int: "a number", float: "a number", str: "a text", list: "a list", dict: "a mapping"}


def _same_kind(default: Any, value: Any) -> bool:
    """Whether ``value`` may replace ``default``: any value where the default is None (optional settings are
    checked by their readers), else the same kind: true/false, a number (also a text such as ``1e-3``, which YAML
    1.1 reads as text without a decimal point), a text, a list, a mapping."""
    if default is None or isinstance(default, bool):
        return default is None or isinstance(value, bool)
    if isinstance(default, (int, float)):
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                return False
            return True
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def read_chain(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """``path`` and its ``base_config`` chain as ``[(file, its own YAML mapping)]``, bases first (``base_config``
    itself dropped; a base path is relative to the file naming it). Raises :class:`ConfigError` on a missing file
    or a cycle of bases."""
    path = Path(path)
    raw = read_yaml_mapping(path)
    base = raw.pop("base_config", None)
    if base is None:
        return [(path, raw)]
    base_path = path.parent / str(base)
    if base_path.resolve() in _seen or base_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: base_config '{base}' leads back to itself")
    return [*read_chain(base_path, (*_seen, path.resolve())), (path, raw)]
