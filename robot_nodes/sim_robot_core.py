"""The sim robot's core: a `sim/` task behind the commands a real arm receives. No rclpy.

Commands come as the robot interface sends them (a Servo twist, joint targets, a gripper position)
or, for tasks without an arm (tmaze), as the policy's raw action. A twist becomes the task's own
end-effector action (velocity x dt / step, rounded to float32, the policy's precision, so it is the
action the policy sent, bit for bit) and goes through the env's own IK; joint targets go through
`ArmEnv.step_joint_targets`.

Lockstep: each observation waits for the commands stamped with its stamp (the robot interface
stamps a command with the observation its action was computed from), then the sim steps once; a
command with another stamp (a hold, a late action) is ignored. Time is the sim's own: each step
advances it by one control period, observations are stamped with it and the node publishes it on
/clock, so every node of a lockstep graph (run with use_sim_time) measures frame ages and its
watchdog in sim time, and a loaded machine slows the graph down without making anything stale.
Each lockstep episode owns the stamps of its step limit (`until_ns`, announced in its start event)
and the next one starts after them, so a frame's stamp alone tells which episode it is from.
Wall clock: the node steps at the control rate with the latest commands, stamped with ROS time;
the sim has no command timeout of its own, so a stale command keeps acting until the robot
interface holds the arm (which is what its watchdog is for).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

import sim
from sim.base import ANGLE_STEP, EE_STEP, ArmEnv
from sim.config import TaskConfig
from sim.scene import ARM_JOINTS, FINGER_JOINTS, FINGER_OPEN

NS = 1_000_000_000

CommandInput = Literal["twist", "joint_trajectory", "joint_positions", "action"]


@dataclass
class SimRobotConfig:
    READ_ONLY: ClassVar[tuple[str, ...]] = ("task", "env", "lockstep", "command_input", "extra_cameras")

    task: str = "search-pick"  # one of sim.TASK_NAMES
    env: TaskConfig = field(default_factory=TaskConfig)
    lockstep: bool = True  # one sim step per command (tests, parity); false: the wall clock at control_hz
    command_input: CommandInput = "twist"  # what the sim obeys: the robot interface's output, or raw actions
    seeds: list[int] = field(default_factory=lambda: [0])  # seeds of the first episodes, then +1 each
    autostart: bool = True  # start the first episode by itself (lockstep: once connected); false: on ~/reset
    auto_reset: bool = True  # start the next episode when one ends; false: wait for the reset service
    next_seed: int = -1  # seed for the next reset service call (then back to -1); -1: the sequence
    max_episodes: int = 0  # auto_reset stops after this many episodes (0: never)
    # lockstep: nodes that must read every onboard topic before the first episode starts (the graphs
    # name their policies and recorder: a policy that misses the first observation never acts, and
    # the loop stalls; an episode the recorder misses never reaches the learner)
    wait_for_readers: list[str] = field(default_factory=list)
    # lockstep: an observation that no command answered within this many seconds of the steady clock
    # is sent again, same stamp (a reader that missed it acts then: the loop never stalls on one lost
    # message; those that had it take it as a duplicate); 0: never
    resend_after: float = 2.0
    extra_cameras: list[str] = field(default_factory=list)  # cameras to publish besides the onboard ones
    base_frame: str = "base"  # frame of joint_states, twists and camera parents

    def __post_init__(self) -> None:
        if self.task not in sim.TASK_NAMES:
            raise ValueError(f"unknown task {self.task!r}; known tasks: {', '.join(sim.TASK_NAMES)}")
        if not self.seeds:
            raise ValueError("seeds must hold at least one seed")
        if self.max_episodes < 0:
            raise ValueError(f"max_episodes must be >= 0, got {self.max_episodes}")
        if not self.resend_after >= 0:  # (NaN too)
            raise ValueError(f"resend_after must be >= 0 seconds, got {self.resend_after}")
        if self.lockstep and self.command_input == "joint_positions":
            raise ValueError(
                "lockstep matches commands to observations by stamp, and joint_positions "
                "(Float64MultiArray) has none: use command_input joint_trajectory or twist"
            )


@dataclass
class Observation:
    stamp_ns: int
    images: dict[str, np.ndarray]  # camera -> HxWx3 uint8
    joint_names: list[str]
    joint_positions: np.ndarray
    joint_velocities: np.ndarray  # mean over the last control step (zero at a reset)
    onboard_vectors: dict[str, np.ndarray]  # onboard vectors other than joints
    privileged: dict[str, np.ndarray]
    reward: float = 0.0  # the sim's reward for the step that led here (0 at a reset)
    success: bool = False


@dataclass
class StepResult:
    observation: Observation
    done: bool
    success: bool
    truncated: bool


class SimRobotCore:
    def __init__(self, config: SimRobotConfig) -> None:
        self.config = config
        self.env = sim.make(config.task, config.env)
        self.arm = isinstance(self.env, ArmEnv)
        spaces = self.env.observation_space["onboard"].spaces
        self.onboard_cameras = [k for k, s in spaces.items() if len(s.shape) == 3]
        self.cameras = self.onboard_cameras + list(config.extra_cameras)
        self.has_gripper = self.arm and self.env.has_gripper
        # onboard vectors besides the joints (blind-pick's object_hint, tmaze's sensors)
        self.vector_keys = [k for k, s in spaces.items() if len(s.shape) == 1 and k != "joints"]
        if not self.arm and config.command_input != "action":
            raise ValueError(f"task {config.task!r} has no arm: set command_input to action")
        if self.arm:
            known = {self.env.model.camera(i).name for i in range(self.env.model.ncam)}
            unknown = sorted(set(config.extra_cameras) - known)
            if unknown:
                raise ValueError(f"extra_cameras {unknown} are not cameras of {config.task}: {sorted(known)}")
        self.dt = 1.0 / self.env.control_hz
        self.dt_ns = round(NS / self.env.control_hz)
        self.clock_ns = 0  # the stamp of the latest observation: the sim's time in lockstep
        self.until_ns = 0  # lockstep: the last stamp the episode may reach (its step limit)
        self.episode = -1
        self.seed = config.seeds[0] - 1
        self.steps = 0
        self.done = True
        self.pending_ns: int | None = None  # stamp of the observation that awaits its command
        self.arm_command: tuple[int, np.ndarray] | None = None  # (stamp, twist [6] or joints [5] or action)
        self.gripper_command: tuple[int, float] | None = None  # (stamp, finger position)
        self._previous_joints: np.ndarray | None = None

    # --- episodes -----------------------------------------------------------------------------
    def next_seed(self, requested: int = -1) -> int:
        if requested >= 0:
            return requested
        episode = self.episode + 1
        return self.config.seeds[episode] if episode < len(self.config.seeds) else self.seed + 1

    def sim_stamp(self, new_episode: bool = False) -> int:
        """Lockstep: the stamp of the next observation, one control period after the latest; a new
        episode's first also comes after every stamp the previous episode could have reached."""
        stamp = self.clock_ns + self.dt_ns
        return max(stamp, self.until_ns + self.dt_ns) if new_episode else stamp

    def reset(self, seed: int, stamp_ns: int) -> Observation:
        obs, _ = self.env.reset(seed=seed)
        self.episode += 1
        self.seed, self.steps, self.done = seed, 0, False
        self.until_ns = stamp_ns + self.env.max_episode_steps * self.dt_ns if self.config.lockstep else 0
        self.arm_command, self.gripper_command = None, None
        self._previous_joints = None
        return self._observation(obs, stamp_ns)

    # --- commands -----------------------------------------------------------------------------
    def on_arm_command(self, stamp_ns: int, values: np.ndarray) -> None:
        self.arm_command = (stamp_ns, np.asarray(values, dtype=np.float64))

    def on_gripper_command(self, stamp_ns: int, position: float) -> None:
        self.gripper_command = (stamp_ns, float(position))

    def lockstep_ready(self) -> bool:
        """Every command this step needs carries the stamp of the observation awaiting it."""
        if self.done or self.pending_ns is None or self.arm_command is None:
            return False
        if self.arm_command[0] != self.pending_ns:
            return False
        needs_gripper = self.has_gripper and self.config.command_input != "action"
        return not needs_gripper or (
            self.gripper_command is not None and self.gripper_command[0] == self.pending_ns
        )

    def step(self, stamp_ns: int) -> StepResult:
        """One control step with the latest commands (a missing one holds: zero twist, same joints)."""
        if self.done:
            raise RuntimeError("the episode is over: reset first")
        grip = self._grip()
        values = None if self.arm_command is None else self.arm_command[1]
        mode = self.config.command_input
        if mode == "action":
            action = values if values is not None else np.zeros(self.env.action_space.shape)
            obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        elif mode == "twist":
            obs, reward, terminated, truncated, info = self.env.step(self._twist_action(values, grip))
        else:
            joints = values if values is not None else self.env._joint_target
            obs, reward, terminated, truncated, info = self.env.step_joint_targets(joints, grip)
        self.steps += 1
        self.done = bool(terminated or truncated)
        observation = self._observation(obs, stamp_ns)
        observation.reward, observation.success = float(reward), bool(info["success"])
        return StepResult(observation, self.done, observation.success, bool(truncated))

    def _grip(self) -> float:
        """The gripper command as the env's action value: -1 open .. +1 closed (open until told)."""
        if not self.has_gripper or self.gripper_command is None:
            return -1.0
        return 1.0 - 2.0 * self.gripper_command[1] / FINGER_OPEN

    def _twist_action(self, twist: np.ndarray | None, grip: float) -> np.ndarray:
        twist = np.zeros(6) if twist is None else twist
        arm = []
        for axis in self.env.ee_axes:
            if axis in "xyz":
                arm.append(twist["xyz".index(axis)] * self.dt / EE_STEP)
            elif axis == "yaw":
                arm.append(twist[5] * self.dt / ANGLE_STEP)
            else:  # pitch: about the arm's horizontal axis (see robot_interface_core)
                base = np.arctan2(self.env.ee_pos[1], self.env.ee_pos[0])
                arm.append(-(twist[3] * -np.sin(base) + twist[4] * np.cos(base)) * self.dt / ANGLE_STEP)
        if self.has_gripper:
            arm.append(grip)
        return np.asarray(arm, dtype=np.float32)  # the policy's float32 action, recovered exactly

    # --- observations -------------------------------------------------------------------------
    def joint_names(self) -> list[str]:
        return [*ARM_JOINTS, *FINGER_JOINTS] if self.arm else []

    def _observation(self, obs: dict, stamp_ns: int) -> Observation:
        onboard = obs["onboard"]
        images = {cam: onboard[cam] for cam in self.cameras if cam in onboard}
        for cam in self.config.extra_cameras:
            images[cam] = self.env.render_camera(cam, self.config.env.image_size)
        if self.arm:
            qpos = self.env.data.qpos
            positions = np.concatenate([qpos[self.env._arm_qpos], qpos[self.env._finger_qpos]]).astype(
                np.float64
            )
        else:
            positions = np.zeros(0)
        previous = self._previous_joints
        velocities = np.zeros_like(positions) if previous is None else (positions - previous) / self.dt
        self._previous_joints = positions.copy()
        vectors = {k: v for k, v in onboard.items() if k not in images and k != "joints"}
        self.pending_ns = self.clock_ns = stamp_ns
        return Observation(
            stamp_ns, images, self.joint_names(), positions, velocities, vectors, obs["privileged"]
        )

    def close(self) -> None:
        self.env.close()
