"""ROS `camera_info` YAML, laid out as ROS `camera_calibration` writes it and `camera_info_manager` reads it.

Monocular: the rectification matrix is the identity and the projection matrix is the new camera
matrix of `cv2.getOptimalNewCameraMatrix(K, D, size, alpha=0)` (only valid pixels after
rectification), as `camera_calibration` sets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from calibration.errors import CalibrationError

DISTORTION_COEFFICIENTS = {"plumb_bob": 5, "rational_polynomial": 8}


@dataclass
class CameraInfo:
    camera_name: str
    image_size: tuple[int, int]  # width, height
    camera_matrix: np.ndarray  # K, 3x3
    dist_coeffs: np.ndarray  # D
    distortion_model: str = "plumb_bob"
    rectification_matrix: np.ndarray | None = None  # R, 3x3; None: identity
    projection_matrix: np.ndarray | None = None  # P, 3x4; None: as camera_calibration computes it

    def __post_init__(self) -> None:
        self.camera_matrix = np.asarray(self.camera_matrix, float).reshape(3, 3)
        self.dist_coeffs = np.asarray(self.dist_coeffs, float).reshape(-1)
        if self.rectification_matrix is None:
            self.rectification_matrix = np.eye(3)
        if self.projection_matrix is None:
            new_k, _ = cv2.getOptimalNewCameraMatrix(
                self.camera_matrix, self.dist_coeffs, self.image_size, 0.0
            )
            self.projection_matrix = np.hstack([new_k, np.zeros((3, 1))])


def write_camera_info(info: CameraInfo, path: str | Path) -> None:
    def matrix(values: np.ndarray) -> dict:
        values = np.atleast_2d(values)
        return {"rows": values.shape[0], "cols": values.shape[1], "data": [float(v) for v in values.flat]}

    document = {
        "image_width": int(info.image_size[0]),
        "image_height": int(info.image_size[1]),
        "camera_name": info.camera_name,
        "camera_matrix": matrix(info.camera_matrix),
        "distortion_model": info.distortion_model,
        "distortion_coefficients": matrix(info.dist_coeffs),
        "rectification_matrix": matrix(info.rectification_matrix),
        "projection_matrix": matrix(info.projection_matrix),
    }
    # Flow style for the data lists only, one line each, as camera_calibration writes them.
    Path(path).write_text(yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=10_000))


def read_camera_info(path: str | Path) -> CameraInfo:
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"camera_info file not found: {path}")
    try:
        document = yaml.safe_load(path.read_text())
        model = document["distortion_model"]
        if model not in DISTORTION_COEFFICIENTS:
            raise ValueError(f"distortion_model {model!r} is not one of {sorted(DISTORTION_COEFFICIENTS)}")
        info = CameraInfo(
            camera_name=str(document.get("camera_name", "")),
            image_size=(int(document["image_width"]), int(document["image_height"])),
            camera_matrix=_matrix(document, "camera_matrix", (3, 3)),
            dist_coeffs=_matrix(document, "distortion_coefficients", (1, DISTORTION_COEFFICIENTS[model])),
            distortion_model=model,
            rectification_matrix=_matrix(document, "rectification_matrix", (3, 3)),
            projection_matrix=_matrix(document, "projection_matrix", (3, 4)),
        )
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise CalibrationError(
            f"{path}: not a ROS camera_info YAML file ({type(err).__name__}: {err})"
        ) from err
    return info


def _matrix(document: dict, key: str, shape: tuple[int, int]) -> np.ndarray:
    entry = document[key]
    if (entry["rows"], entry["cols"]) != shape or len(entry["data"]) != shape[0] * shape[1]:
        raise ValueError(f"{key} must be {shape[0]}x{shape[1]} with {shape[0] * shape[1]} numbers")
    return np.array(entry["data"], float).reshape(shape)
