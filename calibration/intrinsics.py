"""Camera intrinsics from ChArUco views: per-frame keep/reject, coverage, `cv2.calibrateCamera`.

`ViewCollector.add(frame)` is the piece a live source (a ROS image subscriber, a webcam loop) feeds
one frame at a time; it says whether the view was kept and why not, and what coverage is missing.
`calibrate` then fits the pinhole + plumb-bob model and drops views that do not fit the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, NamedTuple

import cv2
import numpy as np

from calibration.board import BoardDetection, BoardDetector, BoardSpec
from calibration.errors import CalibrationError
from calibration.geometry import make_pose

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GRID = (4, 3)  # coverage cells across, down
TILT_DEG = 15.0  # a view counts as tilted beyond this
TILTS = ("left side farther", "right side farther", "top farther", "bottom farther")


@dataclass
class ViewFilter:
    """Per-frame acceptance rules."""

    min_corner_fraction: float = 0.25  # of the board's inner corners; partial views are fine, slivers not
    max_blur_px: float = 2.0  # estimated edge blur (Gaussian sigma, px); a sharp image measures ~0.8-1.2
    min_new_view_px: float = 10.0  # mean corner shift from every kept view, so a still board adds one view

    def __post_init__(self) -> None:
        if not 0 < self.min_corner_fraction <= 1:
            raise ValueError(f"min_corner_fraction must lie in (0, 1], got {self.min_corner_fraction}")
        if self.max_blur_px <= 0 or self.min_new_view_px < 0:
            raise ValueError("max_blur_px must be > 0 and min_new_view_px >= 0")


@dataclass
class View:
    name: str
    detection: BoardDetection
    blur_px: float
    tilt: str | None  # one of TILTS, or None when the board faces the camera within TILT_DEG


@dataclass
class Decision:
    name: str
    kept: bool
    reason: str  # why it was rejected; "" when kept
    corners: int = 0
    blur_px: float = float("nan")


@dataclass
class Coverage:
    """Which parts of the image have board corners, and which tilts were seen, over the kept views."""

    cells: np.ndarray  # [GRID rows, GRID cols] views with a corner in that cell
    tilts: dict[str, int]
    views: int

    def missing(self) -> list[str]:
        hints = []
        rows, cols = self.cells.shape
        empty = [(r, c) for r in range(rows) for c in range(cols) if self.cells[r, c] == 0]
        if empty:
            names = ", ".join(_cell_name(r, c, rows, cols) for r, c in empty)
            hints.append(f"no corners yet in the {names} of the image: move the board there")
        for tilt, count in self.tilts.items():
            if count == 0:
                hints.append(f"no view with the board's {tilt} (tilt it {TILT_DEG:g}-45 degrees)")
        return hints

    def render(self) -> str:
        """ASCII grid of views per image cell, then the tilt counts."""
        lines = ["views with corners in each image region:"]
        border = "+" + "-----+" * self.cells.shape[1]
        lines.append(border)
        for row in self.cells:
            lines.append("|" + "|".join(f"{n:^5d}" if n else "  .  " for n in row) + "|")
            lines.append(border)
        lines.append("tilted views: " + ", ".join(f"{tilt}: {n}" for tilt, n in self.tilts.items()))
        return "\n".join(lines)


def _cell_name(row: int, col: int, rows: int, cols: int) -> str:
    vertical = "top" if row == 0 else "bottom" if row == rows - 1 else "middle"
    horizontal = "left" if col == 0 else "right" if col == cols - 1 else "centre"
    return f"{vertical}-{horizontal}"


class ViewCollector:
    """Decides frame by frame which views to calibrate from. All frames must share one size."""

    def __init__(self, spec: BoardSpec, view_filter: ViewFilter | None = None) -> None:
        self.spec = spec
        self.filter = view_filter or ViewFilter()
        self.detector = BoardDetector(spec)
        self.views: list[View] = []
        self.decisions: list[Decision] = []
        self.image_size: tuple[int, int] | None = None  # width, height

    def add(self, image: np.ndarray, name: str = "") -> Decision:
        name = name or f"frame {len(self.decisions)}"
        size = (image.shape[1], image.shape[0])
        if self.image_size is None:
            self.image_size = size
        elif size != self.image_size:
            raise CalibrationError(
                f"{name} is {size[0]}x{size[1]}, earlier frames {self.image_size[0]}x{self.image_size[1]}: "
                "calibrate one camera at one resolution at a time"
            )
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        detection = self.detector.detect(gray)
        decision = self._judge(name, gray, detection)
        self.decisions.append(decision)
        return decision

    def _judge(self, name: str, gray: np.ndarray, detection: BoardDetection) -> Decision:
        needed = max(6, int(np.ceil(self.filter.min_corner_fraction * self.spec.corner_count)))
        if len(detection) == 0:
            reason = "no board found" + (
                f" ({detection.markers} markers but no corners: blurry, or squares_x/squares_y/legacy_pattern"
                " do not match the board)"
                if detection.markers >= 2
                else ""
            )
            return Decision(name, False, reason, 0)
        if len(detection) < needed:
            return Decision(
                name, False, f"only {len(detection)} of {self.spec.corner_count} corners", len(detection)
            )
        if self.detector.collinear(detection):
            return Decision(name, False, "corners all on one line", len(detection))
        blur = edge_blur_px(gray, detection.image_points)
        if blur > self.filter.max_blur_px:
            return Decision(
                name,
                False,
                f"blurry (edge blur {blur:.1f} px > {self.filter.max_blur_px:g})",
                len(detection),
                blur,
            )
        similar = self._most_similar(detection)
        if similar is not None:
            return Decision(
                name, False, f"almost the same as {similar}: move the board", len(detection), blur
            )
        self.views.append(View(name, detection, blur, self._tilt(detection)))
        return Decision(name, True, "", len(detection), blur)

    def _most_similar(self, detection: BoardDetection) -> str | None:
        for view in self.views:
            common, here, there = np.intersect1d(detection.ids, view.detection.ids, return_indices=True)
            if len(common) < 0.8 * max(len(detection), len(view.detection)):
                continue
            shift = np.linalg.norm(detection.image_points[here] - view.detection.image_points[there], axis=1)
            if shift.mean() < self.filter.min_new_view_px:
                return view.name
        return None

    def _tilt(self, detection: BoardDetection) -> str | None:
        """Board tilt from a pose under a nominal camera (focal = image width): coverage only needs
        the rough direction, and the true intrinsics are not known yet."""
        assert self.image_size is not None
        width, height = self.image_size
        nominal = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], float)
        ok, rvec, _ = cv2.solvePnP(
            detection.object_points, detection.image_points, nominal, None, flags=cv2.SOLVEPNP_IPPE
        )
        if not ok:
            return None
        normal = cv2.Rodrigues(rvec)[0][:, 2]  # the board's z axis points away from the camera
        # A plane whose right side is farther has an away-pointing normal leaning left (x < 0).
        horizontal = np.degrees(np.arctan2(-normal[0], normal[2]))
        vertical = np.degrees(np.arctan2(-normal[1], normal[2]))
        if max(abs(horizontal), abs(vertical)) < TILT_DEG:
            return None
        if abs(horizontal) >= abs(vertical):
            return TILTS[1] if horizontal > 0 else TILTS[0]
        return TILTS[3] if vertical > 0 else TILTS[2]

    def coverage(self) -> Coverage:
        return coverage_of(self.views, self.image_size)


def coverage_of(views: list[View], image_size: tuple[int, int] | None) -> Coverage:
    cells = np.zeros(GRID[::-1], int)
    if image_size is not None:
        width, height = image_size
        for view in views:
            points = view.detection.image_points
            cols = np.clip((points[:, 0] / width * GRID[0]).astype(int), 0, GRID[0] - 1)
            rows = np.clip((points[:, 1] / height * GRID[1]).astype(int), 0, GRID[1] - 1)
            hit = np.zeros_like(cells, bool)
            hit[rows, cols] = True
            cells += hit
    tilts = {tilt: sum(view.tilt == tilt for view in views) for tilt in TILTS}
    return Coverage(cells, tilts, len(views))


def edge_blur_px(gray: np.ndarray, points: np.ndarray) -> float:
    """Blur of the board's edges as a Gaussian sigma in pixels, around the detected corners.

    A step of contrast C blurred by a Gaussian of sigma s has a peak gradient C / (s sqrt(2 pi)), so
    the ratio of contrast to peak gradient measures blur independently of lighting and board size.
    """
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 1
    roi = gray[max(y0, 0) : y1, max(x0, 0) : x1].astype(np.float32)
    gradient = np.hypot(cv2.Sobel(roi, cv2.CV_32F, 1, 0), cv2.Sobel(roi, cv2.CV_32F, 0, 1)) / 8
    contrast = np.percentile(roi, 95) - np.percentile(roi, 5)
    peak = np.percentile(gradient, 99.5)
    return float(contrast / (np.sqrt(2 * np.pi) * peak)) if peak > 0 else float("inf")


@dataclass
class IntrinsicsConfig:
    """`aps-calibrate intrinsics` settings (apart from the input and output paths)."""

    camera_name: str = "camera"  # camera_name in the camera_info YAML
    min_views: int = 10  # images with a detected board needed to fit
    k_coefficients: Literal[2, 3] = 2  # radial terms fitted; 2 (k3 fixed at 0) as ROS camera_calibration
    outlier_px: float = 1.0  # views above max(this, 3x the median view error) are dropped, then refit
    views: ViewFilter = field(default_factory=ViewFilter)

    def __post_init__(self) -> None:
        if self.min_views < 4:
            raise ValueError(f"min_views must be >= 4, got {self.min_views}")


@dataclass
class ViewError:
    name: str
    corners: int
    blur_px: float
    rms_px: float


@dataclass
class IntrinsicsResult:
    camera_matrix: np.ndarray  # 3x3
    dist_coeffs: np.ndarray  # k1, k2, p1, p2, k3 (plumb_bob)
    image_size: tuple[int, int]  # width, height
    rms_px: float  # over all corners of the kept views
    std_devs: np.ndarray  # fx, fy, cx, cy, k1, k2, p1, p2, k3: one-sigma estimates from the fit
    views: list[ViewError]
    decisions: list[Decision]  # every frame, with the reason when it was not used
    coverage: Coverage
    board_poses: list[np.ndarray]  # 4x4 board-in-camera per view


def read_images(folder: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(file name, image) for every image file of `folder`, in name order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    for path in files:
        yield path.name, read_image(path)


def read_image(path: Path) -> np.ndarray:
    """8-bit grey image, or CalibrationError."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise CalibrationError(f"cannot read image {path}")
    return image


def calibrate_images(
    frames: Iterable[tuple[str, np.ndarray]], spec: BoardSpec, config: IntrinsicsConfig | None = None
) -> IntrinsicsResult:
    """Collect views from `frames` ((name, image) pairs from any source), then `calibrate`."""
    config = config or IntrinsicsConfig()
    collector = ViewCollector(spec, config.views)
    for name, image in frames:
        collector.add(image, name)
    return calibrate(collector, config)


def calibrate(collector: ViewCollector, config: IntrinsicsConfig | None = None) -> IntrinsicsResult:
    """Fit K and plumb-bob distortion to the collector's views; views that fit far worse than the
    rest are dropped (their decision says why) and the fit repeated once without them."""
    config = config or IntrinsicsConfig()
    views = list(collector.views)
    decisions = list(collector.decisions)
    _require_views(views, decisions, config.min_views)
    assert collector.image_size is not None
    flags = cv2.CALIB_FIX_K3 if config.k_coefficients == 2 else 0
    fit = _fit(views, collector.image_size, flags)
    limit = max(config.outlier_px, 3 * float(np.median(fit.errors)))
    outliers = {view.name: float(e) for view, e in zip(views, fit.errors, strict=True) if e > limit}
    if outliers:
        views = [view for view in views if view.name not in outliers]
        decisions = [
            replace(d, kept=False, reason=f"reprojection error {outliers[d.name]:.2f} px > {limit:.2f}")
            if d.name in outliers
            else d
            for d in decisions
        ]
        _require_views(views, decisions, config.min_views)
        fit = _fit(views, collector.image_size, flags)
    return IntrinsicsResult(
        camera_matrix=fit.camera_matrix,
        dist_coeffs=fit.dist_coeffs.reshape(-1)[:5],
        image_size=collector.image_size,
        rms_px=float(fit.rms),
        std_devs=fit.std_devs[:9],
        views=[
            ViewError(view.name, len(view.detection), view.blur_px, float(e))
            for view, e in zip(views, fit.errors, strict=True)
        ],
        decisions=decisions,
        coverage=coverage_of(views, collector.image_size),  # of the views finally used
        board_poses=[make_pose(r, t) for r, t in zip(fit.rvecs, fit.tvecs, strict=True)],
    )


class _Fit(NamedTuple):
    rms: float
    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray
    rvecs: Sequence[np.ndarray]
    tvecs: Sequence[np.ndarray]
    errors: np.ndarray  # RMS px per view
    std_devs: np.ndarray


def _fit(views: list[View], image_size: tuple[int, int], flags: int) -> _Fit:
    object_points = [view.detection.object_points for view in views]
    image_points = [view.detection.image_points for view in views]
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-10)
    rms, k, d, rvecs, tvecs, std_devs, _, errors = cv2.calibrateCameraExtended(
        object_points, image_points, image_size, None, None, flags=flags, criteria=criteria
    )
    return _Fit(rms, k, d, rvecs, tvecs, errors.reshape(-1), std_devs.reshape(-1))


def _require_views(views: list[View], decisions: list[Decision], min_views: int) -> None:
    if len(views) >= min_views:
        return
    if decisions and not any(d.corners for d in decisions):
        raise CalibrationError(
            f"no board found in any of the {len(decisions)} images: check that the board spec "
            "(squares, dictionary) matches the printed board and that the board is in view"
        )
    reasons: dict[str, int] = {}
    for d in decisions:
        if not d.kept:
            key = d.reason.split(" (")[0].split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    detail = "; ".join(f"{n} {reason}" for reason, n in reasons.items())
    raise CalibrationError(
        f"only {len(views)} usable views of {len(decisions)} images, need >= {min_views}"
        + (f" (rejected: {detail})" if detail else "")
        + ": take 20-40 sharp views covering the whole image, with the board tilted up to 45 degrees"
    )
