"""The privileged tracker's core on rendered MuJoCo side-camera images with known ground truth, its
calibration read from the aps-calibrate files that the scene writes (tests/tracker_scene.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tracker_scene import CUBE_HALF, HEIGHT, MARKER_ID, MARKER_LENGTH, POSES, WIDTH, TrackerScene

from calibration.geometry import angle_deg, make_pose, matrix_from_quaternion
from calibration.handeye import HandEyeResult, write_transform
from robot_nodes.tracker_core import (
    ArucoConfig,
    ColorConfig,
    LatestSlot,
    MocapConfig,
    PrivilegedTracker,
    StaleInput,
    TrackerNodeConfig,
    TrackerSetupError,
    vector_keys,
)

TOLERANCE_M = 0.01


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> TrackerScene:
    return TrackerScene(tmp_path_factory.mktemp("tracker"))


def camera_config(scene: TrackerScene, source: str) -> TrackerNodeConfig:
    info, extrinsics = scene.write_calibration()
    aruco = ArucoConfig(
        marker_id=MARKER_ID, marker_length_m=MARKER_LENGTH, object_offset_m=[0, 0, -CUBE_HALF]
    )
    return TrackerNodeConfig(
        source=source, camera_info_path=str(info), extrinsics_path=str(extrinsics), aruco=aruco,
        color=ColorConfig(object_center_height_m=CUBE_HALF),
    )  # fmt: skip


def test_aruco_pose_within_1cm_and_3deg(scene: TrackerScene) -> None:
    tracker = PrivilegedTracker(camera_config(scene, "aruco"))
    assert tracker.base_frame == "base_link"
    for stamp, (x, y, yaw) in enumerate(POSES, start=1):
        track = tracker.track_image(scene.render(x, y, yaw), stamp, stamp)
        assert track.visible, (x, y, yaw)
        error = np.linalg.norm(track.position - scene.object_position())
        assert error < TOLERANCE_M, (x, y, yaw, error)
        w, qx, qy, qz = track.quaternion
        assert angle_deg(matrix_from_quaternion([qx, qy, qz, w]).T @ scene.object_rotation()) < 3.0
        assert 0.5 < track.quality <= 1.0
        vector = tracker.vector(track)
        assert list(vector) == list(vector_keys("aruco"))
        np.testing.assert_allclose(vector["object_pose"][:3], vector["object_pos"])
        assert vector["object_visible"][0] == 1.0


def test_colour_position_within_1cm(scene: TrackerScene) -> None:
    tracker = PrivilegedTracker(camera_config(scene, "color"))
    for stamp, (x, y, yaw) in enumerate(POSES, start=1):
        track = tracker.track_image(scene.render(x, y, yaw, marker=False), stamp, stamp)
        assert track.visible
        error = np.linalg.norm(track.position - scene.object_position())
        assert error < TOLERANCE_M, (x, y, yaw, error)
        x0, y0, x1, y1 = track.box
        u, v = track.centroid_px
        assert x0 <= u <= x1 and y0 <= v <= y1
        assert track.area_px > 2000  # a 5 cm cube ~0.75 m away at f = 1083 px covers ~70 x 70 px
        vector = tracker.vector(track)
        assert "object_pose" not in vector  # no orientation from a blob
        np.testing.assert_allclose(
            vector["object_box"], track.box / [WIDTH, HEIGHT, WIDTH, HEIGHT], rtol=1e-6
        )
        assert vector["object_area"][0] == pytest.approx(track.area_px / (WIDTH * HEIGHT))


def test_hue_range_wraps_through_red(scene: TrackerScene) -> None:
    image = scene.render(*POSES[1], marker=False)
    config = camera_config(scene, "color")
    wrapped = PrivilegedTracker(config).tracker.mask(image)
    config.color = ColorConfig(hsv_low=[11, 120, 60], hsv_high=[169, 255, 255])  # everything but red
    complement = PrivilegedTracker(config).tracker.mask(image)
    assert wrapped.sum() > 0 and not np.any(wrapped & complement)


def test_lost_object_says_so_with_zeros(scene: TrackerScene) -> None:
    aruco = PrivilegedTracker(camera_config(scene, "aruco"))
    track = aruco.track_image(scene.render(*POSES[0], marker=False), 1, 1)  # no marker to see
    assert not track.visible
    vector = aruco.vector(track)
    assert (
        vector["object_visible"][0] == 0.0
        and not np.any(vector["object_pose"])
        and not np.any(vector["object_pos"])
    )
    colour = PrivilegedTracker(camera_config(scene, "color"))
    track = colour.track_image(scene.render(1.5, 1.5, 0.0), 1, 1)  # off the table, out of view
    assert not track.visible and colour.vector(track)["track_quality"][0] == 0.0


def test_repeated_old_or_misfit_images_are_refused(scene: TrackerScene) -> None:
    tracker = PrivilegedTracker(camera_config(scene, "aruco"))
    image = scene.render(*POSES[0])
    tracker.track_image(image, 100, 100)
    with pytest.raises(StaleInput, match="not newer"):
        tracker.track_image(image, 100, 200)
    with pytest.raises(StaleInput, match="old"):
        tracker.track_image(image, 200, 200 + 10**9)
    with pytest.raises(TrackerSetupError, match="calibrate at the camera's resolution"):
        tracker.track_image(image[:240, :320], 300, 300)
    assert tracker.dropped == 2


def test_missing_calibration_names_aps_calibrate(tmp_path: Path) -> None:
    with pytest.raises(TrackerSetupError, match="aps-calibrate intrinsics"):
        PrivilegedTracker(TrackerNodeConfig(source="color"))
    config = TrackerNodeConfig(
        camera_info_path=str(tmp_path / "a.yaml"), extrinsics_path=str(tmp_path / "b.yaml")
    )
    with pytest.raises(TrackerSetupError, match=r"not found.*run aps-calibrate"):
        PrivilegedTracker(config)
    with pytest.raises(ValueError, match="hsv_low"):
        ColorConfig(hsv_low=[200, 0, 0])
    with pytest.raises(ValueError, match="ArUco dictionary"):
        ArucoConfig(dictionary="DICT_9X9_1")


def write_mocap_transform(path: Path, matrix: np.ndarray) -> None:
    write_transform(
        HandEyeResult("eye_to_hand", "survey", matrix, [], 0, 0.0, 0.0), "base_link", "mocap", path
    )


def test_mocap_pose_in_the_base_frame_and_lost_after_max_age(tmp_path: Path) -> None:
    base_from_mocap = make_pose(np.array([0.0, 0.0, np.pi / 2]), [1.0, 0.0, 0.0])  # turned 90 deg about z
    write_mocap_transform(tmp_path / "mocap.yaml", base_from_mocap)
    mocap = MocapConfig(
        transform_path=str(tmp_path / "mocap.yaml"), object_offset_m=[0, 0, -0.02], max_age_s=0.1
    )
    tracker = PrivilegedTracker(TrackerNodeConfig(source="mocap", mocap=mocap))
    assert tracker.base_frame == "base_link"
    body = make_pose(np.eye(3), [0.2, 0.3, 0.1])  # in the mocap frame
    track = tracker.track_pose(body, 1_000_000_000, 1_000_000_000)
    # mocap (0.2, 0.3, 0.08) -> base: x = 1 - 0.3, y = 0.2
    np.testing.assert_allclose(track.position, [0.7, 0.2, 0.08], atol=1e-9)
    np.testing.assert_allclose(track.quaternion, [np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)], atol=1e-9)
    assert tracker.lost_since(1_050_000_000) is None
    lost = tracker.lost_since(1_200_000_000)
    assert lost is not None and not lost.visible and lost.stamp_ns == 1_200_000_000
    with pytest.raises(TrackerSetupError, match="takes poses"):
        tracker.track_image(np.zeros((4, 4, 3), np.uint8), 2, 2)


def test_latest_slot_keeps_only_the_newest() -> None:
    slot: LatestSlot[int] = LatestSlot()
    for item in range(3):
        slot.put(item)
    assert slot.take(0.0) == 2 and slot.overwritten == 2
    assert slot.take(0.01) is None
    slot.close()
    assert slot.take(None) is None  # closed: returns at once


def test_example_parameters_load_into_the_configs() -> None:
    from apsconfig import load_config, parse_yaml
    from robot_nodes.camera_core import CameraNodeConfig

    document = parse_yaml((Path(__file__).parents[1] / "launch/params/sensors.yaml").read_text())
    camera = load_config(CameraNodeConfig, document["side_camera"]["ros__parameters"])
    assert camera.type == "realsense" and camera.realsense.depth and camera.camera_name == "side"
    tracker = load_config(TrackerNodeConfig, document["privileged_tracker"]["ros__parameters"])
    assert tracker.aruco.object_offset_m == [0.0, 0.0, -0.025]
    assert tracker.image_topic == "side/color/image_raw"
