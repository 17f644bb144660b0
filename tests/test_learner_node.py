"""The learner side of issue 16: episode files in chunks (transfer core), the learner core (tier a),
and aps-learner in its own process over DDS taking an episode and publishing newer weights (tier c)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from policies.episodes import Episode, EpisodeDataset, EpisodeFile, save_episode
from policies.networks import Actor
from policies.weights import WeightsError, packet_metadata, unpack_actor_weights
from robot_nodes.episode_transfer import EpisodeAssembler, episode_chunks
from robot_nodes.learner_core import IngestError, LearnerCore, LearnerNodeConfig
from tests.ros_graph_helpers import spin_until, start, stop, write_params
from tests.test_learner import make_episode, small_config

TASK = "unit"


def episode(index: int, steps: int, size: int = 12, task: str = TASK, seed: int = 0) -> Episode:
    made = make_episode(index, steps, np.random.default_rng(seed + index))
    rng = np.random.default_rng(100 + index)
    made.onboard["camera"] = rng.integers(0, 255, (steps + 1, size, size, 3), dtype=np.uint8)
    made.attrs = {**made.attrs, "task": task}
    return made


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def demos(tmp_path) -> Path:
    root = tmp_path / "demos"
    EpisodeDataset(root).extend([episode(i, 8) for i in range(3)])
    return root


# --- episode files in chunks ----------------------------------------------------------------------


def test_chunks_reassemble_byte_for_byte(tmp_path) -> None:
    sent = save_episode(episode(0, 20), tmp_path / "episode_000007.h5")
    warnings: list[str] = []
    assembler = EpisodeAssembler(tmp_path / "received", warnings.append)
    packets = list(episode_chunks(sent, "robot-1-0", chunk_bytes=4096))
    assert len(packets) == -(-sent.stat().st_size // 4096) > 3
    paths = [assembler.add(p) for p in packets]
    assert paths[:-1] == [None] * (len(packets) - 1) and warnings == []
    received = paths[-1]
    assert received is not None and received.name == "episode_000000.h5"  # the learner's own numbering
    assert sha256(received) == sha256(sent)
    assert EpisodeDataset(tmp_path / "received").read_manifest()["episodes"] == 1


def test_a_gap_a_corrupt_chunk_or_a_late_join_loses_only_that_episode(tmp_path) -> None:
    files = [save_episode(episode(i, 20), tmp_path / f"episode_{i:06d}.h5") for i in range(4)]
    transfers = [list(episode_chunks(f, f"robot-1-{i}", chunk_bytes=4096)) for i, f in enumerate(files)]
    warnings: list[str] = []
    root = tmp_path / "received"
    assembler = EpisodeAssembler(root, warnings.append)
    # joined mid-transfer: the first transfer's later chunks only
    assert all(assembler.add(p) is None for p in transfers[0][2:])
    assert len(warnings) == 1 and "joined mid-transfer" in warnings[0]
    # a lost chunk
    gap = transfers[1][:2] + transfers[1][3:]
    assert all(assembler.add(p) is None for p in gap)
    assert len(warnings) == 2 and "chunk 2 was due" in warnings[1]
    # a flipped byte in a payload: the checksum refuses the file
    corrupt = list(transfers[2])
    corrupt[1] = corrupt[1][:-1] + bytes([corrupt[1][-1] ^ 0xFF])
    assert [assembler.add(p) for p in corrupt][-1] is None
    assert len(warnings) == 3 and "SHA-256" in warnings[2]
    assert assembler.add(b"not a chunk") is None and "APSE" in warnings[3]
    # nothing half-done is visible, and the next transfer arrives whole
    assert EpisodeDataset(root).paths() == []
    assert [assembler.add(p) for p in transfers[3]][-1] is not None
    assert [sha256(p) for p in EpisodeDataset(root).paths()] == [sha256(files[3])]
    assert sorted(p.name for p in root.iterdir()) == ["episode_000000.h5", "manifest.json"]


# --- the learner core -----------------------------------------------------------------------------


def learner_config(tmp_path, demos: Path, **changes) -> LearnerNodeConfig:
    from policies.trainer import TrainerConfig

    trainer = TrainerConfig(learner=small_config(), offline_updates=6, updates_per_step=0.5)
    settings = {"task": TASK, "demos": str(demos), "trainer": trainer, "out_dir": str(tmp_path / "learner")}
    return LearnerNodeConfig(**{**settings, **changes})


def test_learner_core_trains_offline_then_on_each_episode_at_the_set_ratio(tmp_path, demos) -> None:
    torch.manual_seed(0)
    core = LearnerCore(learner_config(tmp_path, demos, image_size=8))
    assert core.spec.onboard["camera"].shape == (8, 8, 3)  # resized from the demos' 12x12
    assert core.new_weights() is None  # nothing trained yet
    assert core.train_offline(4) == 4 and core.train_offline(100) == 2 and core.offline_left == 0
    core.go_online()
    first = core.new_weights()
    actor = Actor(core.spec, core.config.trainer.learner.network)
    assert unpack_actor_weights(first, actor, TASK, 0).version == 1
    assert core.new_weights() is None  # unchanged weights are not sent again

    # a recording at full resolution (48x48): resized on the way in; 10 steps earn 5 updates
    path = save_episode(episode(9, 10, size=48), tmp_path / "episode_000000.h5")
    core.ingest(path)
    assert core.trainer.owed_updates == 5 and core.trainer.online_steps == 10
    assert core.train_owed(3) == 3 and core.train_owed(100) == 2 and core.trainer.owed_updates == 0
    second = unpack_actor_weights(core.new_weights(), actor, TASK, 1)
    assert second.version == 2
    assert any(not torch.equal(second.tensors[k], v) for k, v in actor.state_dict().items())

    other = save_episode(episode(3, 10, task="other-task"), tmp_path / "episode_000001.h5")
    with pytest.raises(IngestError, match="other-task"):
        core.ingest(other)
    saved = core.save()
    assert (saved / "policy.safetensors").is_file()


def test_learner_core_from_a_checkpoint_continues_its_versions(tmp_path, demos) -> None:
    torch.manual_seed(0)
    core = LearnerCore(learner_config(tmp_path, demos, keep_every=2))
    core.train_offline(6)
    checkpoint = core.save()  # version 1
    core.go_online()
    for index in range(3):  # a copy is kept after the 2nd episode, none after the 1st or 3rd
        core.ingest(save_episode(episode(index, 4), tmp_path / f"kept_{index}.h5"))
        if core.save_due():
            core.save()
    kept = tmp_path / "learner" / "history"
    assert [p.name for p in kept.iterdir()] == ["episodes-000002"]
    assert (
        json.loads((kept / "episodes-000002" / "checkpoint.json").read_text())["metrics"]["online_episodes"]
        == 2
    )
    resumed = LearnerCore(learner_config(tmp_path, demos, checkpoint=str(checkpoint)))
    assert resumed.offline_left == 0 and resumed.version == 1
    resumed.go_online()
    assert resumed.new_weights() is None  # the policy node already runs version 1
    resumed.ingest(save_episode(episode(5, 4), tmp_path / "episode_000000.h5"))
    resumed.train_owed(10)
    actor = Actor(resumed.spec, resumed.config.trainer.learner.network)
    assert unpack_actor_weights(resumed.new_weights(), actor, TASK, 1).version == 2
    with pytest.raises(WeightsError, match="not newer"):
        unpack_actor_weights(core.trainer.weights(TASK), actor, TASK, 2)


def test_learner_core_keeps_a_checkpoint_every_few_episodes(tmp_path, demos) -> None:
    core = LearnerCore(learner_config(tmp_path, demos, keep_every=2, save_every=0))
    core.train_offline(6)
    core.go_online()
    for index in range(3):  # kept after the 2nd episode, not after the 1st nor the 3rd
        core.ingest(save_episode(episode(index, 4), tmp_path / f"episode_{index}.h5"))
        core.train_owed(10)
        if core.save_due():
            core.save()
    kept = tmp_path / "learner" / "history"
    assert [p.name for p in kept.iterdir()] == ["episodes-000002"]
    card = json.loads((kept / "episodes-000002" / "checkpoint.json").read_text())
    assert card["metrics"]["online_episodes"] == 2 and card["updates"] == 6 + 4  # 8 online steps at 0.5


def test_learner_settings_are_checked(tmp_path, demos) -> None:
    with pytest.raises(ValueError, match="demos is not set"):
        LearnerNodeConfig(task=TASK)
    with pytest.raises(ValueError, match="no demonstration episodes"):
        LearnerCore(learner_config(tmp_path, tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="trains 'pick'"):
        LearnerCore(learner_config(tmp_path, demos, task="pick"))


# --- aps-learner over DDS -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ros():
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.shutdown()


def test_learner_node_takes_an_episode_over_dds_and_publishes_newer_weights(ros, tmp_path, demos) -> None:
    from std_msgs.msg import UInt8MultiArray

    from robot_nodes.episode_topic import EpisodeSender
    from robot_nodes.qos import latched_qos
    from robot_nodes.weights_topic import WEIGHTS_TOPIC

    out_dir = tmp_path / "learner"
    network = {"image_channels": [8, 8], "image_features": 16, "vector_hidden": 16, "core_hidden": 16,
               "head_hidden": 32}  # fmt: skip
    params = write_params(
        tmp_path / "learner.yaml",
        {"learner": {
            "task": TASK, "demos": str(demos), "out_dir": str(out_dir), "image_size": 8, "threads": 2,
            "trainer": {"offline_updates": 4, "updates_per_step": 0.5,
                        "learner": {"batch_size": 4, "seq_len": 5, "burn_in": 3, "network": network}},
        }},
    )  # fmt: skip
    node = ros.create_node("learner_probe")
    packets: list[bytes] = []
    node.create_subscription(
        UInt8MultiArray, WEIGHTS_TOPIC, lambda m: packets.append(bytes(m.data)), latched_qos()
    )
    sender = EpisodeSender(node, chunk_bytes=8192)
    log = tmp_path / "learner.log"
    process = start("aps-learner", "--ros-args", "--params-file", str(params), log=log)
    try:
        assert spin_until(node, lambda: len(packets) >= 1, 60), log.read_text()[-3000:]
        # a recording of 40x40 images, sent in chunks once the learner listens
        assert spin_until(node, lambda: sender.publisher.get_subscription_count() > 0, 10)
        sent = save_episode(episode(7, 12, size=40), tmp_path / "episode_000000.h5")
        sender.send(sent)
        assert spin_until(node, lambda: len(packets) >= 2, 60), log.read_text()[-3000:]
        threads = thread_niceness_and_cpu(process.pid)
    finally:
        sender.close()
        stop(process)
        node.destroy_node()
    assert [int(packet_metadata(p)["version"]) for p in packets] == [1, 2]
    copies = EpisodeDataset(out_dir / "episodes").paths()
    assert [sha256(p) for p in copies] == [sha256(sent)]
    assert EpisodeFile(copies[0]).attrs["task"] == TASK
    assert (out_dir / "checkpoint" / "policy.safetensors").is_file()
    text = log.read_text()
    assert "12 steps" in text and "weights v2 published" in text, text[-2000:]
    # the learner runs below the robot's nodes (niceness 10 added to ours): its main thread and the
    # threads that trained (the busiest two: the trainer and torch's second thread)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    busiest = sorted(threads, key=lambda tid: threads[tid][1])[-2:]
    assert {threads[tid][0] for tid in [process.pid, *busiest]} == {ours + 10}, threads


def thread_niceness_and_cpu(pid: int) -> dict[int, tuple[int, int]]:
    """Thread id -> (niceness, CPU ticks) of a running process's threads (Linux keeps a niceness per
    thread), from /proc/<pid>/task/<tid>/stat (proc(5): nice is field 19, utime and stime 14 and 15)."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 on: the name may hold spaces
        threads[int(task.name)] = (int(fields[16]), int(fields[11]) + int(fields[12]))
    return threads


def test_learner_node_bad_settings_are_one_line_and_exit_2(tmp_path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "aps-learner"), "--ros-args", "-p", f"task:={TASK}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "demos is not set" in result.stderr + result.stdout
