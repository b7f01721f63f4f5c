"""Settings of ``dermoseg serve``: limits and workers from ``dermoseg/configs/serve.yaml``, overridable by a file.

The shipped file holds the defaults; ``dermoseg serve --config FILE`` (or :func:`load_settings`) merges a
mapping over them. Every value is checked here, so a typo stops the server with a message naming the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from dermoseg.config import read_yaml_mapping
from dermoseg.errors import ConfigError

TOKEN_ENV = "DERMOSEG_TOKEN"  # environment variable holding the bearer token (the --token option sets it too)
CONFIG_ENV = "DERMOSEG_SERVE_CONFIG"  # settings file of the worker processes started by ``--workers N``
WORKERS_ENV = "DERMOSEG_SERVE_WORKERS"  # the ``--workers`` count, for the worker processes
MODEL_ENV = "DERMOSEG_SERVE_MODEL"  # the ``--model`` segmentation model file, for the worker processes
CLASSIFIER_ENV = "DERMOSEG_SERVE_CLASSIFIER"  # the ``--classifier`` file, for the worker processes


@dataclass(frozen=True)
class ServeSettings:
    """Limits of one server process (see ``dermoseg/configs/serve.yaml`` for the meaning of each field).

    Attributes
    ----------
    max_upload_bytes : largest accepted upload, bytes (> 0).
    max_pixels : largest accepted image, width × height pixels (> 0).
    compute_threads : images processed at the same time (≥ 1).
    max_waiting : requests that may wait for a compute thread (≥ 0); more get 503.
    inference_threads : compute threads of the models of one server process (0 = the CPUs available, divided
        equally among the ``--workers`` processes: :func:`worker_threads`).
    upload_timeout_seconds : longest wait for the next part of an upload's body, s (≥ 1); a stalled upload gets
        408 and gives its place back.
    """

    max_upload_bytes: int
    max_pixels: int
    compute_threads: int
    max_waiting: int
    inference_threads: int
    upload_timeout_seconds: int


_MINIMUM = {"max_upload_bytes": 1, "max_pixels": 1, "compute_threads": 1, "max_waiting": 0, "inference_threads": 0,
            "upload_timeout_seconds": 1}


def load_settings(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> ServeSettings:
    """The shipped defaults, with the mapping in ``path`` (a YAML file) and then ``overrides`` merged over them.

    Raises
    ------
    dermoseg.errors.ConfigError
        If the file is missing or not a YAML mapping, a key is unknown, or a value is not an integer at or
        above its minimum; the message names the file and the key.
    """
    text = resources.files("dermoseg").joinpath("configs", "serve.yaml").read_text(encoding="utf-8")
    values: dict[str, Any] = yaml.safe_load(text)
    origin = dict.fromkeys(values, "dermoseg/configs/serve.yaml")
    for source, mapping in ((str(path), read_yaml_mapping(path, "serve settings file") if path else None),
                            ("overrides", overrides)):
        for key, value in (mapping or {}).items():
            if key not in _MINIMUM:
                raise ConfigError(f"{source}: unknown serve setting '{key}' (known: {', '.join(_MINIMUM)})")
            values[key], origin[key] = value, source
    for key, low in _MINIMUM.items():
        value = values.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{origin.get(key, 'settings')}: serve setting '{key}' must be an integer >= {low}, got {value!r}")
    return ServeSettings(**{f.name: values[f.name] for f in fields(ServeSettings)})


def worker_threads(settings: ServeSettings, workers: int | None = None) -> int:
    """Compute threads for the models of one server process: ``settings.inference_threads`` when set, else the
    CPUs available to the process (:func:`dermoseg.engine.threads.inference_threads`: affinity, cgroup quota,
    ``OMP_NUM_THREADS``) divided by the number of worker processes, so that ``--workers N`` does not start N
    engines that each take every core (at least 1).

    Parameters
    ----------
    settings : the server's settings.
    workers : server processes; None reads :data:`WORKERS_ENV` (set by ``dermoseg serve``), default 1.
    """
    if settings.inference_threads:
        return settings.inference_threads
    from dermoseg.engine.threads import inference_threads
    env = os.environ.get(WORKERS_ENV, "")
    n = workers if workers is not None else (int(env) if env.isdigit() and int(env) >= 1 else 1)
    return max(1, inference_threads() // n)
