"""Vectorised rollouts: batching, finished envs left alone, workers in processes, clean shutdown."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from sim.config import TaskConfig
from sim.vector import VectorEnv, rollout


class RandomPolicy:
    def __init__(self, action_dim: int, seed: int = 0) -> None:
        self.action_dim, self.seed = action_dim, seed
        self.batch_sizes: list[int] = []

    def reset(self, num_envs: int, seeds: list[int] | None = None) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.num_envs = num_envs

    def act(self, obs: dict) -> np.ndarray:
        self.batch_sizes.append(len(obs["onboard"]["sensors" if "sensors" in obs["onboard"] else "joints"]))
        return self.rng.uniform(-1, 1, (self.num_envs, self.action_dim)).astype(np.float32)


@pytest.mark.parametrize("workers", [0, 2])
def test_finished_envs_are_not_stepped_again(workers: int) -> None:
    with VectorEnv("tmaze", 4, TaskConfig(max_episode_steps=30), num_workers=workers) as envs:
        policy = RandomPolicy(2)
        episodes = rollout(envs, policy, [10, 11, 12])  # fewer seeds than envs
    assert len(episodes) == 3 and set(policy.batch_sizes) == {3}
    lengths = [len(e) for e in episodes]
    assert len(set(lengths)) > 1, "random walks end at different steps"
    assert len(policy.batch_sizes) == max(lengths)
    for episode, seed in zip(episodes, [10, 11, 12], strict=True):
        episode.validate()
        done = episode.terminated | episode.truncated
        assert done[-1] and not done[:-1].any()  # stepped exactly until its own end
        assert episode.attrs["source"] == "policy" and episode.attrs["seed"] == seed
        assert episode.attrs["task"] == "tmaze"


def test_worker_processes_match_in_process_envs() -> None:
    config = TaskConfig(image_size=32, max_episode_steps=8)
    results = []
    for workers in (0, 2):
        with VectorEnv("search-pick", 3, config, num_workers=workers) as envs:
            assert envs.single_action_space.shape == (5,)
            results.append(rollout(envs, RandomPolicy(5), [1, 2, 3]))
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a.onboard["wrist"], b.onboard["wrist"])
        np.testing.assert_array_equal(a.privileged["object_pos"], b.privileged["object_pos"])
        assert a.onboard["wrist"].shape == (9, 32, 32, 3)


@pytest.mark.parametrize("workers", [0, 2])
def test_recorded_episodes_match_a_replay_in_one_env(workers: int) -> None:
    """Every recorded observation, the first included, is what a lone env shows for the same seed
    and actions (the batch arrays are overwritten in place, so the record must not share them)."""
    import sim

    config = TaskConfig(image_size=32, max_episode_steps=6)
    with VectorEnv("search-pick", 2, config, num_workers=workers) as envs:
        episodes = rollout(envs, RandomPolicy(5), [4, 5])
    env = sim.make("search-pick", config)
    for episode in episodes:
        obs, _ = env.reset(seed=episode.attrs["seed"])
        replayed = [obs] + [env.step(action)[0] for action in episode.action]
        for part in ("onboard", "privileged"):
            for key, recorded in getattr(episode, part).items():
                np.testing.assert_array_equal(recorded, np.stack([o[part][key] for o in replayed]))
    env.close()


def test_bad_input_and_closed_env() -> None:
    envs = VectorEnv("blind-pick", 2, TaskConfig(max_episode_steps=3), num_workers=0)
    with pytest.raises(ValueError, match="expected"):
        rollout(envs, RandomPolicy(4), [0, 1])  # wrong action size
    with pytest.raises(ValueError, match="seeds"):
        envs.reset([0, 1, 2])
    envs.close()
    with pytest.raises(KeyError, match="known tasks"):
        VectorEnv("no-such-task", 2)


def test_workers_exit_when_the_parent_dies() -> None:
    script = (
        "from sim.vector import VectorEnv\n"
        "envs = VectorEnv('tmaze', 2, num_workers=2)\n"
        "print(*[p.pid for p in envs._processes], flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workers = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(workers) == 2
    parent.kill()  # SIGKILL: no atexit, no close()
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(")")[-1].split()[0] != "Z"
