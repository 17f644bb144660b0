"""Episode files: round trip, atomic writes, damaged files, the dataset manifest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from policies.episodes import EpisodeDataset, EpisodeFormatError, load_episode, save_episode
from tests.test_learner import make_episode


def test_round_trip_keeps_every_array_and_attribute(tmp_path) -> None:
    episode = make_episode(3, 7, np.random.default_rng(0))
    loaded = load_episode(save_episode(episode, tmp_path / "e.npz"))
    for part in ("onboard", "privileged"):
        for key, value in getattr(episode, part).items():
            np.testing.assert_array_equal(getattr(loaded, part)[key], value)
            assert getattr(loaded, part)[key].dtype == value.dtype
    np.testing.assert_array_equal(loaded.action, episode.action)
    assert loaded.attrs == episode.attrs and len(loaded) == 7


def test_damaged_or_inconsistent_files_are_clear_errors(tmp_path) -> None:
    path = save_episode(make_episode(0, 5, np.random.default_rng(0)), tmp_path / "e.npz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a torn copy
    with pytest.raises(EpisodeFormatError, match="not a readable episode file"):
        load_episode(path)
    episode = make_episode(0, 5, np.random.default_rng(0))
    episode.action[2, 0] = np.nan
    with pytest.raises(EpisodeFormatError, match="NaN"):
        save_episode(episode, tmp_path / "nan.npz")
    assert not (tmp_path / "nan.npz").exists()
    episode = make_episode(0, 5, np.random.default_rng(0))
    episode.reward[1] = np.inf
    with pytest.raises(EpisodeFormatError, match="reward holds NaN"):
        save_episode(episode, tmp_path / "inf.npz")
    episode = make_episode(0, 5, np.random.default_rng(0))
    episode.privileged["object_pos"] = episode.privileged["object_pos"][:-1]
    with pytest.raises(EpisodeFormatError, match="expected T\\+1"):
        save_episode(episode, tmp_path / "short.npz")


def test_kill_during_writing_leaves_earlier_episodes_whole(tmp_path) -> None:
    """A writer killed with SIGKILL mid-dataset: the episodes it finished load; no partial file shows."""
    script = textwrap.dedent(f"""
        import numpy as np, sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from tests.test_learner import make_episode
        from policies.episodes import EpisodeDataset
        dataset = EpisodeDataset({str(tmp_path / "data")!r})
        for i in range(1000):
            dataset.append(make_episode(i, 30, np.random.default_rng(i)))
            print(i, flush=True)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        writer.stdout.readline()  # three episodes are complete
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    dataset = EpisodeDataset(tmp_path / "data")
    episodes = dataset.load_all()  # every visible file is whole
    assert len(episodes) >= 3
    assert [int(e.onboard["trace"][0, 0]) for e in episodes] == list(range(len(episodes)))
    dataset.write_manifest()
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["episodes"] == len(episodes) and manifest["action_dim"] == 2


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
