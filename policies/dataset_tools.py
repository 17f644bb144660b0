"""What `aps-dataset` does to a dataset folder, without the command line: summarise, check, merge and
split. Episodes are read through h5py a dataset at a time (images are never loaded to be checked),
and merges and splits copy episode files byte for byte (`EpisodeDataset.add_file`)."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np

from policies.episodes import (
    PARTS,
    SOURCES,
    EpisodeDataset,
    EpisodeFile,
    EpisodeFormatError,
    Spec,
)

REQUIRED_ATTRS = ("task", "fps", "success", "source")
SplitBy = Literal["source", "success", "task"]


class DatasetError(ValueError):
    """A dataset that cannot be used as asked; the message names the folder or episode and the fix."""


def open_dataset(root: str | Path) -> EpisodeDataset:
    dataset = EpisodeDataset(root)
    if not dataset.root.is_dir():
        raise DatasetError(f"{dataset.root}: no such dataset folder")
    return dataset


def temporary_files(dataset: EpisodeDataset) -> list[Path]:
    """Episodes a recorder was writing when it stopped (a crash): never part of the dataset."""
    return sorted(dataset.root.glob(".episode_*.h5.tmp"))


# --- info ---------------------------------------------------------------------------------------


@dataclass
class Summary:
    root: Path
    episodes: int
    steps: int  # transitions (LeRobot's frames)
    successes: int
    lengths: list[int]
    sources: Counter
    tasks: Counter
    robots: Counter
    fps: list[float]
    disk_bytes: int
    spec: Spec
    action_dim: int
    unreadable: list[str] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def duration_s(self) -> float:
        return sum(n / f for n, f in zip(self.lengths, self.fps, strict=True) if f > 0)


def summarise(root: str | Path) -> Summary:
    """Counts, success rate, sources, tasks, disk size and keys of a dataset (episode files are
    opened for their attributes and shapes only)."""
    dataset = open_dataset(root)
    files, unreadable = [], []
    for path in dataset.paths():
        try:
            files.append(EpisodeFile(path))
        except EpisodeFormatError as err:
            unreadable.append(str(err))
    disk = sum(p.stat().st_size for p in dataset.root.iterdir() if p.is_file())
    first = files[0] if files else None
    return Summary(
        root=dataset.root,
        episodes=len(files),
        steps=sum(len(f) for f in files),
        successes=sum(f.success for f in files),
        lengths=[len(f) for f in files],
        sources=Counter(str(f.attrs.get("source", "?")) for f in files),
        tasks=Counter(str(f.attrs.get("task", "?")) for f in files),
        robots=Counter(str(f.attrs.get("robot", "")) for f in files),
        fps=[float(f.attrs.get("fps", 0.0)) for f in files],
        disk_bytes=disk,
        spec=first.spec() if first else {part: {} for part in PARTS},
        action_dim=first.action_dim if first else 0,
        unreadable=unreadable,
    )


# --- check ---------------------------------------------------------------------------------------


@dataclass
class Problem:
    where: str  # an episode file's name, or the dataset folder
    what: str


def check_dataset(root: str | Path) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) of a dataset: every episode's schema, dtypes, finite values, action range,
    timestamps and end flags, the same keys in every episode, and the manifest against the files."""
    dataset = open_dataset(root)
    problems: list[Problem] = []
    warnings = [
        Problem(p.name, "an unfinished episode (a recorder stopped while writing it): delete it")
        for p in temporary_files(dataset)
    ]
    paths = dataset.paths()
    if not paths:
        problems.append(Problem(str(dataset.root), "no episode files (episode_NNNNNN.h5)"))
    reference: tuple[str, Spec, int] | None = None
    steps = 0
    for path in paths:
        found = check_episode(path)
        problems += [Problem(path.name, what) for what in found]
        if check_episode_file(path):
            continue
        episode = EpisodeFile(path)
        steps += len(episode)
        if reference is None:
            reference = (path.name, episode.spec(), episode.action_dim)
        elif (episode.spec(), episode.action_dim) != reference[1:]:
            problems.append(Problem(path.name, f"keys, shapes or action size differ from {reference[0]}'s"))
    manifest = dataset.read_manifest()
    if paths and (
        manifest is None or (manifest.get("episodes"), manifest.get("steps")) != (len(paths), steps)
    ):
        problems.append(
            Problem("manifest.json", "missing or out of date with the episode files: run with --fix-manifest")
        )
    return problems, warnings


def check_episode_file(path: Path) -> str | None:
    """Why the file cannot be opened as an episode, or None."""
    try:
        EpisodeFile(path)
    except EpisodeFormatError as err:
        return str(err)
    return None


def check_episode(path: Path) -> list[str]:
    """Every problem of one episode file (an empty list: it is sound)."""
    unreadable = check_episode_file(path)
    if unreadable:
        return [unreadable.replace(f"{path}: ", "")]
    episode = EpisodeFile(path)
    problems = [f"attribute {name!r} is missing" for name in REQUIRED_ATTRS if name not in episode.attrs]
    if "source" in episode.attrs and episode.attrs["source"] not in SOURCES:
        problems.append(f"source {episode.attrs['source']!r} is not one of {list(SOURCES)}")
    if "fps" in episode.attrs and not (
        isinstance(episode.attrs["fps"], (int, float)) and episode.attrs["fps"] > 0
    ):
        problems.append(f"fps {episode.attrs['fps']!r} is not a positive number")
    with h5py.File(path, "r") as file:
        for part in PARTS:
            for key, (shape, dtype) in episode.spec()[part].items():
                name = f"{part}/{key}"
                if dtype == "uint8" and len(shape) == 3 and shape[2] in (1, 3, 4):
                    continue  # an image: uint8 is always finite, its content is not checked
                if dtype != "float32" or len(shape) != 1:
                    problems.append(
                        f"{name} is {dtype}{list(shape)}: vectors are float32[n], images uint8[H,W,3]"
                    )
                    continue
                problems += _finite(name, file[name][()])
        expected = {
            "action": "float32",
            "reward": "float32",
            "terminated": "bool",
            "truncated": "bool",
            "timestamp": "float64",
        }
        arrays = {name: file[name][()] for name in expected}
    for name, dtype in expected.items():
        if str(arrays[name].dtype) != dtype:
            problems.append(f"{name} is {arrays[name].dtype}, not {dtype}")
    if arrays["action"].ndim != 2:
        problems.append(f"action must be [T, A], got shape {arrays['action'].shape}")
    for name in ("action", "reward", "timestamp"):
        problems += _finite(name, arrays[name])
    outside = np.argwhere(np.abs(np.nan_to_num(arrays["action"])) > 1.0)
    if len(outside):
        worst = float(np.nanmax(np.abs(arrays["action"])))
        problems.append(
            f"{len(outside)} action values outside [-1, 1] (first at step {outside[0][0]}, |max| {worst:.3g})"
        )
    steps = np.diff(arrays["timestamp"])
    if np.any(steps <= 0):
        problems.append(f"timestamps do not increase at step {int(np.argmax(steps <= 0)) + 1}")
    for name in ("terminated", "truncated"):
        early = np.flatnonzero(arrays[name][:-1])
        if len(early):
            problems.append(f"{name} before the last step (at step {early[0]} of {len(arrays[name])})")
    if arrays["terminated"][-1] and arrays["truncated"][-1]:
        problems.append("the last step is both terminated and truncated")
    if not (arrays["terminated"][-1] or arrays["truncated"][-1]):
        problems.append("the last step is neither terminated nor truncated")
    return problems


def _finite(name: str, values: np.ndarray) -> list[str]:
    bad = np.argwhere(~np.isfinite(values))
    if not len(bad):
        return []
    return [f"{name} holds {len(bad)} NaN or inf values (first at step {bad[0][0]})"]


# --- merge and split --------------------------------------------------------------------------


def episode_digest(path: Path) -> str:
    """SHA-256 of an episode file: merges and splits copy files byte for byte."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sound_files(dataset: EpisodeDataset) -> list[EpisodeFile]:
    files = []
    for path in dataset.paths():
        problem = check_episode_file(path)
        if problem:
            raise DatasetError(f"{problem}: run aps-dataset check {dataset.root}, then move the file away")
        files.append(EpisodeFile(path))
    return files


def merge(out: str | Path, sources: list[str | Path]) -> list[tuple[Path, Path | None]]:
    """Copy every episode of `sources` (in order) into `out` (made if missing, appended to if not),
    each once: [(source file, copied file, or None for a byte-identical episode already there or
    copied before)]. Refused when the episodes' keys, shapes or action sizes differ."""
    target = EpisodeDataset(out)
    inputs = [open_dataset(s) for s in sources]
    if any(d.root.resolve() == target.root.resolve() for d in inputs if target.root.exists()):
        raise DatasetError(f"{target.root} is one of the datasets to merge: merge into a new folder")
    files = [f for d in inputs for f in _sound_files(d)]
    existing = _sound_files(target) if target.root.is_dir() else []
    reference = (existing or files)[:1]
    for episode in files:
        if reference and (episode.spec(), episode.action_dim) != (
            reference[0].spec(),
            reference[0].action_dim,
        ):
            raise DatasetError(
                f"{episode.path} has keys/shapes {_describe(episode)}, {reference[0].path} has "
                f"{_describe(reference[0])}: only episodes of one kind merge"
            )
    seen = {episode_digest(e.path) for e in existing}
    copied: list[tuple[Path, Path | None]] = []
    for episode in files:
        digest = episode_digest(episode.path)
        copied.append((episode.path, None if digest in seen else target.add_file(episode.path)))
        seen.add(digest)
    return copied


def _describe(episode: EpisodeFile) -> str:
    keys = {
        f"{part}/{k}": list(shape) for part, spec in episode.spec().items() for k, (shape, _) in spec.items()
    }
    return f"{keys} and action[{episode.action_dim}]"


def split_groups(
    root: str | Path,
    ratio: float | None = None,
    seed: int = 0,
    by: SplitBy | None = None,
    names: tuple[str, str] = ("train", "val"),
) -> dict[str, list[Path]]:
    """Group name -> episode files: by a seeded shuffle into two groups of `ratio` and 1 - ratio, or
    by an attribute (source, task, success: "success"/"failure")."""
    dataset = open_dataset(root)
    files = _sound_files(dataset)
    if not files:
        raise DatasetError(f"{dataset.root} holds no episodes to split")
    if (ratio is None) == (by is None):
        raise DatasetError(
            "split by a ratio (--ratio 0.8 --seed 0) or by an attribute (--by source), not both"
        )
    groups: dict[str, list[Path]] = {}
    if ratio is not None:
        if not 0.0 < ratio < 1.0:
            raise DatasetError(f"ratio must lie in (0, 1), got {ratio}")
        order = np.random.default_rng(seed).permutation(len(files))
        first = round(ratio * len(files))
        for rank, index in enumerate(order):
            groups.setdefault(names[0] if rank < first else names[1], []).append(files[index].path)
        return {name: sorted(paths) for name, paths in groups.items()}
    for episode in files:
        value: Any = episode.attrs.get(by, "unknown")
        name = ("success" if episode.success else "failure") if by == "success" else str(value)
        groups.setdefault(name, []).append(episode.path)
    return groups


def split(out: str | Path, groups: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """Copy each group into `out/<group>` (new folders only): group -> copied files."""
    out = Path(out)
    taken = [name for name in groups if (out / name).exists() and any((out / name).iterdir())]
    if taken:
        raise DatasetError(
            f"{[str(out / n) for n in taken]} exist and are not empty: split into a new folder"
        )
    copied = {}
    for name, paths in groups.items():
        target = EpisodeDataset(out / name)
        copied[name] = [target.add_file(path) for path in paths]
    return copied
