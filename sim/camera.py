"""Pinhole projection into MuJoCo cameras and ray-cast visibility: a cheap privileged "detector"."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np


def project(
    model: mujoco.MjModel, data: mujoco.MjData, camera: int, points: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (column, row; origin top-left) and depths of world `points` [N, 3] in a
    `size` x `size` image of `camera`. Points behind the camera get depth <= 0."""
    rotation = data.cam_xmat[camera].reshape(3, 3)  # columns: image right, image up, backward
    local = (np.asarray(points, float) - data.cam_xpos[camera]) @ rotation
    depth = -local[:, 2]
    focal = 0.5 * size / np.tan(np.deg2rad(model.cam_fovy[camera]) / 2)
    safe = np.where(depth > 1e-6, depth, 1e-6)
    pixels = np.stack([size / 2 + focal * local[:, 0] / safe, size / 2 - focal * local[:, 1] / safe], axis=1)
    return pixels, depth


def visible_fraction(
    model: mujoco.MjModel, data: mujoco.MjData, camera: int, points: np.ndarray, body: int
) -> np.ndarray:
    """Per point: True when a ray from the camera reaches `body` first (nothing occludes it). The
    camera's own mount is ignored: jitter may move the camera into it."""
    origin = data.cam_xpos[camera].copy()
    mount = int(model.cam_bodyid[camera])
    geom = np.zeros(1, dtype=np.int32)
    seen = np.zeros(len(points), dtype=bool)
    for i, point in enumerate(points):
        direction = np.asarray(point, float) - origin
        mujoco.mj_ray(model, data, origin, direction, None, 1, mount, geom)
        seen[i] = geom[0] >= 0 and model.geom_bodyid[geom[0]] == body
    return seen


@dataclass
class Detection:
    """What an ideal detector would report for one object in one camera, image-normalised to [0, 1]."""

    box: np.ndarray  # x0, y0, x1, y1 of the visible box (zeros when not seen)
    area: float  # box area times the share of the object that is not occluded
    centre_offset: float  # distance of the box centre from the image centre (0 centre, ~0.7 corner)
    visible: bool

    def vector(self) -> np.ndarray:
        """[x0, y0, x1, y1, area, centre_offset, visible] as float32: the privileged form."""
        return np.array([*self.box, self.area, self.centre_offset, float(self.visible)], dtype=np.float32)


def detect_box(
    model: mujoco.MjModel,
    data: mujoco.MjData,
    camera: int,
    geom: int,
    size: int,
) -> Detection:
    """Project a box geom's corners (and, for occlusion, its face centres) into the camera."""
    half = model.geom_size[geom]
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    rotation = data.geom_xmat[geom].reshape(3, 3)
    corners = data.geom_xpos[geom] + (signs * half) @ rotation.T
    pixels, depth = project(model, data, camera, corners, size)
    if np.any(depth <= 0):
        return Detection(np.zeros(4, np.float32), 0.0, 1.0, False)
    lo = np.clip(pixels.min(axis=0) / size, 0.0, 1.0)
    hi = np.clip(pixels.max(axis=0) / size, 0.0, 1.0)
    extent = hi - lo
    if extent.min() <= 0:
        return Detection(np.zeros(4, np.float32), 0.0, 1.0, False)
    # Occlusion: sample points just inside the box (shrunk corners and the centre).
    samples = np.vstack([data.geom_xpos[geom], data.geom_xpos[geom] + (0.7 * signs * half) @ rotation.T])
    seen = visible_fraction(model, data, camera, samples, model.geom_bodyid[geom])
    share = float(seen.mean())
    if share == 0.0:
        return Detection(np.zeros(4, np.float32), 0.0, 1.0, False)
    centre = (lo + hi) / 2
    offset = float(np.linalg.norm(centre - 0.5))
    return Detection(np.concatenate([lo, hi]).astype(np.float32), float(extent.prod()) * share, offset, True)
