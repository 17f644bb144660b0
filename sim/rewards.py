"""Each task's reward and success as a function of privileged observations: the same function the
sim's env calls, so a recorder that sees only the privileged stream (no MuJoCo state) computes the
sim's reward exactly.

    outcome = privileged_outcome("shelf-search", previous, action, current)   # -> StepOutcome

`previous` and `current` are the privileged parts (key -> float32 vector) of the observations
before and after `action`. Tasks whose success needs state that no privileged key carries raise
`RewardUnavailable` with what to do instead:

- the pick tasks: a grasp is both fingers *touching* the cube (MuJoCo contacts); the cube's pose
  and its offset from the grasp point do not tell a grasp from a cube lifted against one finger.
  Record them with the reward from the episode's success label (sparse: equal to the sim's reward
  when the sim ends an episode at its first success, the default) or with the sim's own reward
  published beside the privileged state.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sim.config import RewardType

Vectors = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class StepOutcome:
    reward: float
    success: bool


class RewardUnavailable(ValueError):
    """The task's reward cannot be computed from its privileged keys; the message says what to use."""


# task -> the module that defines its `privileged_outcome(previous, action, current, reward_type)` and
# the PRIVILEGED_REWARD_KEYS it reads (imported on first use, as sim.make imports tasks)
_FUNCTIONS: dict[str, str] = {"shelf-search": "sim.shelf", "tmaze": "sim.tmaze"}
_CONTACT_TASKS = ("fully-obs-pick", "camouflage-pick", "search-pick", "blind-pick")


@dataclass(frozen=True)
class PrivilegedReward:
    task: str
    keys: tuple[str, ...]  # the privileged keys the function reads
    function: Callable[[Vectors, np.ndarray, Vectors, RewardType | None], StepOutcome]

    def __call__(
        self, previous: Vectors, action: np.ndarray, current: Vectors, reward_type: RewardType | None = None
    ) -> StepOutcome:
        return self.function(previous, action, current, reward_type)


def privileged_reward(task: str) -> PrivilegedReward:
    """The task's reward function on privileged data, or RewardUnavailable saying why not."""
    if task in _CONTACT_TASKS:
        raise RewardUnavailable(
            f"{task}'s success needs finger contacts, which no privileged key carries: record it with "
            "reward=label (sparse reward from the episode's success, equal to the sim's when the sim ends "
            "at the first success) or reward=stream (the sim robot's own reward in privileged_state)"
        )
    if task not in _FUNCTIONS:
        known = ", ".join(sorted(_FUNCTIONS))
        raise RewardUnavailable(
            f"no privileged reward function for task {task!r} (there are: {known}); use reward=label"
        )
    module = importlib.import_module(_FUNCTIONS[task])
    return PrivilegedReward(task, tuple(module.PRIVILEGED_REWARD_KEYS), module.privileged_outcome)


def privileged_outcome(
    task: str, previous: Vectors, action: np.ndarray, current: Vectors, reward_type: RewardType | None = None
) -> StepOutcome:
    return privileged_reward(task)(previous, action, current, reward_type)
