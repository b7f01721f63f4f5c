"""Settings of black-frame and hair removal: defaults from ``configs/preprocess.yaml``, overrides, checks.

The defaults live in one YAML file shipped with the package (``dermoseg/configs/preprocess.yaml``); a model
file's or training config's ``preprocess:`` mapping overrides any subset of them. Missing keys keep their
defaults; an unknown key is an error (a misspelt setting in a user's file, or a model file cleaned with a setting
this version does not have: ignoring it would clean differently from the training).
"""

from __future__ import annotations

import copy
import math
from functools import lru_cache
from importlib import resources
from typing import Any, Mapping

import yaml

from dermoseg.config import ConfigError


class PreprocessConfigError(ConfigError):
    """A preprocessing setting has the wrong type or an impossible value; the message names the key.

    A :class:`dermoseg.config.ConfigError` (so a ``ValueError``): the command line reports it as ``error: ...``.
    """


# key -> (kind, lower bound, upper bound); bounds are inclusive, None means unbounded.
_RULES: dict[str, dict[str, tuple]] = {
    "": {"enabled": ("bool",), "reference_size": ("num", 1, None)},
    "frame": {"enabled": ("bool",), "lightness_max": ("num", 0, 255), "median_px": ("odd", 1, 15),
              "min_thickness_px": ("num", 1, None), "corner_px": ("num", 1, None), "max_area_pct": ("num", 0, 100),
              "field_lightness_min": ("num", 0, 255),
              "convex_field": ("bool",), "fill": ("choice", "median", "none"), "ring_px": ("num", 1, None),
              "hair_margin_px": ("num", 0, None)},
    "hair": {"enabled": ("bool",), "closing_px": ("num", 3, None), "chroma_weight": ("num", 0, None),
             "light_weight": ("num", 0, None),
             "threshold_low": ("num", 0, None), "threshold_high": ("num", 0, None),
             "min_length_px": ("num", 0, None), "max_width_px": ("num", 0.5, None), "dilate_px": ("num", 0, None),
             "min_contrast": ("num", 0, None), "lesion_threshold": ("num", 0, None),
             "long_hair_px": ("num", 0, None), "line_length_px": ("num", 0, None), "line_angles": ("int", 1, 180),
             "line_tolerance_px": ("num", 0, None), "line_exempt_response": ("num", 0, None),
             "edge_px": ("num", 0, None),
             "mode": ("choice", "auto", "sparse", "dense"), "dense_count": ("num", 0, None),
             "diffusion_iterations": ("num", 0, 10000),
             "diffusion_lambda": ("num", 1e-6, 1), "diffusion_kappa": ("num", 1e-6, None)},
}


@lru_cache(maxsize=1)
def _defaults() -> dict[str, Any]:
    text = resources.files("dermoseg").joinpath("configs", "preprocess.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def default_settings() -> dict[str, Any]:
    """The shipped defaults (a fresh nested dict, read once from ``dermoseg/configs/preprocess.yaml``)."""
    return copy.deepcopy(_defaults())


def resolve_settings(cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``cfg`` over the shipped defaults and check every value.

    Parameters
    ----------
    cfg : a ``preprocess:`` mapping (``{"enabled": True, "hair": {"dense_count": 40}}``), or None.

    Returns
    -------
    The complete settings: ``{"enabled", "reference_size", "frame": {...}, "hair": {...}}``.

    Raises
    ------
    PreprocessConfigError
        If a key is unknown (a misspelt setting would otherwise be silently ignored), or a value has the wrong
        type or lies outside its range (the dotted key is named).
    """
    out = default_settings()
    if cfg is None:
        return out
    if not isinstance(cfg, Mapping):
        raise PreprocessConfigError(f"preprocess settings must be a mapping, got {type(cfg).__name__}")
    for key, value in cfg.items():
        if key in ("frame", "hair"):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise PreprocessConfigError(f"preprocess.{key} must be a mapping, got {value!r}")
            for sub, v in value.items():
                if sub not in _RULES[key]:
                    raise PreprocessConfigError(f"unknown setting 'preprocess.{key}.{sub}' (known here: "
                                                f"{', '.join(sorted(_RULES[key]))})")
                out[key][sub] = _check(f"preprocess.{key}.{sub}", v, _RULES[key][sub])
        elif key in _RULES[""]:
            out[key] = _check(f"preprocess.{key}", value, _RULES[""][key])
        else:
            raise PreprocessConfigError(f"unknown setting 'preprocess.{key}' (known here: "
                                        f"{', '.join(sorted({*_RULES[''], 'frame', 'hair'}))})")
    if out["hair"]["threshold_high"] < out["hair"]["threshold_low"]:
        raise PreprocessConfigError("preprocess.hair.threshold_high must be >= threshold_low, got "
                                    f"{out['hair']['threshold_high']} < {out['hair']['threshold_low']}")
    return out


def _check(name: str, value: Any, rule: tuple) -> Any:
    kind = rule[0]
    if kind == "bool":
        if not isinstance(value, bool):
            raise PreprocessConfigError(f"{name} must be true or false, got {value!r}")
        return value
    if kind == "choice":
        if value not in rule[1:]:
            raise PreprocessConfigError(f"{name} must be one of {', '.join(rule[1:])}, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PreprocessConfigError(f"{name} must be a finite number, got {value!r}")  # NaN passed every range test
    lo, hi = rule[1], rule[2]
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise PreprocessConfigError(f"{name} must be in [{lo}, {hi if hi is not None else 'inf'}], got {value!r}")
    if kind == "int" and int(value) != value:
        raise PreprocessConfigError(f"{name} must be a whole number, got {value!r}")
    if kind == "odd" and (int(value) != value or int(value) % 2 == 0):
        raise PreprocessConfigError(f"{name} must be an odd whole number, got {value!r}")
    return copy.copy(value)
