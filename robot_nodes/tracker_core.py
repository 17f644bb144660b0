"""The privileged tracker's core (no rclpy): the object's pose in the robot's base frame, for the critic.

Three sources, one output:

    aruco   a marker on the object, seen by a fixed camera: `cv2.aruco.ArucoDetector` finds it,
            `cv2.solvePnP` (IPPE_SQUARE, for the marker's four corners) gives its pose;
    color   an HSV range -> mask, the largest blob's box, centroid and area; its 3-D position is
            where the centroid's ray meets the plane of the object's centre above the table;
    mocap   a motion-capture pose (any frame) and a fixed transform from that frame to the base.

The fixed camera comes from `aps-calibrate`: intrinsics (camera_info YAML) and the eye-to-hand
transform (base<-camera optical frame). The privileged vector holds the sim tasks' keys where they
mean the same (`object_pose` = x y z qw qx qy qz and `object_pos`, in the base frame), plus
`object_visible` (1 tracked in this input, 0 lost) and `track_quality` in [0, 1]; the colour tracker
gives no orientation, so no `object_pose`, and adds `object_box` (x0 y0 x1 y1, image fractions) and
`object_area` (fraction of the image). A lost object has `object_visible` 0 and zeros elsewhere:
its last pose is never sent again as if new.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Literal, TypeVar

import cv2
import numpy as np

from calibration.camera_info import CameraInfo, read_camera_info
from calibration.errors import CalibrationError
from calibration.geometry import make_pose, quaternion_from_matrix
from calibration.handeye import Transform, read_transform

Source = Literal["aruco", "color", "mocap"]


class TrackerSetupError(ValueError):
    """Calibration files missing or inconsistent with the config: the message names the fix."""


class StaleInput(ValueError):
    """An input not newer than the last one used, or too old: dropped, never tracked as new."""


# --- configs ------------------------------------------------------------------------------------


@dataclass
class ArucoConfig:
    dictionary: str = "DICT_4X4_50"  # any cv2.aruco.DICT_* name
    marker_id: int = 0  # the object's marker; other markers are ignored
    marker_length_m: float = 0.04  # side of the black square, measured on the print
    # the object's centre in the marker frame (x right, y up on the marker, z out of it); a marker
    # on the top face of a 5 cm cube: [0, 0, -0.025]. The object's orientation is the marker's.
    object_offset_m: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    max_reprojection_px: float = 2.0  # a pose that reprojects worse than this is not trusted (lost)

    def __post_init__(self) -> None:
        if not self.dictionary.startswith("DICT_") or not hasattr(cv2.aruco, self.dictionary):
            raise ValueError(f"unknown ArUco dictionary {self.dictionary!r}; use a cv2.aruco.DICT_* name")
        _check_vector(self.object_offset_m, "object_offset_m")
        if self.marker_length_m <= 0 or self.max_reprojection_px <= 0:
            raise ValueError("marker_length_m and max_reprojection_px must be > 0")


@dataclass
class ColorConfig:
    # HSV bounds, OpenCV ranges (H 0-179, S and V 0-255); a low hue above the high hue wraps
    # through 0, as red needs (e.g. low [170, 120, 60], high [10, 255, 255])
    hsv_low: list[int] = field(default_factory=lambda: [170, 120, 60])
    hsv_high: list[int] = field(default_factory=lambda: [10, 255, 255])
    min_area_px: int = 30  # a smaller largest blob is noise: lost
    open_px: int = 3  # morphological opening (kernel side) that removes speckle; 0 = none
    table_height_m: float = 0.0  # z of the table top in the base frame
    object_center_height_m: float = 0.025  # the object's centre above the table (half a 5 cm cube)

    def __post_init__(self) -> None:
        for name in ("hsv_low", "hsv_high"):
            values = getattr(self, name)
            if len(values) != 3 or not 0 <= values[0] <= 179 or not all(0 <= v <= 255 for v in values[1:]):
                raise ValueError(f"{name} must be [H 0-179, S 0-255, V 0-255], got {values}")
        if self.hsv_low[1] > self.hsv_high[1] or self.hsv_low[2] > self.hsv_high[2]:
            raise ValueError("hsv_low's S and V must not exceed hsv_high's (only the hue wraps)")
        if self.min_area_px < 1 or self.open_px < 0:
            raise ValueError("min_area_px must be >= 1 and open_px >= 0")


@dataclass
class MocapConfig:
    topic: str = "mocap/pose"  # geometry_msgs/PoseStamped of the tracked body, in the mocap frame
    # base<-mocap transform YAML (parent_frame = the robot base, child_frame = the mocap frame), in
    # the format `aps-calibrate handeye` writes and calibration.read_transform reads
    transform_path: str = ""
    object_offset_m: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])  # centre in the body frame
    max_age_s: float = 0.1  # no pose for this long: lost

    def __post_init__(self) -> None:
        _check_vector(self.object_offset_m, "object_offset_m")
        if self.max_age_s <= 0:
            raise ValueError(f"max_age_s must be > 0, got {self.max_age_s}")


@dataclass
class TrackerNodeConfig:
    """`aps-privileged-tracker` settings: one ROS parameter per leaf (e.g. `aruco.marker_id`)."""

    source: Source = "aruco"  # which tracker runs: aruco, color (on camera images) or mocap
    image_topic: str = "camera/color/image_raw"  # the fixed camera's images (aruco and color)
    image_reliability: Literal["reliable", "best_effort"] = "reliable"  # must suit the publisher's QoS
    camera_info_path: str = ""  # the fixed camera's `aps-calibrate intrinsics` camera_info YAML
    extrinsics_path: str = ""  # its `aps-calibrate handeye --mode eye-to-hand` YAML (base<-camera)
    max_image_age_s: float = 0.5  # an image stamped longer ago than this is dropped, not tracked
    pose_topic: str = "object_pose"  # out: geometry_msgs/PoseStamped in the base frame
    vector_topic: str = "privileged"  # out: the privileged vector (labelled Float32MultiArray)
    aruco: ArucoConfig = field(default_factory=ArucoConfig)
    color: ColorConfig = field(default_factory=ColorConfig)
    mocap: MocapConfig = field(default_factory=MocapConfig)

    def __post_init__(self) -> None:
        if self.max_image_age_s <= 0:
            raise ValueError(f"max_image_age_s must be > 0, got {self.max_image_age_s}")


def _check_vector(values: list[float], name: str) -> None:
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 numbers (metres), got {values}")


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    """One tracked input. When not `visible`, the geometric fields are zeros."""

    stamp_ns: int  # the input's own stamp
    visible: bool
    position: np.ndarray  # object centre, base frame, metres
    quaternion: np.ndarray | None  # w x y z (the sim's order), base frame; None: colour (no orientation)
    quality: float  # aruco: 1 / (1 + reprojection RMS px); color: blob solidity; mocap: 1
    box: np.ndarray | None = None  # colour: x0 y0 x1 y1 in pixels
    area_px: int = 0  # colour: blob area
    centroid_px: np.ndarray | None = None  # colour: the blob's centroid (u, v)


def vector_keys(source: Source) -> dict[str, int]:
    """The privileged vector's layout for a source: key -> length, in message order."""
    keys = {"object_pose": 7, "object_pos": 3} if source != "color" else {"object_pos": 3}
    keys |= {"object_visible": 1, "track_quality": 1}
    if source == "color":
        keys |= {"object_box": 4, "object_area": 1}
    return keys


def privileged_vector(
    track: Track, source: Source, image_size: tuple[int, int] | None
) -> dict[str, np.ndarray]:
    """The labelled vectors of one track (zeros where nothing was seen)."""
    seen = float(track.visible)
    vectors: dict[str, np.ndarray] = {}
    if source != "color":
        quaternion = track.quaternion if track.quaternion is not None else np.zeros(4)
        vectors["object_pose"] = np.concatenate([track.position, quaternion]) * seen
    vectors["object_pos"] = track.position * seen
    vectors["object_visible"] = np.array([seen])
    vectors["track_quality"] = np.array([track.quality * seen])
    if source == "color":
        width, height = image_size or (1, 1)
        box = track.box if track.box is not None else np.zeros(4)
        vectors["object_box"] = box / np.array([width, height, width, height]) * seen
        vectors["object_area"] = np.array([track.area_px / (width * height) * seen])
    return {key: np.asarray(value, np.float32) for key, value in vectors.items()}


# --- trackers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixedCamera:
    """The calibrated fixed camera: intrinsics and base<-camera optical frame."""

    info: CameraInfo
    base_from_camera: Transform

    @classmethod
    def load(cls, camera_info_path: str, extrinsics_path: str) -> FixedCamera:
        if not camera_info_path or not extrinsics_path:
            raise TrackerSetupError(
                "camera trackers need camera_info_path (aps-calibrate intrinsics) and extrinsics_path "
                "(aps-calibrate handeye --mode eye-to-hand)"
            )
        try:
            info = read_camera_info(Path(camera_info_path))
            transform = read_transform(Path(extrinsics_path))
        except CalibrationError as err:
            raise TrackerSetupError(f"{err}: run aps-calibrate (calibration/README.md)") from err
        return cls(info, transform)

    def ray(self, pixel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Origin and unit direction, in the base frame, of the ray through `pixel` (u, v)."""
        point = np.asarray(pixel, np.float64).reshape(1, 1, 2)
        x, y = cv2.undistortPoints(point, self.info.camera_matrix, self.info.dist_coeffs).reshape(2)
        matrix = self.base_from_camera.matrix
        direction = matrix[:3, :3] @ np.array([x, y, 1.0])
        return matrix[:3, 3].copy(), direction / np.linalg.norm(direction)


class ArucoTracker:
    def __init__(self, config: ArucoConfig, camera: FixedCamera) -> None:
        self.config, self.camera = config, camera
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, config.dictionary))
        parameters = cv2.aruco.DetectorParameters()
        # Sub-pixel corners: the pose's depth error is proportional to the corner error.
        parameters.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
        self.detector = cv2.aruco.ArucoDetector(dictionary, parameters)
        half = config.marker_length_m / 2
        # OpenCV's marker corner order (top-left, top-right, bottom-right, bottom-left), z out of the marker.
        self.corners_3d = np.array([[-half, half, 0], [half, half, 0], [half, -half, 0], [-half, -half, 0]])
        self.marker_from_object = make_pose(np.eye(3), config.object_offset_m)

    def track(self, rgb: np.ndarray, stamp_ns: int) -> Track:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        corners, ids, _ = self.detector.detectMarkers(gray)
        if ids is None or self.config.marker_id not in ids.reshape(-1):
            return _lost(stamp_ns, with_orientation=True)
        image_corners = (
            corners[list(ids.reshape(-1)).index(self.config.marker_id)].reshape(4, 2).astype(np.float64)
        )
        info = self.camera.info
        ok, rvec, tvec = cv2.solvePnP(
            self.corners_3d,
            image_corners,
            info.camera_matrix,
            info.dist_coeffs,
            flags=cv2.SOLVEPNP_IPPE_SQUARE,
        )
        if not ok:
            return _lost(stamp_ns, with_orientation=True)
        projected, _ = cv2.projectPoints(self.corners_3d, rvec, tvec, info.camera_matrix, info.dist_coeffs)
        rms = float(np.sqrt(np.mean(np.sum((projected.reshape(4, 2) - image_corners) ** 2, axis=1))))
        if rms > self.config.max_reprojection_px:
            return _lost(stamp_ns, with_orientation=True)
        base_from_object = (
            self.camera.base_from_camera.matrix @ make_pose(rvec, tvec) @ self.marker_from_object
        )
        return Track(stamp_ns, True, base_from_object[:3, 3], _wxyz(base_from_object), 1.0 / (1.0 + rms))


class ColorTracker:
    def __init__(self, config: ColorConfig, camera: FixedCamera) -> None:
        self.config, self.camera = config, camera
        self.kernel = np.ones((config.open_px, config.open_px), np.uint8) if config.open_px else None
        self.plane_z = config.table_height_m + config.object_center_height_m

    def mask(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 0/255 mask of the pixels in the HSV range (the hue range may wrap through 0)."""
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        low, high = self.config.hsv_low, self.config.hsv_high
        if low[0] <= high[0]:
            mask = cv2.inRange(hsv, np.array(low), np.array(high))
        else:
            mask = cv2.inRange(hsv, np.array(low), np.array([179, *high[1:]])) | cv2.inRange(
                hsv, np.array([0, *low[1:]]), np.array(high)
            )
        return cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.kernel) if self.kernel is not None else mask

    def track(self, rgb: np.ndarray, stamp_ns: int) -> Track:
        mask = self.mask(rgb)
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        if count < 2:
            return _lost(stamp_ns, with_orientation=False)
        blob = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        area = int(stats[blob, cv2.CC_STAT_AREA])
        if area < self.config.min_area_px:
            return _lost(stamp_ns, with_orientation=False)
        x, y, w, h = (int(stats[blob, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH,
                                                     cv2.CC_STAT_HEIGHT))  # fmt: skip
        origin, direction = self.camera.ray(centroids[blob])
        if abs(direction[2]) < 1e-6 or (self.plane_z - origin[2]) / direction[2] <= 0:
            return _lost(stamp_ns, with_orientation=False)  # the ray never meets the plane ahead
        position = origin + (self.plane_z - origin[2]) / direction[2] * direction
        contours, _ = cv2.findContours(
            (labels == blob).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        hull_area = cv2.contourArea(cv2.convexHull(np.vstack(contours)))
        solidity = min(1.0, area / hull_area) if hull_area > 0 else 0.0
        return Track(stamp_ns, True, position, None, solidity, np.array([x, y, x + w, y + h], float), area,
                     centroids[blob].copy())  # fmt: skip


class MocapTracker:
    def __init__(self, config: MocapConfig) -> None:
        self.config = config
        if not config.transform_path:
            raise TrackerSetupError("mocap needs mocap.transform_path: a base<-mocap transform YAML")
        try:
            self.base_from_mocap = read_transform(Path(config.transform_path))
        except CalibrationError as err:
            raise TrackerSetupError(str(err)) from err
        self.body_from_object = make_pose(np.eye(3), config.object_offset_m)

    def track(self, mocap_from_body: np.ndarray, stamp_ns: int) -> Track:
        base_from_object = self.base_from_mocap.matrix @ mocap_from_body @ self.body_from_object
        return Track(stamp_ns, True, base_from_object[:3, 3], _wxyz(base_from_object), 1.0)


def _wxyz(pose: np.ndarray) -> np.ndarray:
    x, y, z, w = quaternion_from_matrix(pose[:3, :3])
    return np.array([w, x, y, z])


def _lost(stamp_ns: int, with_orientation: bool) -> Track:
    return Track(stamp_ns, False, np.zeros(3), np.zeros(4) if with_orientation else None, 0.0)


# --- what the node drives -----------------------------------------------------------------------


class PrivilegedTracker:
    """One source -> Tracks and privileged vectors, refusing inputs that are not newer than the last
    one used or that are older than the configured age."""

    def __init__(self, config: TrackerNodeConfig) -> None:
        self.config = config
        self.camera: FixedCamera | None = None
        self.tracker: ArucoTracker | ColorTracker | MocapTracker
        if config.source == "mocap":
            self.tracker = MocapTracker(config.mocap)
            self.base_frame = self.tracker.base_from_mocap.parent_frame
        else:
            self.camera = FixedCamera.load(config.camera_info_path, config.extrinsics_path)
            self.base_frame = self.camera.base_from_camera.parent_frame
            tracker_class = ArucoTracker if config.source == "aruco" else ColorTracker
            self.tracker = tracker_class(getattr(config, config.source), self.camera)
        self.keys = vector_keys(config.source)
        self.last_stamp_ns: int | None = None
        self.dropped = 0

    @property
    def image_size(self) -> tuple[int, int] | None:
        return None if self.camera is None else tuple(self.camera.info.image_size)

    def track_image(self, rgb: np.ndarray, stamp_ns: int, now_ns: int) -> Track:
        """Track the object in a camera image (RGB uint8); StaleInput for an old or repeated one, or
        TrackerSetupError for an image that does not match the calibration."""
        if self.camera is None:
            raise TrackerSetupError("the mocap source takes poses, not images")
        if rgb.shape[1::-1] != self.image_size:
            raise TrackerSetupError(
                f"images are {rgb.shape[1]}x{rgb.shape[0]} but camera_info_path is for "
                f"{self.image_size[0]}x{self.image_size[1]}: calibrate at the camera's resolution"
            )
        self._accept(stamp_ns, now_ns, self.config.max_image_age_s)
        return self.tracker.track(rgb, stamp_ns)

    def track_pose(self, mocap_from_body: np.ndarray, stamp_ns: int, now_ns: int) -> Track:
        """Track from a motion-capture pose (4x4, body in the mocap frame)."""
        if not isinstance(self.tracker, MocapTracker):
            raise TrackerSetupError(f"the {self.config.source} source takes images, not poses")
        self._accept(stamp_ns, now_ns, self.config.mocap.max_age_s)
        return self.tracker.track(mocap_from_body, stamp_ns)

    def lost_since(self, now_ns: int) -> Track | None:
        """For mocap: a lost Track (stamped now) when no pose has come within max_age_s."""
        last = self.last_stamp_ns
        if last is not None and now_ns - last <= self.config.mocap.max_age_s * 1e9:
            return None
        return _lost(now_ns, with_orientation=True)

    def vector(self, track: Track) -> dict[str, np.ndarray]:
        return privileged_vector(track, self.config.source, self.image_size)

    def _accept(self, stamp_ns: int, now_ns: int, max_age_s: float) -> None:
        if self.last_stamp_ns is not None and stamp_ns <= self.last_stamp_ns:
            self.dropped += 1
            raise StaleInput(
                f"input stamped {stamp_ns} ns is not newer than the last one ({self.last_stamp_ns} ns)"
            )
        age_s = (now_ns - stamp_ns) * 1e-9
        if age_s > max_age_s:
            self.dropped += 1
            raise StaleInput(
                f"input is {age_s:.3f} s old (max {max_age_s:g} s): check the clocks and the load"
            )
        self.last_stamp_ns = stamp_ns


T = TypeVar("T")


class LatestSlot(Generic[T]):
    """A one-item queue that keeps only the newest item: callbacks put, a worker thread takes, and
    items the worker was too slow for are dropped (and counted) instead of queueing up."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._cond = threading.Condition()
        self._closed = False
        self.overwritten = 0

    def put(self, item: T) -> None:
        with self._cond:
            self.overwritten += self._item is not None
            self._item = item
            self._cond.notify()

    def take(self, timeout_s: float | None = None) -> T | None:
        """The newest item (waiting up to `timeout_s`), or None on timeout or after `close()`."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout_s)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
