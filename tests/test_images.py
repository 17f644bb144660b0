"""policies.images.fit_image: how a camera frame becomes the policy's image (tier a, no ROS)."""

from __future__ import annotations

import numpy as np
import pytest

from policies.images import fit_image


def test_a_640x480_frame_becomes_the_block_means_of_its_centred_square() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    frame[:, :80] = 255  # left and right of the centred 480x480 square: must not leak in
    frame[:, 560:] = 0
    fitted = fit_image(frame, (32, 32))
    assert fitted.shape == (32, 32, 3) and fitted.dtype == np.uint8
    # INTER_AREA with a whole factor (480 / 32 = 15) is the mean of each 15x15 block, rounded
    blocks = frame[:, 80:560].reshape(32, 15, 32, 15, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(fitted.astype(np.float64) - blocks).max() <= 0.5 + 1e-9


def test_sizes_aspects_and_types() -> None:
    rng = np.random.default_rng(1)
    same = rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)
    assert fit_image(same, (84, 84)) is same  # the sim's own images pass untouched
    wide = np.zeros((480, 640, 3), np.uint8)
    wide[:, 320:] = 200  # right half bright: a 3:4 target keeps all 640 columns, crops rows
    fitted = fit_image(wide, (48, 64))
    assert fitted.shape == (48, 64, 3) and fitted[:, :32].max() == 0 and fitted[:, 32:].min() == 200
    depth = rng.integers(0, 5000, (720, 1280), dtype=np.uint16)  # mono / 16UC1 keep their type
    fitted = fit_image(depth, (36, 36))
    assert fitted.shape == (36, 36) and fitted.dtype == np.uint16
    small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)  # enlarging works too (bilinear)
    assert fit_image(small, (48, 48)).shape == (48, 48, 3)
    with pytest.raises(ValueError, match="cannot fit"):
        fit_image(np.zeros((0, 10, 3), np.uint8), (8, 8))
