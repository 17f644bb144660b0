"""Typed configs of the sim tasks and the scripted demonstrators (loaded through `apsconfig`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

RewardType = Literal["sparse", "dense"]
ActionMode = Literal["ee", "joint"]


@dataclass
class TMazeLayout:
    """The T-maze's shape (only the `tmaze` task reads it)."""

    corridor_length: int = 4  # cells from the start to the junction
    sign_accuracy: float = 1.0  # chance that one reading of the sign tells the truth

    def __post_init__(self) -> None:
        if self.corridor_length < 1:
            raise ValueError(f"corridor_length must be >= 1, got {self.corridor_length}")
        if not 0.5 < self.sign_accuracy <= 1.0:
            raise ValueError(f"sign_accuracy must lie in (0.5, 1], got {self.sign_accuracy}")


@dataclass
class TaskConfig:
    image_size: int = 84  # square onboard images; 32 and 48 are fine for CPU learning
    max_episode_steps: int = 50  # control steps, then `truncated`
    reward: RewardType | None = None  # None: the task's own default (dense for blind-pick, shelf-search)
    action_mode: ActionMode = "ee"  # "ee": end-effector deltas through IK; "joint": joint-position deltas
    control_hz: float = 10.0  # control steps per second of simulated time
    terminate_on_success: bool = True  # end the episode at the first success
    randomize: bool = True  # colours, lighting, camera pose jitter (object poses are always random)
    camera_fovy: float = 50.0  # degrees, the wrist camera
    camera_jitter_pos: float = 0.01  # metres, per reset, when `randomize`
    camera_jitter_deg: float = 2.0  # degrees, per reset, when `randomize`
    hint_noise: float = 0.02  # metres: std of blind-pick's one-off object position
    tmaze: TMazeLayout = field(default_factory=TMazeLayout)

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 512:
            raise ValueError(f"image_size must lie in [16, 512], got {self.image_size}")
        if self.max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if not 1.0 <= self.control_hz <= 50.0:
            raise ValueError(f"control_hz must lie in [1, 50], got {self.control_hz}")
        if not 10.0 <= self.camera_fovy <= 120.0:
            raise ValueError(f"camera_fovy must lie in [10, 120] degrees, got {self.camera_fovy}")
        if min(self.camera_jitter_pos, self.camera_jitter_deg, self.hint_noise) < 0:
            raise ValueError("camera_jitter_pos, camera_jitter_deg and hint_noise must be >= 0")


@dataclass
class DemoConfig:
    """Sub-optimality knobs of the scripted demonstrators (all off: the best the script can do)."""

    action_noise: float = 0.0  # std of Gaussian noise added to every action (actions are in [-1, 1])
    wrong_direction_prob: float = 0.0  # chance to search the wrong place first
    hesitation_prob: float = 0.0  # chance per step to pause or dither instead of acting
    grasp_offset: float = 0.0  # metres: std of a per-episode error in where the script thinks the object is
    gripper_flip_prob: float = (
        0.0  # chance per step that the gripper command is inverted (paper's xArm demos: 0.1)
    )

    def __post_init__(self) -> None:
        for name in ("wrong_direction_prob", "hesitation_prob", "gripper_flip_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.action_noise < 0 or self.grasp_offset < 0:
            raise ValueError("action_noise and grasp_offset must be >= 0")
