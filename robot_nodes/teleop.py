"""Teleoperation sources for aps-record: keys, a joystick or space mouse, a leader arm. No rclpy.

Each turns its input into the task's action: end-effector deltas in [-1, 1] along the task's axes
(x, y, z and yaw or pitch; one unit is EE_STEP metres or ANGLE_STEP radians per control step) and,
when the task has one, the gripper as an absolute command (-1 open, +1 closed).

Keys come from a plain terminal (over SSH too): no X server, no key-up events, so a pressed key
moves its axis for `key_hold` seconds, which the terminal's auto-repeat keeps topping up while the
key is held down. The terminal is read in cbreak mode through termios and select: `readchar` was
the candidate library, but its `readkey` blocks after a lone Esc until the next key arrives, and
Esc must stop the recording at once.
"""

from __future__ import annotations

import os
import select
import termios
import tty
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.base import ANGLE_STEP, EE_STEP

# --- keys from a terminal -----------------------------------------------------------------------

ESCAPES = {
    "\x1b[A": "up", "\x1b[B": "down", "\x1b[C": "right", "\x1b[D": "left",
    "\x1bOA": "up", "\x1bOB": "down", "\x1bOC": "right", "\x1bOD": "left",  # application cursor mode
}  # fmt: skip
NAMED = {"\x1b": "esc", "\r": "enter", "\n": "enter", " ": "space", "\x03": "ctrl-c", "\x7f": "backspace"}
ESC_WAIT_S = 0.05  # after a lone Esc byte: how long the rest of an arrow's sequence may take to come


def decode_keys(text: str) -> tuple[list[str], str]:
    """(key names, an unfinished escape sequence left over) of the characters read from a terminal."""
    keys, i = [], 0
    while i < len(text):
        if text[i] == "\x1b":
            rest = text[i : i + 3]
            if rest in ESCAPES:
                keys.append(ESCAPES[rest])
                i += 3
                continue
            if len(rest) < 3 and rest in ("\x1b", "\x1b[", "\x1bO"):
                return keys, text[i:]  # maybe the start of an arrow: wait for the rest
            if len(rest) == 3 and rest[1] in "[O":  # another sequence (F-keys, Home, ...): skip it
                end = i + 2
                while end < len(text) and not text[end].isalpha() and text[end] != "~":
                    end += 1
                i = end + 1
                continue
        keys.append(NAMED.get(text[i], text[i]))
        i += 1
    return keys, ""


class TerminalKeys:
    """Key presses from a terminal in cbreak mode (echo off, one key at a time, Ctrl-C still a
    signal), restored on exit. `read(timeout)` returns the keys pressed since the last call."""

    def __init__(self, fd: int | None = None) -> None:
        self.fd = fd if fd is not None else os.open("/dev/tty", os.O_RDONLY)
        self.own_fd = fd is None
        self.saved: list | None = None
        self.pending = ""

    def __enter__(self) -> TerminalKeys:
        if not os.isatty(self.fd):
            raise OSError("keyboard input needs a terminal (run aps-record in one, or use source:=scripted)")
        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
        if self.own_fd:
            os.close(self.fd)

    def read(self, timeout: float) -> list[str]:
        keys: list[str] = []
        wait = timeout
        while select.select([self.fd], [], [], wait)[0]:
            data = os.read(self.fd, 1024)
            if not data:
                break
            found, self.pending = decode_keys(self.pending + data.decode(errors="ignore"))
            keys += found
            wait = ESC_WAIT_S if self.pending else 0.0
        if self.pending:  # nothing followed: a lone Esc (or Alt+[) after all
            keys += ["esc"]
            self.pending = ""
        return keys

    def flush(self) -> None:
        """Drop keys typed but not read (auto-repeat of a held key, a double press): a new phase of
        the recording starts from the keys pressed after it began."""
        termios.tcflush(self.fd, termios.TCIFLUSH)
        self.pending = ""


# --- the task's action ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionLayout:
    """What the task's action holds: end-effector axes ("x", "y", "z", "yaw" or "pitch"), then the
    gripper when it has one."""

    axes: tuple[str, ...]
    gripper: bool

    @property
    def size(self) -> int:
        return len(self.axes) + int(self.gripper)

    def action(self, deltas: dict[str, float], grip: float) -> np.ndarray:
        arm = [float(np.clip(deltas.get(axis, 0.0), -1.0, 1.0)) for axis in self.axes]
        return np.array(arm + ([grip] if self.gripper else []), dtype=np.float32)


OPEN, CLOSED = -1.0, 1.0


@dataclass
class KeyboardConfig:
    speed: float = 0.5  # share of a full step (EE_STEP metres, ANGLE_STEP radians) per control step
    key_hold: float = 0.15  # seconds a key press keeps its axis moving (auto-repeat tops it up)
    # key pairs (+, -) per axis; the gripper toggles with the space bar
    x: list[str] = field(default_factory=lambda: ["w", "s"])
    y: list[str] = field(default_factory=lambda: ["a", "d"])
    z: list[str] = field(default_factory=lambda: ["r", "f"])
    angle: list[str] = field(default_factory=lambda: ["q", "e"])  # the task's yaw or pitch

    def __post_init__(self) -> None:
        if not 0.0 < self.speed <= 1.0:
            raise ValueError(f"speed must lie in (0, 1], got {self.speed}")
        if self.key_hold <= 0:
            raise ValueError(f"key_hold must be > 0, got {self.key_hold}")
        pairs = [self.x, self.y, self.z, self.angle]
        keys = [key for pair in pairs for key in pair]
        if any(len(pair) != 2 for pair in pairs) or len(set(keys)) != len(keys):
            raise ValueError("x, y, z and angle each need two distinct keys (+, -), none shared")


class KeyboardTeleop:
    def __init__(self, layout: ActionLayout, config: KeyboardConfig) -> None:
        self.layout, self.config = layout, config
        angle = next((a for a in layout.axes if a in ("yaw", "pitch")), "yaw")
        self.keys = {}
        for axis, pair in (("x", config.x), ("y", config.y), ("z", config.z), (angle, config.angle)):
            self.keys[pair[0]], self.keys[pair[1]] = (axis, 1.0), (axis, -1.0)
        self.pressed: dict[str, tuple[float, float]] = {}  # axis -> (sign, time of the last press)
        self.grip = OPEN

    def reset(self) -> None:
        self.pressed.clear()
        self.grip = OPEN

    def handles(self, key: str) -> bool:
        return key in self.keys or (key == "space" and self.layout.gripper)

    def press(self, key: str, now: float) -> None:
        if key == "space" and self.layout.gripper:
            self.grip = CLOSED if self.grip == OPEN else OPEN
        elif key in self.keys:
            axis, sign = self.keys[key]
            self.pressed[axis] = (sign, now)

    def action(self, now: float) -> np.ndarray:
        deltas = {
            axis: sign * self.config.speed
            for axis, (sign, when) in self.pressed.items()
            if now - when <= self.config.key_hold
        }
        return self.layout.action(deltas, self.grip)

    def help(self) -> str:
        c = self.config
        pairs = [f"{c.x[0]}/{c.x[1]} x", f"{c.y[0]}/{c.y[1]} y", f"{c.z[0]}/{c.z[1]} z"]
        angle = next((a for a in self.layout.axes if a in ("yaw", "pitch")), None)
        pairs += [f"{c.angle[0]}/{c.angle[1]} {angle}"] if angle else []
        pairs += ["space gripper"] if self.layout.gripper else []
        return "  ".join(pairs)


# --- a joystick or space mouse (sensor_msgs/Joy) ----------------------------------------------------


@dataclass
class JoyConfig:
    # Joy axis per action axis (x, y, z, then the task's yaw or pitch); spacenav_node's defaults:
    # axes = [x, y, z, roll, pitch, yaw], buttons = [left, right]
    axes: list[int] = field(default_factory=lambda: [0, 1, 2, 5])
    signs: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])  # flip an axis with -1
    scale: float = 1.0  # action per unit of Joy axis (spacenav publishes about [-1, 1])
    deadzone: float = 0.1  # smaller deflections are zero, so a resting hand does not drift
    close_button: int = 0  # pressed: close the gripper; else open (-1: no gripper button)

    def __post_init__(self) -> None:
        if len(self.axes) != len(self.signs) or not self.axes:
            raise ValueError("axes and signs must be lists of the same (non-zero) length")
        if self.scale <= 0 or not 0.0 <= self.deadzone < 1.0:
            raise ValueError("scale must be > 0 and deadzone in [0, 1)")


class JoyTeleop:
    def __init__(self, layout: ActionLayout, config: JoyConfig) -> None:
        if len(config.axes) < len(layout.axes):
            raise ValueError(f"joy.axes maps {len(config.axes)} axes, the task moves {list(layout.axes)}")
        self.layout, self.config = layout, config

    def action(self, axes: list[float], buttons: list[int]) -> np.ndarray:
        cfg = self.config
        deltas = {}
        for axis, index, sign in zip(self.layout.axes, cfg.axes, cfg.signs, strict=False):
            value = float(axes[index]) if index < len(axes) else 0.0
            deltas[axis] = 0.0 if abs(value) < cfg.deadzone else sign * cfg.scale * value
        pressed = 0 <= cfg.close_button < len(buttons) and bool(buttons[cfg.close_button])
        return self.layout.action(deltas, CLOSED if pressed else OPEN)


# --- a leader arm (sensor_msgs/JointState) ----------------------------------------------------------


@dataclass
class LeaderConfig:
    urdf: str = ""  # the leader's URDF; empty: the sim arm's (a leader of the follower's build)
    joints: list[str] = field(default_factory=list)  # the leader's arm joints (empty: the sim arm's)
    ee_frame: str = "grasp"  # the leader's frame that the follower's end effector follows
    gripper_joint: str = ""  # the leader's gripper joint (empty: no gripper input)
    close_below: float = 0.01  # the gripper closes when that joint reads below this

    def __post_init__(self) -> None:
        if self.urdf and not Path(self.urdf).is_file():
            raise ValueError(f"leader URDF not found: {self.urdf}")


class LeaderArmTeleop:
    """The follower's end effector chases the leader's: each step's action is the pose difference
    (leader minus follower, both through forward kinematics on their URDFs) in steps, clipped."""

    def __init__(
        self, layout: ActionLayout, config: LeaderConfig, follower_urdf: str, follower_joints: list[str]
    ) -> None:
        from robot_nodes.kinematics import SIM_ARM_URDF, ArmKinematics  # pinocchio: the ros extra
        from sim.scene import ARM_JOINTS

        self.layout, self.config = layout, config
        self.leader = ArmKinematics(
            config.urdf or SIM_ARM_URDF, config.joints or list(ARM_JOINTS), config.ee_frame
        )
        self.follower = ArmKinematics(follower_urdf or SIM_ARM_URDF, follower_joints, config.ee_frame)

    def action(self, leader: dict[str, float], follower: np.ndarray) -> np.ndarray:
        from robot_nodes.kinematics import ee_target_from_pose
        from sim.scene import wrap_angle

        missing = [name for name in self.leader.names if name not in leader]
        if missing:
            raise ValueError(f"the leader's joint_states lack {missing}")
        goal = ee_target_from_pose(*self.leader.fk(np.array([leader[n] for n in self.leader.names])))
        now = ee_target_from_pose(*self.follower.fk(follower))
        deltas = {axis: (goal[0][i] - now[0][i]) / EE_STEP for i, axis in enumerate("xyz")}
        deltas["yaw"] = wrap_angle(goal[1] - now[1]) / ANGLE_STEP
        deltas["pitch"] = (goal[2] - now[2]) / ANGLE_STEP
        grip = OPEN
        if self.config.gripper_joint:
            if self.config.gripper_joint not in leader:
                raise ValueError(
                    f"the leader's joint_states lack its gripper joint {self.config.gripper_joint!r}"
                )
            grip = CLOSED if leader[self.config.gripper_joint] < self.config.close_below else OPEN
        return self.layout.action(deltas, grip)
