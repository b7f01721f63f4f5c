"""Frame safety on all the real data (issue 3, part 4): no ground-truth lesion pixel is ever marked as frame.

Runs the frame stage of :func:`dermoseg.preprocess.clean_image` on all 200 PH2 and all 2075 ISIC 2018 images of
``../shared/data`` (about 30 s of CPU). It also requires that frames *are* found on some ISIC images, so that
the safety check cannot pass by finding nothing.
"""

from __future__ import annotations

from dermoseg.io import read_image, read_mask
from dermoseg.preprocess import clean_image

FRAME_ONLY = {"hair": {"enabled": False}}


def _check(samples):
    offenders, found = [], 0
    for s in samples:
        image, truth = read_image(s.image_path), read_mask(s.mask_path)
        frame = clean_image(image, FRAME_ONLY).frame_mask
        assert frame.shape == truth.shape, s.image_id
        found += bool(frame.any())
        overlap = int((frame & truth).sum())
        if overlap:
            offenders.append((s.image_id, overlap))
    return offenders, found


def test_no_ph2_lesion_pixel_is_frame(ph2_samples):
    assert len(ph2_samples) == 200
    offenders, _ = _check(ph2_samples)
    assert offenders == [], f"lesion pixels marked as frame (id, pixels): {offenders}"


def test_no_isic_lesion_pixel_is_frame_and_frames_are_found(isic_samples):
    assert len(isic_samples) == 2075
    offenders, found = _check(isic_samples)
    assert offenders == [], f"lesion pixels marked as frame (id, pixels): {offenders}"
    # ISIC 2018 has black round frames and bars (about two dozen are near-black and thick in this set).
    assert found >= 15, f"only {found} frames found"
