"""Camera calibration: ChArUco boards, intrinsics (ROS camera_info YAML) and hand-eye transforms.

The console script is `aps-calibrate` (calibration/cli.py); the guide is calibration/README.md.
"""

from calibration.board import BoardDetector, BoardSpec
from calibration.camera_info import CameraInfo, read_camera_info, write_camera_info
from calibration.errors import CalibrationError
from calibration.handeye import (
    HandEyeConfig,
    calibrate_hand_eye,
    load_robot_poses,
    read_transform,
    write_transform,
)
from calibration.intrinsics import IntrinsicsConfig, ViewCollector, calibrate, calibrate_images, read_images

__all__ = [
    "BoardDetector",
    "BoardSpec",
    "CalibrationError",
    "CameraInfo",
    "HandEyeConfig",
    "IntrinsicsConfig",
    "ViewCollector",
    "calibrate",
    "calibrate_hand_eye",
    "calibrate_images",
    "load_robot_poses",
    "read_camera_info",
    "read_images",
    "read_transform",
    "write_camera_info",
    "write_transform",
]
