"""Shared fixtures: the real data in $DERMOSEG_DATA, else ../shared/data (tests fail, not skip, when it is absent).

The commands read the same variable for their data folder when ``--data-root`` is not given, so a test calling
``main()`` without it and a test using :func:`data_root` see the same data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("DERMOSEG_DATA", "").strip() or REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    assert DATA_ROOT.is_dir(), (f"real data expected at {DATA_ROOT} ($DERMOSEG_DATA, else ../shared/data beside the "
                                "checkout)")
    return DATA_ROOT


@pytest.fixture(scope="session")
def isic_samples(data_root):
    from dermoseg.data.datasets import load_isic2018_task1
    return load_isic2018_task1(data_root / "isic2018_task1")


@pytest.fixture(scope="session")
def ph2_samples(data_root):
    from dermoseg.data.datasets import load_ph2
    return load_ph2(data_root / "ph2")


@pytest.fixture(scope="session")
def hair_models():
    """benchmarks/hair_models.py (the synthetic hair generators of the hair-removal benchmark) as a module."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("hair_models", REPO / "benchmarks" / "hair_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["hair_models"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module
