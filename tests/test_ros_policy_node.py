"""The policy node in its own process over DDS, fed by a test node (tier c): weights that must be
refused are, and the old weights keep acting; stale and badly encoded frames are not acted on;
bad settings stop it at start with one clear line."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest
import torch

import sim
from policies.checkpoint import load_policy
from robot_nodes.messages import EpisodeEvent, image_to_msg, joint_state_to_msg, vectors_from_msg
from robot_nodes.policy_core import draw_seed
from sim.scene import ARM_JOINTS, FINGER_JOINTS, FINGER_OPEN
from tests.ros_graph_helpers import VENV_BIN, spin_until, start, stop, train_tiny_policy, write_params

TASK = "search-pick"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny_policy(tmp_path_factory.mktemp("pretrain"), TASK, 12)


@pytest.fixture(scope="module")
def ros():
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.shutdown()


def run_briefly(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout
    )


def test_policy_refuses_to_start_without_its_topics(trained) -> None:
    checkpoint, _ = trained
    out = run_briefly(
        "aps-policy", "--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "startup_timeout:=1.0"
    )
    assert out.returncode == 2
    assert "no publisher on ['joint_states', 'wrist/color/image_raw'] after 1 s" in out.stderr


def test_bad_settings_are_one_line_and_exit_2(trained) -> None:
    checkpoint, _ = trained
    out = run_briefly(
        "aps-policy", "--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "task:=camouflage-pick"
    )
    assert out.returncode == 2 and "trained on task 'search-pick', not 'camouflage-pick'" in out.stderr
    out = run_briefly("aps-sim-robot", "--ros-args", "-p", "task:=no-such-task")
    assert out.returncode == 2 and "unknown task 'no-such-task'" in out.stderr
    assert len([line for line in out.stderr.splitlines() if "ERROR" in line]) == 1


def test_weights_checks_stale_frames_and_encodings(trained, ros, tmp_path) -> None:
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float32MultiArray, String

    from policies.checkpoint import load_learner
    from robot_nodes.qos import command_qos, latched_qos, sensor_qos
    from robot_nodes.weights_topic import publish_weights, weights_message, weights_publisher

    checkpoint, cfg = trained
    params = write_params(tmp_path / "policy.yaml", {"policy": {"task": TASK, "reliable_sensors": True}})
    log = tmp_path / "policy.log"
    process = start(
        "aps-policy", "--ros-args", "--params-file", str(params), "-p", f"checkpoint:={checkpoint}", log=log
    )
    node = ros.create_node("policy_feeder")
    image_pub = node.create_publisher(Image, "wrist/color/image_raw", sensor_qos(True))
    joints_pub = node.create_publisher(JointState, "joint_states", sensor_qos(True))
    events = node.create_publisher(String, "episode_events", latched_qos(10))
    weights = weights_publisher(node)
    actions = []
    node.create_subscription(
        Float32MultiArray, "action", lambda m: actions.append(vectors_from_msg(m)), command_qos(100)
    )
    env = sim.make(TASK, cfg.env)
    obs, _ = env.reset(seed=5)
    qpos = env.data.qpos
    positions = np.concatenate([qpos[env._arm_qpos], qpos[env._finger_qpos]])
    learner, card = load_learner(checkpoint, TASK)

    def now() -> int:
        return node.get_clock().now().nanoseconds

    sent = []

    def frames(stamp: int, encoding: str = "rgb8") -> None:
        sent.append(stamp)
        image = (
            obs["onboard"]["wrist"]
            if encoding == "rgb8"
            else np.ascontiguousarray(obs["onboard"]["wrist"][..., ::-1])
        )
        image_pub.publish(image_to_msg(image, stamp, "wrist", encoding=encoding))
        joints_pub.publish(joint_state_to_msg([*ARM_JOINTS, *FINGER_JOINTS], positions, stamp))

    def reference(actor_state: dict | None, episode_seed: int, steps: int) -> list[np.ndarray]:
        runner = load_policy(checkpoint, TASK)
        if actor_state is not None:
            runner.actor.load_state_dict(actor_state)
        runner.reset()
        runner.generator.manual_seed(draw_seed(0, episode_seed))
        return [runner.act(obs["onboard"]) for _ in range(steps)]

    def episode(index: int, seed: int, steps: int, horizon_ns: int = 0) -> list[np.ndarray]:
        """Frames 1 us apart; the episode owns stamps up to its last frame (or `horizon_ns` on), so
        the policy places each frame by its stamp, whether the start event comes first or not."""
        stamp = now()
        until = stamp + max((steps - 1) * 1000, horizon_ns)
        events.publish(EpisodeEvent("start", index, seed, stamp, TASK, until_ns=until).to_msg())
        first = len(actions)
        for step in range(steps):
            frames(stamp + step * 1000)
            assert spin_until(node, lambda n=first + step + 1: len(actions) >= n, 20), log.read_text()[-2000:]
        return [a["action"] for _, a in actions[first:]]

    try:
        assert spin_until(node, lambda: node.count_subscribers("joint_states") > 0, 30), log.read_text()
        spin_until(node, lambda: False, 0.5)
        np.testing.assert_allclose(episode(0, 11, 3), reference(None, 11, 3), atol=1e-5)
        assert np.isclose(positions[5:].mean() / FINGER_OPEN, obs["onboard"]["joints"][5])

        # a NaN and a wrong shape are refused; the old weights keep acting in the next episode
        broken = {k: v.clone() for k, v in learner.actor.state_dict().items()}
        next(iter(broken.values())).view(-1)[0] = float("nan")
        learner.actor.load_state_dict(broken)
        publish_weights(weights, learner.actor, 2, TASK, card.spec)
        spin_until(node, lambda: "non-finite values" in log.read_text(), 10)
        wrong = {k: v for k, v in broken.items()}
        head = next(k for k in wrong if k.endswith("head.4.bias"))
        wrong[head] = torch.zeros(3)
        weights.publish(weights_message(pack_tensors(wrong, 3, TASK, card.spec)))
        spin_until(node, lambda: "do not fit the running actor" in log.read_text(), 10)
        text = log.read_text()
        assert "weights refused, version 1 keeps acting" in text and "non-finite values" in text
        np.testing.assert_allclose(episode(1, 12, 2), reference(None, 12, 2), atol=1e-5)

        # good weights are swapped in at the next episode start, not in the middle of one
        good = {
            k: v + 0.05 * torch.randn_like(v)
            for k, v in load_policy(checkpoint, TASK).actor.state_dict().items()
        }
        learner.actor.load_state_dict(good)
        publish_weights(weights, learner.actor, 4, TASK, card.spec)
        assert spin_until(node, lambda: "weights version 4 accepted" in log.read_text(), 10)
        # (this episode owns the next 100 s of stamps: the frames below are its)
        acted = episode(2, 13, 2, horizon_ns=100 * 10**9)
        np.testing.assert_allclose(acted, reference(good, 13, 2), atol=1e-5)

        # out-of-order and stale frames and a wrong encoding are not acted on
        count = len(actions)
        frames(sent[-1] - 1)
        assert spin_until(node, lambda: "out-of-order stamp" in log.read_text(), 10)
        spin_until(node, lambda: False, 0.5)  # the newest frames are older than max_frame_age now
        frames(max(sent) + 1)
        assert spin_until(node, lambda: "stale frames" in log.read_text(), 10)
        frames(now(), encoding="bgr8")  # accepted (converted), so it acts
        assert spin_until(node, lambda: len(actions) == count + 1, 10)
        bad = image_to_msg(obs["onboard"]["wrist"], now(), "wrist")
        bad.encoding = "yuv422"
        image_pub.publish(bad)
        joints_pub.publish(joint_state_to_msg([*ARM_JOINTS, *FINGER_JOINTS], positions, from_stamp(bad)))
        assert spin_until(node, lambda: "publish one of ['rgb8', 'bgr8']" in log.read_text(), 10)
        spin_until(node, lambda: False, 0.3)
        assert len(actions) == count + 1

        # a RealSense-sized bgr8 frame (900 KB: reliable QoS) is cropped and resized, and acted on
        camera = cv2.resize(obs["onboard"]["wrist"], (480, 480), interpolation=cv2.INTER_NEAREST)
        camera = np.ascontiguousarray(np.pad(camera, ((0, 0), (80, 80), (0, 0)))[..., ::-1])
        stamp = now()
        image_pub.publish(image_to_msg(camera, stamp, "wrist", encoding="bgr8"))
        joints_pub.publish(joint_state_to_msg([*ARM_JOINTS, *FINGER_JOINTS], positions, stamp))
        assert spin_until(node, lambda: len(actions) == count + 2, 10), log.read_text()[-1000:]
        assert actions[-1][0] == stamp
    finally:
        node.destroy_node()
        stop(process)
        env.close()


def from_stamp(msg) -> int:
    from robot_nodes.messages import from_time

    return from_time(msg.header.stamp)


def pack_tensors(tensors: dict, version: int, task: str, spec) -> bytes:
    """A packet whose tensors do not fit the actor (as a learner with another network would send)."""
    from policies.weights import pack_actor_weights

    module = torch.nn.Module()
    module.state_dict = lambda: tensors  # the packer reads state_dict() only
    return pack_actor_weights(module, version, task, spec)
