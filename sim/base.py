"""What every arm task shares: the MuJoCo model, action checking and IK, rendering, randomisation.

A task subclass says which cameras and vectors it shows onboard, what is privileged, how objects are
placed, and when it succeeds; this class turns that into a gymnasium env with the nested Dict
observation {"onboard": {...}, "privileged": {...}}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from sim.actions import checked_action
from sim.config import RewardType, TaskConfig
from sim.scene import ARM_JOINTS, FINGER_JOINTS, FINGER_OPEN, ik, scene_xml

EE_STEP = 0.04  # metres per control step at full action
ANGLE_STEP = 0.25  # radians per control step at full action (yaw or pitch)
JOINT_STEP = 0.15  # radians per control step at full action, joint mode
SETTLE_STEPS = 25  # physics steps after placing objects, so they rest on the table before step 0


def random_small_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A unit quaternion turning by at most `max_deg` about a random axis."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(0.0, max_deg))
    return np.array([np.cos(angle / 2), *(np.sin(angle / 2) * axis)])


@dataclass
class EETarget:
    """The commanded end-effector: grasp point position (base frame, metres), yaw and pitch."""

    pos: np.ndarray
    yaw: float
    pitch: float


def step_ee_target(
    target: EETarget,
    action: np.ndarray,
    axes: tuple[str, ...],
    workspace: tuple[np.ndarray, np.ndarray],
    yaw_range: tuple[float, float],
    pitch_range: tuple[float, float],
) -> EETarget:
    """The target after one end-effector action (the arm part of `action`, in [-1, 1], one value
    per axis): EE_STEP metres or ANGLE_STEP radians at full action, clipped to the workspace and the
    angle ranges. The sim's envs and the robot interface's joint-target path both integrate with it."""
    pos, yaw, pitch = np.array(target.pos, dtype=np.float64), target.yaw, target.pitch
    for axis, value in zip(axes, action, strict=False):
        if axis == "yaw":
            yaw = float(np.clip(yaw + ANGLE_STEP * value, *yaw_range))
        elif axis == "pitch":
            pitch = float(np.clip(pitch + ANGLE_STEP * value, *pitch_range))
        else:
            pos["xyz".index(axis)] += EE_STEP * value
    return EETarget(np.clip(pos, *workspace), yaw, pitch)


class ArmEnv(gym.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}
    task_name: ClassVar[str] = ""
    robot_name: ClassVar[str] = "sim-arm"
    onboard_cameras: ClassVar[tuple[str, ...]] = ()
    onboard_vectors: ClassVar[dict[str, int]] = {"joints": len(ARM_JOINTS) + 1}
    privileged_vectors: ClassVar[dict[str, int]] = {}
    default_reward: ClassVar[RewardType] = "sparse"
    ee_axes: ClassVar[tuple[str, ...]] = ("x", "y", "z", "yaw")  # the end-effector part of the action
    has_gripper: ClassVar[bool] = True
    home_pos: ClassVar[np.ndarray] = np.array([0.36, 0.0, 0.28])
    home_pitch: ClassVar[float] = -np.pi / 2  # straight down
    workspace: ClassVar[tuple[np.ndarray, np.ndarray]] = (
        np.array([0.2, -0.35, 0.015]),
        np.array([0.5, 0.35, 0.35]),
    )
    pitch_range: ClassVar[tuple[float, float]] = (-np.pi / 2, 0.0)
    yaw_range: ClassVar[tuple[float, float]] = (-np.pi / 2, np.pi / 2)

    def __init__(self, config: TaskConfig | None = None, render_mode: str | None = "rgb_array") -> None:
        self.config = config or TaskConfig()
        self.render_mode = render_mode
        self.reward_type: RewardType = self.config.reward or self.default_reward
        self.control_hz = float(self.config.control_hz)
        self.max_episode_steps = int(self.config.max_episode_steps)
        self.model = mujoco.MjModel.from_xml_string(scene_xml(self._objects_xml(), self._assets_xml()))
        # Shadows and multisampling off: ~2.5x faster offscreen rendering on a CPU (llvmpipe).
        self.model.light_castshadow[:] = 0
        self.model.vis.quality.offsamples = 0
        self.model.cam_fovy[self.model.camera("wrist").id] = self.config.camera_fovy
        self.data = mujoco.MjData(self.model)
        self._substeps = max(1, round(1.0 / (self.control_hz * self.model.opt.timestep)))
        self._arm_qpos = np.array([self.model.joint(n).qposadr[0] for n in ARM_JOINTS])
        self._finger_qpos = np.array([self.model.joint(n).qposadr[0] for n in FINGER_JOINTS])
        self._joint_low = self.model.jnt_range[[self.model.joint(n).id for n in ARM_JOINTS], 0]
        self._joint_high = self.model.jnt_range[[self.model.joint(n).id for n in ARM_JOINTS], 1]
        self._grasp_site = self.model.site("grasp").id
        self._finger_geoms = (self.model.geom("finger_left").id, self.model.geom("finger_right").id)
        base = self.model.body("base").id
        self._robot_bodies = np.flatnonzero(self.model.body_rootid == self.model.body_rootid[base])
        self._nominal = {
            name: getattr(self.model, name).copy()
            for name in ("cam_pos", "cam_quat", "light_dir", "light_diffuse", "mat_rgba", "geom_rgba")
        }
        self._renderers: dict[int, mujoco.Renderer] = {}
        self._started = False

        size = self.config.image_size
        onboard: dict[str, gym.Space] = {
            cam: gym.spaces.Box(0, 255, (size, size, 3), np.uint8) for cam in self.onboard_cameras
        }
        onboard |= {
            k: gym.spaces.Box(-np.inf, np.inf, (n,), np.float32) for k, n in self.onboard_vectors.items()
        }
        privileged = {
            k: gym.spaces.Box(-np.inf, np.inf, (n,), np.float32) for k, n in self.privileged_vectors.items()
        }
        self.observation_space = gym.spaces.Dict(
            {"onboard": gym.spaces.Dict(onboard), "privileged": gym.spaces.Dict(privileged)}
        )
        arm_dim = len(self.ee_axes) if self.config.action_mode == "ee" else len(ARM_JOINTS)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (arm_dim + int(self.has_gripper),), np.float32)

    # --- what a task defines ------------------------------------------------------------------
    def _objects_xml(self) -> str:
        raise NotImplementedError

    def _assets_xml(self) -> str:
        return ""

    def _reset_task(self, rng: np.random.Generator) -> None:
        """Place the objects (qpos) and pick their colours; the arm is already at home."""
        raise NotImplementedError

    def _success(self) -> bool:
        raise NotImplementedError

    def _dense_reward(self, success: bool) -> float:
        raise NotImplementedError

    def _privileged(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _onboard_extra(self) -> dict[str, np.ndarray]:
        return {}

    # --- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        rng = self.np_random
        mujoco.mj_resetData(self.model, self.data)
        for name, value in self._nominal.items():
            getattr(self.model, name)[:] = value
        if self.config.randomize:
            self._randomize_appearance(rng)
        self.ee_pos = self.home_pos.copy()
        self.ee_yaw = 0.0
        self.ee_pitch = float(self.home_pitch)
        self._joint_target = self._ik()
        self.data.qpos[self._arm_qpos] = self._joint_target
        self.data.qpos[self._finger_qpos] = FINGER_OPEN
        self.data.ctrl[: len(ARM_JOINTS)] = self._joint_target
        if self.has_gripper:
            self.data.ctrl[-1] = FINGER_OPEN
        self._reset_task(rng)
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_step(self.model, self.data, nstep=SETTLE_STEPS)
        self.steps = 0
        self._started = True
        return self._observation(), {"success": False}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        if not self._started:
            raise RuntimeError(f"{self.task_name}: call reset() before step()")
        self._apply_action(checked_action(self.task_name, action, self.action_space))
        return self._advance()

    def _advance(self) -> tuple[dict, float, bool, bool, dict]:
        """Physics for one control step with the controls set, then the step's outcome."""
        mujoco.mj_step(self.model, self.data, nstep=self._substeps)
        self.steps += 1
        observation = self._observation()
        success, reward = self._outcome(observation["privileged"])
        terminated = success and self.config.terminate_on_success
        truncated = not terminated and self.steps >= self.max_episode_steps
        return observation, float(reward), terminated, truncated, {"success": success}

    def _outcome(self, privileged: dict[str, np.ndarray]) -> tuple[bool, float]:
        """(success, reward) of the step just taken. Tasks whose outcome is a function of their
        privileged observation compute it from `privileged` (sim.rewards), so that a recorder can too."""
        success = bool(self._success())
        return success, self._dense_reward(success) if self.reward_type == "dense" else float(success)

    def render(self) -> np.ndarray:
        return self.render_camera("side", self.config.image_size)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # --- shared machinery ---------------------------------------------------------------------
    def _ik(self) -> np.ndarray:
        top_down = self.ee_pitch <= -np.pi / 2 + 1e-6
        return ik(self.ee_pos, self.ee_pitch, self.ee_yaw if top_down else None).qpos

    def _apply_action(self, action: np.ndarray) -> None:
        if self.config.action_mode == "ee":
            target = step_ee_target(
                EETarget(self.ee_pos, self.ee_yaw, self.ee_pitch), action, self.ee_axes,
                self.workspace, self.yaw_range, self.pitch_range,
            )  # fmt: skip
            self.ee_pos, self.ee_yaw, self.ee_pitch = target.pos, target.yaw, target.pitch
            self._joint_target = self._ik()
        else:
            step = JOINT_STEP * action[: len(ARM_JOINTS)]
            self._joint_target = np.clip(self._joint_target + step, self._joint_low, self._joint_high)
        self.data.ctrl[: len(ARM_JOINTS)] = self._joint_target
        if self.has_gripper:  # absolute: -1 fully open, +1 fully closed
            self.data.ctrl[-1] = (1.0 - action[-1]) / 2 * FINGER_OPEN

    def step_joint_targets(self, joints: Any, grip: float = -1.0) -> tuple[dict, float, bool, bool, dict]:
        """One control step towards absolute arm joint targets (radians, clipped to the joint limits)
        and a gripper command in [-1, 1] (-1 open): what a robot's position controllers receive. The
        end-effector target of `step` is left alone."""
        if not self._started:
            raise RuntimeError(f"{self.task_name}: call reset() before step_joint_targets()")
        targets = np.asarray(joints, dtype=np.float64)
        if targets.shape != (len(ARM_JOINTS),) or not np.all(np.isfinite(targets)):
            raise ValueError(
                f"{self.task_name}: joint targets must be {len(ARM_JOINTS)} finite angles, got {joints}"
            )
        if not np.isfinite(grip):
            raise ValueError(f"{self.task_name}: gripper command is not finite: {grip}")
        self._joint_target = np.clip(targets, self._joint_low, self._joint_high)
        self.data.ctrl[: len(ARM_JOINTS)] = self._joint_target
        if self.has_gripper:
            self.data.ctrl[-1] = (1.0 - float(np.clip(grip, -1.0, 1.0))) / 2 * FINGER_OPEN
        return self._advance()

    def _observation(self) -> dict[str, dict[str, np.ndarray]]:
        onboard = {cam: self.render_camera(cam, self.config.image_size) for cam in self.onboard_cameras}
        onboard["joints"] = self.joints()
        onboard |= self._onboard_extra()
        return {"onboard": onboard, "privileged": self._privileged()}

    def joints(self) -> np.ndarray:
        """Arm joint angles and the gripper opening (0 closed .. 1 open)."""
        opening = self.data.qpos[self._finger_qpos].mean() / FINGER_OPEN
        return np.append(self.data.qpos[self._arm_qpos], opening).astype(np.float32)

    def grasp_point(self) -> np.ndarray:
        return self.data.site_xpos[self._grasp_site].copy()

    def render_camera(self, camera: str, size: int) -> np.ndarray:
        renderer = self._renderers.get(size)
        if renderer is None:
            renderer = self._renderers[size] = mujoco.Renderer(self.model, size, size)
        renderer.update_scene(self.data, camera=camera)
        return renderer.render()

    def _touching(self, geom: int) -> tuple[bool, bool]:
        """Whether the left and the right finger touch `geom`."""
        contacts = self.data.contact
        pairs = np.stack([contacts.geom1, contacts.geom2], axis=1)[: self.data.ncon]
        hits = pairs[(pairs == geom).any(axis=1)].ravel()
        return bool(np.isin(self._finger_geoms[0], hits)), bool(np.isin(self._finger_geoms[1], hits))

    def self_contacts(self) -> int:
        """Contacts between two of the robot's own geoms: always 0 (its links never touch each other)."""
        contacts = self.data.contact
        bodies = self.model.geom_bodyid[np.stack([contacts.geom1, contacts.geom2])[:, : self.data.ncon]]
        return int(np.count_nonzero(np.all(np.isin(bodies, self._robot_bodies), axis=0)))

    def _randomize_appearance(self, rng: np.random.Generator) -> None:
        """Lighting, table colour and camera pose jitter (tasks add their objects' colours)."""
        model = self.model
        model.light_diffuse[:] *= rng.uniform(0.7, 1.3)
        direction = model.light_dir + rng.normal(0.0, 0.15, model.light_dir.shape)
        model.light_dir[:] = direction / np.linalg.norm(direction, axis=1, keepdims=True)
        table = model.mat("table").id
        model.mat_rgba[table, :3] = np.clip(model.mat_rgba[table, :3] * rng.uniform(0.85, 1.15, 3), 0, 1)
        for cam in range(model.ncam):
            model.cam_pos[cam] += rng.uniform(-1, 1, 3) * self.config.camera_jitter_pos
            turned = np.zeros(4)
            mujoco.mju_mulQuat(
                turned, model.cam_quat[cam], random_small_rotation(rng, self.config.camera_jitter_deg)
            )
            model.cam_quat[cam] = turned
