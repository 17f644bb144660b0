"""Intrinsics on board images rendered with a known camera: recovery, view rejection, coverage,
camera_info YAML. Real OpenCV detection and calibration throughout."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from calibration.board import BoardSpec
from calibration.camera_info import CameraInfo, read_camera_info, write_camera_info
from calibration.errors import CalibrationError
from calibration.geometry import make_pose
from calibration.intrinsics import TILTS, IntrinsicsConfig, ViewCollector, calibrate_images
from calibration.synthetic import BoardRenderer, random_board_pose

SPEC = BoardSpec()
SIZE = (640, 480)
K = np.array([[560.0, 0.0, 324.0], [0.0, 564.0, 236.0], [0.0, 0.0, 1.0]])
DIST = np.array([-0.18, 0.07, 0.0008, -0.0006, 0.0])


@pytest.fixture(scope="module")
def renderer() -> BoardRenderer:
    return BoardRenderer(SPEC, K, DIST, SIZE)


@pytest.fixture(scope="module")
def frames(renderer: BoardRenderer) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    poses = [random_board_pose(rng, SPEC, K, SIZE, distance_m=(0.3, 0.55)) for _ in range(20)]
    return [(f"view{i:02d}.png", renderer.render(pose, rng, blur_sigma=0.4)) for i, pose in enumerate(poses)]


def facing_pose(distance_m: float, tilt_about_y_deg: float = 0.0) -> np.ndarray:
    """Board centred on the optical axis, turned about its vertical centre line."""
    centre = np.array([*SPEC.size_m, 0.0]) / 2
    rotation = cv2.Rodrigues(np.array([0.0, np.radians(tilt_about_y_deg), 0.0]))[0]
    return make_pose(rotation, np.array([0.0, 0.0, distance_m]) - rotation @ centre)


def test_recovers_known_intrinsics_within_one_percent(frames: list[tuple[str, np.ndarray]]) -> None:
    result = calibrate_images(frames, SPEC)
    k = result.camera_matrix
    relative = np.abs(
        [k[0, 0] / K[0, 0], k[1, 1] / K[1, 1], k[0, 2] / K[0, 2], k[1, 2] / K[1, 2]] - np.ones(4)
    )
    print(f"fx fy cx cy relative errors {relative}, RMS {result.rms_px:.3f} px")
    assert relative.max() < 0.01
    assert result.rms_px < 0.5
    assert max(v.rms_px for v in result.views) < 0.5
    assert len(result.views) == 20 and all(d.kept for d in result.decisions)
    assert result.dist_coeffs[0] == pytest.approx(DIST[0], abs=0.02)  # k1 dominates the distortion
    assert result.dist_coeffs[4] == 0.0  # k3 fixed by default, as ROS camera_calibration does
    assert np.all(result.std_devs[:4] < 2.0)


def test_camera_info_yaml_round_trip(frames: list[tuple[str, np.ndarray]], tmp_path) -> None:
    result = calibrate_images(frames[:12], SPEC, IntrinsicsConfig(min_views=10))
    path = tmp_path / "wrist.yaml"
    write_camera_info(CameraInfo("wrist", result.image_size, result.camera_matrix, result.dist_coeffs), path)
    document = yaml.safe_load(path.read_text())
    assert list(document) == [
        "image_width", "image_height", "camera_name", "camera_matrix", "distortion_model",
        "distortion_coefficients", "rectification_matrix", "projection_matrix",
    ]  # fmt: skip
    assert document["distortion_model"] == "plumb_bob" and document["distortion_coefficients"]["cols"] == 5
    assert "  data: [" in path.read_text()  # flow-style lists, as camera_calibration writes them
    info = read_camera_info(path)
    assert info.camera_name == "wrist" and info.image_size == SIZE
    np.testing.assert_array_equal(info.camera_matrix, result.camera_matrix)
    np.testing.assert_array_equal(info.dist_coeffs, result.dist_coeffs)
    np.testing.assert_array_equal(info.rectification_matrix, np.eye(3))
    expected_p, _ = cv2.getOptimalNewCameraMatrix(result.camera_matrix, result.dist_coeffs, SIZE, 0.0)
    np.testing.assert_allclose(info.projection_matrix[:, :3], expected_p)

    document["camera_matrix"]["data"] = document["camera_matrix"]["data"][:8]
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(CalibrationError, match="camera_matrix must be 3x3"):
        read_camera_info(path)


def test_blurry_partial_duplicate_and_empty_frames_are_rejected_with_reasons(renderer: BoardRenderer) -> None:
    rng = np.random.default_rng(2)
    collector = ViewCollector(SPEC)
    sharp = renderer.render(facing_pose(0.5), rng)
    assert collector.add(sharp, "sharp").kept
    assert "almost the same as sharp" in collector.add(renderer.render(facing_pose(0.5), rng), "again").reason
    blurry = collector.add(renderer.render(facing_pose(0.28), rng, blur_sigma=2.5), "blurry")
    assert not blurry.kept and blurry.reason.startswith("blurry") and blurry.blur_px > 2.0
    covered = renderer.render(facing_pose(0.45), rng)
    covered[:, : SIZE[0] * 2 // 3] = 90  # most of the board hidden
    partial = collector.add(covered, "partial")
    assert not partial.kept and partial.reason.startswith("only ") and "of 40 corners" in partial.reason
    empty = collector.add(np.full(SIZE[::-1], 128, np.uint8), "empty")
    assert not empty.kept and empty.reason == "no board found"
    assert len(collector.views) == 1 and len(collector.decisions) == 5
    with pytest.raises(CalibrationError, match="one resolution"):
        collector.add(np.zeros((100, 100), np.uint8), "small")


def test_coverage_grid_tilts_and_hints(renderer: BoardRenderer) -> None:
    rng = np.random.default_rng(3)
    collector = ViewCollector(SPEC)
    collector.add(renderer.render(facing_pose(0.8), rng), "centre")
    coverage = collector.coverage()
    assert coverage.cells[1, 1:3].tolist() == [1, 1] and coverage.cells[0, 0] == 0
    hints = " ".join(coverage.missing())
    assert "top-left" in hints and "bottom-right" in hints and "right side farther" in hints
    # A negative turn about the camera's y axis (down) gives the board's x axis depth: its right side
    # recedes (its corners there are closer together in the image).
    assert collector.add(renderer.render(facing_pose(0.6, tilt_about_y_deg=-30), rng), "turned").kept
    assert collector.coverage().tilts == {TILTS[0]: 0, TILTS[1]: 1, TILTS[2]: 0, TILTS[3]: 0}
    assert "|  .  |" in collector.coverage().render()


def test_no_board_and_too_few_views_are_clear_errors(frames: list[tuple[str, np.ndarray]]) -> None:
    noise = np.random.default_rng(4).integers(0, 255, (5, SIZE[1], SIZE[0]), dtype=np.uint8)
    with pytest.raises(CalibrationError, match="no board found in any of the 5 images"):
        calibrate_images([(f"n{i}", image) for i, image in enumerate(noise)], SPEC)
    with pytest.raises(CalibrationError, match=r"only 4 usable views of 4 images, need >= 10: take 20-40"):
        calibrate_images(frames[:4], SPEC)
    wrong_board = BoardSpec(squares_x=5, squares_y=4, dictionary="DICT_4X4_50")
    with pytest.raises(CalibrationError, match="no board found"):
        calibrate_images(frames[:3], wrong_board)


def test_view_that_does_not_fit_the_others_is_dropped(frames: list[tuple[str, np.ndarray]]) -> None:
    """A view from a lens with opposite distortion cannot share the others' model: it is dropped."""
    other_lens = BoardRenderer(SPEC, K, np.array([0.25, 0.0, 0.0, 0.0, 0.0]), SIZE)
    rng = np.random.default_rng(5)
    odd = other_lens.render(
        random_board_pose(rng, SPEC, K, SIZE, distance_m=(0.3, 0.35), max_tilt_deg=5), rng
    )
    result = calibrate_images([*frames[:14], ("odd.png", odd)], SPEC)
    dropped = [d for d in result.decisions if not d.kept]
    assert [d.name for d in dropped] == ["odd.png"] and "reprojection error" in dropped[0].reason
    assert len(result.views) == 14 and result.rms_px < 0.5
