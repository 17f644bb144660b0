"""The train_online graph on the sim robot in lockstep (tier c, started by aps-launch): the recorder sends
each episode to the learner, the learner trains on it and publishes newer weights, and the policy node
acts with them from a later episode on; a NaN weight packet sent into the loop is refused."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch

from policies.checkpoint import load_learner
from policies.episodes import EpisodeDataset
from policies.weights import pack_actor_weights
from robot_nodes.messages import EpisodeEvent, from_time, vectors_from_msg
from tests.ros_graph_helpers import VENV_BIN, spin_until, start, stop, train_tiny_policy, write_params
from tests.test_learner_node import sha256

TASK = "search-pick"
STEPS = 20
NAN_VERSION = 1_000_000


@pytest.fixture(scope="module")
def ros():
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.shutdown()


def test_the_online_loop_raises_the_policy_version_between_episodes(ros, tmp_path) -> None:
    from std_msgs.msg import Float32MultiArray, String, UInt8MultiArray

    from robot_nodes.qos import command_qos, latched_qos
    from robot_nodes.weights_topic import WEIGHTS_TOPIC

    checkpoint, _ = train_tiny_policy(tmp_path / "pretrain", TASK, STEPS)
    demos = checkpoint.parent.parent / "demos" / "seed0"
    env = {"image_size": 32, "max_episode_steps": STEPS}
    params = write_params(
        tmp_path / "train_online.yaml",
        {
            "sim_robot": {"task": TASK, "env": env, "lockstep": True, "seeds": [2_000_000],
                          "max_episodes": 40},
            "policy": {"task": TASK, "sampling": "full", "reliable_sensors": True},
            "robot_interface": {"output": "twist", "control_hz": 10.0},
            "recorder": {"dataset": str(tmp_path / "online"), "task": TASK, "source": "policy",
                         "onboard_streams": ["wrist/color/image_raw", "joint_states"],
                         "privileged_streams": ["privileged_state"], "reward": "label",
                         "min_free_space_mb": 1.0},
            "learner": {"task": TASK, "out_dir": str(tmp_path / "learner"), "threads": 1,
                        "trainer": {"updates_per_step": 0.5}},
        },
    )  # fmt: skip
    node = ros.create_node("online_probe")
    ends: list[EpisodeEvent] = []
    versions: dict[int, int] = {}  # action stamp -> policy version
    node.create_subscription(
        String, "episode_events",
        lambda m: ends.append(e) if (e := EpisodeEvent.from_msg(m)).kind == "end" else None, latched_qos(10),
    )  # fmt: skip

    def on_action(msg: Float32MultiArray) -> None:
        stamp, vectors = vectors_from_msg(msg)
        versions[stamp] = int(vectors["policy_version"][0])

    node.create_subscription(Float32MultiArray, "action", on_action, command_qos(100))
    log_path = tmp_path / "launch.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "aps-launch"), "train_online", f"checkpoint:={checkpoint}", f"demos:={demos}",
             f"params_file:={params}"],
            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
        )  # fmt: skip
    try:
        # until an episode has been acted by weights two learner updates newer than the checkpoint's
        start_version = load_learner(checkpoint, TASK)[1].version
        assert spin_until(node, lambda: max(versions.values(), default=0) >= start_version + 2, 150), (
            log_path.read_text()[-4000:]
        )
        # a NaN packet, newer than anything, goes in: the policy refuses it and keeps acting
        learner, _ = load_learner(checkpoint, TASK)
        with torch.no_grad():
            next(iter(learner.actor.parameters())).view(-1)[0] = float("nan")
        bad = node.create_publisher(UInt8MultiArray, WEIGHTS_TOPIC, latched_qos())
        packet = UInt8MultiArray(data=pack_actor_weights(learner.actor, NAN_VERSION, TASK, learner.spec))
        # the policy keeps the newest weights message of the topic: the learner's may follow this one
        # at once, so it goes again until the policy has said what it thinks of it
        for _ in range(30):
            bad.publish(packet)
            if spin_until(node, lambda: "non-finite values (NaN or inf)" in log_path.read_text(), 1.0):
                break
        seen = len(ends)
        assert spin_until(node, lambda: len(ends) >= seen + 3, 60), log_path.read_text()[-4000:]
    finally:
        stop(process)
        node.destroy_node()
    text = log_path.read_text()
    assert "non-finite values (NaN or inf)" in text and NAN_VERSION not in versions.values()

    # versions only rise, and they rise between episodes (an episode counts with the version that acted
    # last in it; the policy swaps weights only at an episode's start, so it is the only one)
    in_time = [versions[stamp] for stamp in sorted(versions)]
    assert in_time == sorted(in_time)
    per_episode, mixed = [], []
    for end in ends:
        start = end.stamp_ns - end.steps * 100_000_000  # lockstep sim time: 100 ms a step
        acted = [v for stamp, v in sorted(versions.items()) if start <= stamp < end.stamp_ns]
        if acted:
            per_episode.append(acted[-1])
            if len(set(acted)) > 1:
                mixed.append((end.episode, acted))
    assert per_episode[0] >= start_version and per_episode[-1] >= start_version + 2

    # the recorder's episodes reached the learner byte for byte, with the version that acted in each
    recorded = EpisodeDataset(tmp_path / "online").files()
    copies = {sha256(p) for p in EpisodeDataset(tmp_path / "learner" / "episodes").paths()}
    assert len(recorded) >= 3 and len(copies) >= 2
    assert copies <= {sha256(f.path) for f in recorded}
    for file in recorded[:-1]:  # the last may be cut by the shutdown (recorder_core.close keeps it)
        assert len(file) == STEPS or file.attrs["success"] or "interrupted" in file.attrs
        assert file.attrs["policy_version"] in per_episode and file.attrs["source"] == "policy"
    assert (tmp_path / "learner" / "checkpoint" / "policy.safetensors").is_file()
    trained = json.loads((tmp_path / "learner" / "checkpoint" / "checkpoint.json").read_text())
    assert trained["version"] > start_version
    if mixed:  # everything else holds: flag the known defect without hiding the rest
        pytest.xfail(
            f"the policy node acted with the previous episode's weights at the start of episodes {mixed}: "
            "frames of a new episode can arrive before its start event (episode-boundary race, ros-fix)"
        )


def test_the_lockstep_sim_waits_for_the_readers_it_is_told_to(ros, tmp_path) -> None:
    """The train_online graph's sim robot waits for its recorder (`wait_for_readers`): an episode run
    before the recorder reads would never reach the learner. Here the graph is otherwise connected
    (a reader of every onboard topic, a writer of commands), and no episode starts until a node of
    the awaited name reads the privileged state."""
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float32MultiArray, String

    from robot_nodes.qos import command_qos, latched_qos, sensor_qos

    params = write_params(
        tmp_path / "sim.yaml",
        {"sim_robot": {"task": TASK, "env": {"image_size": 32, "max_episode_steps": STEPS}, "lockstep": True,
                       "command_input": "action", "wait_for_readers": ["late_recorder"],
                       "resend_after": 0.5}},
    )  # fmt: skip
    graph = ros.create_node("connected_graph")
    starts: list[str] = []
    graph.create_subscription(String, "episode_events", lambda m: starts.append(m.data), latched_qos(10))
    graph.create_subscription(Image, "wrist/color/image_raw", lambda _: None, sensor_qos(reliable=True))
    joint_stamps: list[int] = []
    graph.create_subscription(
        JointState, "joint_states", lambda m: joint_stamps.append(from_time(m.header.stamp)), sensor_qos(True)
    )
    graph.create_publisher(Float32MultiArray, "action", command_qos())
    log = tmp_path / "sim.log"
    process = start("aps-sim-robot", "--ros-args", "--params-file", str(params), log=log)
    late = None
    try:
        assert spin_until(graph, lambda: "sim_robot" in graph.get_node_names(), 30), log.read_text()
        # connected but for the awaited reader: the sim says whom it waits for, and starts nothing
        waiting = "first episode waits for late_recorder to read"
        assert spin_until(graph, lambda: waiting in log.read_text(), 30), log.read_text()[-2000:]
        assert not spin_until(graph, lambda: bool(starts), 2.0), starts
        late = ros.create_node("late_recorder")  # reads every onboard stream and the privileged state
        for topic, kind in (("wrist/color/image_raw", Image), ("joint_states", JointState),
                            ("privileged_state", Float32MultiArray)):  # fmt: skip
            late.create_subscription(kind, topic, lambda _: None, sensor_qos(reliable=True))
        assert spin_until(graph, lambda: bool(starts), 20), log.read_text()[-2000:]
        # nobody answers the first observation: it is sent again, same stamp, and the sim says so
        assert spin_until(graph, lambda: len(joint_stamps) >= 2, 10), log.read_text()[-2000:]
        assert len(set(joint_stamps)) == 1 and "sending it again" in log.read_text()
    finally:
        stop(process)
        graph.destroy_node()
        if late is not None:
            late.destroy_node()
