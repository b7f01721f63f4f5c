"""Black-frame and hair removal (dermoseg.preprocess; paper §3.1, eq. 1-4; issue 3).

Hand-made images test one property each with a stated tolerance; real images (ids in tests/data/hairy_ids.txt,
chosen by eye) test that visible hair is found and removed. No expected value here was produced by running the
code under test: each is a property of the input (where the ring is, where the line is, what the clean image
was) or a tolerance stated in the test.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from dermoseg.io import read_image
from dermoseg.preprocess import (PreprocessConfigError, clean_image, default_settings, detect_hair, edge_lines,
                                 lightness, line_support, repair_dense, repair_sparse, resolve_settings)
from dermoseg.preprocess.settings import _RULES

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _ids(path: Path) -> list[str]:
    return [line.split("#")[0].strip() for line in path.read_text().splitlines() if line.split("#")[0].strip()]


def skin(h: int = 256, w: int = 256, seed: int = 0) -> np.ndarray:
    """A plain skin-coloured image: a gentle colour gradient and faint smooth texture; no hair, no frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.array([205.0, 160.0, 140.0]) + 12 * (xx / w - 0.5)[..., None] + 8 * (yy / h - 0.5)[..., None]
    img = img + cv2.GaussianBlur(rng.normal(0, 6, (h, w, 3)), (0, 0), 2.0)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------- black frame
def test_black_ring_is_found_and_only_the_ring():
    img = skin(320, 320)
    yy, xx = np.mgrid[0:320, 0:320]
    r = np.hypot(yy - 159.5, xx - 159.5)
    ring = r > 150
    img[ring] = (10, 8, 9)
    res = clean_image(img)
    assert res.frame_found
    assert not (res.frame_mask & (r < 148)).any(), "frame mask entered the field of view"
    assert res.frame_mask[r > 152].mean() > 0.99, "the ring was not found"
    # Filled with the skin colour (the field is within about 10 gray levels of its median everywhere).
    skin_colour = np.median(img[r < 140], axis=0)
    assert np.abs(res.image[ring].astype(int) - skin_colour).max() <= 12
    # The field itself is not changed by the frame stage (no hair there: the whole field stays within 1 level).
    assert np.abs(res.image[r < 140].astype(int) - img[r < 140]).max() <= 1
    assert res.image.shape == img.shape and res.frame_mask.shape == img.shape[:2]


def test_black_bar_along_one_edge_is_frame():
    img = skin(256, 300)
    img[:40] = (5, 5, 5)
    res = clean_image(img)
    assert res.frame_mask[:38].all()
    assert not res.frame_mask[42:].any()


def test_dark_lesion_touching_the_border_is_not_frame():
    """The issue's safety rule: a dark lesion reaching the image edge (no frame at all) is left alone."""
    img = skin(256, 256)
    lesion = np.zeros((256, 256), np.uint8)
    cv2.ellipse(lesion, (250, 128), (70, 50), 0, 0, 360, 1, -1)
    img[lesion > 0] = (14, 9, 10)  # as dark as a frame (HSL lightness 11)
    res = clean_image(img, {"hair": {"enabled": False}})
    assert not res.frame_mask.any()
    np.testing.assert_array_equal(res.image, img)


def test_dark_lesion_touching_a_vignette_is_not_frame():
    """A black round vignette plus a black lesion that reaches it: only the vignette is frame. Tolerance: the
    lesion's pixels within 5 px (1.6 % of the size) of the lens edge may go either way (the fitted lens ellipse
    is shrunk by 1.6 px and fitted to within about a pixel)."""
    img = skin(320, 320)
    yy, xx = np.mgrid[0:320, 0:320]
    r = np.hypot(yy - 159.5, xx - 159.5)
    lesion = np.hypot((yy - 160) / 60.0, (xx - 270) / 45.0) <= 1  # crosses the vignette edge on the right
    img[lesion] = (12, 10, 10)
    img[r > 150] = (10, 8, 9)
    res = clean_image(img, {"hair": {"enabled": False}})
    assert res.frame_found
    assert not (res.frame_mask & lesion & (r <= 145)).any(), "lesion pixels inside the field were taken for frame"
    assert res.frame_mask[(r > 152) & ~lesion].mean() > 0.98


def test_frame_needs_a_thick_dark_region():
    """Thin black lines along an edge (seen on resized ISIC images) are thinner than a frame."""
    img = skin(256, 256)
    img[-2:] = 0
    img[:, :2] = 0
    assert not clean_image(img, {"hair": {"enabled": False}}).frame_found


def test_lightness_is_eq1():
    img = np.array([[[10, 200, 30], [255, 255, 255], [0, 0, 0], [7, 8, 200]]], np.uint8)
    np.testing.assert_array_equal(lightness(img), [[(200 + 10) // 2, 255, 0, (200 + 7) // 2]])


# ---------------------------------------------------------------------------------------------------------- hair
@pytest.mark.parametrize("mode", ["sparse", "dense"])
@pytest.mark.parametrize("angle", [0, 33, 90])
def test_straight_dark_line_is_repaired(mode, angle):
    """A dark line about 3 pixels wide on a plain 512x512 background (the settings' reference size): found, and
    repaired to within 10 gray levels at every line pixel (mean within 3), the rest of the image changed by
    less than 0.3 gray levels on average."""
    clean = skin(512, 512, seed=1)
    line = np.zeros((512, 512), np.uint8)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    p0, p1 = (256 - 400 * c, 256 - 400 * s), (256 + 400 * c, 256 + 400 * s)
    cv2.line(line, tuple(int(round(v)) for v in p0), tuple(int(round(v)) for v in p1), 1, 2)
    on = line > 0
    assert 2.5 <= on.sum() / 512 / max(abs(c), abs(s)) <= 4.5  # the drawn width, as a check of the test itself
    hairy = clean.copy()
    hairy[on] = (45, 32, 28)
    res = clean_image(hairy, {"hair": {"mode": mode}})
    assert res.mode == mode and res.n_hairs >= 1
    assert res.hair_mask[on].mean() > 0.97, "the line was not detected"
    assert res.hair_mask.sum() < 3 * on.sum(), "the hair mask is much wider than the line"
    err = np.abs(res.image.astype(int) - clean.astype(int))
    assert err[on].max() <= 10 and err[on].mean() <= 3
    assert err[~on].mean() < 0.3


def honeycomb(h: int, w: int, side: float = 10.0) -> np.ndarray:
    """(H, W) bool one-pixel outlines of a honeycomb of regular hexagons with the given side (pixels): a mesh like
    a pigment network, whose straight runs are one side long (10 px) and whose zigzag chains swing 5 px
    (side x sin 30°) to either side, so that no straight segment much longer than a side lies along it."""
    mesh = np.zeros((h, w), np.uint8)
    dx, dy = np.sqrt(3) * side, 1.5 * side
    corners = np.pi / 6 + np.arange(6) * np.pi / 3
    for row in range(int(h / dy) + 2):
        for col in range(int(w / dx) + 2):
            cx, cy = col * dx + (dx / 2 if row % 2 else 0), row * dy
            pts = np.stack([cx + side * np.cos(corners), cy + side * np.sin(corners)], axis=1)
            cv2.polylines(mesh, [np.round(pts * 16).astype(np.int32)], True, 1, 1, cv2.LINE_8, 4)
    return mesh > 0


@pytest.mark.parametrize("angle", [0, 7, 33, 82])
def test_line_support_keeps_a_thin_straight_line_at_any_angle(angle):
    """A one-pixel digital line 300 px long, at angles between the 24 sampled orientations (7.5° apart) too, is
    kept whole: a 31-px segment at the nearest sampled angle is at most 15.5 x sin(3.75°) = 1.0 px away from it
    at its ends, within the 1-px tolerance."""
    mask = np.zeros((512, 512), np.uint8)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    cv2.line(mask, (int(256 - 150 * c), int(256 - 150 * s)), (int(256 + 150 * c), int(256 + 150 * s)), 1, 1)
    mask = mask > 0
    kept = line_support(mask, 31, 24, 1, 20)
    assert not (kept & ~mask).any()
    assert kept[mask].mean() >= 0.98


def test_line_support_drops_a_mesh_of_short_segments():
    """A honeycomb with 10-px sides (straight runs of 10 px) holds no straight 31-px segment, even grown by one
    pixel: nothing of it is kept; a 1-px line laid across it is kept, and no mesh pixel farther than 12 px from
    the line (the line's own support, grown by the tolerance, reaches the mesh only where they cross)."""
    mesh = honeycomb(256, 256)
    assert line_support(mesh, 31, 24, 1, 20).sum() == 0
    line = np.zeros((256, 256), np.uint8)
    cv2.line(line, (0, 40), (255, 200), 1, 1)
    kept = line_support(mesh | (line > 0), 31, 24, 1, 20)
    assert kept[line > 0].mean() >= 0.98
    far = mesh & ~(cv2.dilate(line, np.ones((25, 25), np.uint8)) > 0)  # mesh farther than 12 px from the line
    assert not kept[far].any()


def test_pigment_network_like_mesh_is_not_hair_but_a_line_across_it_is():
    """A disk of shallow, network-like troughs (a honeycomb with 10-px sides, its pixels darkened to 75 %) on
    plain skin, with a dark straight 3-px line crossing it. Without the
    straight-segment test (``line_length_px: 0``) the mesh is taken for hair (it is one large connected trough,
    long enough to skip the contrast test); with the shipped settings none of its pixels farther than 8 px from
    the line is marked, and the line is found and repaired."""
    clean = skin(512, 512, seed=2)
    disk = np.zeros((512, 512), np.uint8)
    cv2.circle(disk, (256, 256), 150, 1, -1)
    net = honeycomb(512, 512) & (disk > 0)
    img = clean.astype(float)
    img[net] *= 0.75
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    line = np.zeros((512, 512), np.uint8)
    cv2.line(line, (30, 100), (480, 420), 1, 3)
    on = line > 0
    hairy = img.copy()
    hairy[on] = (45, 32, 28)
    off = {"frame": {"enabled": False}}
    without = clean_image(img, {"frame": {"enabled": False}, "hair": {"line_length_px": 0}})
    assert without.hair_mask[net].mean() > 0.5, "the mesh is too faint to test anything"
    assert not clean_image(img, off).hair_mask.any()
    res = clean_image(hairy, off)
    away = net & ~(cv2.dilate(line, np.ones((17, 17), np.uint8)) > 0)
    assert not res.hair_mask[away].any()
    assert res.hair_mask[on].mean() > 0.97
    err = np.abs(res.image.astype(int) - img.astype(int))
    assert err[on & ~net].mean() <= 5


def test_image_without_hair_or_frame_is_nearly_unchanged():
    """Tolerance: at most 0.5 % of the pixels changed, mean absolute change below 0.1 gray level."""
    img = skin(300, 260, seed=3)
    res = clean_image(img)
    assert not res.frame_found
    changed = (res.image != img).any(axis=2)
    assert changed.mean() <= 0.005
    assert np.abs(res.image.astype(int) - img).mean() < 0.1


def test_input_is_not_modified_and_output_is_uint8_same_size():
    img = skin(100, 180)
    img[:20] = 0
    cv2.line(img, (0, 60), (179, 70), (40, 30, 25), 3)
    before = img.copy()
    res = clean_image(img)
    np.testing.assert_array_equal(img, before)
    assert res.image.dtype == np.uint8 and res.image.shape == img.shape
    assert res.hair_mask.dtype == bool and res.frame_mask.dtype == bool
    assert res.hair_mask.shape == res.frame_mask.shape == img.shape[:2]


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 500, 3), (700, 2, 3), (17, 19, 3)])
def test_tiny_and_thin_images(shape):
    img = np.full(shape, 128, np.uint8)
    res = clean_image(img)
    assert res.image.shape == shape
    np.testing.assert_array_equal(res.image, img)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
                                 np.zeros((10, 10, 4), np.uint8), np.zeros((0, 10, 3), np.uint8), [[1, 2, 3]]])
def test_bad_image_arrays_raise_valueerror(bad):
    with pytest.raises(ValueError, match="expected"):
        clean_image(bad)


def test_repairs_leave_non_hair_pixels_alone():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    mask = np.zeros((64, 80), bool)
    mask[10:14, 5:70] = True
    mask[:, 40:42] = True
    for out in (repair_sparse(img, mask), repair_dense(img, mask, iterations=5, lam=0.9, kappa=40.0)):
        np.testing.assert_array_equal(out[~mask], img[~mask])
        # Every repaired value lies within the range of the image (interpolation and diffusion cannot overshoot).
        assert out[mask].min() >= img.min() and out[mask].max() <= img.max()


def test_sparse_repair_interpolates_linearly_across_a_band():
    """Eq. 4 on a horizontal ramp: a vertical band is filled by exact linear interpolation along the row."""
    ramp = np.tile(np.linspace(0, 200, 50)[None, :, None], (30, 1, 3)).round().astype(np.uint8)
    mask = np.zeros((30, 50), bool)
    mask[:, 20:26] = True
    out = repair_sparse(ramp, mask)
    assert np.abs(out.astype(int) - ramp.astype(int)).max() <= 1


# ------------------------------------------------------------------------------------------------- real images
@pytest.fixture(scope="module")
def all_samples(isic_samples, ph2_samples):
    return {s.image_id: s for s in list(isic_samples) + list(ph2_samples)}


def test_hairy_id_list_exists_and_ids_are_real(all_samples):
    ids = _ids(HERE / "data" / "hairy_ids.txt")
    assert len(ids) >= 6
    assert all(i in all_samples for i in ids)


def test_visible_hair_is_found_and_removed(all_samples):
    """On images with visible hair: hair is found (at least 0.5 % of the image: the contrast tests of issue 16
    leave most of the faint thin hairs of IMD014, which the issue-3 detector found, see docs/preprocessing.md),
    repaired with a lighter colour (on average over the hair mask, by more than 3 gray levels of HSL lightness;
    the mask includes the hair's soft edges), and within the hair mask the dark thin structures (grayscale
    black-hat, the DullRazor filter) lose at least half their energy. (Over the whole image the black-hat also
    sees the lesion's own pigment network.)"""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    for image_id in _ids(HERE / "data" / "hairy_ids.txt"):
        img = read_image(all_samples[image_id].image_path)
        res = clean_image(img)
        assert res.mode in ("sparse", "dense"), image_id
        assert 0.5 <= res.hair_pct <= 60.0, (image_id, res.hair_pct)
        gain = lightness(res.image)[res.hair_mask].astype(float).mean() - lightness(img)[res.hair_mask].mean()
        assert gain > 3, (image_id, gain)
        energy = [cv2.morphologyEx(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.MORPH_BLACKHAT, kernel)[res.hair_mask]
                  .astype(float).mean() for x in (img, res.image)]
        assert energy[1] < 0.5 * energy[0], (image_id, energy)


def _psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float))[where] ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


# The first three ids of the hair benchmark's first tuning list (30 ids drawn at random from the training split,
# not picked for anything; the list has since grown to 90 other random ids: benchmarks/hair_removal.py --select).
SYNTHETIC_IDS = ("ISIC_0000064", "ISIC_0000188", "ISIC_0000205")


@pytest.fixture(scope="module")
def synthetic_cases(all_samples, hair_models):
    """Three random training-split images (:data:`SYNTHETIC_IDS`) with dark curved, straight and soft hair drawn
    on them: (id, model, original, hairy, alpha)."""
    cases = []
    for k, image_id in enumerate(SYNTHETIC_IDS):
        original = read_image(all_samples[image_id].image_path)
        for name in ("curved_sparse", "straight", "soft_jpeg"):
            hairy, alpha = hair_models.draw_hair(original, hair_models.MODELS[name], np.random.default_rng(k))
            cases.append((image_id, name, original, hairy, alpha))
    return cases


def test_synthetic_hair_on_real_images_is_removed(synthetic_cases, hair_models):
    """Over the drawn hair pixels the PSNR against the original rises by at least 6 dB and over the whole image
    it rises; of opaque dark hair (not the soft model, whose faint stretches are meant to be hard) at least 60 %
    of the drawn pixels are in the hair mask."""
    off = {"frame": {"enabled": False}}
    for image_id, name, original, hairy, alpha in synthetic_cases:
        hair, _ = hair_models.hair_regions(alpha)
        res = clean_image(hairy, off)
        everywhere = np.ones(hair.shape, bool)
        assert _psnr(res.image, original, hair) >= _psnr(hairy, original, hair) + 6, (image_id, name)
        assert _psnr(res.image, original, everywhere) > _psnr(hairy, original, everywhere), (image_id, name)
        if name != "soft_jpeg":
            assert res.hair_mask[hair].mean() >= 0.6, (image_id, name)


def test_contrast_tests_drop_false_hair_not_drawn_hair(synthetic_cases, hair_models):
    """The contrast tests of issue 16 (a hair must be a deep enough trough, deeper inside the lesion) against the
    same detector without them: the pixels the hair did not touch are damaged less (PSNR there not lower, and
    fewer of them marked), while at most 15 % of the drawn hair pixels found without the tests are lost (over
    all nine cases: a faint hair crossing the lesion may be lost whole)."""
    shipped = {"frame": {"enabled": False}}
    without = {"frame": {"enabled": False}, "hair": {"min_contrast": 0.0, "lesion_threshold": 0.0}}
    hs = default_settings()["hair"]
    assert hs["min_contrast"] > 0 and hs["lesion_threshold"] > hs["threshold_low"]
    fewer, found = 0, np.zeros(2)
    for image_id, name, original, hairy, alpha in synthetic_cases:
        hair, untouched = hair_models.hair_regions(alpha)
        a, b = clean_image(hairy, shipped), clean_image(hairy, without)
        # The tests remove hair; a component cut in two by the stricter lesion threshold may pass a shape test
        # that the whole failed, so a few new pixels are allowed (1 % of the mask).
        assert (a.hair_mask & ~b.hair_mask).sum() <= 0.01 * a.hair_mask.sum(), (image_id, name)
        assert _psnr(a.image, original, untouched) >= _psnr(b.image, original, untouched) - 0.05, (image_id, name)
        found += a.hair_mask[hair].sum(), b.hair_mask[hair].sum()
        fewer += int((a.hair_mask & untouched).sum() < (b.hair_mask & untouched).sum())
    assert found[0] >= 0.85 * found[1]
    assert fewer >= len(synthetic_cases) // 2  # and the tests do remove false hair on most of them


# ---------------------------------------------------------------------------------------------------- settings
def test_yaml_defaults_and_rules_agree():
    """Every default lives in configs/preprocess.yaml and every key there is a checked setting."""
    text = (REPO / "src" / "dermoseg" / "configs" / "preprocess.yaml").read_text()
    data = yaml.safe_load(text)
    assert data == default_settings() == resolve_settings(None)
    assert set(data) - {"frame", "hair"} == set(_RULES[""])
    for section in ("frame", "hair"):
        assert set(data[section]) == set(_RULES[section]), section


@pytest.mark.parametrize("cfg, key", [
    ({"hair": {"closing_px": -1}}, "preprocess.hair.closing_px"),
    ({"hair": {"diffusion_lambda": 1.5}}, "preprocess.hair.diffusion_lambda"),
    ({"frame": {"fill": "crop"}}, "preprocess.frame.fill"),
    ({"frame": {"median_px": 4}}, "preprocess.frame.median_px"),
    ({"hair": {"mode": "heavy"}}, "preprocess.hair.mode"),
    ({"hair": {"threshold_low": 9, "threshold_high": 5}}, "threshold_high"),
    ({"hair": "yes"}, "preprocess.hair"),
    ({"enabled": "yes"}, "preprocess.enabled"),
    ({"hair": {"dense_count": True}}, "preprocess.hair.dense_count"),
    ({"hair": {"line_angles": 2.5}}, "preprocess.hair.line_angles"),
    ({"hair": {"line_angles": 0}}, "preprocess.hair.line_angles"),
])
def test_invalid_settings_name_the_key(cfg, key):
    with pytest.raises(PreprocessConfigError, match=key.replace(".", r"\.")):
        clean_image(skin(32, 32), cfg)


def test_unknown_setting_is_an_error_and_missing_keys_keep_defaults():
    with pytest.raises(PreprocessConfigError, match=r"unknown setting 'preprocess.hair.closing_size' .*closing_px"):
        resolve_settings({"enabled": True, "hair": {"closing_size": 3}})
    with pytest.raises(PreprocessConfigError, match=r"unknown setting 'preprocess.hiar' .*hair"):
        resolve_settings({"hiar": {"closing_px": 3}})
    s = resolve_settings({"enabled": True, "hair": {"closing_px": 11}})
    assert s["hair"] == {**default_settings()["hair"], "closing_px": 11} and s["enabled"] is True


def test_stages_can_be_switched_off():
    img = skin(200, 200)
    img[:30] = 0
    cv2.line(img, (0, 120), (199, 100), (40, 30, 25), 3)
    assert not clean_image(img, {"frame": {"enabled": False}}).frame_found
    res = clean_image(img, {"hair": {"enabled": False}})
    assert res.mode == "none" and not res.hair_mask.any() and res.frame_found
    both_off = clean_image(img, {"frame": {"enabled": False}, "hair": {"enabled": False}})
    np.testing.assert_array_equal(both_off.image, img)


# ------------------------------------------------------------------------------------------- light hair (issue 16)
def _line_mask(angle: float, width: int, size: int = 512, offset: float = 0.0) -> np.ndarray:
    """(size, size) bool: a straight line of the given drawn width through the centre (shifted by ``offset`` px
    across itself), crossing the whole image."""
    line = np.zeros((size, size), np.uint8)
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    cx, cy = size / 2 - offset * s, size / 2 + offset * c
    p0, p1 = (cx - 2 * size * c, cy - 2 * size * s), (cx + 2 * size * c, cy + 2 * size * s)
    cv2.line(line, tuple(int(round(v)) for v in p0), tuple(int(round(v)) for v in p1), 1, width)
    return line > 0


@pytest.mark.parametrize("angle", [0, 33])
def test_light_line_is_found_by_the_light_pass_only(angle):
    """A line about 3 px wide, 40 % lighter than the (darker than usual) plain skin under it and of the same hue
    (so no trough in u* or v* either): the paper's dark pass (``light_weight`` 0) leaves it (under 10 % of it
    marked), the light pass finds it (over 97 %) and repairs it to within 3 gray levels on average."""
    clean = np.rint(skin(512, 512, seed=2) * 0.8).astype(np.uint8)
    on = _line_mask(angle, 2)
    hairy = clean.copy()
    hairy[on] = np.clip(np.rint(clean[on] * 1.4), 0, 255).astype(np.uint8)
    dark_only = clean_image(hairy, {"hair": {"light_weight": 0.0}})
    both = clean_image(hairy, {"hair": {"light_weight": 1.0}})
    assert dark_only.hair_mask[on].mean() < 0.10
    assert both.hair_mask[on].mean() > 0.97 and both.n_hairs >= 1
    err = np.abs(both.image.astype(int) - clean.astype(int))
    assert err[on].mean() <= 3 and err[~on].mean() < 0.3


def test_skin_between_dense_dark_hairs_is_not_taken_for_light_hair():
    """Dark lines 3 px wide, 9 px apart: on the hairy image the 6-px strips of skin between them are light ridges
    (the light response alone marks most of their centre lines), which is why the light pass runs on the image
    after the dark hair is repaired: then under 5 % of those centre-line pixels are marked."""
    clean = skin(512, 512, seed=3)
    lines, centre = np.zeros((512, 512), bool), np.zeros((512, 512), bool)
    for k in range(-6, 7):
        lines |= _line_mask(20, 3, offset=9.0 * k)
        if k < 6:
            centre |= _line_mask(20, 1, offset=9.0 * k + 4.5)
    centre &= ~(cv2.dilate(lines.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)  # 2 px or more from a line
    centre[:16], centre[-16:], centre[:, :16], centre[:, -16:] = False, False, False, False
    assert centre.sum() > 4000  # the test's own geometry: 12 centre lines across the image
    hairy = clean.copy()
    hairy[lines] = (50, 35, 30)
    hs = default_settings()["hair"]
    settings = {k: hs[k] for k in ("threshold_low", "threshold_high", "min_length_px", "max_width_px", "dilate_px",
                                   "min_contrast", "lesion_threshold", "long_hair_px", "line_length_px",
                                   "line_angles", "line_tolerance_px")}
    naive, _ = detect_hair(hairy, None, closing_px=hs["closing_px"], chroma_weight=hs["chroma_weight"],
                           light_weight=1.0, light=True, **settings)
    assert naive[centre].mean() > 0.5
    res = clean_image(hairy, {"hair": {"light_weight": 1.0}, "frame": {"enabled": False}})
    assert res.hair_mask[lines].mean() > 0.97
    assert res.hair_mask[centre].mean() < 0.05


def test_light_pass_removes_synthetic_light_hair_on_real_images(all_samples, hair_models):
    """The benchmark's thin light hair drawn on three random training-split images: with the light pass (the shipped
    ``light_weight``) the PSNR over the drawn hair pixels is nowhere lower than without it (by more than 0.1 dB) and
    at least 1 dB higher on average (at the shipped weight the faintest light hairs stay), and the pixels the hair
    did not touch lose at most 0.5 dB of PSNR on average."""
    assert default_settings()["hair"]["light_weight"] > 0
    off = {"frame": {"enabled": False}}
    dark_only = {"frame": {"enabled": False}, "hair": {"light_weight": 0.0}}
    gain, loss = [], []
    for k, image_id in enumerate(SYNTHETIC_IDS):
        original = read_image(all_samples[image_id].image_path)
        hairy, alpha = hair_models.draw_hair(original, hair_models.MODELS["light"], np.random.default_rng(k))
        hair, untouched = hair_models.hair_regions(alpha)
        with_light, without = clean_image(hairy, off).image, clean_image(hairy, dark_only).image
        gain.append(_psnr(with_light, original, hair) - _psnr(without, original, hair))
        loss.append(_psnr(without, original, untouched) - _psnr(with_light, original, untouched))
    assert min(gain) >= -0.1 and np.mean(gain) >= 1.0, gain
    assert np.mean(loss) <= 0.5, loss


def test_a_line_along_most_of_the_border_is_an_edge_line_not_hair():
    """A dark line 2 px wide down 92 % of the image, 1 px inside its right border (columns 509-510 of 512): when
    the outermost 3 columns are examined for edge lines (``edge_px`` 3) it covers more than half of two of them,
    is an edge line (as a scanner's border line is) and stays (under 10 % marked); when only the outermost column
    is examined it is a hair like any other: found (over 97 %) and repaired to within 10 gray levels on average.
    And a hair that only crosses the border rows (a diagonal line through the whole image) is found with the
    shipped ``edge_px`` right up to the border."""
    clean = skin(512, 512, seed=4)
    on = np.zeros((512, 512), bool)
    on[20:492, 509:511] = True
    hairy = clean.copy()
    hairy[on] = (45, 32, 28)
    wide = clean_image(hairy, {"hair": {"edge_px": 3}, "frame": {"enabled": False}})
    narrow = clean_image(hairy, {"hair": {"edge_px": 1}, "frame": {"enabled": False}})
    assert wide.hair_mask[on].mean() < 0.10
    assert narrow.hair_mask[on].mean() > 0.97
    assert np.abs(narrow.image.astype(int) - clean.astype(int))[on].mean() <= 10
    diagonal = _line_mask(37, 3)
    hairy = clean.copy()
    hairy[diagonal] = (45, 32, 28)
    res = clean_image(hairy, {"frame": {"enabled": False}})
    assert default_settings()["hair"]["edge_px"] >= 3
    assert res.hair_mask[diagonal].mean() > 0.97


def test_edge_lines_follow_a_border_stripe_inward_but_not_a_line_apart_from_it():
    """``edge_lines`` with 3 examined columns: a 6-column stripe of candidate hair from the right border (as the
    white scan border of a PH2 image) is followed inward and marked whole; a full-height line in columns 5-6 from
    the left, apart from the border, is not an edge line; nor is a column only 40 % covered."""
    weak = np.zeros((100, 120), bool)
    weak[:, -6:] = True
    weak[:, 5:7] = True
    weak[:40, 1] = True
    lines = edge_lines(weak, 3)
    assert lines[:, -6:].all() and not lines[:, -7].any()
    assert not lines[:, :20].any()
    assert not lines[:, 20:-6].any()
