"""Issue 10: the layout rebuild changed no command's output.

``tests/data/behaviour_395dd5b.json`` is the digest (``tests/behaviour.py``) of ``segment`` (with measurements and
diagnosis; and without TTA, with cleaning, at another threshold), ``diagnose``, ``evaluate --pred/--truth`` and
``evaluate --dataset ph2`` on four real ISIC and PH2 images, made with the code of commit 395dd5b, before the
rebuild (``git worktree add /tmp/orig 395dd5b; PYTHONPATH=/tmp/orig/src python tests/behaviour.py OUT.json``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from behaviour import digest

REFERENCE = json.loads((Path(__file__).parent / "data" / "behaviour_395dd5b.json").read_text(encoding="utf-8"))
CURRENT: dict = {}


@pytest.mark.parametrize("command", sorted(REFERENCE))
def test_outputs_equal_those_of_the_code_before_the_rebuild(command, data_root):
    if not CURRENT:
        CURRENT.update(json.loads(json.dumps(digest())))
    assert CURRENT[command] == REFERENCE[command]
