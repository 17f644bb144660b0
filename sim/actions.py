"""The one check every task applies to an action before its physics sees it."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def checked_action(task: str, action: Any, space: gym.spaces.Box) -> np.ndarray:
    """`action` as float64 clipped to the space, or a ValueError that names the task and the fault:
    not numeric, the wrong shape, NaN or inf. Out-of-range values are clipped, not refused."""
    try:
        array = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{task}: action is not a numeric array: {action!r}") from err
    if array.shape != space.shape:
        raise ValueError(f"{task}: action must have shape {space.shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{task}: action holds NaN or inf: {array}")
    return np.clip(array, space.low, space.high)
