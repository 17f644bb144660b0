"""The learner node's core: the offline -> online trainer fed with recorded episodes. No rclpy.

    core = LearnerCore(config)            # demos loaded, the trainer built (fresh, or from a checkpoint)
    core.train_offline(n)                 # a fresh learner: offline updates on the demos, in slices
    core.go_online()
    core.ingest(path)                     # each episode the recorder sent (the node's own copy)
    core.train_owed(n)                    # updates_per_step x steps, with 50:50 demo/online batches
    packet = core.new_weights()           # versioned actor weights when they changed, else None

Recordings keep the cameras' full resolution; the learner fits images to its network's size (the
checkpoint's, or `image_size` for a fresh learner) as it loads them, as the policy node does.
Episodes at that size stay on disk and are read a window at a time; fitted ones are held in memory,
at the small size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from policies.checkpoint import load_learner
from policies.episodes import PARTS, Episode, EpisodeDataset, EpisodeFile, EpisodeFormatError
from policies.images import fit_image
from policies.networks import ObsSpec
from policies.trainer import Trainer, TrainerConfig

EPISODES = "episodes"  # under out_dir: the episodes received, as the learner's own dataset
CHECKPOINT = "checkpoint"  # under out_dir: the latest checkpoint
HISTORY = "history"  # under out_dir: checkpoints kept every keep_every online episodes


def learner_threads(threads: int = 0) -> int:
    """Torch threads for a learner's `threads` setting: 0 is every core this process may run on
    (its affinity, as a container's CPU set limits it) but one, which the robot's nodes keep."""
    return threads or max(1, len(os.sched_getaffinity(0)) - 1)


@dataclass
class LearnerNodeConfig:
    READ_ONLY: ClassVar[tuple[str, ...]] = (
        "task", "demos", "checkpoint", "trainer", "image_size", "out_dir", "device", "threads", "niceness",
        "seed",
    )  # fmt: skip

    task: str = ""  # the task trained; demos, checkpoint and every received episode must be of it
    demos: str = ""  # folder of demonstration episodes (an aps-record or aps-pretrain dataset)
    # start from this checkpoint (weights, optimizer state, version): no offline updates then;
    # empty: a fresh learner trained offline on the demos first
    checkpoint: str = ""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    image_size: int = 0  # fresh learner: images resized to this square size (0: as the demos hold them)
    out_dir: str = "learner"  # received episodes: <out_dir>/episodes; checkpoints: <out_dir>/checkpoint
    device: str = "cpu"  # torch device of the learner (cuda on a GPU workstation)
    # torch threads; 0: every core but one, which the robot's nodes on the same computer keep, and a
    # scheduling niceness the learner lowers itself by, for them too (0: it competes as their equal).
    # Both keep the policy's camera -> action latency with a learner beside it (README, Benchmarks).
    threads: int = 0
    niceness: int = 10
    seed: int = 0  # replay sampling; initial weights and augmentation (seeded by the entry point)
    slice_updates: int = 25  # updates between looks for new episodes, so an arrival waits little
    save_every: int = 1  # episodes ingested between checkpoints (0: only at the end)
    # also keep the checkpoint as it is after every this many online episodes, in
    # <out_dir>/history/episodes-<n> (learning curves; 0: keep none)
    keep_every: int = 0

    def __post_init__(self) -> None:
        if not self.task:
            raise ValueError("task is not set: give the task trained (task:=search-pick)")
        if not self.demos:
            raise ValueError("demos is not set: give the folder of demonstration episodes (demos:=...)")
        if min(self.image_size, self.threads, self.save_every, self.keep_every) < 0 or self.slice_updates < 1:
            raise ValueError(
                "image_size, threads, save_every and keep_every must be >= 0, slice_updates >= 1"
            )
        if not 0 <= self.niceness <= 19:
            raise ValueError(f"niceness must be in [0, 19] (a lower priority only), got {self.niceness}")


class IngestError(ValueError):
    """A received episode that the trainer must not take; the text says why."""


def fit_images(episode: Episode | EpisodeFile, spec: ObsSpec) -> Episode | EpisodeFile:
    """The episode with every image fitted to the spec's size as the policy node fits camera frames
    (`policies.images.fit_image`: centre crop to the aspect, then resize), so the learner trains on
    what the policy will see; itself when nothing needs it (an EpisodeFile then stays on disk)."""
    shapes = {part: getattr(spec, part) for part in PARTS}
    have = episode.spec()
    wrong = [
        (part, key)
        for part in PARTS
        for key, (shape, _) in have[part].items()
        if key in shapes[part] and shapes[part][key].is_image and tuple(shape) != shapes[part][key].shape
    ]
    if not wrong:
        return episode
    loaded = episode.load() if isinstance(episode, EpisodeFile) else episode
    for part, key in wrong:
        size = shapes[part][key].shape[:2]
        getattr(loaded, part)[key] = np.stack(
            [fit_image(frame, size) for frame in getattr(loaded, part)[key]]
        )
    return loaded


class LearnerCore:
    def __init__(self, config: LearnerNodeConfig) -> None:
        self.config = config
        demos_root = Path(config.demos)
        files = EpisodeDataset(demos_root).files() if demos_root.is_dir() else []
        if not files:
            raise ValueError(f"{demos_root}: no demonstration episodes (record some with aps-record)")
        tasks = sorted({str(f.attrs.get("task", "")) for f in files} - {config.task})
        if tasks:
            raise ValueError(f"{demos_root} holds episodes of {tasks}, the learner trains {config.task!r}")
        if config.checkpoint:
            learner, card = load_learner(config.checkpoint, config.task, config.device)
            self.spec, version = card.spec, card.version
        else:
            learner, version = None, 0
            self.spec = _resized_spec(ObsSpec.from_episode(files[0]), config.image_size)
        demos = [fit_images(f, self.spec) for f in files]
        self.trainer = Trainer(self.spec, config.trainer, demos, config.seed, config.device, learner, version)
        self.episodes_dir = Path(config.out_dir) / EPISODES  # where the node assembles received episodes
        self.published = version  # the newest version handed out (the policy node starts with this one)
        self.offline_left = 0 if config.checkpoint else config.trainer.offline_updates
        self.ingested_since_save = 0
        self.keep_due = False  # the episode just ingested completes a keep_every block

    @property
    def version(self) -> int:
        return self.trainer.version

    # --- training -----------------------------------------------------------------------------
    def train_offline(self, updates: int) -> int:
        """Up to `updates` of the offline updates still due; returns how many it made."""
        count = min(updates, self.offline_left)
        for _ in self.trainer.train(count):
            self.offline_left -= 1
        return count

    def go_online(self) -> None:
        self.trainer.go_online()

    def train_owed(self, updates: int) -> int:
        """Up to `updates` of the online updates the ingested steps have earned."""
        count = min(updates, self.trainer.owed_updates)
        for _ in self.trainer.train(count):
            pass
        return count

    # --- episodes -----------------------------------------------------------------------------
    def ingest(self, path: str | Path) -> str:
        """One episode file the recorder sent (already checked as a file): into the online replay.
        Returns a log line; raises IngestError for an episode of another task or layout."""
        try:
            episode = EpisodeFile(path)
        except EpisodeFormatError as err:
            raise IngestError(str(err)) from err
        task = episode.attrs.get("task")
        if task != self.config.task:
            raise IngestError(f"{path}: an episode of task {task!r}, the learner trains {self.config.task!r}")
        try:
            self.trainer.add_episode(fit_images(episode, self.spec))
        except (ValueError, KeyError) as err:
            raise IngestError(f"{path}: {err}") from err
        self.ingested_since_save += 1
        keep = self.config.keep_every
        self.keep_due |= bool(keep) and self.trainer.online_episodes % keep == 0
        return (
            f"episode {Path(path).name}: {len(episode)} steps, success {episode.success}, policy version "
            f"{episode.attrs.get('policy_version', '?')}; {self.trainer.owed_updates} updates owed"
        )

    # --- outputs ------------------------------------------------------------------------------
    def new_weights(self) -> bytes | None:
        """The actor packed for the policy node when its version is newer than the last handed out."""
        if self.trainer.updates == 0:  # untrained: asking for a version would count one
            return None
        version = self.trainer.current_version()
        if version <= self.published:
            return None
        self.published = version
        return self.trainer.weights(self.config.task)

    def save_due(self) -> bool:
        return self.keep_due or (
            self.config.save_every > 0 and self.ingested_since_save >= self.config.save_every
        )

    def save(self) -> Path:
        """The latest checkpoint (and a kept copy when one is due). Returns the latest's folder."""
        metrics = {"online_episodes": self.trainer.online_episodes, "online_steps": self.trainer.online_steps}
        out = Path(self.config.out_dir)
        if self.keep_due:
            self.trainer.save(
                out / HISTORY / f"episodes-{self.trainer.online_episodes:06d}", self.config.task, metrics
            )
        self.ingested_since_save, self.keep_due = 0, False
        return self.trainer.save(out / CHECKPOINT, self.config.task, metrics)


def _resized_spec(spec: ObsSpec, image_size: int) -> ObsSpec:
    if not image_size:
        return spec
    data = spec.to_dict()
    for part in PARTS:
        for shape, dtype in data[part].values():
            if dtype == "uint8" and len(shape) == 3:
                shape[0] = shape[1] = image_size
    return ObsSpec.from_dict(data)
