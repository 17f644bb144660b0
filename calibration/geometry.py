"""Rigid transforms as 4x4 matrices, quaternions (x, y, z, w, as ROS writes them) and angles."""

from __future__ import annotations

import cv2
import numpy as np


def make_pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """4x4 from a 3x3 rotation matrix or a 3-vector rotation (axis times angle), and a translation."""
    rotation = np.asarray(rotation, float)
    if rotation.shape != (3, 3):
        rotation = cv2.Rodrigues(rotation.reshape(3, 1))[0]
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[:3, 3] = np.asarray(translation, float).reshape(3)
    return pose


def invert(pose: np.ndarray) -> np.ndarray:
    rotation = pose[:3, :3]
    return make_pose(rotation.T, -rotation.T @ pose[:3, 3])


def rotation_vector(rotation: np.ndarray) -> np.ndarray:
    """Axis times angle (radians) of a 3x3 rotation."""
    return cv2.Rodrigues(np.asarray(rotation, float))[0].reshape(3)


def angle_deg(rotation: np.ndarray) -> float:
    """Rotation angle of a 3x3 rotation matrix, accurate for small angles too."""
    return float(np.degrees(np.linalg.norm(rotation_vector(rotation))))


def quaternion_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) with w >= 0."""
    rotvec = rotation_vector(rotation)
    angle = np.linalg.norm(rotvec)
    axis = rotvec / angle if angle > 0 else np.zeros(3)
    return np.array([*(axis * np.sin(angle / 2)), np.cos(angle / 2)])


def matrix_from_quaternion(quaternion: np.ndarray) -> np.ndarray:
    """3x3 rotation of a quaternion (x, y, z, w); it is normalised first."""
    q = np.asarray(quaternion, float)
    norm = np.linalg.norm(q)
    if q.shape != (4,) or not 0.5 < norm < 1.5:
        raise ValueError(f"a quaternion needs 4 numbers (x, y, z, w) of norm ~1, got {quaternion}")
    x, y, z, w = q / norm
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def check_pose(pose: np.ndarray, where: str) -> np.ndarray:
    """`pose` as a float 4x4 rigid transform, or ValueError naming `where`."""
    pose = np.asarray(pose, float)
    if pose.shape != (4, 4) or not np.allclose(pose[3], [0, 0, 0, 1]):
        raise ValueError(f"{where}: expected a 4x4 transform with last row 0 0 0 1")
    rotation = pose[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) or np.linalg.det(rotation) < 0:
        raise ValueError(f"{where}: the upper-left 3x3 block is not a rotation matrix")
    return pose
