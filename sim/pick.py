"""The pick tasks: one cube on the table, four ways of (not) seeing it.

    fully-obs-pick   side camera sees a brightly coloured cube: the control task
    camouflage-pick  the cube wears the table's texture and colour: barely visible from the side,
                     visible up close in the wrist camera
    search-pick      wrist camera only; the cube starts left or right, outside the camera's view
    blind-pick       no camera: a noisy cube position at the first step only

Success: the cube is at least LIFT above the table with both fingers touching it.

Privileged (what a calibrated tracker or motion capture gives in training): the cube's pose or
position, and `object_offset`, the cube's centre relative to the grasp point (what the robot's
kinematics and the tracked pose give together).
"""

from __future__ import annotations

from typing import ClassVar

import mujoco
import numpy as np

from sim.base import ArmEnv
from sim.camera import project, visible_fraction

CUBE_HALF = 0.025
LIFT = 0.05
BRIGHT_COLOURS = np.array(
    [[0.85, 0.12, 0.10], [0.10, 0.65, 0.20], [0.12, 0.30, 0.85], [0.90, 0.75, 0.10], [0.75, 0.20, 0.75]]
)


class PickEnv(ArmEnv):
    privileged_vectors: ClassVar[dict[str, int]] = {"object_pose": 7, "object_offset": 3}
    spawn_low: ClassVar[np.ndarray] = np.array([0.30, -0.15])
    spawn_high: ClassVar[np.ndarray] = np.array([0.45, 0.15])
    object_material: ClassVar[str] = 'rgba="0.85 0.12 0.10 1"'

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._object_body = self.model.body("object").id
        self._object_geom = self.model.geom("object").id
        self._object_qpos = self.model.joint("object").qposadr[0]

    def _assets_xml(self) -> str:
        return f'<material name="object" {self.object_material}/>'

    def _objects_xml(self) -> str:
        h = CUBE_HALF
        return f"""
    <body name="object" pos="0.4 0 {h}">
      <freejoint name="object"/>
      <geom name="object" type="box" size="{h} {h} {h}" material="object" mass="0.05"
            friction="1.2 0.02 0.001" condim="4"/>
    </body>"""

    def _reset_task(self, rng: np.random.Generator) -> None:
        xy = self._sample_xy(rng)
        yaw = rng.uniform(-np.pi / 4, np.pi / 4)  # a cube: all yaws up to a quarter turn
        qpos = self.data.qpos[self._object_qpos : self._object_qpos + 7]
        qpos[:3] = (*xy, CUBE_HALF)
        qpos[3:] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        if self.config.randomize:
            self._colour_object(rng)

    def _sample_xy(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.spawn_low, self.spawn_high)

    def _colour_object(self, rng: np.random.Generator) -> None:
        material = self.model.mat("object").id
        colour = BRIGHT_COLOURS[rng.integers(len(BRIGHT_COLOURS))] * rng.uniform(0.85, 1.1, 3)
        self.model.mat_rgba[material, :3] = np.clip(colour, 0, 1)

    # --- state the tasks and the demonstrators read -------------------------------------------
    def object_pos(self) -> np.ndarray:
        return self.data.xpos[self._object_body].copy()

    def object_offset(self) -> np.ndarray:
        """The cube's centre relative to the grasp point, in the base frame (metres)."""
        return (self.object_pos() - self.grasp_point()).astype(np.float32)

    def object_yaw(self) -> float:
        """Yaw of the cube folded into [-pi/4, pi/4) (a quarter turn maps the cube onto itself)."""
        rotation = self.data.xmat[self._object_body].reshape(3, 3)
        yaw = np.arctan2(rotation[1, 0], rotation[0, 0])
        return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)

    def grasped(self) -> bool:
        return all(self._touching(self._object_geom))

    def lift_height(self) -> float:
        return float(self.data.xpos[self._object_body][2] - CUBE_HALF)

    def _success(self) -> bool:
        return self.lift_height() >= LIFT and self.grasped()

    def _dense_reward(self, success: bool) -> float:
        """In [0, 1]: reach (gripper-to-cube distance), grasp, lift; 1 on success."""
        if success:
            return 1.0
        reach = 1.0 - np.tanh(10.0 * np.linalg.norm(self.grasp_point() - self.object_pos()))
        grasped = float(self.grasped())
        lift = float(np.clip(self.lift_height() / LIFT, 0.0, 1.0))
        return float(0.3 * reach + 0.2 * grasped + 0.4 * grasped * lift)

    def _privileged(self) -> dict[str, np.ndarray]:
        pose = self.data.qpos[self._object_qpos : self._object_qpos + 7]
        return {"object_pose": pose.astype(np.float32), "object_offset": self.object_offset()}


class FullyObsPickEnv(PickEnv):
    task_name = "fully-obs-pick"
    onboard_cameras = ("side",)


class CamouflagePickEnv(PickEnv):
    task_name = "camouflage-pick"
    onboard_cameras = ("side", "wrist")
    # The table's texture, tinted within a few percent of the table's colour (set per reset).
    object_material = 'texture="wood" texrepeat="0.3 0.3" texuniform="true" rgba="1 1 1 1"'

    def _reset_task(self, rng: np.random.Generator) -> None:
        super()._reset_task(rng)
        table = self.model.mat_rgba[self.model.mat("table").id, :3]
        tint = table * rng.uniform(0.94, 1.06, 3) if self.config.randomize else table * 0.96
        self.model.mat_rgba[self.model.mat("object").id, :3] = np.clip(tint, 0, 1)

    def _colour_object(self, rng: np.random.Generator) -> None:
        """Camouflage: the colour follows the table's (in `_reset_task`)."""


class SearchPickEnv(PickEnv):
    """The paper's "AP Koch": find the cube with the wrist camera, then pick it."""

    task_name = "search-pick"
    onboard_cameras = ("wrist",)
    privileged_vectors: ClassVar[dict[str, int]] = {"object_pos": 3, "object_in_view": 1, "object_offset": 3}
    side_offset: ClassVar[tuple[float, float]] = (0.2, 0.28)  # |y| of the cube: outside the home view
    spawn_low = np.array([0.30, 0.0])
    spawn_high = np.array([0.42, 0.0])

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wrist_camera = self.model.camera("wrist").id

    def _sample_xy(self, rng: np.random.Generator) -> np.ndarray:
        side = 1.0 if rng.random() < 0.5 else -1.0
        return np.array(
            [rng.uniform(self.spawn_low[0], self.spawn_high[0]), side * rng.uniform(*self.side_offset)]
        )

    def object_in_view(self) -> bool:
        """The cube's centre projects into the wrist image and a ray reaches the cube."""
        centre = self.object_pos()[None]
        pixels, depth = project(self.model, self.data, self._wrist_camera, centre, self.config.image_size)
        inside = depth[0] > 0 and np.all((pixels[0] >= 0) & (pixels[0] <= self.config.image_size))
        return bool(
            inside
            and visible_fraction(self.model, self.data, self._wrist_camera, centre, self._object_body)[0]
        )

    def _privileged(self) -> dict[str, np.ndarray]:
        return {
            "object_pos": self.object_pos().astype(np.float32),
            "object_in_view": np.array([float(self.object_in_view())], dtype=np.float32),
            "object_offset": self.object_offset(),
        }


class BlindPickEnv(PickEnv):
    """No camera: a noisy cube position at the first step (zeros afterwards, with a validity flag)."""

    task_name = "blind-pick"
    onboard_vectors: ClassVar[dict[str, int]] = {**PickEnv.onboard_vectors, "object_hint": 4}
    privileged_vectors: ClassVar[dict[str, int]] = {"object_pos": 3, "object_offset": 3}
    default_reward = "dense"

    def _reset_task(self, rng: np.random.Generator) -> None:
        super()._reset_task(rng)
        mujoco.mj_kinematics(self.model, self.data)
        noise = rng.normal(0.0, self.config.hint_noise, 3)
        self._hint = np.append(self.data.qpos[self._object_qpos : self._object_qpos + 3] + noise, 1.0)

    def _onboard_extra(self) -> dict[str, np.ndarray]:
        hint = self._hint if self.steps == 0 else np.zeros(4)
        return {"object_hint": hint.astype(np.float32)}

    def _privileged(self) -> dict[str, np.ndarray]:
        return {"object_pos": self.object_pos().astype(np.float32), "object_offset": self.object_offset()}
