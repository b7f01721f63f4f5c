"""Shades of Gray colour constancy (Finlayson & Trezzi 2004) and where the classifier applies it."""

from __future__ import annotations

import numpy as np
import pytest

from dermoseg.classification.classifier import prepare_image
from dermoseg.io import read_image
from dermoseg.preprocess.colour import shades_of_gray


def test_a_uniform_colour_becomes_the_gray_of_the_same_length():
    # e = (100, 50, 200)/255 for every p; each channel becomes |e|/sqrt(3) = sqrt((100² + 50² + 200²) / 3) = 132.29
    image = np.empty((4, 5, 3), np.uint8)
    image[:] = (100, 50, 200)
    for p in (1.0, 6.0, float("inf")):
        out = shades_of_gray(image, p)
        assert (out == 132).all()
    assert (image == (100, 50, 200)).all()  # the input is left alone


def test_gray_world_on_two_pixels_by_hand():
    # p = 1: e = channel means = (60, 30, 90)/255, |e| = sqrt(60² + 30² + 90²)/255 = 112.25/255;
    # gains = 112.25 / (sqrt(3) * (60, 30, 90)) = (1.0801, 2.1602, 0.7201)
    image = np.array([[[40, 20, 60], [80, 40, 120]]], np.uint8)
    out = shades_of_gray(image, 1.0)
    gains = np.sqrt(60 ** 2 + 30 ** 2 + 90 ** 2) / (np.sqrt(3) * np.array([60, 30, 90]))
    assert np.array_equal(out, np.clip(np.round(image * gains), 0, 255).astype(np.uint8))


def test_a_colour_cast_on_a_real_image_is_mostly_undone(ph2_samples):
    image = read_image(ph2_samples[0].image_path)
    cast = np.clip(image * np.array([1.15, 1.0, 0.8]), 0, 255).astype(np.uint8)  # a warmer light
    before = np.abs(image.astype(int) - cast).mean()
    after = np.abs(shades_of_gray(image).astype(int) - shades_of_gray(cast)).mean()
    assert after < before / 3


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="uint8"):
        shades_of_gray(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="p must be >= 1"):
        shades_of_gray(np.zeros((4, 4, 3), np.uint8), 0.5)
    black = np.zeros((4, 4, 3), np.uint8)
    assert np.array_equal(shades_of_gray(black), black)


def test_the_classifier_input_is_corrected_only_when_the_model_says_so(ph2_samples):
    image = read_image(ph2_samples[0].image_path)
    plain, corrected = prepare_image(image, 64), prepare_image(image, 64, shades_of_gray_p=6)
    assert np.array_equal(corrected, shades_of_gray(plain, 6))
    assert not np.array_equal(plain, corrected)
