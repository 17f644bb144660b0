"""Episode files (HDF5): round trip, streaming writes, atomic completion, damaged files, windowed
reads, the dataset manifest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from policies.episodes import (
    EpisodeDataset,
    EpisodeFile,
    EpisodeFormatError,
    EpisodeWriter,
    load_episode,
    save_episode,
)
from policies.replay import SequenceReplay
from tests.test_learner import make_episode


def assert_same_episode(a, b) -> None:
    for part in ("onboard", "privileged"):
        assert sorted(getattr(a, part)) == sorted(getattr(b, part))
        for key, value in getattr(a, part).items():
            np.testing.assert_array_equal(getattr(b, part)[key], value)
            assert getattr(b, part)[key].dtype == value.dtype
    for name in ("action", "reward", "terminated", "truncated", "timestamp"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name))
        assert getattr(b, name).dtype == getattr(a, name).dtype, name
    assert b.attrs == a.attrs and len(b) == len(a)


def stream(episode, path, **kwargs):
    with EpisodeWriter(path, **kwargs) as writer:
        writer.add_observation(episode.observation(0), episode.timestamp[0])
        for t in range(len(episode)):
            writer.add_transition(
                episode.action[t], episode.reward[t], episode.terminated[t], episode.truncated[t]
            )
            writer.add_observation(episode.observation(t + 1), episode.timestamp[t + 1])
        return writer.close(episode.attrs)


def test_round_trip_keeps_every_array_and_attribute(tmp_path) -> None:
    episode = make_episode(3, 7, np.random.default_rng(0))
    episode.attrs["demo_config"] = {"action_noise": 0.3}  # nested attributes survive too
    assert_same_episode(episode, load_episode(save_episode(episode, tmp_path / "whole.h5")))
    assert_same_episode(episode, load_episode(stream(episode, tmp_path / "streamed.h5")))


def test_images_are_chunked_per_frame_and_compressed(tmp_path) -> None:
    path = stream(make_episode(0, 5, np.random.default_rng(0)), tmp_path / "e.h5")
    with h5py.File(path) as file:
        camera = file["onboard/camera"]
        assert camera.chunks == (1, 12, 12, 3) and camera.compression == "lzf"
        assert file["action"].compression is None


def test_the_writer_streams_and_shows_nothing_until_closed(tmp_path) -> None:
    """Each step is appended to the file (it grows), under a hidden name no dataset reader matches."""
    dataset = EpisodeDataset(tmp_path / "d")
    path = dataset.next_path()
    episode = make_episode(0, 40, np.random.default_rng(0))
    writer = EpisodeWriter(path)
    writer.add_observation({"onboard": {k: v[0] for k, v in episode.onboard.items()}, "privileged": {}}, 0.0)
    sizes = []
    for t in range(30):
        writer.add_transition(episode.action[t], 0.0, False, False)
        writer.add_observation(
            {"onboard": {k: v[t + 1] for k, v in episode.onboard.items()}, "privileged": {}}, 0.1 * (t + 1)
        )
        writer.file.flush()
        sizes.append(writer.temporary.stat().st_size)
    assert sizes[-1] > sizes[0] and len(dataset) == 0 and not path.exists()
    assert writer.temporary.name.startswith(".")
    writer.close({"task": "unit", "success": False})
    assert len(dataset) == 1 and not writer.temporary.exists()
    assert len(load_episode(path)) == 30


def test_bad_steps_are_refused_while_recording(tmp_path) -> None:
    with EpisodeWriter(tmp_path / "e.h5") as writer:
        writer.add_observation({"onboard": {"joints": np.zeros(3, np.float32)}}, 0.0)
        with pytest.raises(EpisodeFormatError, match="NaN or inf"):
            writer.add_transition(np.array([np.nan, 0.0]), 0.0, False, False)
        writer.add_transition(np.zeros(2), 0.0, False, False)
        with pytest.raises(EpisodeFormatError, match="keys/shapes"):
            writer.add_observation({"onboard": {"joints": np.zeros(4, np.float32)}}, 0.1)
        with pytest.raises(EpisodeFormatError, match="must follow an observation"):
            writer.add_transition(np.zeros(2), 0.0, False, False)
    assert not list(tmp_path.iterdir())  # an episode left unfinished leaves nothing behind


def test_an_unwritable_folder_is_a_clear_error_before_recording(tmp_path) -> None:
    with pytest.raises(EpisodeFormatError, match="no such folder"):
        EpisodeWriter(tmp_path / "missing" / "e.h5")
    # /proc/self is a folder nobody may create files in, root included (tests run as root here)
    with pytest.raises(EpisodeFormatError, match="cannot write an episode here"):
        EpisodeWriter("/proc/self/e.h5")


def test_damaged_or_inconsistent_files_are_clear_errors(tmp_path) -> None:
    path = save_episode(make_episode(0, 5, np.random.default_rng(0)), tmp_path / "e.h5")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a torn copy
    with pytest.raises(EpisodeFormatError, match="not a readable episode file"):
        load_episode(path)
    episode = make_episode(0, 5, np.random.default_rng(0))
    episode.action[2, 0] = np.nan
    with pytest.raises(EpisodeFormatError, match="NaN"):
        save_episode(episode, tmp_path / "nan.h5")
    assert not (tmp_path / "nan.h5").exists() and not (tmp_path / ".nan.h5.tmp").exists()
    episode = make_episode(0, 5, np.random.default_rng(0))
    episode.reward[1] = np.inf
    with pytest.raises(EpisodeFormatError, match="reward holds NaN"):
        save_episode(episode, tmp_path / "inf.h5")
    episode = make_episode(0, 5, np.random.default_rng(0))
    episode.privileged["object_pos"] = episode.privileged["object_pos"][:-1]
    with pytest.raises(EpisodeFormatError, match="expected T\\+1"):
        save_episode(episode, tmp_path / "short.h5")
    good = save_episode(make_episode(0, 5, np.random.default_rng(0)), tmp_path / "g.h5")
    with h5py.File(good, "a") as file:
        file["reward"].resize(3, axis=0)
    with pytest.raises(EpisodeFormatError, match="do not fit T = 5"):
        load_episode(good)
    with h5py.File(tmp_path / "other.h5", "w") as file:
        file["data"] = np.zeros(3)
    with pytest.raises(EpisodeFormatError, match="format None"):
        load_episode(tmp_path / "other.h5")


def test_windows_are_read_from_disk_as_from_memory(tmp_path) -> None:
    rng = np.random.default_rng(0)
    episodes = [make_episode(i, steps, rng) for i, steps in enumerate((3, 9, 20))]
    files = [EpisodeFile(save_episode(e, tmp_path / f"e{i}.h5")) for i, e in enumerate(episodes)]
    assert_same_episode(episodes[2].window(4, 9), files[2].window(4, 9))
    in_memory, on_disk = SequenceReplay(5, 3), SequenceReplay(5, 3)
    in_memory.extend(episodes)
    on_disk.extend(files)
    a, b = in_memory.sample(64, np.random.default_rng(1)), on_disk.sample(64, np.random.default_rng(1))
    for part in ("onboard", "privileged"):
        for key in getattr(a, part):
            np.testing.assert_array_equal(getattr(a, part)[key], getattr(b, part)[key])
    np.testing.assert_array_equal(a.action, b.action)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_kill_during_writing_leaves_earlier_episodes_whole(tmp_path) -> None:
    """A recorder killed with SIGKILL mid-episode: the episodes it finished load; no partial file shows."""
    script = textwrap.dedent(f"""
        import numpy as np, sys
        sys.path.insert(0, {os.getcwd()!r})
        from tests.test_learner import make_episode
        from policies.episodes import EpisodeDataset, EpisodeWriter
        dataset = EpisodeDataset({str(tmp_path / "data")!r})
        for i in range(1000):
            episode = make_episode(i, 200, np.random.default_rng(i))
            with EpisodeWriter(dataset.next_path()) as writer:
                writer.add_observation(episode.observation(0), 0.0)
                for t in range(200):
                    writer.add_transition(episode.action[t], episode.reward[t], episode.terminated[t], False)
                    writer.add_observation(episode.observation(t + 1), 0.1 * (t + 1))
                    if i == 3 and t == 100:
                        print("mid", flush=True)
                dataset.added(writer.close(episode.attrs))
            print(i, flush=True)
    """)
    recorder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    while recorder.stdout.readline().strip() != "mid":  # episodes 0-2 complete, episode 3 half written
        pass
    recorder.send_signal(signal.SIGKILL)
    recorder.wait()
    dataset = EpisodeDataset(tmp_path / "data")
    episodes = dataset.load_all()  # every visible file is whole
    assert [int(e.onboard["trace"][0, 0]) for e in episodes] == [0, 1, 2]
    assert [p.name for p in (tmp_path / "data").glob(".*.tmp")] == [".episode_000003.h5.tmp"]
    assert dataset.next_path().name == "episode_000003.h5"  # the half episode's slot is reused
    dataset.write_manifest()
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["episodes"] == 3 and manifest["action_dim"] == 2


def test_incremental_manifest_equals_a_rebuilt_one(tmp_path) -> None:
    dataset = EpisodeDataset(tmp_path / "d")
    rng = np.random.default_rng(1)
    for i in range(4):
        episode = make_episode(i, 3 + i, rng, source="demo" if i % 2 else "policy")
        episode.attrs["success"] = i != 2
        dataset.append(episode)
    incremental = dataset.read_manifest()
    dataset.write_manifest()
    assert incremental == dataset.read_manifest()
    assert incremental["episodes"] == 4 and incremental["steps"] == 3 + 4 + 5 + 6
    assert incremental["successes"] == 3 and incremental["sources"] == ["demo", "policy"]
    assert incremental["keys"]["onboard"]["camera"] == [[12, 12, 3], "uint8"]
