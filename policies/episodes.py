"""Episodes and datasets: the one on-disk format shared by the sim, the recorder and the learner.

An episode of T steps holds T+1 observations and T transitions:

    onboard/<key>[T+1, ...]     what the policy may see (images uint8 HxWx3, vectors float32)
    privileged/<key>[T+1, ...]  what only the critic and the reward see
    action[T, A] float32 in [-1, 1], reward[T], terminated[T], truncated[T], timestamp[T+1]

plus attributes (task, robot, fps, success, source, policy_version). On disk an episode is one
``.npz`` file (no pickle: loaded with ``allow_pickle=False``), written under a temporary name and
renamed when complete, so a crash loses at most the episode being written. A dataset is a folder
of episodes plus ``manifest.json``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PARTS = ("onboard", "privileged")
SOURCES = ("demo", "scripted", "policy")
EPISODE_GLOB = "episode_*.npz"


class EpisodeFormatError(ValueError):
    """An episode or dataset on disk (or in memory) that breaks the format."""


@dataclass
class Episode:
    onboard: dict[str, np.ndarray]
    privileged: dict[str, np.ndarray]
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    timestamp: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @property
    def success(self) -> bool:
        return bool(self.attrs.get("success", False))

    def validate(self) -> None:
        steps = len(self)
        if self.action.ndim != 2:
            raise EpisodeFormatError(f"action must be [T, A], got shape {self.action.shape}")
        if not np.all(np.isfinite(self.action)):
            raise EpisodeFormatError("action holds NaN or inf")
        if not np.all(np.isfinite(self.reward)):
            raise EpisodeFormatError("reward holds NaN or inf")
        for name in ("reward", "terminated", "truncated"):
            if getattr(self, name).shape != (steps,):
                raise EpisodeFormatError(
                    f"{name} must have shape ({steps},), got {getattr(self, name).shape}"
                )
        if self.timestamp.shape != (steps + 1,):
            raise EpisodeFormatError(f"timestamp must have shape ({steps + 1},), got {self.timestamp.shape}")
        for part in PARTS:
            for key, value in getattr(self, part).items():
                if value.shape[0] != steps + 1:
                    raise EpisodeFormatError(
                        f"{part}/{key} has {value.shape[0]} observations, expected T+1 = {steps + 1}"
                    )
        overlap = set(self.onboard) & set(self.privileged)
        if overlap:
            raise EpisodeFormatError(f"keys {sorted(overlap)} appear both onboard and privileged")


def episode_from_steps(
    observations: list[dict[str, dict[str, np.ndarray]]],
    actions: list[np.ndarray],
    rewards: list[float],
    terminated: list[bool],
    truncated: list[bool],
    fps: float,
    attrs: dict[str, Any],
) -> Episode:
    """Stack per-step nested observations (T+1 of them) and transitions (T) into an Episode."""
    if len(observations) != len(actions) + 1:
        raise EpisodeFormatError(
            f"need T+1 observations for T actions, got {len(observations)} and {len(actions)}"
        )
    stacked = {
        part: {key: np.stack([obs[part][key] for obs in observations]) for key in observations[0][part]}
        for part in PARTS
    }
    episode = Episode(
        onboard=stacked["onboard"],
        privileged=stacked["privileged"],
        action=np.asarray(actions, dtype=np.float32).reshape(len(actions), -1),
        reward=np.asarray(rewards, dtype=np.float32),
        terminated=np.asarray(terminated, dtype=bool),
        truncated=np.asarray(truncated, dtype=bool),
        timestamp=np.arange(len(observations), dtype=np.float64) / fps,
        attrs={"fps": fps, **attrs},
    )
    episode.validate()
    return episode


def save_episode(episode: Episode, path: str | Path) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename."""
    episode.validate()
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "action": episode.action,
        "reward": episode.reward,
        "terminated": episode.terminated,
        "truncated": episode.truncated,
        "timestamp": episode.timestamp,
        "attrs": np.array(json.dumps(episode.attrs)),
    }
    for part in PARTS:
        for key, value in getattr(episode, part).items():
            arrays[f"{part}/{key}"] = value
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_episode(path: str | Path) -> Episode:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise EpisodeFormatError(f"{path}: not a readable episode file ({err})") from err
    missing = [
        k for k in ("action", "reward", "terminated", "truncated", "timestamp", "attrs") if k not in arrays
    ]
    if missing:
        raise EpisodeFormatError(f"{path}: missing {missing}")
    parts: dict[str, dict[str, np.ndarray]] = {part: {} for part in PARTS}
    for name, value in arrays.items():
        part, sep, key = name.partition("/")
        if sep and part in parts:
            parts[part][key] = value
    episode = Episode(
        onboard=parts["onboard"],
        privileged=parts["privileged"],
        action=arrays["action"],
        reward=arrays["reward"],
        terminated=arrays["terminated"],
        truncated=arrays["truncated"],
        timestamp=arrays["timestamp"],
        attrs=_attrs(path, arrays["attrs"]),
    )
    try:
        episode.validate()
    except EpisodeFormatError as err:
        raise EpisodeFormatError(f"{path}: {err}") from err
    return episode


def _attrs(path: Path, raw: np.ndarray) -> dict[str, Any]:
    try:
        attrs = json.loads(str(raw))
    except json.JSONDecodeError as err:
        raise EpisodeFormatError(f"{path}: attributes are not valid JSON ({err})") from err
    if not isinstance(attrs, dict):
        raise EpisodeFormatError(f"{path}: attributes must be a JSON object")
    return attrs


class EpisodeDataset:
    """A folder of episode files plus ``manifest.json`` (task, counts, key shapes)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __len__(self) -> int:
        return len(self.paths())

    def paths(self) -> list[Path]:
        return sorted(self.root.glob(EPISODE_GLOB))

    def __iter__(self) -> Iterator[Episode]:
        for path in self.paths():
            yield load_episode(path)

    def load_all(self) -> list[Episode]:
        return list(self)

    def append(self, episode: Episode) -> Path:
        """Add one episode; the manifest is updated from it alone, so a long session stays cheap."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = save_episode(episode, self.root / f"episode_{self._next_index():06d}.npz")
        previous = self.read_manifest()
        if previous is not None and previous["episodes"] == len(self) - 1:
            self._write(_merge_manifests(previous, _manifest([episode])))
        else:  # missing or out of step with the files (e.g. after a crash): rebuild it
            self.write_manifest()
        return path

    def extend(self, episodes: list[Episode]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        start = self._next_index()
        for offset, episode in enumerate(episodes):
            save_episode(episode, self.root / f"episode_{start + offset:06d}.npz")
        self.write_manifest()

    def write_manifest(self) -> None:
        """Summarise from the episode files themselves, so the manifest can always be rebuilt."""
        self._write(_manifest([load_episode(p) for p in self.paths()]))

    def read_manifest(self) -> dict[str, Any] | None:
        path = self.root / "manifest.json"
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except json.JSONDecodeError:
            return None

    def _write(self, manifest: dict[str, Any]) -> None:
        tmp = self.root / ".manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, self.root / "manifest.json")

    def _next_index(self) -> int:
        indices = [int(m.group(1)) for p in self.paths() if (m := re.match(r"episode_(\d+)\.npz$", p.name))]
        return max(indices, default=-1) + 1


def _manifest(episodes: list[Episode]) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "episodes": len(episodes),
        "steps": int(sum(len(e) for e in episodes)),
        "successes": int(sum(e.success for e in episodes)),
        "tasks": sorted({str(e.attrs.get("task", "")) for e in episodes}),
        "sources": sorted({str(e.attrs.get("source", "")) for e in episodes}),
    }
    if episodes:
        first = episodes[0]
        manifest["keys"] = {
            part: {k: [list(v.shape[1:]), str(v.dtype)] for k, v in getattr(first, part).items()}
            for part in PARTS
        }
        manifest["action_dim"] = int(first.action.shape[1])
    return manifest


def _merge_manifests(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = {**new, **old}  # keys and action_dim: the first episode's
    for count in ("episodes", "steps", "successes"):
        merged[count] = old[count] + new[count]
    for names in ("tasks", "sources"):
        merged[names] = sorted(set(old[names]) | set(new[names]))
    return merged
