"""Issue 10: the layout rebuild changed no command's output.

``tests/data/behaviour_395dd5b.json`` is the digest (``tests/behaviour.py``) of ``segment`` (with measurements and
diagnosis; and without TTA, with cleaning, at another threshold), ``diagnose``, ``evaluate --pred/--truth`` and
``evaluate --dataset ph2`` on four real ISIC and PH2 images, and of ``report`` on the committed
``docs/results``, made with the code of commit 395dd5b, before the
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


def test_the_documented_python_api_of_0_1_still_works_and_warns(tmp_path, isic_samples):
    """README (0.1): dermoseg.inference.load_model, predict_probability, probability_to_mask;
    dermoseg.evaluation.evaluate_dirs; dermoseg.training.train — kept one release with a DeprecationWarning."""
    import numpy as np

    from dermoseg import evaluation, inference, training
    from dermoseg.io import read_image, read_mask, write_image
    from dermoseg.segmentation.segmenter import Segmenter
    from dermoseg.segmentation.task import train as new_train
    s = isic_samples[0]
    image = read_image(s.image_path)
    with pytest.warns(DeprecationWarning, match="Segmenter.load"):
        model = inference.load_model()
    with pytest.warns(DeprecationWarning):
        prob = inference.predict_probability(model, image, tta=False)
    with pytest.warns(DeprecationWarning):
        mask = inference.probability_to_mask(prob)
    seg = Segmenter.load().segment(image, tta=False)
    np.testing.assert_array_equal(prob, seg.probability)
    np.testing.assert_array_equal(mask, seg.mask)
    write_image(tmp_path / "pred" / f"{s.image_id}_segmentation.png", mask)
    write_image(tmp_path / "truth" / f"{s.image_id}_segmentation.png", read_mask(s.mask_path))
    with pytest.warns(DeprecationWarning):
        rows, summary = evaluation.evaluate_dirs(tmp_path / "pred", tmp_path / "truth")
    assert rows[0]["image_id"] == s.image_id and 0.5 < summary["dice"] <= 1
    with pytest.warns(DeprecationWarning):
        assert training.train is new_train
