"""aps-recorder over DDS (tier c), fed by the sim robot node on the wall clock at 30 Hz with 128x128
images: no frame lost, a stale topic closes and marks the episode, a kill -9 leaves every earlier
episode whole and no half file a reader picks up. Stream decoding and the graph YAML in-process."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from policies.episodes import EpisodeDataset, EpisodeFile
from robot_nodes.messages import image_to_msg, joint_state_to_msg, vectors_to_msg
from tests.ros_graph_helpers import spin_until, start, stop, write_params

TASK = "search-pick"
HZ = 30.0
SIZE = 128
RECORD_S = 30.0  # seconds of 128x128 frames at 30 Hz recorded over rclpy
STREAMS = ["wrist/color/image_raw", "joint_states"]


# --- in-process: streams and settings ---------------------------------------------------------------


def test_streams_decode_by_name_and_the_core_imports_no_rclpy() -> None:
    import subprocess
    import sys

    code = "import sys, robot_nodes.recorder_streams; print('rclpy' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )
    from robot_nodes.recorder_streams import RecorderNodeConfig, StreamDecoder, image_key, stream_kind
    from sim.scene import ARM_JOINTS, FINGER_JOINTS

    assert stream_kind("wrist/color/image_raw", "action") == "image"
    assert image_key("side/aligned_depth_to_color/image_raw") == "side_depth"
    assert stream_kind("robot/joint_states", "action") == "joint_state"
    assert stream_kind("action", "action") == "action"
    config = RecorderNodeConfig(dataset="/tmp/x", task=TASK, privileged_streams=["privileged_state"])
    decoder = StreamDecoder(config)
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    decoded = decoder.decode("wrist/color/image_raw", image_to_msg(image, 5, encoding="bgr8"))
    assert decoded.stamp_ns == 5 and np.array_equal(decoded.arrays["wrist"], image[..., ::-1])
    names = [*ARM_JOINTS, *FINGER_JOINTS]
    joints = decoder.decode("joint_states", joint_state_to_msg(names, np.arange(len(names)) * 0.01, 7))
    assert joints.arrays["joints"].shape == (len(ARM_JOINTS) + 1,)
    action = decoder.decode("action", vectors_to_msg({"action": np.ones(5), "policy_version": [3]}, 9))
    assert set(action.arrays) == {"action"} and action.policy_version == 3
    with pytest.raises(ValueError, match="unstamped"):
        decoder.decode("privileged_state", vectors_to_msg({"object_pos": np.zeros(3)}))


def test_the_data_clock_runs_from_what_was_heard() -> None:
    from robot_nodes.recorder_streams import DataClock

    clock = DataClock()
    assert clock.now(50) is None
    clock.heard(100, 130)  # a lagging recorder: the clock ran ahead of the frames it has taken
    assert clock.now(130) == 100 and clock.now(180) == 150  # then the clock moves it on
    clock.heard(90, 200)  # older news moves nothing
    assert clock.now(200) == 170
    clock.heard(10_000, 200)  # a sim reset jumped its time: the frames came before its /clock
    assert clock.now(200) == 10_000 and clock.now(10_050) == 10_050


def test_the_graph_yaml_loads_into_the_recorder_and_learner_configs(tmp_path) -> None:
    from apsconfig import load_config, parse_yaml
    from robot_nodes.graphs import GRAPHS, resolve
    from robot_nodes.learner_core import LearnerNodeConfig
    from robot_nodes.recorder_streams import RecorderNodeConfig

    for robot in ("sim", "real"):
        launches = {n.name: n for n in resolve(GRAPHS["train_online"], {"robot": robot, "demos": "/d"})}
        assert {"recorder", "learner"} <= set(launches)
        assert launches["learner"].overrides["demos"] == "/d"
        document = parse_yaml(Path(launches["recorder"].params_file).read_text())
        recorder = load_config(RecorderNodeConfig, document["recorder"]["ros__parameters"])
        assert recorder.episodes == ("events" if robot == "sim" else "control")
        load_config(LearnerNodeConfig, {**document["learner"]["ros__parameters"], "demos": "/d"})


# --- over DDS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ros():
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.shutdown()


@pytest.fixture(scope="module")
def sim_robot(tmp_path_factory):
    """The sim robot on the wall clock at 30 Hz with 128x128 wrist images, obeying raw actions."""
    folder = tmp_path_factory.mktemp("sim_robot")
    params = write_params(
        folder / "sim.yaml",
        {"sim_robot": {"task": TASK, "lockstep": False, "command_input": "action",
                       "env": {"image_size": SIZE, "control_hz": HZ, "max_episode_steps": 100_000}}},
    )  # fmt: skip
    process = start("aps-sim-robot", "--ros-args", "--params-file", str(params), log=folder / "sim.log")
    yield process
    stop(process)


class Teleop:
    """Stands in for a teleoperator: one zero action per joint_states message, stamped with it (as aps-record
    acts), episode control, and the recorder's episode records."""

    def __init__(self, ros) -> None:
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float32MultiArray, String

        from robot_nodes.messages import from_time
        from robot_nodes.qos import command_qos, latched_qos, sensor_qos

        self.node = ros.create_node(f"teleop_{os.getpid()}_{time.monotonic_ns()}")
        self.acting = True
        self.actions: list[int] = []  # stamps acted on: every observation the sim published (reliable)
        self.records: list[dict] = []
        self.action_pub = self.node.create_publisher(Float32MultiArray, "action", command_qos())
        self.control = self.node.create_publisher(String, "episode_control", command_qos())
        self.node.create_subscription(JointState, "joint_states", self.on_joints, sensor_qos(reliable=True))
        self.node.create_subscription(
            String, "recorder/episodes", lambda m: self.records.append(json.loads(m.data)), latched_qos(10)
        )
        self.from_time = from_time

    def on_joints(self, msg) -> None:
        if self.acting:
            stamp = self.from_time(msg.header.stamp)
            self.action_pub.publish(vectors_to_msg({"action": np.zeros(5, np.float32)}, stamp))
            self.actions.append(stamp)

    def command(self, command: str, **fields) -> None:
        from std_msgs.msg import String

        self.control.publish(String(data=json.dumps({"command": command, **fields})))

    def spin(self, seconds: float) -> None:
        spin_until(self.node, lambda: False, seconds)

    def close(self) -> None:
        self.node.destroy_node()


def start_recorder(folder: Path, **settings) -> tuple:
    params = write_params(
        folder / "recorder.yaml",
        {"recorder": {"dataset": str(folder / "episodes"), "task": TASK, "control_hz": HZ,
                      "episodes": "control", "reward": "label", "sync_tolerance": 0.01,
                      "send_episodes": False,
                      "onboard_streams": STREAMS, "privileged_streams": ["privileged_state"],
                      "min_free_space_mb": 1.0, **settings}},
    )  # fmt: skip
    log = folder / "recorder.log"
    return start("aps-recorder", "--ros-args", "--params-file", str(params), log=log), log


def wait_listening(teleop: Teleop, log: Path) -> None:
    """Until the recorder has subscribed to every stream and to the episode control (under load DDS
    discovery takes seconds: an episode started before would be cut short, or empty)."""

    def subscribed() -> bool:
        topics = [*STREAMS, "privileged_state", "action", "episode_control"]
        readers = [teleop.node.get_subscriptions_info_by_topic(topic) for topic in topics]
        return all(any(r.node_name == "recorder" for r in endpoints) for endpoints in readers)

    ready = spin_until(teleop.node, lambda: "recording [" in log.read_text(), 30)
    ready = ready and spin_until(teleop.node, subscribed, 10)
    assert ready, log.read_text()[-2000:]
    teleop.spin(0.5)


def test_recording_128px_at_30hz_from_the_sim_robot_loses_no_frame(ros, sim_robot, tmp_path) -> None:
    """A 30 s episode (bench/record.py runs two 640x480 cameras for 2 minutes): every observation the
    sim published while the episode ran is in the file at its own stamp, each from its own frames."""
    teleop = Teleop(ros)
    recorder, log = start_recorder(tmp_path)
    try:
        wait_listening(teleop, log)
        teleop.command("start")
        teleop.spin(RECORD_S)
        teleop.command("end", success=True)
        assert spin_until(teleop.node, lambda: teleop.records, 15), log.read_text()[-2000:]
    finally:
        stop(recorder)
        teleop.close()
    record = teleop.records[0]
    assert record["status"] == "complete", record
    episode = EpisodeFile(record["path"]).load()
    stamps = episode.attrs["start_stamp_ns"] + np.round(episode.timestamp * 1e9).astype(np.int64)
    published = [s for s in teleop.actions if stamps[0] <= s <= stamps[-1]]
    assert len(episode) >= 0.8 * RECORD_S * HZ  # about 30 s at 30 Hz (the sim's timer slips under load)
    sync = record["sync"]
    # every observation of the episode's span was recorded at its own stamp (float seconds: 1 us),
    # but those the sim's timer sent sooner than a control period after the previous one, which the
    # recorder skips on purpose and counts
    assert len(published) == len(episode) + 1 + sync["skipped"]
    recorded = {s for s in published if np.min(np.abs(stamps - s)) <= 1e3}
    assert len(recorded) == len(episode) + 1
    assert sync["dropped_steps"] == 0
    for stream in sync["streams"].values():
        assert stream["out_of_tolerance"] == 0 and stream["repeated"] == 0
    assert episode.onboard["wrist"].shape == (len(episode) + 1, SIZE, SIZE, 3)
    assert episode.attrs["success"] and episode.reward[-1] == 1.0 and episode.terminated[-1]


def test_a_topic_going_stale_mid_episode_closes_and_marks_the_episode(ros, sim_robot, tmp_path) -> None:
    teleop = Teleop(ros)
    recorder, log = start_recorder(tmp_path, stale_after=2.0)  # longer than this process stalls under load
    try:
        wait_listening(teleop, log)
        teleop.command("start")
        teleop.spin(1.5)
        teleop.acting = False  # the teleoperator's device goes quiet; the cameras go on
        stopped = teleop.actions[-1]
        assert spin_until(teleop.node, lambda: teleop.records, 10), log.read_text()[-2000:]
    finally:
        stop(recorder)
        teleop.close()
    record = teleop.records[0]
    assert record["status"] == "interrupted" and "device lost: action" in record["reason"], record
    episode = EpisodeFile(record["path"]).load()  # kept, with every step up to the silence
    assert episode.attrs["interrupted"].startswith("device lost: action")
    assert episode.truncated[-1] and not episode.terminated.any()
    last = episode.attrs["start_stamp_ns"] + round(episode.timestamp[-1] * 1e9)
    assert abs(last - stopped) <= 1e3 and len(episode) >= 0.8 * 1.5 * HZ - 1
    assert recorder.returncode == 0, log.read_text()[-2000:]
    assert "device lost: action" in log.read_text()


def test_kill_9_of_the_recorder_mid_episode_keeps_every_earlier_episode(ros, sim_robot, tmp_path) -> None:
    teleop = Teleop(ros)
    recorder, log = start_recorder(tmp_path)
    try:
        wait_listening(teleop, log)
        for _ in range(2):
            teleop.command("start")
            teleop.spin(1.0)
            teleop.command("end", success=False)
            teleop.spin(0.3)
        teleop.command("start")
        assert spin_until(teleop.node, lambda: len(teleop.records) == 2, 10), log.read_text()[-2000:]
        teleop.spin(1.0)  # the third episode is being written
        os.kill(recorder.pid, signal.SIGKILL)
        recorder.wait()
    finally:
        stop(recorder)
        teleop.close()
    dataset = EpisodeDataset(tmp_path / "episodes")
    assert [p.name for p in dataset.paths()] == ["episode_000000.h5", "episode_000001.h5"], teleop.records
    for path, record in zip(dataset.paths(), teleop.records, strict=True):
        assert len(EpisodeFile(path).load()) == record["steps"] > 0.8 * HZ - 2
    hidden = [p.name for p in dataset.root.iterdir() if p.name.startswith(".")]
    assert hidden == [".episode_000002.h5.tmp"]  # the torn one: hidden, never matched by a reader
    assert dataset.read_manifest()["episodes"] == 2
