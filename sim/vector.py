"""Many envs of one task stepped together, in worker processes, with a batched policy.

Each worker process holds num_envs / num_workers envs and answers over a pipe; a worker exits when
the pipe closes (the parent exited or died) or when its parent process changes. `num_workers=0`
keeps every env in this process (tests, debugging).

Why not gymnasium's own `AsyncVectorEnv` (shared memory, `autoreset_mode`), measured against it with
`python -m bench.sim --compare-gymnasium` (84x84, 8 envs, 2 cores): on rollouts where every episode runs
to the same length the two are level within this machine's noise (search-pick 534 vs 474 steps/s,
camouflage-pick 341 vs 373; unloaded, ours 1.25-1.34x). But `rollout` episodes end at different steps
(success terminates them), and gymnasium steps every env until the last one ends (a finished env
autoresets and keeps stepping: there is no per-env step mask), so it simulates and renders more: on the
quick preset's demos, 1.26x the steps of ours. It also runs one process (and one EGL context) per env
where ours packs several envs into `num_workers` processes, and its default fork start method
deadlocks on a parent's EGL context.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np

from policies.episodes import Episode, episode_from_steps
from sim.config import TaskConfig

Obs = dict[str, dict[str, np.ndarray]]
Transition = tuple[Obs, float, bool, bool, dict]


class BatchPolicy(Protocol):
    def reset(self, num_envs: int, seeds: list[int]) -> None:
        """A new batch of episodes begins, in envs reset with these seeds (for per-episode draws)."""

    def act(self, obs: Obs) -> np.ndarray: ...


class _Envs:
    """A list of envs answering the commands the workers receive; also the in-process backend."""

    def __init__(self, task: str, count: int, config: TaskConfig | None) -> None:
        import sim

        self.envs = [sim.make(task, config) for _ in range(count)]

    def reset(self, jobs: list[tuple[int, int]]) -> list[Obs]:
        return [self.envs[i].reset(seed=seed)[0] for i, seed in jobs]

    def step(self, jobs: list[tuple[int, np.ndarray]]) -> list[Transition]:
        return [self.envs[i].step(action) for i, action in jobs]

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _worker(conn: Connection, task: str, count: int, config: TaskConfig | None, parent: int) -> None:
    envs = _Envs(task, count, config)
    try:
        while True:
            while not conn.poll(1.0):
                if os.getppid() != parent:  # orphaned: the parent died without closing the pipe
                    return
            command, payload = conn.recv()
            if command == "close":
                return
            try:
                conn.send(("ok", getattr(envs, command)(payload)))
            except Exception as err:  # sent back, re-raised in the parent
                conn.send(("error", f"{type(err).__name__}: {err}"))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        envs.close()
        conn.close()


class VectorEnv:
    def __init__(
        self, task: str, num_envs: int, config: TaskConfig | None = None, num_workers: int = 2
    ) -> None:
        import sim

        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        probe = sim.make(task, config)  # validates the name and gives the spaces
        self.task, self.num_envs, self.config = task, num_envs, config
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self.control_hz = probe.control_hz
        self.max_episode_steps = probe.max_episode_steps
        self.robot_name = getattr(probe, "robot_name", "sim")
        probe.close()
        self._local: _Envs | None = None
        self._pipes: list[Connection] = []
        self._processes: list[multiprocessing.Process] = []
        # env i lives in worker i // per_worker, at slot i % per_worker
        workers = min(num_workers, num_envs)
        if workers == 0:
            self._local = _Envs(task, num_envs, config)
            self._owner = [(0, i) for i in range(num_envs)]
            return
        counts = [len(c) for c in np.array_split(np.arange(num_envs), workers)]
        self._owner = [(w, slot) for w, count in enumerate(counts) for slot in range(count)]
        context = multiprocessing.get_context("spawn")  # no forked GL contexts or torch thread pools
        for count in counts:
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_worker, args=(child_end, task, count, config, os.getpid()), daemon=True
            )
            process.start()
            child_end.close()
            self._pipes.append(parent_end)
            self._processes.append(process)

    def _call(self, command: str, jobs: list[tuple[int, Any]]) -> list[Any]:
        """Run `command` for (env index, argument) jobs; answers come back in the jobs' order."""
        if self._local is not None:
            return getattr(self._local, command)(jobs)
        if not self._pipes:
            raise RuntimeError("VectorEnv is closed")
        per_worker: dict[int, list[tuple[int, int, Any]]] = {}
        for position, (index, argument) in enumerate(jobs):
            worker, slot = self._owner[index]
            per_worker.setdefault(worker, []).append((position, slot, argument))
        for worker, items in per_worker.items():
            self._pipes[worker].send((command, [(slot, argument) for _, slot, argument in items]))
        answers: list[Any] = [None] * len(jobs)
        errors = []
        for worker, items in per_worker.items():
            try:
                status, result = self._pipes[worker].recv()
            except (EOFError, OSError) as err:
                code = self._processes[worker].exitcode
                raise RuntimeError(f"{self.task} worker {worker} died (exit code {code})") from err
            if status == "error":
                errors.append(result)
                continue
            for (position, _, _), answer in zip(items, result, strict=True):
                answers[position] = answer
        if errors:
            raise RuntimeError(f"{self.task} worker failed: {'; '.join(errors)}")
        return answers

    def reset(self, seeds: list[int]) -> Obs:
        """Reset envs 0..len(seeds)-1 with these seeds; returns their observations stacked [n, ...]."""
        if not 1 <= len(seeds) <= self.num_envs:
            raise ValueError(f"need 1..{self.num_envs} seeds, got {len(seeds)}")
        return stack(self._call("reset", list(enumerate(seeds))))

    def step_some(self, actions: dict[int, np.ndarray]) -> dict[int, Transition]:
        """Step only the envs named in `actions` (env index -> action)."""
        jobs = sorted(actions.items())
        return dict(zip([i for i, _ in jobs], self._call("step", jobs), strict=True))

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None
        for pipe in self._pipes:
            with contextlib.suppress(BrokenPipeError, OSError):
                pipe.send(("close", None))
            pipe.close()
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        self._pipes, self._processes = [], []

    def __enter__(self) -> VectorEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_pipes", None) or getattr(self, "_local", None):
            self.close()


def stack(observations: list[Obs]) -> Obs:
    return {
        part: {k: np.stack([o[part][k] for o in observations]) for k in observations[0][part]}
        for part in observations[0]
    }


def _select(batch: Obs, index: int) -> Obs:
    """Env `index`'s observation, copied: the batch arrays are overwritten in place as envs step."""
    return {part: {k: v[index].copy() for k, v in values.items()} for part, values in batch.items()}


def rollout(vec_env: VectorEnv, policy: BatchPolicy, seeds: list[int]) -> list[Episode]:
    """One episode per seed (len(seeds) <= num_envs), all stepped together with a batched policy.

    Finished envs are not stepped again: their slot keeps its last observation and its action is
    ignored until every episode is done.
    """
    n = len(seeds)
    batch = vec_env.reset(seeds)
    policy.reset(n, list(seeds))
    steps: list[dict[str, list]] = [
        {"obs": [_select(batch, i)], "action": [], "reward": [], "terminated": [], "truncated": []}
        for i in range(n)
    ]
    success = [False] * n
    active = set(range(n))
    while active:
        actions = np.asarray(policy.act(batch), dtype=np.float32)
        expected = (n, *vec_env.single_action_space.shape)
        if actions.shape != expected:
            raise ValueError(f"policy.act returned shape {actions.shape}, expected {expected}")
        results = vec_env.step_some({i: actions[i] for i in sorted(active)})
        for i, (obs, reward, terminated, truncated, info) in results.items():
            record = steps[i]
            record["obs"].append(obs)
            record["action"].append(actions[i])
            record["reward"].append(reward)
            record["terminated"].append(terminated)
            record["truncated"].append(truncated)
            success[i] |= bool(info["success"])
            for part, values in obs.items():
                for key, value in values.items():
                    batch[part][key][i] = value
            if terminated or truncated:
                active.discard(i)
    episodes = []
    for i, record in enumerate(steps):
        attrs = {"task": vec_env.task, "robot": vec_env.robot_name, "success": success[i], "source": "policy"}
        columns = [record[k] for k in ("obs", "action", "reward", "terminated", "truncated")]
        episodes.append(episode_from_steps(*columns, vec_env.control_hz, {**attrs, "seed": int(seeds[i])}))
    return episodes
