"""Loss values on cases worked out by hand (paper eq. 8–9: weighted soft Dice, smoothing 1; the Lovász hinge of
Berman et al., CVPR 2018)."""

from __future__ import annotations

import math

import pytest
import torch

from dermoseg.segmentation.losses import (dice_bce_loss, get_loss, lovasz_hinge_loss, weighted_bce_loss,
                                         weighted_dice_loss)


def _target():
    return torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])


def test_weighted_dice_at_probability_one_half():
    # p = 0.5 everywhere, one lesion pixel of four.
    # lesion: (2·0.5 + 1) / (2 + 1 + 1) = 0.5; background: (2·1.5 + 1) / (2 + 3 + 1) = 2/3
    # loss = 1 − (0.7·0.5 + 0.3·2/3) = 0.45
    loss = weighted_dice_loss(torch.zeros(1, 1, 2, 2), _target())
    assert loss.item() == pytest.approx(0.45, abs=1e-6)


def test_weighted_dice_weights_change_the_value():
    # lesion weight 1, background 0: loss = 1 − 0.5
    loss = weighted_dice_loss(torch.zeros(1, 1, 2, 2), _target(), lesion_weight=1.0, background_weight=0.0)
    assert loss.item() == pytest.approx(0.5, abs=1e-6)


def test_weighted_dice_is_zero_for_a_perfect_prediction_and_reduces_per_image():
    target = _target()
    perfect = (target * 2 - 1) * 50
    assert weighted_dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # batch of a perfect and a p=0.5 image: the mean of the per-image losses, (0 + 0.45) / 2
    batch = weighted_dice_loss(torch.cat([perfect, torch.zeros(1, 1, 2, 2)]), torch.cat([target, target]))
    assert batch.item() == pytest.approx(0.225, abs=1e-6)


def test_weighted_bce_at_logit_zero_is_ln2_and_weights_the_classes():
    assert weighted_bce_loss(torch.zeros(1, 1, 2, 2), _target()).item() == pytest.approx(math.log(2), abs=1e-6)
    # logit +1 everywhere: lesion pixel costs ln(1+e^-1), background ones ln(1+e^1)
    # weighted mean = (0.7·a + 3·0.3·b) / (0.7 + 0.9)
    a, b = math.log1p(math.exp(-1)), math.log1p(math.exp(1))
    expected = (0.7 * a + 0.9 * b) / 1.6
    assert weighted_bce_loss(torch.ones(1, 1, 2, 2), _target()).item() == pytest.approx(expected, abs=1e-6)


def test_dice_bce_is_the_sum_and_names_resolve():
    logits = torch.randn(2, 1, 5, 4)
    target = (torch.rand(2, 1, 5, 4) > 0.5).float()
    total = dice_bce_loss(logits, target)
    assert total.item() == pytest.approx((weighted_dice_loss(logits, target) + weighted_bce_loss(logits, target)).item(), abs=1e-6)
    assert get_loss("weighted_dice", lesion_weight=0.7, background_weight=0.3, smooth=1.0)(logits, target).item() == \
        pytest.approx(weighted_dice_loss(logits, target).item())
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("focal")


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="equal shape"):
        weighted_dice_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))


def _row(values):
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_lovasz_hinge_on_two_pixels():
    # lesion and background pixel, logits 0: both hinge errors 1; sorted labels [1, 0]: Jaccard losses
    # 1 − (1 − 1)/1 = 1 and 1 − 0/2 = 1, gradient [1, 0] → loss 1 (either order of the tie gives 1)
    assert lovasz_hinge_loss(_row([0.0, 0.0]), _row([1.0, 0.0])).item() == pytest.approx(1.0, abs=1e-6)
    # logits (2, −0.5): errors max(0, 1 − 2) = 0 (lesion) and 1 − 0.5 = 0.5 (background); sorted labels [0, 1]:
    # Jaccard losses 1 − 1/2 = 0.5 and 1 − 0/2 = 1, gradient [0.5, 0.5] → 0.5·0.5 + 0.5·0 = 0.25
    assert lovasz_hinge_loss(_row([2.0, -0.5]), _row([1.0, 0.0])).item() == pytest.approx(0.25, abs=1e-6)
    # every logit on its side by a margin ≥ 1: zero
    assert lovasz_hinge_loss(_row([3.0, -1.0]), _row([1.0, 0.0])).item() == pytest.approx(0.0, abs=1e-6)


def test_lovasz_hinge_is_twice_the_jaccard_loss_of_a_hard_mask_and_reduces_per_image():
    # logits ±1 make each pixel's hinge error 0 (right) or 2 (wrong); the Lovász extension is positively
    # homogeneous, so the loss is 2·(1 − Jaccard). Target {0, 1}, mask {0, 2}: Jaccard 1/3 → loss 4/3.
    target, mask = _row([1.0, 1.0, 0.0, 0.0]), _row([1.0, 0.0, 1.0, 0.0])
    assert lovasz_hinge_loss(2 * mask - 1, target).item() == pytest.approx(4 / 3, abs=1e-6)
    batch = lovasz_hinge_loss(torch.cat([2 * mask - 1, 2 * target - 1]), torch.cat([target, target]))
    assert batch.item() == pytest.approx((4 / 3 + 0) / 2, abs=1e-6)
    # get_loss drops the class weights and smoothing it does not take
    bound = get_loss("lovasz_hinge", lesion_weight=0.7, background_weight=0.3, smooth=1.0)
    assert bound(2 * mask - 1, target).item() == pytest.approx(4 / 3, abs=1e-6)
