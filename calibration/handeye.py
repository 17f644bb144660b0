"""Hand-eye calibration: a wrist camera in the gripper frame, or a fixed camera in the robot base frame.

Inputs are pairs of a robot pose (the hand frame in the base frame, from forward kinematics or a
pose topic) and a board pose (the board in the camera frame, from an image and the intrinsics).

    eye_in_hand: the board is fixed in the world, the camera rides on the hand. Solves X = hand<-camera.
    eye_to_hand: the board is held by the hand, the camera is fixed.         Solves X = base<-camera.

Both are AX = XB over pose pairs with A from "hand poses" H and B from board poses C:
H = base<-hand for eye_in_hand and H = hand<-base for eye_to_hand (OpenCV's documented trick), then
H_i X C_i is the same for every i (base<-board, or hand<-board), so A = H_j^-1 H_i and B = C_j C_i^-1.
"""

from __future__ import annotations

import csv
import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import yaml

from calibration.board import BoardDetector, BoardSpec
from calibration.camera_info import CameraInfo
from calibration.errors import CalibrationError
from calibration.geometry import (
    angle_deg,
    check_pose,
    invert,
    make_pose,
    matrix_from_quaternion,
    quaternion_from_matrix,
    rotation_vector,
)

Mode = Literal["eye_in_hand", "eye_to_hand"]
METHODS = {
    "tsai": cv2.CALIB_HAND_EYE_TSAI,
    "park": cv2.CALIB_HAND_EYE_PARK,
    "horaud": cv2.CALIB_HAND_EYE_HORAUD,
    "andreff": cv2.CALIB_HAND_EYE_ANDREFF,
    "daniilidis": cv2.CALIB_HAND_EYE_DANIILIDIS,
}
MAX_TRANSLATION_M = 5.0  # a robot pose farther than this from the base is almost surely in millimetres


@dataclass
class HandEyeConfig:
    """`aps-calibrate handeye` settings (apart from the mode and the input and output paths)."""

    method: Literal["auto", "tsai", "park", "horaud", "andreff", "daniilidis"] = (
        "auto"  # auto: least residual
    )
    hand_frame: str = "tool0"  # parent frame of an eye_in_hand result
    base_frame: str = "base_link"  # parent frame of an eye_to_hand result
    # child frame: OpenCV/ROS optical axes (x right, y down, z ahead); aps-camera stamps its images
    # <camera_name>_color_optical_frame, as realsense-ros does
    camera_frame: str = "camera_color_optical_frame"
    min_poses: int = 5  # robot poses with a detected board needed to fit
    min_rotation_deg: float = 10.0  # the largest rotation between two robot poses must reach this
    min_axis_angle_deg: float = 15.0  # and the rotation axes must differ by this much
    max_rotation_mismatch_deg: float = 2.0  # median |robot rotation - board rotation| over pose pairs
    max_residual_deg: float = 2.0  # RMS AX = XB rotation residual of the best method
    max_view_error_px: float = 1.0  # board poses that reproject worse than this are left out

    def __post_init__(self) -> None:
        if self.min_poses < 3:
            raise ValueError(f"min_poses must be >= 3 (cv2.calibrateHandEye needs 3), got {self.min_poses}")


@dataclass
class MethodResult:
    method: str
    transform: np.ndarray  # 4x4 X
    rotation_deg: float  # RMS rotation residual of AX = XB over all pose pairs
    translation_mm: float  # RMS translation residual of AX = XB over all pose pairs
    score_mm: float  # translation residual plus the rotation residual's displacement at the board


@dataclass
class HandEyeResult:
    mode: Mode
    method: str
    transform: np.ndarray  # 4x4: hand<-camera (eye_in_hand) or base<-camera (eye_to_hand)
    methods: list[MethodResult]  # every method that gave an answer, best first
    poses: int
    max_rotation_deg: float  # largest rotation between two robot poses
    axis_angle_deg: float  # largest angle between relative rotation axes


def calibrate_hand_eye(
    robot_poses: Sequence[np.ndarray],
    board_poses: Sequence[np.ndarray],
    mode: Mode,
    config: HandEyeConfig | None = None,
) -> HandEyeResult:
    """X from robot poses (base<-hand, 4x4) and board poses (camera<-board, 4x4), paired by index.

    Refuses motions that cannot determine X (too little rotation, one rotation axis), pose sets whose
    robot and camera rotations disagree (mismatched pairs) and results that fit badly (inverted robot
    poses, the wrong mode)."""
    config = config or HandEyeConfig()
    if len(robot_poses) != len(board_poses):
        raise CalibrationError(f"{len(robot_poses)} robot poses but {len(board_poses)} board poses")
    if len(robot_poses) < config.min_poses:
        raise CalibrationError(
            f"{len(robot_poses)} pose pairs, need >= {config.min_poses}: record 10-20 robot poses with the "
            "board in view, rotating the gripper 20-40 degrees about different axes between them"
        )
    hand = [check_pose(p, f"robot pose {i}") for i, p in enumerate(robot_poses)]
    if mode == "eye_to_hand":
        hand = [invert(p) for p in hand]
    boards = [check_pose(p, f"board pose {i}") for i, p in enumerate(board_poses)]
    pairs = [(i, j) for i in range(len(hand)) for j in range(i + 1, len(hand))]
    motions_a = [invert(hand[j]) @ hand[i] for i, j in pairs]
    motions_b = [boards[j] @ invert(boards[i]) for i, j in pairs]
    max_rotation, axis_angle = _check_motion(motions_a, motions_b, config)

    distance_m = float(np.median([np.linalg.norm(b[:3, 3]) for b in boards]))
    results = []
    for name, flag in METHODS.items():
        if config.method not in ("auto", name):
            continue
        try:
            rotation, translation = cv2.calibrateHandEye(
                [p[:3, :3] for p in hand], [p[:3, 3] for p in hand],
                [b[:3, :3] for b in boards], [b[:3, 3] for b in boards],
                method=flag,
            )  # fmt: skip
        except cv2.error:
            continue  # a method may fail on data the others handle; it is then absent from the table
        if not np.all(np.isfinite(rotation)) or not np.all(np.isfinite(translation)):
            continue
        transform = make_pose(rotation, translation)
        rotation_deg, translation_mm = ax_xb_residuals(transform, motions_a, motions_b)
        # A rotation error of r radians moves the board (at distance d) by about r * d.
        score = translation_mm + np.radians(rotation_deg) * distance_m * 1000
        results.append(MethodResult(name, transform, rotation_deg, translation_mm, float(score)))
    if not results:
        raise CalibrationError(f"cv2.calibrateHandEye failed for method {config.method}: try method=auto")
    results.sort(key=lambda r: r.score_mm)
    best = results[0]
    # Inverted robot poses or the wrong mode keep every rotation angle, so only the fit reveals them.
    if best.rotation_deg > config.max_residual_deg:
        other = "eye_to_hand" if mode == "eye_in_hand" else "eye_in_hand"
        raise CalibrationError(
            f"no transform fits the poses ({best.method} leaves {best.rotation_deg:.1f} degrees RMS rotation "
            f"residual): check that robot poses are base<-hand (not inverted) and the mode (got {mode}; "
            f"is it {other}?)"
        )
    return HandEyeResult(mode, best.method, best.transform, results, len(hand), max_rotation, axis_angle)


def ax_xb_residuals(
    transform: np.ndarray, motions_a: Sequence[np.ndarray], motions_b: Sequence[np.ndarray]
) -> tuple[float, float]:
    """RMS rotation (degrees) and translation (mm) of A X - X B over the given motion pairs."""
    rotations, translations = [], []
    for a, b in zip(motions_a, motions_b, strict=True):
        left, right = a @ transform, transform @ b
        rotations.append(angle_deg(left[:3, :3] @ right[:3, :3].T))
        translations.append(1000 * np.linalg.norm(left[:3, 3] - right[:3, 3]))
    return float(np.sqrt(np.mean(np.square(rotations)))), float(np.sqrt(np.mean(np.square(translations))))


def _check_motion(
    motions_a: list[np.ndarray], motions_b: list[np.ndarray], config: HandEyeConfig
) -> tuple[float, float]:
    rotvecs = np.array([rotation_vector(a[:3, :3]) for a in motions_a])
    angles = np.degrees(np.linalg.norm(rotvecs, axis=1))
    largest = int(np.argmax(angles))
    advice = (
        "rotate the gripper 20-40 degrees about at least two different axes (roll and pitch) between poses"
    )
    if angles[largest] < config.min_rotation_deg:
        raise CalibrationError(
            f"degenerate motion: the gripper rotates at most {angles[largest]:.1f} degrees between poses "
            f"(pure translation cannot give the camera's rotation); {advice}"
        )
    # Rotations all about one axis leave the translation along that axis undetermined.
    turning = angles >= config.min_rotation_deg
    axes = rotvecs[turning] / np.linalg.norm(rotvecs[turning], axis=1, keepdims=True)
    reference = rotvecs[largest] / np.linalg.norm(rotvecs[largest])
    sines = np.linalg.norm(np.cross(axes, reference), axis=1)
    axis_angle = float(np.degrees(np.arcsin(np.clip(sines.max(), 0, 1))))
    if axis_angle < config.min_axis_angle_deg:
        raise CalibrationError(
            f"degenerate motion: every rotation is about nearly the same axis (they differ by at most "
            f"{axis_angle:.1f} degrees); {advice}"
        )
    # Rotation angles are invariant under AX = XB, so robot and board must agree whatever X is.
    mismatch = np.abs(angles - [angle_deg(b[:3, :3]) for b in motions_b])
    if np.median(mismatch) > config.max_rotation_mismatch_deg:
        raise CalibrationError(
            f"robot and board rotations disagree by {np.median(mismatch):.1f} degrees (median over pose "
            "pairs): check that each robot pose is paired with the image taken there, and that quaternions "
            "are in x y z w order"
        )
    return float(angles[largest]), axis_angle


@dataclass
class RobotPose:
    image: str  # the image file taken at this pose
    pose: np.ndarray  # 4x4 base<-hand


def load_robot_poses(path: str | Path) -> list[RobotPose]:
    """Robot poses paired with image names, from YAML or CSV (format in calibration/README.md)."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"robot pose file not found: {path}")
    try:
        rows = _csv_rows(path) if path.suffix.lower() == ".csv" else _yaml_rows(path)
        poses = [
            RobotPose(str(row["image"]), _row_pose(row, f"{path.name} pose {i}"))
            for i, row in enumerate(rows)
        ]
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise CalibrationError(
            f"{path}: {type(err).__name__}: {err} (format: see calibration/README.md)"
        ) from err
    far = [p.image for p in poses if np.linalg.norm(p.pose[:3, 3]) > MAX_TRANSLATION_M]
    if far:
        raise CalibrationError(
            f"{path}: poses of {far[:3]} are more than {MAX_TRANSLATION_M:g} m from the base; translations "
            "must be in metres"
        )
    return poses


def _yaml_rows(path: Path) -> list[dict]:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict) or not isinstance(document.get("poses"), list):
        raise ValueError("expected a mapping with a list under 'poses'")
    return document["poses"]


def _csv_rows(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    numbers = ("x", "y", "z", "qx", "qy", "qz", "qw")
    return [
        {"image": row["image"], "translation": [float(row[k]) for k in numbers[:3]],
         "quaternion": [float(row[k]) for k in numbers[3:]]}
        for row in rows
    ]  # fmt: skip


def _row_pose(row: dict, where: str) -> np.ndarray:
    if "matrix" in row:
        return check_pose(np.array(row["matrix"], float), where)
    translation = np.array(row["translation"], float)
    if translation.shape != (3,):
        raise ValueError(f"{where}: translation needs 3 numbers")
    return make_pose(matrix_from_quaternion(row["quaternion"]), translation)


@dataclass
class BoardPoses:
    poses: dict[str, np.ndarray]  # image name -> 4x4 camera<-board
    errors_px: dict[str, float]  # image name -> RMS reprojection error of the pose
    rejected: dict[str, str]  # image name -> why no pose


def board_poses(
    frames: Iterable[tuple[str, np.ndarray]], spec: BoardSpec, camera: CameraInfo, max_error_px: float
) -> BoardPoses:
    """Board pose per image by PnP (IPPE, then Levenberg-Marquardt) with known intrinsics."""
    detector = BoardDetector(spec)
    result = BoardPoses({}, {}, {})
    for name, image in frames:
        if (image.shape[1], image.shape[0]) != tuple(camera.image_size):
            raise CalibrationError(
                f"{name} is {image.shape[1]}x{image.shape[0]} but the camera_info is for "
                f"{camera.image_size[0]}x{camera.image_size[1]}"
            )
        detection = detector.detect(image)
        if len(detection) < 6 or detector.collinear(detection):
            result.rejected[name] = f"board not found ({len(detection)} corners)"
            continue
        k, d = camera.camera_matrix, camera.dist_coeffs
        _, rvec, tvec = cv2.solvePnP(
            detection.object_points, detection.image_points, k, d, flags=cv2.SOLVEPNP_IPPE
        )
        rvec, tvec = cv2.solvePnPRefineLM(detection.object_points, detection.image_points, k, d, rvec, tvec)
        projected, _ = cv2.projectPoints(detection.object_points, rvec, tvec, k, d)
        error = float(
            np.sqrt(np.mean(np.sum((projected.reshape(-1, 2) - detection.image_points) ** 2, axis=1)))
        )
        if error > max_error_px:
            result.rejected[name] = f"board pose reprojects at {error:.2f} px > {max_error_px:g}"
            continue
        result.poses[name] = make_pose(rvec, tvec)
        result.errors_px[name] = error
    return result


def write_transform(result: HandEyeResult, parent_frame: str, child_frame: str, path: str | Path) -> None:
    """The parent<-child transform as YAML: translation, quaternion (x, y, z, w), 4x4 matrix, method,
    residuals of every method and the date. `read_transform` reads it back."""
    matrix = result.transform
    x, y, z = (float(v) for v in matrix[:3, 3])
    qx, qy, qz, qw = (float(v) for v in quaternion_from_matrix(matrix[:3, :3]))
    document = {
        "parent_frame": parent_frame,
        "child_frame": child_frame,
        "mode": result.mode,
        "translation": {"x": x, "y": y, "z": z},
        "rotation": {"x": qx, "y": qy, "z": qz, "w": qw},
        "matrix": [[float(v) for v in row] for row in matrix],
        "method": result.method,
        "residuals": {
            m.method: {"rotation_deg": round(m.rotation_deg, 4), "translation_mm": round(m.translation_mm, 3)}
            for m in result.methods
        },
        "poses": result.poses,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    Path(path).write_text(yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=10_000))


@dataclass
class Transform:
    parent_frame: str
    child_frame: str
    matrix: np.ndarray  # 4x4 parent<-child


def read_transform(path: str | Path) -> Transform:
    """A transform written by `write_transform` (translation + quaternion; the matrix must agree)."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"transform file not found: {path}")
    try:
        document = yaml.safe_load(path.read_text())
        t, q = document["translation"], document["rotation"]
        matrix = make_pose(matrix_from_quaternion([q["x"], q["y"], q["z"], q["w"]]), [t["x"], t["y"], t["z"]])
        if "matrix" in document and not np.allclose(document["matrix"], matrix, atol=1e-6):
            raise ValueError("'matrix' disagrees with translation + rotation (edited by hand?)")
        return Transform(str(document["parent_frame"]), str(document["child_frame"]), matrix)
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise CalibrationError(f"{path}: not a transform file ({type(err).__name__}: {err})") from err
