"""aps-privileged-tracker in its own process over DDS: fed rendered MuJoCo side-camera images (640x480,
reliable) from the test, it publishes the cube's pose in the base frame within 1 cm, the labelled
privileged vector, a lost flag without a pose, and the camera's static transform; a repeated image
is not tracked again and a wrong encoding is refused with a log line. The mocap source turns poses
into the same vector and flags a silent source."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sensor_node_helpers import log_lines, probe, spin_until, start, stop, write_params
from tracker_scene import CAMERA_FRAME, CUBE_HALF, MARKER_ID, MARKER_LENGTH, POSES, TrackerScene

from calibration.geometry import make_pose
from calibration.handeye import HandEyeResult, write_transform


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> TrackerScene:
    return TrackerScene(tmp_path_factory.mktemp("tracker_node"))


def test_aruco_tracker_node_over_dds(scene: TrackerScene, tmp_path: Path) -> None:
    from geometry_msgs.msg import PoseStamped, TransformStamped
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32MultiArray

    from robot_nodes.messages import from_time, image_to_msg, vectors_from_msg
    from robot_nodes.qos import latched_qos, sensor_qos

    info, extrinsics = scene.write_calibration()
    params = write_params(tmp_path / "tracker.yaml", "privileged_tracker", {
        "source": "aruco", "image_topic": "side/color/image_raw",
        "camera_info_path": str(info), "extrinsics_path": str(extrinsics),
        "aruco": {"marker_id": MARKER_ID, "marker_length_m": MARKER_LENGTH,
                  "object_offset_m": [0.0, 0.0, -CUBE_HALF]},
    })  # fmt: skip
    views = [(scene.render(x, y, yaw), scene.object_position()) for x, y, yaw in POSES[:3]]
    hidden = scene.render(*POSES[0], marker=False)
    poses, vectors, transforms = {}, {}, []
    with probe("tracker_probe") as node:
        images = node.create_publisher(Image, "side/color/image_raw", sensor_qos(reliable=True))
        reliable = sensor_qos(reliable=True)
        node.create_subscription(
            PoseStamped, "object_pose", lambda m: poses.__setitem__(from_time(m.header.stamp), m), reliable
        )
        node.create_subscription(
            Float32MultiArray, "privileged", lambda m: vectors.__setitem__(*vectors_from_msg(m)), reliable
        )
        node.create_subscription(
            TransformStamped, "/privileged_tracker/static_transform", transforms.append, latched_qos()
        )
        log = tmp_path / "tracker.log"
        process = start("aps-privileged-tracker", params, log)
        try:
            ready = lambda: images.get_subscription_count() > 0 and transforms  # noqa: E731
            assert spin_until(node, ready, 30), log.read_text()

            def send(image: np.ndarray, stamp: int) -> None:
                images.publish(image_to_msg(image, stamp, CAMERA_FRAME))

            stamps = []
            for image, _ in views:
                stamps.append(node.get_clock().now().nanoseconds)
                send(image, stamps[-1])
                assert spin_until(node, lambda: stamps[-1] in vectors, 10), log.read_text()
            lost_stamp = node.get_clock().now().nanoseconds
            send(hidden, lost_stamp)
            assert spin_until(node, lambda: lost_stamp in vectors, 10)
            send(views[0][0], lost_stamp)  # the same stamp again: not newer, not tracked
            assert spin_until(node, lambda: "not newer" in log.read_text(), 10)
            gray = image_to_msg(
                views[0][0][..., 0].copy(), node.get_clock().now().nanoseconds, CAMERA_FRAME, "mono8"
            )
            images.publish(gray)  # a wrong encoding: refused with a line naming the fix
            spin_until(node, lambda: False, 0.5)
        finally:
            status = stop(process)
    assert status == 0

    for stamp, (_, truth) in zip(stamps, views, strict=True):
        pose = poses[stamp]
        assert pose.header.frame_id == "base_link"
        position = np.array([pose.pose.position.x, pose.pose.position.y, pose.pose.position.z])
        assert np.linalg.norm(position - truth) < 0.01
        vector = vectors[stamp]
        assert list(vector) == ["object_pose", "object_pos", "object_visible", "track_quality"]
        np.testing.assert_allclose(vector["object_pos"], position, atol=1e-6)  # float32
        assert vector["object_visible"][0] == 1.0 and vector["track_quality"][0] > 0.5
    assert vectors[lost_stamp]["object_visible"][0] == 0.0 and not np.any(vectors[lost_stamp]["object_pose"])
    assert lost_stamp not in poses  # no pose, stale or new, while lost
    assert len(vectors) == len(stamps) + 1  # the repeated and the mono8 image produced nothing
    assert any("image dropped" in line and "not newer" in line for line in log_lines(log, "WARN"))
    errors = log_lines(log, "ERROR")
    assert len(errors) == 1 and "'mono8' is not accepted here; publish one of ['rgb8', 'bgr8']" in errors[0]
    transform = transforms[-1]
    assert (transform.header.frame_id, transform.child_frame_id) == ("base_link", CAMERA_FRAME)
    camera_position = scene.data.cam_xpos[scene.camera]
    t = transform.transform.translation
    np.testing.assert_allclose([t.x, t.y, t.z], camera_position, atol=1e-6)


def test_mocap_source_over_dds(tmp_path: Path) -> None:
    from geometry_msgs.msg import PoseStamped
    from std_msgs.msg import Float32MultiArray

    from robot_nodes.messages import header, vectors_from_msg
    from robot_nodes.qos import sensor_qos

    base_from_mocap = make_pose(np.eye(3), [0.5, -0.2, 0.0])
    result = HandEyeResult("eye_to_hand", "survey", base_from_mocap, [], 0, 0.0, 0.0)
    write_transform(result, "base_link", "mocap", tmp_path / "mocap.yaml")
    params = write_params(tmp_path / "tracker.yaml", "privileged_tracker", {
        "source": "mocap", "mocap": {"transform_path": str(tmp_path / "mocap.yaml"), "max_age_s": 0.2},
    })  # fmt: skip
    vectors: list[tuple[int, dict]] = []
    with probe("mocap_probe") as node:
        poses = node.create_publisher(PoseStamped, "mocap/pose", sensor_qos(reliable=True))
        node.create_subscription(
            Float32MultiArray, "privileged", lambda m: vectors.append(vectors_from_msg(m)), sensor_qos(True)
        )
        log = tmp_path / "tracker.log"
        process = start("aps-privileged-tracker", params, log)
        try:
            assert spin_until(node, lambda: poses.get_subscription_count() > 0, 30), log.read_text()

            def stream_pose() -> bool:  # a mocap system streams; one pose per probe spin here
                msg = PoseStamped(header=header(node.get_clock().now().nanoseconds, "mocap"))
                msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = 0.1, 0.2, 0.03
                msg.pose.orientation.w = 1.0
                poses.publish(msg)
                return any(v["object_visible"][0] == 1.0 for _, v in vectors)

            assert spin_until(node, stream_pose, 10), log.read_text()
            sent = time.monotonic()  # then silence: lost after max_age_s
            assert spin_until(node, lambda: vectors[-1][1]["object_visible"][0] == 0.0, 5)
            silent_for = time.monotonic() - sent
        finally:
            status = stop(process)
    assert status == 0
    seen = next(v for _, v in vectors if v["object_visible"][0] == 1.0)
    np.testing.assert_allclose(seen["object_pos"], [0.6, 0.0, 0.03], atol=1e-6)
    np.testing.assert_allclose(seen["object_pose"][3:], [1, 0, 0, 0], atol=1e-6)
    assert 0.1 < silent_for < 1.0
