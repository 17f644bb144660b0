"""Sequence replay: whole episodes in, fixed-length windows with burn-in out.

A window covers `burn_in + seq_len` transitions (and one more observation, for bootstrapping),
cut from one episode only, never across a boundary. Its trained segment is `seq_len` steps from
s, with s uniform over [-(seq_len - 1), T - 1] (clipped to the episode), so every transition is
trained equally often, the first ones included. The window starts `burn_in` steps before the
segment, or at the episode start, where the zero recurrent state is exact. Steps before the segment
only warm up the recurrent state, steps past the episode end are padding: both get loss mask 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.episodes import PARTS, Episode, EpisodeFile


@dataclass
class SequenceBatch:
    onboard: dict[str, np.ndarray]  # [B, W+1, ...]
    privileged: dict[str, np.ndarray]  # [B, W+1, ...]
    action: np.ndarray  # [B, W, A]
    reward: np.ndarray  # [B, W]
    terminated: np.ndarray  # [B, W] (1 = no bootstrap from the next observation)
    mask: np.ndarray  # [B, W] (1 = a trained transition)
    episode: np.ndarray  # [B] index of the source episode in its replay
    start: np.ndarray  # [B] first step of the window in that episode

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @staticmethod
    def concatenate(batches: list[SequenceBatch]) -> SequenceBatch:
        def cat(name: str) -> np.ndarray:
            return np.concatenate([getattr(b, name) for b in batches])

        return SequenceBatch(
            onboard={k: np.concatenate([b.onboard[k] for b in batches]) for k in batches[0].onboard},
            privileged={k: np.concatenate([b.privileged[k] for b in batches]) for k in batches[0].privileged},
            action=cat("action"),
            reward=cat("reward"),
            terminated=cat("terminated"),
            mask=cat("mask"),
            episode=cat("episode"),
            start=cat("start"),
        )


class SequenceReplay:
    def __init__(self, seq_len: int, burn_in: int, capacity_episodes: int | None = None) -> None:
        self.seq_len, self.burn_in = seq_len, burn_in
        self.capacity = capacity_episodes
        self.episodes: list[Episode | EpisodeFile] = []

    def __len__(self) -> int:
        return len(self.episodes)

    @property
    def steps(self) -> int:
        return sum(len(e) for e in self.episodes)

    def add(self, episode: Episode | EpisodeFile) -> None:
        """An episode in memory, or on disk (`EpisodeFile`: its windows are read when sampled)."""
        if len(episode) == 0:
            return
        if self.episodes:
            _check_same_keys(self.episodes[0], episode)
        self.episodes.append(episode)
        if self.capacity is not None and len(self.episodes) > self.capacity:
            self.episodes.pop(0)  # first in, first out: online data goes stale as the policy improves

    def extend(self, episodes: list[Episode] | list[EpisodeFile]) -> None:
        for episode in episodes:
            self.add(episode)

    def sample(self, batch_size: int, rng: np.random.Generator) -> SequenceBatch:
        if not self.episodes:
            raise ValueError("cannot sample from an empty replay")
        lengths = np.array([len(e) for e in self.episodes])
        # An episode of T steps has T + seq_len - 1 segment starts; weigh episodes by that count.
        starts_per_episode = lengths + self.seq_len - 1
        episode_ids = rng.choice(
            len(lengths), size=batch_size, p=starts_per_episode / starts_per_episode.sum()
        )
        segment_starts = rng.integers(-(self.seq_len - 1), lengths[episode_ids])
        windows = [
            self._window(self.episodes[e], s) for e, s in zip(episode_ids, segment_starts, strict=True)
        ]
        batch = SequenceBatch.concatenate(windows)
        batch.episode = episode_ids
        return batch

    def _window(self, episode: Episode | EpisodeFile, segment_start: int) -> SequenceBatch:
        width = self.burn_in + self.seq_len
        first_trained = max(segment_start, 0)
        start = max(0, first_trained - self.burn_in)
        steps = np.arange(start, start + width)
        valid = steps < len(episode)
        trained = valid & (steps >= first_trained) & (steps < segment_start + self.seq_len)
        # One contiguous read (from memory or disk), then padding repeats the last transition and the
        # last observation, indexed relative to the read piece.
        piece = episode.window(start, min(start + width, len(episode)))
        transition = np.minimum(steps, len(episode) - 1) - start
        observation = np.minimum(np.arange(start, start + width + 1), len(episode)) - start
        obs = {part: {k: v[observation][None] for k, v in getattr(piece, part).items()} for part in PARTS}
        return SequenceBatch(
            onboard=obs["onboard"],
            privileged=obs["privileged"],
            action=piece.action[transition][None],
            reward=np.where(valid, piece.reward[transition], 0.0)[None].astype(np.float32),
            terminated=np.where(valid, piece.terminated[transition], True)[None].astype(np.float32),
            mask=trained[None].astype(np.float32),
            episode=np.zeros(1, dtype=np.int64),
            start=np.array([start]),
        )


def _check_same_keys(reference: Episode | EpisodeFile, episode: Episode | EpisodeFile) -> None:
    expected_spec, got_spec = reference.spec(), episode.spec()
    for part in PARTS:
        expected, got = expected_spec[part], got_spec[part]
        if sorted(expected) != sorted(got):
            raise ValueError(f"episode {part} keys {sorted(got)} differ from the replay's {sorted(expected)}")
        for key, (shape, dtype) in got.items():
            if (shape, dtype) != expected[key]:
                raise ValueError(
                    f"episode {part}/{key} is {dtype}{list(shape)}, "
                    f"the replay holds {expected[key][1]}{list(expected[key][0])}"
                )
    if _action_dim(episode) != _action_dim(reference):
        raise ValueError(
            f"action size {_action_dim(episode)} differs from the replay's {_action_dim(reference)}"
        )


def _action_dim(episode: Episode | EpisodeFile) -> int:
    return episode.action_dim if isinstance(episode, EpisodeFile) else int(episode.action.shape[1])


def sample_mixed(
    demos: SequenceReplay,
    online: SequenceReplay,
    batch_size: int,
    demo_fraction: float,
    rng: np.random.Generator,
) -> SequenceBatch:
    """Online batches: `demo_fraction` of the sequences from the demos, the rest from online data."""
    if len(online) == 0:
        return demos.sample(batch_size, rng)
    n_demo = round(batch_size * demo_fraction)
    parts = [r.sample(n, rng) for r, n in ((demos, n_demo), (online, batch_size - n_demo)) if n > 0]
    return SequenceBatch.concatenate(parts)
