"""The robot interface's core: the only place where a policy action becomes an arm command, and
where safety lives. No rclpy: the node (`robot_interface_node.py`) only moves messages.

An action is [arm part (one value per end-effector axis), gripper] in [-1, 1], one control step
of 1/control_hz seconds, as the sim defines it (EE_STEP metres or ANGLE_STEP radians at full
action). It becomes one of:

    twist             a velocity for MoveIt Servo (base frame): delta x step x control_hz
    joint_trajectory  joint targets by IK (pinocchio, on the URDF) towards the integrated
    joint_positions   end-effector target, as a JointTrajectory or a forward position controller's array

plus a gripper position. Safety, in this order: an action that is not finite, has the wrong size
or leaves [-1, 1] is refused (never clipped into something the policy did not mean); so is one
older than `watchdog_timeout` or not newer than the last one; the e-stop refuses everything; speeds
are capped (linear norm, angular per axis, joint slew); the end-effector may not be sent out of
the workspace box; joint targets stay inside the URDF's limits. When no fresh action has arrived
for `watchdog_timeout` (or the e-stop is on) the arm is held: a zero twist, or the joints where
they were measured when the hold began. Times are ROS time: wall clock on a robot, the sim's time
(/clock, `use_sim_time`) in a lockstep sim graph, where the graph waits on a slow node instead of
finding its messages stale.

A command carries the stamp of the observation its action was computed from; a hold carries stamp
0, which no observation has: controllers read a zero stamp as "now" (JointTrajectory) or as no
command time (Servo), and a lockstep sim, which steps on the command stamped with the observation
it waits on, never takes a hold for the policy's answer.

Actions, joint states and episode events come on different topics, in any order. An action waits
(the newest one only) until a joint state stamped at or after it has come, so limits, the box and
IK never start from a pose older than the observation the policy saw. The joint-target path
re-reads its end-effector target from that pose whenever an action is from a newer episode than
the target: one whose start event has come, or past the horizon (`until_ns`) the target's episode
announced, so a new episode's first action never integrates on the previous episode's target.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from robot_nodes.kinematics import SIM_ARM_URDF, ArmKinematics, ee_rotation, ee_target_from_pose
from robot_nodes.messages import stale_reason
from sim.base import ANGLE_STEP, EE_STEP, EETarget, step_ee_target
from sim.scene import ARM_JOINTS, FINGER_OPEN

Output = Literal["twist", "joint_trajectory", "joint_positions"]
EE_AXES = ("x", "y", "z", "yaw", "pitch")


@dataclass
class Box:
    low: list[float] = field(default_factory=lambda: [0.15, -0.4, -0.035])  # metres, base frame
    high: list[float] = field(default_factory=lambda: [0.55, 0.4, 0.4])  # metres, base frame

    def __post_init__(self) -> None:
        if (
            len(self.low) != 3
            or len(self.high) != 3
            or not all(lo < hi for lo, hi in zip(self.low, self.high, strict=True))
        ):
            raise ValueError(f"a box needs 3 lows below 3 highs, got {self.low} and {self.high}")


@dataclass
class EETargetLimits:
    """How the joint-target path integrates actions (the sim's ArmEnv does the same)."""

    # the end-effector target is clipped to this box (the task's workspace: sim ArmEnv.workspace)
    workspace: Box = field(default_factory=lambda: Box([0.2, -0.35, 0.015], [0.5, 0.35, 0.35]))
    yaw_range: list[float] = field(default_factory=lambda: [-np.pi / 2, np.pi / 2])  # radians
    pitch_range: list[float] = field(default_factory=lambda: [-np.pi / 2, 0.0])  # radians, -pi/2: down


@dataclass
class RobotInterfaceConfig:
    READ_ONLY: ClassVar[tuple[str, ...]] = (
        "output", "control_hz", "ee_axes", "has_gripper", "urdf", "arm_joints", "gripper_joint", "ee_frame",
    )  # fmt: skip

    output: Output = "twist"  # twist (MoveIt Servo), joint_trajectory or joint_positions (IK by pinocchio)
    control_hz: float = 10.0  # the policy's control rate: one action is a step of 1/control_hz seconds
    ee_axes: list[str] = field(default_factory=lambda: ["x", "y", "z", "yaw"])  # the action's arm part
    has_gripper: bool = True  # the action's last value commands the gripper (-1 open, +1 closed)
    ee_step: float = EE_STEP  # metres per step at full action (the sim's EE_STEP)
    angle_step: float = ANGLE_STEP  # radians per step at full action (the sim's ANGLE_STEP)
    watchdog_timeout: float = 0.2  # seconds without a fresh action before the arm is held
    max_linear_speed: float = 0.7  # m/s, norm of the commanded end-effector velocity
    max_angular_speed: float = 2.5  # rad/s, per axis
    max_joint_speed: float = 0.0  # rad/s per joint for joint targets; 0: the URDF's velocity limits
    workspace: Box = field(default_factory=Box)  # the end-effector may not be sent outside (safety)
    ee_target: EETargetLimits = field(default_factory=EETargetLimits)
    urdf: str = ""  # the robot's URDF; empty: the sim arm's (robot_nodes/config/sim_arm.urdf)
    arm_joints: list[str] = field(default_factory=lambda: list(ARM_JOINTS))  # in joint_states and commands
    gripper_joint: str = "finger_left"  # the joint the gripper command moves
    gripper_open: float = FINGER_OPEN  # gripper joint position when fully open (closed: 0)
    ee_frame: str = "grasp"  # the URDF frame the actions move

    def __post_init__(self) -> None:
        unknown = sorted(set(self.ee_axes) - set(EE_AXES))
        if unknown or not self.ee_axes or len(set(self.ee_axes)) < len(self.ee_axes):
            raise ValueError(f"ee_axes must be distinct names from {list(EE_AXES)}, got {self.ee_axes}")
        if not 1.0 <= self.control_hz <= 1000.0:
            raise ValueError(f"control_hz must lie in [1, 1000], got {self.control_hz}")
        if not 0.0 < self.watchdog_timeout <= 5.0:
            raise ValueError(f"watchdog_timeout must lie in (0, 5] seconds, got {self.watchdog_timeout}")
        if min(self.ee_step, self.angle_step, self.max_linear_speed, self.max_angular_speed) <= 0:
            raise ValueError("ee_step, angle_step, max_linear_speed and max_angular_speed must be > 0")
        if self.max_joint_speed < 0 or self.gripper_open <= 0:
            raise ValueError("max_joint_speed must be >= 0 and gripper_open > 0")

    @property
    def action_dim(self) -> int:
        return len(self.ee_axes) + int(self.has_gripper)


@dataclass
class Command:
    """What the node publishes for one accepted action or one hold."""

    stamp_ns: int  # the stamp of the action's observation; 0 for a hold
    hold: bool
    linear: np.ndarray | None = None  # m/s, base frame (twist output)
    angular: np.ndarray | None = None  # rad/s, base frame (twist output)
    joints: np.ndarray | None = None  # radians, in arm_joints order (joint outputs)
    gripper: float | None = None  # gripper joint position; None: leave the gripper as it is


class Refused(ValueError):
    """An action that was not forwarded; the text is the log line."""


class RobotInterfaceCore:
    def __init__(self, config: RobotInterfaceConfig) -> None:
        self.config = config
        self.kinematics = ArmKinematics(
            Path(config.urdf) if config.urdf else SIM_ARM_URDF, config.arm_joints, config.ee_frame
        )
        self.dt = 1.0 / config.control_hz
        self.joint_speed = (
            np.full(len(config.arm_joints), config.max_joint_speed)
            if config.max_joint_speed > 0
            else self.kinematics.velocity
        )
        self.measured: np.ndarray | None = None  # arm joints from joint_states
        self.measured_ns: int | None = None  # their stamp
        self.waiting: tuple[np.ndarray, int] | None = None  # an action waiting for joint states
        self.last_stamp: int | None = None  # of the last accepted action
        self.estop = False
        self.holding = True  # nothing is commanded before the first fresh action
        self.hold_joints: np.ndarray | None = None
        self.target: EETarget | None = None  # integrated end-effector target (joint outputs)
        self.target_from_ns = 0  # stamp of the action the target was (re-)read at
        self.commanded: np.ndarray | None = None  # last joint targets sent
        self.episodes: deque[tuple[int, int]] = deque(maxlen=8)  # (start, until) of recent episodes

    # --- inputs -------------------------------------------------------------------------------
    def on_joint_states(self, positions: np.ndarray, stamp_ns: int, now_ns: int) -> Command | None:
        """The measured arm; the command of an action that waited for it, if one did (or Refused)."""
        self.measured = np.asarray(positions, dtype=np.float64)
        self.measured_ns = stamp_ns
        if self.waiting is None or stamp_ns < self.waiting[1]:
            return None
        action, stamp = self.waiting
        self.waiting = None
        return self.on_action(action, stamp, now_ns)

    def on_estop(self, engaged: bool) -> Command | None:
        """The e-stop: engaging it holds at once; releasing it waits for a fresh action."""
        was = self.estop
        self.estop = bool(engaged)
        return self._enter_hold() if engaged and not was else None

    def on_episode_start(self, start_ns: int, until_ns: int = 0) -> None:
        """The arm may have been moved (reset): joint targets restart from the measured pose there."""
        if (start_ns, until_ns) not in self.episodes:
            self.episodes.append((start_ns, until_ns))

    def on_action(self, action: np.ndarray, stamp_ns: int, now_ns: int) -> Command | None:
        """The command for one policy action; None while it waits for joint states at least as new
        (`on_joint_states` then returns it); Refused: nothing is sent, the hold stays or comes."""
        cfg = self.config
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if self.estop:
            raise Refused("e-stop engaged: action refused (publish false on estop to release)")
        if action.size != cfg.action_dim:
            raise Refused(
                f"action has {action.size} values, expected {cfg.action_dim} "
                f"({[*cfg.ee_axes, 'grip'][: cfg.action_dim]})"
            )
        if not np.all(np.isfinite(action)):
            raise Refused(f"action holds NaN or inf, refused: {action.tolist()}")
        if np.any(np.abs(action) > 1.0 + 1e-6):
            raise Refused(f"action outside [-1, 1], refused: {action.tolist()}")
        stale = stale_reason("action", stamp_ns, now_ns, cfg.watchdog_timeout)
        if stale:
            raise Refused(stale)
        if self.last_stamp is not None and stamp_ns <= self.last_stamp:
            raise Refused(f"out-of-order action: stamp {stamp_ns} is not newer than {self.last_stamp}")
        if self.measured_ns is None or self.measured_ns < stamp_ns:
            self.waiting = (action, stamp_ns)  # a newer action replaces one that waited
            return None
        arm, grip = action[: len(cfg.ee_axes)], (action[-1] if cfg.has_gripper else None)
        gripper = None if grip is None else float((1.0 - grip) / 2.0 * cfg.gripper_open)
        if cfg.output == "twist":
            linear, angular = self._twist(arm)
            command = Command(stamp_ns, False, linear=linear, angular=angular, gripper=gripper)
        else:
            command = Command(stamp_ns, False, joints=self._joint_targets(arm, stamp_ns), gripper=gripper)
        self.last_stamp = stamp_ns
        self.holding = False
        return command

    def check_watchdog(self, now_ns: int) -> Command | None:
        """A hold command when the last fresh action is too old (once, as the hold begins)."""
        if self.holding:
            return None
        if self.last_stamp is None or (now_ns - self.last_stamp) / 1e9 > self.config.watchdog_timeout:
            return self._enter_hold()
        return None

    def hold_command(self) -> Command:
        """The hold, repeated at the control rate while it lasts."""
        if self.config.output == "twist":
            return Command(0, True, linear=np.zeros(3), angular=np.zeros(3))
        return Command(0, True, joints=None if self.hold_joints is None else self.hold_joints.copy())

    # --- safety and conversion ------------------------------------------------------------------
    def _enter_hold(self) -> Command:
        self.holding = True
        self.hold_joints = None if self.measured is None else self.measured.copy()
        self.target, self.commanded = None, None  # re-read from the measured pose when actions resume
        return self.hold_command()

    def _twist(self, arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        linear, angular = np.zeros(3), np.zeros(3)
        position, _ = self.kinematics.fk(self.measured)
        for axis, value in zip(cfg.ee_axes, arm, strict=True):
            if axis in "xyz":
                linear["xyz".index(axis)] = value * cfg.ee_step / self.dt
            elif axis == "yaw":
                angular[2] = value * cfg.angle_step / self.dt
            else:  # pitch: about the arm's horizontal axis, positive raises the approach
                base = np.arctan2(position[1], position[0])
                angular += -value * cfg.angle_step / self.dt * np.array([-np.sin(base), np.cos(base), 0.0])
        speed = float(np.linalg.norm(linear))
        if speed > cfg.max_linear_speed:
            linear *= cfg.max_linear_speed / speed
        angular = np.clip(angular, -cfg.max_angular_speed, cfg.max_angular_speed)
        # Never command the end-effector out of the box: cut each axis's motion at the wall.
        low, high = np.array(cfg.workspace.low), np.array(cfg.workspace.high)
        predicted = position + linear * self.dt
        linear = np.where(predicted > high, np.maximum(high - position, 0.0) / self.dt, linear)
        linear = np.where(predicted < low, np.minimum(low - position, 0.0) / self.dt, linear)
        return linear, angular

    def _target_is_stale(self, stamp_ns: int) -> bool:
        """No target yet (or a hold dropped it), or this action is from a newer episode than it."""
        if self.target is None:
            return True
        if any(self.target_from_ns < start <= stamp_ns for start, _ in self.episodes):
            return True  # an episode started after the target was read
        known = [(start, until) for start, until in self.episodes if start <= self.target_from_ns]
        until = max(known)[1] if known else 0
        return bool(until) and self.target_from_ns <= until < stamp_ns  # past its episode's horizon

    def _joint_targets(self, arm: np.ndarray, stamp_ns: int) -> np.ndarray:
        cfg, limits = self.config, self.config.ee_target
        if self._target_is_stale(stamp_ns):
            pos, yaw, pitch = ee_target_from_pose(*self.kinematics.fk(self.measured))
            self.target, self.commanded, self.target_from_ns = EETarget(pos, yaw, pitch), None, stamp_ns
        self.target = step_ee_target(
            self.target, arm, tuple(cfg.ee_axes),
            (np.array(limits.workspace.low), np.array(limits.workspace.high)),
            tuple(limits.yaw_range), tuple(limits.pitch_range),
        )  # fmt: skip
        position = np.clip(self.target.pos, cfg.workspace.low, cfg.workspace.high)
        top_down = self.target.pitch <= -np.pi / 2 + 1e-6  # the sim's IK rolls the wrist only then
        rotation = ee_rotation(position, self.target.pitch, self.target.yaw if top_down else None)
        start = self.commanded if self.commanded is not None else self.measured
        joints = self.kinematics.ik(position, rotation, start).joints  # clipped to the URDF's limits
        reference = self.commanded if self.commanded is not None else self.measured
        step = self.joint_speed * self.dt
        joints = np.clip(joints, reference - step, reference + step)
        self.commanded = joints
        return joints
