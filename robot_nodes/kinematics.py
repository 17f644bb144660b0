"""Arm kinematics on a URDF with pinocchio: forward kinematics of the end-effector frame and
damped least-squares IK (the CLIK loop of pinocchio's documentation) towards a 6-D pose.

No rclpy here: the robot interface's core and the tests use it in-process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pinocchio

from sim.scene import wrap_angle

SIM_ARM_URDF = Path(__file__).parent / "config" / "sim_arm.urdf"


class KinematicsError(ValueError):
    """A URDF that cannot be loaded or lacks the joints and frame the interface is set up for."""


@dataclass
class IKSolution:
    joints: np.ndarray  # the arm joints, in the order given to ArmKinematics
    error: float  # norm of the remaining 6-D pose error (metres and radians mixed)
    converged: bool


def ee_rotation(pos: np.ndarray, pitch: float, yaw: float | None) -> np.ndarray:
    """The world rotation of the grasp frame that `sim.scene.ik` reaches: the arm turned towards
    `pos`, the hand pitched to approach at `pitch` (-pi/2: straight down) and, for a downward
    approach, the wrist rolled so that the finger axis points at world `yaw`."""
    base = float(np.arctan2(pos[1], pos[0]))
    roll = 0.0 if yaw is None else wrap_angle(base - yaw)
    return _rz(base) @ _ry(np.pi / 2 - pitch) @ _rz(roll)


def _rz(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _ry(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


class ArmKinematics:
    """The arm joints of a URDF (other joints locked at zero) and one end-effector frame."""

    def __init__(self, urdf: str | Path, joints: Sequence[str], ee_frame: str) -> None:
        path = Path(urdf)
        if not path.is_file():
            raise KinematicsError(f"URDF not found: {path} (set the robot interface's urdf parameter)")
        try:
            full = pinocchio.buildModelFromUrdf(str(path))
        except (RuntimeError, ValueError) as err:
            raise KinematicsError(f"{path}: pinocchio cannot read this URDF ({err})") from err
        missing = [name for name in joints if not full.existJointName(name)]
        if missing or not full.existFrame(ee_frame):
            raise KinematicsError(
                f"{path}: no joint(s) {missing} or no frame {ee_frame!r}; joints: {list(full.names)[1:]}"
            )
        locked = [full.getJointId(n) for n in full.names[1:] if n not in joints]
        self.model = pinocchio.buildReducedModel(full, locked, pinocchio.neutral(full))
        order = [self.model.getJointId(name) for name in joints]
        if any(self.model.joints[j].nq != 1 for j in order):
            raise KinematicsError(f"{path}: only one-degree-of-freedom arm joints are supported")
        self.index = np.array([self.model.joints[j].idx_q for j in order])  # our order -> q
        self.data = self.model.createData()
        self.frame = self.model.getFrameId(ee_frame)
        self.names = list(joints)
        self.lower = self.model.lowerPositionLimit[self.index].copy()
        self.upper = self.model.upperPositionLimit[self.index].copy()
        self.velocity = self.model.velocityLimit[self.index].copy()

    def _q(self, joints: np.ndarray) -> np.ndarray:
        q = pinocchio.neutral(self.model)
        q[self.index] = joints
        return q

    def fk(self, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position and rotation of the end-effector frame in the base frame."""
        pose = self._placement(self._q(np.asarray(joints, dtype=np.float64)))
        return pose.translation.copy(), pose.rotation.copy()

    def _placement(self, q: np.ndarray) -> pinocchio.SE3:
        pinocchio.framesForwardKinematics(self.model, self.data, q)
        return self.data.oMf[self.frame]

    def ik(
        self,
        pos: np.ndarray,
        rotation: np.ndarray,
        start: np.ndarray,
        tolerance: float = 1e-7,
        iterations: int = 200,
        damping: float = 1e-6,
    ) -> IKSolution:
        """Joints that put the end-effector at (pos, rotation), from `start` (the current joints,
        which picks the branch), clipped to the joint limits."""
        goal = pinocchio.SE3(np.asarray(rotation, dtype=np.float64), np.asarray(pos, dtype=np.float64))
        q = self._q(np.asarray(start, dtype=np.float64))
        error = np.inf
        for _ in range(iterations):
            offset = self._placement(q).actInv(goal)
            residual = pinocchio.log(offset).vector
            error = float(np.linalg.norm(residual))
            if error < tolerance:
                break
            jacobian = pinocchio.computeFrameJacobian(self.model, self.data, q, self.frame)
            jacobian = -pinocchio.Jlog6(offset.inverse()) @ jacobian
            step = -jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + damping * np.eye(6), residual)
            q = pinocchio.integrate(self.model, q, step)
        joints = np.clip(q[self.index], self.lower, self.upper)
        return IKSolution(joints, error, error < tolerance)


def ee_target_from_pose(pos: np.ndarray, rotation: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(pos, yaw, pitch) of a grasp-frame pose, the inverse of `ee_rotation`: pitch from the approach
    direction (the frame's z axis), yaw from the finger axis (its y axis), which points at yaw + pi/2."""
    approach = rotation[:, 2]
    radial = float(np.hypot(approach[0], approach[1]))
    pitch = float(np.arctan2(approach[2], radial))
    yaw = wrap_angle(float(np.arctan2(rotation[1, 1], rotation[0, 1])) - np.pi / 2)
    return np.array(pos, dtype=np.float64), yaw, pitch
