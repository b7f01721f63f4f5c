"""The report's configuration: ``configs/report.yaml`` (what to show, and the paper's and the literature's
figures) over :data:`REPORT_DEFAULTS`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from dermoseg.config import ConfigError, read_yaml_mapping

# The section modules of dermoseg.report, in their default order.
SECTIONS = ("claims", "main_table", "curves", "distributions", "worst", "quality", "variants", "grid", "ablations",
            "diagnosis", "provenance")
REPORT_DEFAULTS: dict[str, Any] = {"results_dir": "docs/results", "title": "Reproduction report", "notes": None,
                                   "sections": list(SECTIONS), "claims": None,
                                   "main_table": {"sets": ["isic2018_val", "ph2"], "runs": []}, "paper_claims": [],
                                   "literature": [], "curves": [], "distributions": None, "worst_cases": None,
                                   "ablations": None, "quality": None, "variants": None, "grid": None, "diagnosis": None, "throughput": "throughput.json",
                                   "manual_runs": "manual_runs.csv"}


class ReportError(ConfigError):
    """The report configuration is missing or malformed; the message names the file and key."""


def load_report_config(path: str | Path) -> dict[str, Any]:
    """Read ``configs/report.yaml`` over :data:`REPORT_DEFAULTS`.

    Returns
    -------
    A new dict (the defaults are copied, never shared).

    Raises
    ------
    ReportError
        If the file is missing, not a YAML mapping, a run list is not a list, or a section is unknown.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, "report config", ReportError)
    spec = {**copy.deepcopy(REPORT_DEFAULTS), **raw}
    if not isinstance(spec["main_table"].get("runs", []), list):
        raise ReportError(f"{path}: main_table.runs must be a list")
    unknown = [s for s in spec["sections"] if s not in SECTIONS]
    if unknown:
        raise ReportError(f"{path}: unknown section(s) {unknown} (choose from {', '.join(SECTIONS)})")
    return spec
