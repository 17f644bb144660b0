"""Camera images as a policy sees them: one function, for the policy node, a recorder and a learner.

    image = fit_image(frame, (84, 84))    # a 640x480 RealSense frame -> the checkpoint's 84x84

A real camera gives 640x480 (or 1280x720); policies train on small square images (32..84 px, the
sim's `image_size`). `fit_image` takes the centred crop with the target's aspect ratio (a square:
the middle 480x480 of a 640x480 frame, so nothing is squashed) and resizes it to the target size
with OpenCV's INTER_AREA, which averages the source pixels under each target pixel: shrinking by
6-15x without the aliasing that nearest or bilinear sampling would put into fine texture. (When a
camera is smaller than the target, it enlarges with INTER_LINEAR instead: INTER_AREA would copy
pixels like nearest.) The sim renders at the policy's size already: an image of the target size
is returned as it is, so sim data and camera data go through the same call.
"""

from __future__ import annotations

import cv2
import numpy as np


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` (HxW or HxWxC, uint8 or uint16) centre-cropped to the aspect ratio of `size`
    (height, width), then resized to it; returned unchanged when it already has that size."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    if min(image.shape[:2]) < 1 or min(height, width) < 1:
        raise ValueError(f"cannot fit a {image.shape[:2]} image to {size}")
    rows, cols = image.shape[:2]
    # the largest centred crop with the target's aspect ratio (integer pixels)
    crop_rows, crop_cols = min(rows, round(cols * height / width)), min(cols, round(rows * width / height))
    top, left = (rows - crop_rows) // 2, (cols - crop_cols) // 2
    crop = image[top : top + crop_rows, left : left + crop_cols]
    shrinking = crop_rows >= height and crop_cols >= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(crop, (width, height), interpolation=interpolation)
    return resized.reshape(height, width, *image.shape[2:])  # cv2 drops a single channel axis
