"""The synthetic hair models of the hair-removal benchmark (benchmarks/hair_models.py, issue 16).

Every expected value is a property of what was asked for (a line's width and length, a palette, an opacity
range), not a number produced by running the code.
"""

from __future__ import annotations

import numpy as np
import pytest


NAMES = ["curved_sparse", "curved_dense", "straight", "light", "soft_jpeg", "none"]


@pytest.fixture(scope="module")
def hm(hair_models):
    assert list(hair_models.MODELS) == NAMES  # every model is tested below
    return hair_models


def plain(h: int = 512, w: int = 512) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (200, 150, 130)
    return img


@pytest.mark.parametrize("width", [1.0, 2.5, 6.0])
def test_coverage_of_a_straight_line_is_its_width_times_its_length(hm, width):
    """A horizontal line from x = 20 to x = 180 (160 px) of width w: total coverage 160 (w +- 0.3 px: widths are
    drawn to the nearest 0.5 px) plus the round caps (at most w² more), none of it more than w/2 + 1.5 px from
    the line's row."""
    pts = np.stack([np.linspace(20, 180, hm.POINTS), np.full(hm.POINTS, 50.0)], axis=1)
    (sy, sx), cov = hm.coverage(pts, width, 100, 200)
    assert 160 * (width - 0.3) <= cov.sum() <= 160 * (width + 0.3) + width ** 2
    rows = np.arange(100)[sy]
    far = np.abs(rows + 0.5 - 50) > width / 2 + 1.5
    assert cov[far].max() == 0
    assert 0 <= cov.min() and cov.max() <= 1


def test_opacity_profile_scales_the_coverage(hm):
    pts = np.stack([np.linspace(20, 180, hm.POINTS), np.full(hm.POINTS, 50.0)], axis=1)
    full = hm.coverage(pts, 3.0, 100, 200)[1].sum()
    half = hm.coverage(pts, 3.0, 100, 200, profile=np.full(hm.POINTS - 1, 0.5))[1].sum()
    assert half == pytest.approx(0.5 * full, rel=0.03)


def test_a_line_outside_the_image_draws_nothing(hm):
    pts = np.stack([np.linspace(300, 400, hm.POINTS), np.full(hm.POINTS, 50.0)], axis=1)
    assert hm.coverage(pts, 3.0, 100, 200) is None


@pytest.mark.parametrize("name", NAMES)
def test_each_model_draws_its_colours_where_it_says(hm, name):
    """Where a hair is fully opaque the pixel is a palette colour (x 0.9..1.1); outside the drawn opacity map the
    image is unchanged (JPEG models: changed only a little); same seed, same hair; the input is not modified."""
    model = hm.MODELS[name]
    img = plain()
    before = img.copy()
    hairy, alpha = hm.draw_hair(img, model, np.random.default_rng(7))
    np.testing.assert_array_equal(img, before)
    again, alpha2 = hm.draw_hair(img, model, np.random.default_rng(7))
    np.testing.assert_array_equal(hairy, again)
    np.testing.assert_array_equal(alpha, alpha2)
    assert hairy.shape == img.shape and hairy.dtype == np.uint8 and alpha.shape == img.shape[:2]
    assert 0 <= alpha.min() and alpha.max() <= model.opacity[1] + 1e-6
    if name == "none":
        assert not alpha.any()
        np.testing.assert_array_equal(hairy, img)
        return
    assert (alpha > 0).mean() > 0.002
    untouched = alpha == 0
    diff = np.abs(hairy.astype(int) - img.astype(int))
    if model.jpeg is None:
        assert diff[untouched].max() == 0
        opaque = alpha >= 0.999
        if opaque.any():
            lo, hi = model.palette.min(axis=0) * 0.9 - 1, np.minimum(model.palette.max(axis=0) * 1.1 + 1, 255)
            assert (hairy[opaque] >= lo).all() and (hairy[opaque] <= hi).all()
    else:
        assert 0 < diff[untouched].mean() < 3  # re-encoding noise only


def test_models_differ_in_the_promised_way(hm):
    """Dense has more hair than sparse; light hair is lighter than the skin, dark hair darker; the straight
    model's hairs cross the image."""
    rng = lambda: np.random.default_rng(3)  # noqa: E731
    img = plain()
    area = {n: (hm.draw_hair(img, hm.MODELS[n], rng())[1] >= 0.25).mean() for n in ("curved_sparse", "curved_dense")}
    assert area["curved_dense"] > 3 * area["curved_sparse"]
    light, a_light = hm.draw_hair(img, hm.MODELS["light"], rng())
    dark, a_dark = hm.draw_hair(img, hm.MODELS["curved_sparse"], rng())
    assert light[a_light >= 0.5].mean() > img.mean() > dark[a_dark >= 0.5].mean()
    _, a_straight = hm.draw_hair(img, hm.MODELS["straight"], rng())
    touched = a_straight > 0
    assert touched[:, :5].any() or touched[:5].any()  # a chord reaches an image edge


def test_hair_regions_leave_a_margin_between_hair_and_untouched(hm):
    alpha = np.zeros((512, 512), np.float32)
    alpha[100:104, :] = 1.0
    alpha[104, :] = 0.1  # a faint edge: touched, but not hair
    hair, untouched = hm.hair_regions(alpha)
    assert hair[100:104].all() and not hair[104].any()
    assert not untouched[98:107].any() and untouched[:97].all() and untouched[108:].all()
