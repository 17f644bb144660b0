"""aps-dataset on real files: info, check (each seeded defect found), view (a playable mp4, a PNG
strip), merge and split (every episode once), export-lerobot (read back with pyarrow, pandas and
PyAV against LeRobot v3.0's layout), import-bag (a bag of rclpy-serialised messages written with
rosbags), export-mcap (read back with Foxglove's mcap reader, and imported back to the episode)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

import sim
from policies.dataset_tools import episode_digest
from policies.episodes import EpisodeDataset, load_episode, save_episode
from robot_nodes.dataset_cli import main
from robot_nodes.episode_video import decode_video
from robot_nodes.policy_core import JointsLayout
from sim.config import DemoConfig, TaskConfig

TASK = "camouflage-pick"  # two cameras (side, wrist), joints, two privileged vectors
CAMERAS = ("side", "wrist")
SIZE = 32
BASE = 1_700_000_000 * 1_000_000_000
PERIOD = 100_000_000


def demos(seed: int, count: int = 3) -> list:
    return sim.collect_demos(
        TASK, count, seed, TaskConfig(image_size=SIZE, max_episode_steps=12), DemoConfig(action_noise=0.2)
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demos") / "demos"
    EpisodeDataset(root).extend(demos(0))
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_tool_imports_no_rclpy() -> None:
    code = (
        "import sys, robot_nodes.dataset_cli, robot_nodes.bag_io, robot_nodes.lerobot_export; "
        "print('rclpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_info_counts_what_is_on_disk(capsys, dataset) -> None:
    code, out, _ = run(capsys, "info", dataset, "--json")
    summary = json.loads(out)
    episodes = EpisodeDataset(dataset).load_all()
    assert code == 0 and summary["episodes"] == 3 and summary["frames"] == sum(len(e) for e in episodes)
    assert summary["successes"] == sum(e.success for e in episodes)
    assert summary["sources"] == {"scripted": 3} and summary["tasks"] == {TASK: 3}
    assert summary["disk_bytes"] == sum(p.stat().st_size for p in dataset.iterdir())
    assert summary["keys"]["onboard"]["side"] == [[SIZE, SIZE, 3], "uint8"] and summary["action_dim"] == 5
    code, out, _ = run(capsys, "info", dataset)
    assert code == 0 and "camouflage-pick 3" in out and "object_pose" in out


# --- check ---------------------------------------------------------------------------------------

DEFECTS = {
    "nan": ("privileged/object_pose", "privileged/object_pose holds 1 NaN or inf values (first at step 4)"),
    "range": ("action", "1 action values outside [-1, 1] (first at step 2"),
    "time": ("timestamp", "timestamps do not increase at step 6"),
    "early": ("terminated", "terminated before the last step (at step 3 of 12)"),
    "dtype": ("onboard/joints", "onboard/joints is float64[6]: vectors are float32[n]"),
    "attr": ("attrs", "attribute 'source' is missing"),
    "open": ("truncated", "the last step is neither terminated nor truncated"),
}


def seed_defect(path: Path, defect: str) -> None:
    with h5py.File(path, "r+") as file:
        if defect == "nan":
            file["privileged/object_pose"][4, 0] = np.nan
        elif defect == "range":
            file["action"][2, 1] = 1.5
        elif defect == "time":
            file["timestamp"][6] = file["timestamp"][5]
        elif defect == "early":
            file["terminated"][3] = True
        elif defect == "dtype":
            joints = file["onboard/joints"][()]
            del file["onboard/joints"]
            file["onboard/joints"] = joints.astype(np.float64)
        elif defect == "attr":
            attrs = json.loads(file.attrs["attrs"])
            del attrs["source"]
            file.attrs["attrs"] = json.dumps(attrs)
        elif defect == "open":
            file["terminated"][-1] = file["truncated"][-1] = False


def test_check_finds_every_seeded_defect(capsys, dataset, tmp_path) -> None:
    code, out, _ = run(capsys, "check", dataset)
    assert code == 0 and "3 episodes" in out and "sound" in out
    broken = EpisodeDataset(tmp_path / "broken")
    episode = load_episode(EpisodeDataset(dataset).paths()[0])
    for _ in range(len(DEFECTS) + 2):
        broken.append(episode)
    paths = broken.paths()
    for path, defect in zip(paths, DEFECTS, strict=False):
        seed_defect(path, defect)
    torn = paths[len(DEFECTS)]
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    other = demos(5, 1)[0]
    other.onboard["side"] = other.onboard["side"][:, :16]  # another camera size
    save_episode(other, tmp_path / "broken" / "episode_000100.h5")
    (tmp_path / "broken" / ".episode_000101.h5.tmp").write_bytes(b"half")  # a recorder crashed
    code, out, _ = run(capsys, "check", tmp_path / "broken")
    lines = " ".join(out.split())  # rich wraps long lines
    assert code == 1
    for path, (_, message) in zip(paths, DEFECTS.values(), strict=False):
        assert f"{path.name}: {message}" in lines, message
    assert f"{torn.name}: not a readable episode file" in lines
    assert f"episode_000100.h5: keys, shapes or action size differ from {paths[0].name}'s" in lines
    assert "manifest.json: missing or out of date" in lines  # a file was added behind its back
    assert "warning .episode_000101.h5.tmp: an unfinished episode" in lines
    assert paths[-1].name not in lines  # the one sound episode
    code, _, err = run(capsys, "check", tmp_path / "broken", "--fix-manifest")
    assert code == 2 and f"cannot rebuild the manifest: {torn}" in err
    torn.unlink()
    code, out, _ = run(capsys, "check", tmp_path / "broken", "--fix-manifest")
    assert code == 1 and "manifest.json" not in out and "episode_000001.h5" in out


# --- view ----------------------------------------------------------------------------------------


def test_view_writes_a_playable_mp4_and_a_png_strip(capsys, dataset, tmp_path) -> None:
    episode = load_episode(EpisodeDataset(dataset).paths()[1])
    code, out, _ = run(capsys, "view", dataset, "--episode", 1, "--out", tmp_path / "ep.mp4")
    assert code == 0 and f"{len(episode) + 1} frames at 10 fps" in out
    frames = decode_video(tmp_path / "ep.mp4")
    assert frames.shape == (len(episode) + 1, SIZE, 2 * SIZE, 3)
    original = np.concatenate([episode.onboard["side"], episode.onboard["wrist"]], axis=2)
    error = np.abs(frames.astype(float) - original).mean()
    assert error < 8.0, error  # lossy, but the same pictures
    assert np.abs(frames[:, :, :SIZE].astype(float) - episode.onboard["wrist"]).mean() > 2 * error  # in order
    code, _, _ = run(capsys, "view", dataset, "--episode", 1, "--out", tmp_path / "ep.png", "--frames", 4)
    strip = cv2.imread(str(tmp_path / "ep.png"))[..., ::-1]
    steps = np.linspace(0, len(episode), 4).round().astype(int)
    assert strip.shape == (SIZE, 4 * 2 * SIZE, 3)
    for cell, step in enumerate(steps):  # PNG is lossless: every cell is the recorded frame
        np.testing.assert_array_equal(
            strip[:, cell * 2 * SIZE : (cell * 2 + 1) * SIZE], episode.onboard["side"][step]
        )
    code, _, err = run(capsys, "view", dataset, "--episode", 7, "--out", tmp_path / "x.mp4")
    assert code == 2 and "episodes 0..2" in err and len(err.strip().splitlines()) == 1


# --- merge and split --------------------------------------------------------------------------


def digests(root: Path) -> Counter:
    return Counter(episode_digest(p) for p in EpisodeDataset(root).paths())


def test_merge_and_split_keep_every_episode_once(capsys, dataset, tmp_path) -> None:
    second = tmp_path / "second"
    EpisodeDataset(second).extend(demos(1, 2))
    code, _, _ = run(capsys, "merge", tmp_path / "all", dataset, second)
    assert code == 0 and digests(tmp_path / "all") == digests(dataset) + digests(second)
    assert json.loads((tmp_path / "all" / "manifest.json").read_text())["episodes"] == 5
    code, out, _ = run(capsys, "merge", tmp_path / "all", second, second)  # already there, and twice
    assert (
        code == 0
        and "merged 0 episodes" in out
        and digests(tmp_path / "all") == digests(dataset) + digests(second)
    )
    code, _, _ = run(
        capsys, "split", tmp_path / "all", "--out", tmp_path / "split", "--ratio", 0.6, "--seed", 3
    )
    train, val = digests(tmp_path / "split" / "train"), digests(tmp_path / "split" / "val")
    assert code == 0 and sum(train.values()) == 3 and train + val == digests(tmp_path / "all")
    run(capsys, "split", tmp_path / "all", "--out", tmp_path / "again", "--ratio", 0.6, "--seed", 3)
    assert digests(tmp_path / "again" / "train") == train  # seeded
    run(capsys, "split", tmp_path / "all", "--out", tmp_path / "other", "--ratio", 0.6, "--seed", 4)
    assert digests(tmp_path / "other" / "train") != train
    # by an attribute: success
    code, _, _ = run(capsys, "split", tmp_path / "all", "--out", tmp_path / "by", "--by", "success")
    groups = {p.name: EpisodeDataset(p).load_all() for p in (tmp_path / "by").iterdir()}
    assert code == 0 and sum(len(g) for g in groups.values()) == 5
    assert all(e.success == (name == "success") for name, g in groups.items() for e in g)
    # refusals: one line, exit 2, nothing written
    odd = tmp_path / "odd"
    episode = demos(2, 1)[0]
    episode.action = episode.action[:, :4]
    EpisodeDataset(odd).append(episode)
    code, _, err = run(capsys, "merge", tmp_path / "mixed", dataset, odd)
    assert code == 2 and "only episodes of one kind merge" in err and not (tmp_path / "mixed").exists()
    code, _, err = run(capsys, "split", tmp_path / "all", "--out", tmp_path / "split", "--ratio", 0.5)
    assert code == 2 and "not empty" in err
    code, _, err = run(capsys, "info", tmp_path / "missing")
    assert code == 2 and err.strip() == f"aps-dataset info: {tmp_path / 'missing'}: no such dataset folder"


# --- LeRobot -------------------------------------------------------------------------------------


def test_export_lerobot_writes_the_v3_layout(capsys, dataset, tmp_path) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    out = tmp_path / "lerobot"
    code, _, _ = run(capsys, "export-lerobot", dataset, "--out", out, "--task", "pick up the cube")
    assert code == 0
    episodes = EpisodeDataset(dataset).load_all()
    total = sum(len(e) for e in episodes)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and info["total_frames"] == total
    assert info["total_episodes"] == 3 and info["total_tasks"] == 1 and info["splits"] == {"train": "0:3"}
    features = info["features"]
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert features[name]["shape"] == [1]
    video_keys = sorted(k for k, f in features.items() if f["dtype"] == "video")
    assert video_keys == ["observation.images.side", "observation.images.wrist"]
    assert features["observation.images.side"]["info"]["video.codec"] == "av1"
    assert features["observation.state"] == {"dtype": "float32", "shape": [6], "names": None}
    assert "privileged.object_pose" in features and not any(
        k.startswith("observation.object") for k in features
    )
    # data: one row per frame, every non-video feature a column of its dtype and shape
    data = pq.read_table(out / info["data_path"].format(chunk_index=0, file_index=0))
    assert data.num_rows == total and set(data.column_names) == {
        k for k, f in features.items() if f["dtype"] != "video"
    }
    assert (
        data.schema.field("action").type.list_size == 5 and str(data.schema.field("next.done").type) == "bool"
    )
    columns = data.to_pydict()
    np.testing.assert_array_equal(
        np.array(columns["action"], np.float32), np.concatenate([e.action for e in episodes])
    )
    np.testing.assert_array_equal(
        np.array(columns["privileged.object_pose"], np.float32),
        np.concatenate([e.privileged["object_pose"][:-1] for e in episodes]),
    )
    np.testing.assert_array_equal(columns["index"], np.arange(total))
    np.testing.assert_allclose(columns["timestamp"], np.array(columns["frame_index"]) / 10, atol=1e-6)
    assert sum(columns["next.done"]) == 3 and columns["task_index"] == [0] * total
    # episodes metadata: frame ranges and each camera's time range in its video
    meta = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [m["length"] for m in meta] == [len(e) for e in episodes] and meta[0]["tasks"] == [
        "pick up the cube"
    ]
    assert [m["dataset_from_index"] for m in meta] == [
        0,
        len(episodes[0]),
        len(episodes[0]) + len(episodes[1]),
    ]
    video = decode_video(
        out / info["video_path"].format(video_key="observation.images.wrist", chunk_index=0, file_index=0)
    )
    assert len(video) == total
    for m, episode in zip(meta, episodes, strict=True):
        first, last = (
            round(m[f"videos/observation.images.wrist/{k}"] * 10) for k in ("from_timestamp", "to_timestamp")
        )
        assert last - first == len(episode)
        error = np.abs(video[first:last].astype(float) - episode.onboard["wrist"][:-1]).mean()
        assert error < 8.0, error
        assert (
            m["stats/action/count"] == [len(episode)] and len(m["stats/observation.images.wrist/mean"]) == 3
        )
    tasks = pd.read_parquet(out / "meta" / "tasks.parquet")
    assert tasks.index.name == "task" and int(tasks.loc["pick up the cube"].task_index) == 0
    stats = json.loads((out / "meta" / "stats.json").read_text())
    actions = np.concatenate([e.action for e in episodes]).astype(np.float64)
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(stats["action"]["std"], actions.std(axis=0), rtol=1e-9)
    assert stats["action"]["count"] == [total] and np.shape(stats["observation.images.side"]["mean"]) == (
        3,
        1,
        1,
    )
    code, _, err = run(capsys, "export-lerobot", dataset, "--out", out)
    assert code == 2 and "not empty" in err


# --- bags ----------------------------------------------------------------------------------------


def write_bag(
    path: Path, episode, events: bool = True, skip: tuple[str, ...] = (), policy_version: int | None = None
) -> None:
    """A rosbag2 (sqlite3) of `episode` as the robot's nodes publish it: messages built by the
    stack's own conversions and serialised by rclpy, as `ros2 bag record` stores them (the actions
    as a policy node publishes them, with its version, when `policy_version` is given)."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from robot_nodes.messages import EpisodeEvent, image_to_msg, joint_state_to_msg, vectors_to_msg

    store = get_typestore(Stores.ROS2_JAZZY)
    layout = JointsLayout()
    stamps = [BASE + t * PERIOD for t in range(len(episode) + 1)]
    with Writer(path, version=9) as writer:
        connections = {}

        def write(topic: str, msgtype: str, stamp: int, message) -> None:
            if topic in skip:
                return
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(connections[topic], stamp, serialize_message(message))

        if events:
            start = EpisodeEvent("start", 4, 17, stamps[0], TASK)
            write("/episode_events", "std_msgs/msg/String", stamps[0], start.to_msg())
        for t, stamp in enumerate(stamps):
            for camera in CAMERAS:
                image = image_to_msg(episode.onboard[camera][t], stamp)
                write(f"/{camera}/color/image_raw", "sensor_msgs/msg/Image", stamp, image)
            positions = layout.positions(episode.onboard["joints"][t])
            joints = joint_state_to_msg(list(positions), np.array(list(positions.values())), stamp)
            write("/joint_states", "sensor_msgs/msg/JointState", stamp, joints)
            privileged = {k: v[t] for k, v in episode.privileged.items()}
            write(
                "/privileged_state",
                "std_msgs/msg/Float32MultiArray",
                stamp,
                vectors_to_msg(privileged, stamp),
            )
            if t < len(episode):
                vectors = {"action": episode.action[t]}
                if policy_version is not None:
                    vectors["policy_version"] = np.array([policy_version], np.float32)
                action = vectors_to_msg(vectors, stamp)
                write("/action", "std_msgs/msg/Float32MultiArray", stamp + 5_000_000, action)  # logged late
        if events:
            end = EpisodeEvent(
                "end", 4, 17, stamps[-1], TASK, len(episode), episode.success, bool(episode.truncated[-1])
            )
            write("/episode_events", "std_msgs/msg/String", stamps[-1], end.to_msg())


IMPORT = [
    f"task={TASK}", "robot=sim-arm", "source=scripted", "min_free_space_mb=1",
    "onboard_streams=[side/color/image_raw,wrist/color/image_raw,joint_states]",
]  # fmt: skip


def assert_same_steps(recorded, imported) -> None:
    for part in ("onboard", "privileged"):
        assert sorted(getattr(imported, part)) == sorted(getattr(recorded, part))
        for key, value in getattr(recorded, part).items():
            np.testing.assert_array_equal(getattr(imported, part)[key], value, err_msg=key)
    for name in ("action", "reward", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(imported, name), getattr(recorded, name), err_msg=name)
    np.testing.assert_allclose(imported.timestamp, recorded.timestamp, atol=1e-9)
    assert imported.success == recorded.success


def test_import_bag_gives_the_episode_that_was_recorded(capsys, tmp_path) -> None:
    episode = demos(0, 1)[0]
    # labelled a success by the operator: reward 1 and terminated at the last step
    episode.attrs["success"], episode.reward[-1] = True, 1.0
    episode.terminated[-1], episode.truncated[-1] = True, False
    write_bag(tmp_path / "bag", episode, policy_version=7)  # a policy's run: its version beside each action
    code, out, _ = run(
        capsys, "import-bag", tmp_path / "bag", "--out", tmp_path / "data", *IMPORT, "reward=label"
    )
    assert code == 0 and "imported 1 episodes" in out
    (imported,) = EpisodeDataset(tmp_path / "data").load_all()
    assert_same_steps(episode, imported)
    assert imported.attrs["seed"] == 17 and imported.attrs["task"] == TASK
    assert imported.attrs["recorder"]["sync"]["dropped_steps"] == 0 and imported.attrs["policy_version"] == 7
    # without episode events: the whole bag is one episode
    write_bag(tmp_path / "plain", episode, events=False)
    code, _, _ = run(
        capsys,
        "import-bag",
        tmp_path / "plain",
        "--out",
        tmp_path / "plain_data",
        *IMPORT,
        "reward=label",
        f"success={str(episode.success).lower()}",
    )
    (whole,) = EpisodeDataset(tmp_path / "plain_data").load_all()
    assert code == 0 and len(whole) == len(episode) - 1  # it ends at the last action's observation
    assert whole.attrs["source_bag"] == "plain"
    np.testing.assert_array_equal(whole.onboard["wrist"], episode.onboard["wrist"][:-1])
    # a bag without a needed topic: one line naming it, nothing written
    write_bag(tmp_path / "partial", episode, skip=("/privileged_state",))
    code, _, err = run(capsys, "import-bag", tmp_path / "partial", "--out", tmp_path / "none", *IMPORT)
    assert code == 2 and "lacks topic(s) ['privileged_state']" in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "none").glob("episode_*"))


def test_export_mcap_opens_with_the_mcap_reader_and_imports_back(capsys, dataset, tmp_path) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    episode = load_episode(EpisodeDataset(dataset).paths()[2])
    code, _, _ = run(capsys, "export-mcap", dataset, "--episode", 2, "--out", tmp_path / "ep.mcap")
    assert code == 0
    with open(tmp_path / "ep.mcap", "rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        schemas = {
            c.topic: reader.get_summary().schemas[c.schema_id].name
            for c in reader.get_summary().channels.values()
        }
        decoded = list(reader.iter_decoded_messages())
    assert schemas == {
        "/side/color/image_raw": "sensor_msgs/msg/Image", "/wrist/color/image_raw": "sensor_msgs/msg/Image",
        "/joint_states": "sensor_msgs/msg/JointState", "/privileged_state": "std_msgs/msg/Float32MultiArray",
        "/action": "std_msgs/msg/Float32MultiArray", "/episode_events": "std_msgs/msg/String",
    }  # fmt: skip
    counts = Counter(channel.topic for _, channel, _, _ in decoded)
    assert counts["/wrist/color/image_raw"] == len(episode) + 1 and counts["/action"] == len(episode)
    images = [m for _, c, _, m in decoded if c.topic == "/wrist/color/image_raw"]
    assert images[3].encoding == "rgb8" and (images[3].height, images[3].width) == (SIZE, SIZE)
    np.testing.assert_array_equal(
        np.frombuffer(bytes(images[3].data), np.uint8).reshape(SIZE, SIZE, 3), episode.onboard["wrist"][3]
    )
    joints = [m for _, c, _, m in decoded if c.topic == "/joint_states"]
    assert list(joints[0].name) == [*JointsLayout().arm, *JointsLayout().gripper]
    code, _, _ = run(
        capsys, "import-bag", tmp_path / "ep.mcap", "--out", tmp_path / "back", *IMPORT, "reward=stream"
    )
    (back,) = EpisodeDataset(tmp_path / "back").load_all()
    assert code == 0
    assert_same_steps(episode, back)
    code, _, err = run(capsys, "export-mcap", dataset, "--episode", 2, "--out", tmp_path / "ep.mcap")
    assert code == 2 and "exists" in err
