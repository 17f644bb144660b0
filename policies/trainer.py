"""The offline -> online trainer: one loop that the sim job and the ROS learner node both drive.

Episodes go in (the demonstrations, then each new online episode as it completes); versioned
weights come out. The driver decides where episodes come from and when to evaluate:

    trainer = Trainer(spec, learner_config, TrainerConfig(), demos, seed=0)
    for metrics in trainer.train(trainer.config.offline_updates):   # offline: demo batches only
        ...
    trainer.go_online()                                  # the paper's exp -> 1[A > 0] switch
    trainer.add_episode(episode)                         # earns updates_per_step x len(episode) updates
    for metrics in trainer.train(trainer.owed_updates):  # online: demo_fraction of each batch from demos
        ...
    trainer.save(folder, task)                           # a checkpoint of the current version
    packet = trainer.weights(task)                       # the same version, packed for the policy node

Replay windows are drawn from the trainer's own generator (seeded by `seed`). Initial weights and
DrQ shifts come from torch's global generator, which the entry point seeds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.checkpoint import save_checkpoint
from policies.config import LearnerConfig
from policies.episodes import Episode
from policies.learner import Learner
from policies.networks import ObsSpec
from policies.replay import SequenceBatch, SequenceReplay, sample_mixed
from policies.weights import pack_actor_weights


@dataclass
class TrainerConfig:
    """What the offline -> online loop does with the learner, whoever feeds it episodes."""

    learner: LearnerConfig = field(default_factory=LearnerConfig)
    offline_updates: int = 2000  # gradient updates on the demos before going online
    updates_per_step: float = 0.25  # online gradient updates earned per environment step collected
    demo_fraction: float = 0.5  # share of demo sequences in online batches (the paper's 50:50)
    online_capacity: int = 2000  # online episodes kept for replay, first in, first out

    def __post_init__(self) -> None:
        if self.offline_updates < 0 or self.updates_per_step < 0:
            raise ValueError("offline_updates and updates_per_step must be >= 0")
        if not 0.0 <= self.demo_fraction <= 1.0:
            raise ValueError(f"demo_fraction must lie in [0, 1], got {self.demo_fraction}")
        if self.online_capacity < 1:
            raise ValueError(f"online_capacity must be >= 1, got {self.online_capacity}")


class Trainer:
    def __init__(
        self,
        spec: ObsSpec,
        config: TrainerConfig,
        demos: list[Episode],
        seed: int = 0,
        device: torch.device | str = "cpu",
        learner: Learner | None = None,
        version: int = 0,
    ) -> None:
        """`learner`, `version`: continue from a checkpoint (`load_learner` and its card's version),
        so the versions the policy node sees keep increasing. A learner built here is first warmed up
        on a batch of demos when `learner.warmup_steps` says so (`warmup_metrics` then holds its VAAs)."""
        if not demos:
            raise ValueError("the trainer needs at least one demonstration episode")
        self.config = config
        self.learner = learner if learner is not None else Learner(spec, config.learner, device)
        lc = self.learner.config
        self.demos = SequenceReplay(lc.seq_len, lc.burn_in)
        self.demos.extend(demos)
        self.online = SequenceReplay(lc.seq_len, lc.burn_in, capacity_episodes=config.online_capacity)
        self.rng = np.random.default_rng(seed)
        self.warmup_metrics: dict[str, float] = {}
        if learner is None and lc.warmup_steps:
            self.warmup_metrics = self.learner.warm_up(self.demos.sample(lc.batch_size, self.rng))
        self.is_online = False
        self.online_episodes = 0
        self.online_steps = 0
        self.version = version
        self._versioned_at = self.learner.updates if version else -1  # updates the version stands for
        self._owed = 0.0

    @property
    def updates(self) -> int:
        return self.learner.updates

    @property
    def owed_updates(self) -> int:
        """Online updates earned by the steps collected and not yet spent."""
        return int(self._owed)

    def go_online(self) -> None:
        self.is_online = True
        self.learner.go_online()

    def add_episode(self, episode: Episode) -> None:
        """One complete online episode: into the replay, and `updates_per_step` updates per step owed."""
        self.online.add(episode)
        self.online_episodes += 1
        self.online_steps += len(episode)
        self._owed += len(episode) * self.config.updates_per_step

    def batch(self) -> SequenceBatch:
        size = self.learner.config.batch_size
        # BC imitates: its own rollouts are no demonstrations, so it keeps to the demos.
        if not self.is_online or self.learner.config.algorithm == "bc":
            return self.demos.sample(size, self.rng)
        return sample_mixed(self.demos, self.online, size, self.config.demo_fraction, self.rng)

    def train(self, updates: int) -> Iterator[dict[str, float]]:
        """`updates` gradient updates, yielding each one's metrics (raises NonFiniteLossError, with
        the update not applied, when a loss turns NaN or inf)."""
        for _ in range(updates):
            metrics = self.learner.update(self.batch())
            if self.is_online:
                self._owed = max(0.0, self._owed - 1.0)
            yield metrics

    def current_version(self) -> int:
        """The policy version of the weights as they are now: it rises when an update has changed them."""
        if self.learner.updates != self._versioned_at:
            self.version += 1
            self._versioned_at = self.learner.updates
        return self.version

    def save(self, folder: str | Path, task: str, metrics: dict[str, Any] | None = None) -> Path:
        """A checkpoint of the current version (the previous checkpoint survives a crash mid-save)."""
        return save_checkpoint(self.learner, folder, task, self.current_version(), metrics)

    def weights(self, task: str) -> bytes:
        """The actor of the current version, packed for the policy node (`policies.weights`)."""
        return pack_actor_weights(self.learner.policy, self.current_version(), task, self.learner.spec)
