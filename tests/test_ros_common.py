"""The pieces every node shares: message conversions (no ROS graph), parameters from a config
dataclass (one in-process node), QoS by role, and the nodes' main()."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import pytest

from apsconfig import ConfigError
from calibration.camera_info import CameraInfo, read_camera_info, write_camera_info
from robot_nodes.messages import (
    MessageError,
    camera_info_to_msg,
    from_time,
    image_from_msg,
    image_to_msg,
    joint_state_arrays,
    joint_state_to_msg,
    pinhole_camera,
    to_time,
    vectors_from_msg,
    vectors_to_msg,
)

# --- tier a: conversions, no ROS graph ----------------------------------------------------------


def test_messages_module_imports_no_rclpy() -> None:
    code = "import sys, robot_nodes.messages; print('rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_stamps_round_trip_exactly() -> None:
    for stamp in (0, 1, 1_732_960_000_123_456_789):
        assert from_time(to_time(stamp)) == stamp
    with pytest.raises(MessageError, match="negative"):
        to_time(-1)


def test_images_round_trip_and_convert_bgr() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    msg = image_to_msg(rgb, 42, "wrist_color_optical_frame")
    assert (msg.width, msg.height, msg.step, msg.encoding) == (5, 6, 15, "rgb8")
    assert from_time(msg.header.stamp) == 42 and msg.header.frame_id == "wrist_color_optical_frame"
    np.testing.assert_array_equal(image_from_msg(msg), rgb)
    bgr = image_to_msg(np.ascontiguousarray(rgb[..., ::-1]), 0, encoding="bgr8")
    np.testing.assert_array_equal(image_from_msg(bgr), rgb)  # read back as RGB
    mono = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_from_msg(image_to_msg(mono, 0, encoding="mono8"), ["mono8"]), mono)
    depth = rng.integers(0, 5000, (4, 3), dtype=np.uint16)
    depth_msg = image_to_msg(depth, 0, encoding="16UC1")
    assert depth_msg.step == 6
    np.testing.assert_array_equal(image_from_msg(depth_msg, ["16UC1"]), depth)


def test_image_rows_with_padding_and_big_endian_depth() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = image_to_msg(rgb, 0)
    msg.step = 12  # 9 bytes of pixels + 3 of padding per row
    msg.data = np.hstack([rgb.reshape(2, 9), np.full((2, 3), 255, np.uint8)]).tobytes()
    np.testing.assert_array_equal(image_from_msg(msg), rgb)
    depth = np.array([[1, 258]], dtype=np.uint16)
    big = image_to_msg(depth, 0, encoding="16UC1")
    big.is_bigendian, big.data = 1, depth.astype(">u2").tobytes()
    np.testing.assert_array_equal(image_from_msg(big, ["16UC1"]), depth)


def test_image_errors_name_the_fix() -> None:
    msg = image_to_msg(np.zeros((4, 4, 3), np.uint8), 0)
    msg.encoding = "yuv422"
    with pytest.raises(MessageError, match=r"publish one of \['rgb8', 'bgr8'\]"):
        image_from_msg(msg)
    depth = image_to_msg(np.zeros((4, 4), np.uint16), 0, encoding="16UC1")
    with pytest.raises(MessageError, match="not accepted"):
        image_from_msg(depth)  # a colour reader refuses depth
    short = image_to_msg(np.zeros((4, 4, 3), np.uint8), 0)
    short.data = bytes(10)
    with pytest.raises(MessageError, match="do not fit"):
        image_from_msg(short)
    with pytest.raises(MessageError, match="HxWx3 uint8"):
        image_to_msg(np.zeros((4, 4), np.uint8), 0)


def test_labelled_vectors_round_trip_with_stamp() -> None:
    vectors = {"object_pos": np.array([0.1, -0.2, 0.3]), "object_in_view": np.array([1.0])}
    stamp = 1_732_960_000_987_654_321
    stamp_back, back = vectors_from_msg(vectors_to_msg(vectors, stamp))
    assert stamp_back == stamp and list(back) == ["object_pos", "object_in_view"]
    for key, value in vectors.items():
        assert back[key].dtype == np.float32
        np.testing.assert_array_equal(back[key], value.astype(np.float32))
    assert vectors_from_msg(vectors_to_msg(vectors))[0] is None
    broken = vectors_to_msg(vectors, stamp)
    broken.data = [*broken.data, 0.0]
    with pytest.raises(MessageError, match="covers 4 numbers, the message holds 5"):
        vectors_from_msg(broken)
    with pytest.raises(MessageError, match="reserved"):
        vectors_to_msg({"stamp": np.zeros(1)})


def test_joint_states_in_the_readers_order() -> None:
    msg = joint_state_to_msg(
        ["a", "b", "c"], np.array([1.0, 2.0, 3.0]), 7, velocity=np.array([4.0, 5.0, 6.0])
    )
    position, velocity = joint_state_arrays(msg, ["c", "a"])
    np.testing.assert_array_equal(position, [3.0, 1.0])
    np.testing.assert_array_equal(velocity, [6.0, 4.0])
    assert joint_state_arrays(joint_state_to_msg(["a"], np.ones(1), 0), ["a"])[1] is None
    with pytest.raises(MessageError, match=r"lacks joints \['d'\]"):
        joint_state_arrays(msg, ["a", "d"])


def test_camera_info_from_calibration_yaml(tmp_path) -> None:
    calibrated = CameraInfo(
        "wrist", (640, 480), [[600, 0, 320], [0, 610, 240], [0, 0, 1]], [0.1, -0.05, 0, 0, 0]
    )
    write_camera_info(calibrated, tmp_path / "wrist.yaml")
    msg = camera_info_to_msg(read_camera_info(tmp_path / "wrist.yaml"), 5, "wrist_color_optical_frame")
    assert (msg.width, msg.height, msg.distortion_model) == (640, 480, "plumb_bob")
    np.testing.assert_allclose(msg.k, [600, 0, 320, 0, 610, 240, 0, 0, 1])
    np.testing.assert_allclose(msg.d, [0.1, -0.05, 0, 0, 0])
    np.testing.assert_allclose(np.reshape(msg.p, (3, 4))[:, 3], 0)
    assert msg.header.frame_id == "wrist_color_optical_frame" and from_time(msg.header.stamp) == 5


def test_pinhole_camera_projects_as_mujoco_does() -> None:
    import sim
    from sim.camera import project

    env = sim.make("search-pick", sim.TaskConfig(image_size=32, randomize=False))
    env.reset(seed=0)
    camera = env.model.camera("wrist").id
    rotation = env.data.cam_xmat[camera].reshape(3, 3)  # columns: right, up, backward
    in_camera = np.array([[0.02, -0.01, -0.2], [-0.03, 0.02, -0.3]])
    points = env.data.cam_xpos[camera] + in_camera @ rotation.T
    pixels, _ = project(env.model, env.data, camera, points, 32)
    info = pinhole_camera("wrist", float(env.model.cam_fovy[camera]), 32, 32)
    optical = in_camera * np.array([1.0, -1.0, -1.0])  # optical frame: x right, y down, z forward
    uv = optical @ info.camera_matrix.T
    np.testing.assert_allclose(uv[:, :2] / uv[:, 2:], pixels, atol=1e-9)
    env.close()


# --- tier b: parameters through one in-process node ---------------------------------------------


@dataclass
class Limits:
    speed: float = 0.5  # metres per second
    margin: float | None = None  # metres; None: no margin

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")


@dataclass
class DemoNodeConfig:
    READ_ONLY: ClassVar[tuple[str, ...]] = ("checkpoint", "limits.margin")

    checkpoint: str = ""  # folder of the policy checkpoint
    sampling: Literal["mode", "component"] = "mode"  # how actions are drawn
    rate: int = 10  # ticks per second
    topics: list[str] = field(default_factory=list)  # key=topic pairs
    gains: list[float] = field(default_factory=lambda: [1.0, 2.0])  # one per axis
    limits: Limits = field(default_factory=Limits)


@pytest.fixture(scope="module")
def ros():
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.shutdown()


def make_node(ros, overrides: dict):
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from robot_nodes.params import node_options

    parameters = [Parameter(k, value=v) for k, v in overrides.items()]
    return Node("demo_node", parameter_overrides=parameters, **node_options())


def test_parameters_declared_from_the_dataclass(ros) -> None:
    from rclpy.parameter import Parameter

    from robot_nodes.params import declare_config

    node = make_node(ros, {"rate": 20, "limits.speed": 1, "topics": ["wrist=cam/color/image_raw"]})
    seen = []
    try:
        config = declare_config(node, DemoNodeConfig, on_change=seen.append)
        assert config.rate == 20 and config.limits.speed == 1.0 and isinstance(config.limits.speed, float)
        assert config.topics == ["wrist=cam/color/image_raw"] and config.gains == [1.0, 2.0]
        assert node.get_parameter("limits.speed").value == 1.0
        assert node.get_parameter("limits.margin").value is None
        assert node.get_parameter("topics").type_ == Parameter.Type.STRING_ARRAY
        names = node.list_parameters([], 0).names
        assert {"checkpoint", "sampling", "rate", "topics", "gains", "limits.speed", "limits.margin"} <= set(
            names
        )
        speed, checkpoint, margin = node.describe_parameters(["limits.speed", "checkpoint", "limits.margin"])
        assert speed.description == "metres per second" and not speed.read_only
        assert checkpoint.description == "folder of the policy checkpoint" and checkpoint.read_only
        assert margin.read_only and margin.dynamic_typing

        assert node.set_parameters([Parameter("limits.speed", value=2.0)])[0].successful
        assert seen[-1].limits.speed == 2.0 and seen[-1].rate == 20
        refused = node.set_parameters([Parameter("limits.speed", value=-1.0)])[0]
        assert not refused.successful and "speed must be > 0" in refused.reason
        assert node.get_parameter("limits.speed").value == 2.0
        refused = node.set_parameters([Parameter("sampling", value="full")])[0]
        assert not refused.successful and "'full' is not one of ['mode', 'component']" in refused.reason
        assert not node.set_parameters([Parameter("checkpoint", value="/other")])[0].successful
        assert node.get_parameter("checkpoint").value == ""
    finally:
        node.destroy_node()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"limits.sped": 1.0},
            r"'limits.sped' is not a setting of this node \(did you mean 'limits.speed'\?\)",
        ),
        ({"rate": "fast"}, "rate: expected an integer, got 'fast'"),
        ({"limits.speed": -2.0}, "speed must be > 0"),
        ({"gains": ["fast", "slow"]}, r"gains\[0\]: expected a number, got 'fast'"),
    ],
)
def test_bad_parameters_are_errors_naming_the_key(ros, overrides: dict, message: str) -> None:
    from robot_nodes.params import declare_config

    node = make_node(ros, overrides)
    try:
        with pytest.raises(ConfigError, match=message):
            declare_config(node, DemoNodeConfig)
    finally:
        node.destroy_node()


def test_ros_own_parameters_are_not_typos(ros) -> None:
    from robot_nodes.params import declare_config

    node = make_node(ros, {"use_sim_time": False})
    try:
        assert declare_config(node, DemoNodeConfig).rate == 10
    finally:
        node.destroy_node()


def test_qos_by_role() -> None:
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from robot_nodes.qos import command_qos, image_qos, latched_qos, sensor_qos

    assert sensor_qos().reliability == ReliabilityPolicy.BEST_EFFORT
    assert sensor_qos(reliable=True).reliability == ReliabilityPolicy.RELIABLE
    assert image_qos(128, 128, 3).reliability == ReliabilityPolicy.BEST_EFFORT
    assert image_qos(640, 480, 3).reliability == ReliabilityPolicy.RELIABLE  # 900 KB: best effort drops it
    assert command_qos().reliability == ReliabilityPolicy.RELIABLE
    latched = latched_qos()
    assert (
        latched.durability == DurabilityPolicy.TRANSIENT_LOCAL
        and latched.reliability == ReliabilityPolicy.RELIABLE
    )


def test_main_logs_one_line_and_exits_2_on_bad_settings(tmp_path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("demo_node:\n  ros__parameters:\n    rat: 5\n")
    code = (
        "import sys\n"
        "from rclpy.node import Node\n"
        "from robot_nodes.entry import run_node\n"
        "from robot_nodes.params import declare_config, node_options\n"
        "from tests.test_ros_common import DemoNodeConfig\n"
        "def build():\n"
        "    node = Node('demo_node', **node_options())\n"
        "    declare_config(node, DemoNodeConfig)\n"
        "    return node\n"
        "sys.exit(run_node(build, sys.argv, 'demo_node'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "--ros-args", "--params-file", str(params)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "'rat' is not a setting of this node (did you mean 'rate'?)" in errors[0]
