"""Episodes and datasets: the one on-disk format shared by the sim, the recorder and the learner.

An episode of T steps holds T+1 observations and T transitions:

    onboard/<key>[T+1, ...]     what the policy may see (images uint8 HxWx3, vectors float32)
    privileged/<key>[T+1, ...]  what only the critic and the reward see
    action[T, A] float32 in [-1, 1], reward[T], terminated[T], truncated[T], timestamp[T+1]

plus attributes (task, robot, fps, success, source, policy_version, ...). On disk an episode is one
HDF5 file (h5py, as robomimic and ALOHA keep theirs): one dataset per array, growing along time in
chunks (an image a chunk, compressed), so a recorder appends step by step and a long episode never
sits in memory (`EpisodeWriter`). It is written under a hidden temporary name and renamed when
complete, so a crash loses at most the episode being written and no reader ever sees half of one.
`EpisodeFile` reads windows of an episode without loading it whole. The attributes are one JSON
string (`attrs`); nothing is pickled. A dataset is a folder of `episode_NNNNNN.h5` plus
`manifest.json`. (The first format, whole `.npz` files, is gone: nothing kept needs it, since sim
demos are regenerated from their seed.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

PARTS = ("onboard", "privileged")
SOURCES = ("demo", "scripted", "policy")
FORMAT = "aps-episode/2"
EPISODE_GLOB = "episode_*.h5"
TRANSITIONS = ("action", "reward", "terminated", "truncated")
Spec = dict[str, dict[str, tuple[tuple[int, ...], str]]]  # part -> key -> (per-step shape, dtype)


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

    def spec(self) -> Spec:
        return {
            part: {k: (tuple(v.shape[1:]), str(v.dtype)) for k, v in getattr(self, part).items()}
            for part in PARTS
        }

    def observation(self, step: int) -> dict[str, dict[str, np.ndarray]]:
        """The nested observation at `step` (0..T), as an env returns it."""
        return {part: {k: v[step] for k, v in getattr(self, part).items()} for part in PARTS}

    def window(self, first: int, last: int) -> Episode:
        """Observations first..last and the transitions between them (a view, nothing copied)."""
        return Episode(
            {k: v[first : last + 1] for k, v in self.onboard.items()},
            {k: v[first : last + 1] for k, v in self.privileged.items()},
            self.action[first:last], self.reward[first:last], self.terminated[first:last],
            self.truncated[first:last], self.timestamp[first : last + 1], self.attrs,
        )  # fmt: skip

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
        _check_attrs(self.attrs)


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


# --- writing ---------------------------------------------------------------------------------------


def _temporary(path: Path) -> Path:
    """Where an episode is written until complete: hidden, and not matched by EPISODE_GLOB."""
    return path.with_name(f".{path.name}.tmp")


class EpisodeWriter:
    """Streams one episode into `path`, step by step:

        with EpisodeWriter(path) as writer:
            writer.add_observation(obs, timestamp)            # the first observation
            for each step:
                writer.add_transition(action, reward, terminated, truncated)
                writer.add_observation(obs, timestamp)
            writer.close(attrs)                                # renamed to `path` only now

    Leaving the `with` block by an exception (or calling `abort`) deletes the partial file. Images
    are chunked one frame a chunk and compressed (`image_compression`: "lzf", fast, is h5py's own;
    "gzip" is readable by every HDF5 tool); vectors in chunks of `vector_chunk` steps.
    """

    def __init__(
        self, path: str | Path, image_compression: str | None = "lzf", vector_chunk: int = 64
    ) -> None:
        self.path = Path(path)
        self.temporary = _temporary(self.path)
        self.image_compression, self.vector_chunk = image_compression, vector_chunk
        if not self.path.parent.is_dir():
            raise EpisodeFormatError(f"{self.path.parent}: no such folder to write episodes into")
        try:
            self.file: h5py.File | None = h5py.File(self.temporary, "w")
        except OSError as err:
            raise EpisodeFormatError(f"{self.temporary}: cannot write an episode here ({err})") from err
        self.observations = 0
        self.transitions = 0
        self.spec: Spec | None = None

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        if kind is not None or self.file is not None:  # an error, or not closed: nothing half-done stays
            self.abort()

    def add_observation(self, observation: dict[str, dict[str, np.ndarray]], timestamp: float) -> None:
        if self.observations != self.transitions:
            raise EpisodeFormatError("an observation must follow a transition (or start the episode)")
        arrays = {part: {k: np.asarray(v) for k, v in observation.get(part, {}).items()} for part in PARTS}
        spec = {part: {k: (v.shape, str(v.dtype)) for k, v in arrays[part].items()} for part in PARTS}
        if self.spec is None:
            overlap = set(arrays["onboard"]) & set(arrays["privileged"])
            if overlap:
                raise EpisodeFormatError(f"keys {sorted(overlap)} appear both onboard and privileged")
            self.spec = spec
        elif spec != self.spec:
            raise EpisodeFormatError(
                f"observation {self.observations} has keys/shapes {spec}, not {self.spec}"
            )
        for part, values in arrays.items():
            for key, value in values.items():
                image = value.dtype == np.uint8 and value.ndim == 3
                self._append(f"{part}/{key}", value, image)
        self._append("timestamp", np.float64(timestamp), False)
        self.observations += 1

    def add_transition(self, action: np.ndarray, reward: float, terminated: bool, truncated: bool) -> None:
        if self.observations != self.transitions + 1:
            raise EpisodeFormatError("a transition must follow an observation")
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(action)) or not np.isfinite(reward):
            raise EpisodeFormatError(f"step {self.transitions}: action or reward holds NaN or inf")
        self._append("action", action, False)
        self._append("reward", np.float32(reward), False)
        self._append("terminated", np.bool_(terminated), False)
        self._append("truncated", np.bool_(truncated), False)
        self.transitions += 1

    def set_last_outcome(self, reward: float, terminated: bool, truncated: bool) -> None:
        """Rewrite the latest transition's reward and end flags: a recorder learns that a step ended
        the episode (or what the episode's success label is) only after it wrote that step."""
        if self.file is None or self.transitions == 0:
            raise EpisodeFormatError("no transition to rewrite")
        if not np.isfinite(reward):
            raise EpisodeFormatError(f"step {self.transitions - 1}: reward holds NaN or inf")
        self.file["reward"][-1] = np.float32(reward)
        self.file["terminated"][-1] = np.bool_(terminated)
        self.file["truncated"][-1] = np.bool_(truncated)

    def drop_last_steps(self, steps: int) -> None:
        """Remove the last `steps` transitions and the observations after them (steps a recorder
        wrote before it learnt that the episode had already ended)."""
        complete = self.observations == self.transitions + 1
        if self.file is None or not complete or not 0 <= steps <= self.transitions:
            raise EpisodeFormatError(f"cannot drop {steps} of {self.transitions} steps here")
        self.observations -= steps
        self.transitions -= steps
        self._fit()

    def rollback(self) -> None:
        """Undo a step that failed half-way (a full disk): every array back to the last complete
        observation, so that `close` can still keep what came before it."""
        if self.file is None:
            raise EpisodeFormatError("the writer is closed")
        self.transitions = min(self.transitions, max(self.observations - 1, 0))
        self._fit()

    def _fit(self) -> None:
        """Cut every dataset to the steps the counters say were written whole."""
        assert self.file is not None
        for name, (shape, _) in _dataset_names(self.file).items():
            length = self.transitions if name in TRANSITIONS else self.observations
            if shape[0] != length:
                self.file[name].resize(length, axis=0)

    def _append(self, name: str, value: np.ndarray, image: bool) -> None:
        assert self.file is not None, "the writer is closed"
        if name not in self.file:
            chunk = (1, *value.shape) if image else (self.vector_chunk, *value.shape)
            self.file.create_dataset(
                name, shape=(0, *value.shape), maxshape=(None, *value.shape), dtype=value.dtype,
                chunks=chunk, compression=self.image_compression if image else None,
            )  # fmt: skip
        dataset = self.file[name]
        dataset.resize(dataset.shape[0] + 1, axis=0)
        dataset[-1] = value

    def close(self, attrs: dict[str, Any]) -> Path:
        """Finish: attributes, flush to disk, rename into place. Returns the episode's path."""
        if self.file is None:
            raise EpisodeFormatError("the writer is already closed")
        if self.transitions == 0 or self.observations != self.transitions + 1:
            raise EpisodeFormatError(
                f"an episode needs T >= 1 transitions and T+1 observations, got {self.transitions} and "
                f"{self.observations}"
            )
        _check_attrs(attrs)
        self.file.attrs["format"] = FORMAT
        self.file.attrs["attrs"] = json.dumps(attrs)
        self.file.flush()
        self.file.close()
        self.file = None
        with open(
            self.temporary, "rb"
        ) as handle:  # on disk before the rename: no empty file after a power cut
            os.fsync(handle.fileno())
        os.replace(self.temporary, self.path)
        return self.path

    def abort(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        self.temporary.unlink(missing_ok=True)


def save_episode(episode: Episode, path: str | Path, image_compression: str | None = "lzf") -> Path:
    """Write a whole in-memory episode (the same layout as EpisodeWriter streams)."""
    episode.validate()
    path = Path(path)
    writer = EpisodeWriter(path, image_compression)
    try:
        assert writer.file is not None
        for part in PARTS:
            for key, value in getattr(episode, part).items():
                image = value.dtype == np.uint8 and value.ndim == 4
                writer.file.create_dataset(
                    f"{part}/{key}", data=value, maxshape=(None, *value.shape[1:]),
                    chunks=(1, *value.shape[1:]) if image else None,
                    compression=image_compression if image else None,
                )  # fmt: skip
        for name in (*TRANSITIONS, "timestamp"):
            value = np.asarray(getattr(episode, name))
            writer.file.create_dataset(name, data=value, maxshape=(None, *value.shape[1:]))
        writer.transitions, writer.observations = len(episode), len(episode) + 1
        return writer.close(episode.attrs)
    except BaseException:
        writer.abort()
        raise


# --- reading ---------------------------------------------------------------------------------------


class EpisodeFile:
    """An episode on disk, read a window at a time (`window`), or whole (`load`). Opening checks
    the layout; the arrays stay on disk, so a dataset of any size can be sampled."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self._open() as file:
            self.attrs = _read_attrs(self.path, file)
            names = _dataset_names(file)
            parts: Spec = {part: {} for part in PARTS}
            for name, (shape, dtype) in names.items():
                part, _, key = name.partition("/")
                if part in PARTS and key:
                    parts[part][key] = (shape[1:], dtype)
            missing = [n for n in (*TRANSITIONS, "timestamp") if n not in names]
            if missing:
                raise EpisodeFormatError(f"{self.path}: missing {missing}")
            self.steps = names["action"][0][0]
            self.action_dim = names["action"][0][1] if len(names["action"][0]) == 2 else 0
            lengths = {n: shape[0] for n, (shape, _) in names.items()}
        expected = {n: self.steps for n in TRANSITIONS} | {
            n: self.steps + 1 for n in lengths if n not in TRANSITIONS
        }
        wrong = {n: lengths[n] for n in lengths if lengths[n] != expected[n]}
        if wrong or self.steps < 1:
            raise EpisodeFormatError(
                f"{self.path}: lengths {wrong or lengths} do not fit T = {self.steps} transitions "
                "and T+1 observations"
            )
        self._spec = parts

    def _open(self) -> h5py.File:
        try:
            return h5py.File(self.path, "r")
        except OSError as err:
            raise EpisodeFormatError(f"{self.path}: not a readable episode file ({err})") from err

    def __len__(self) -> int:
        return self.steps

    @property
    def success(self) -> bool:
        return bool(self.attrs.get("success", False))

    def spec(self) -> Spec:
        return self._spec

    def window(self, first: int, last: int) -> Episode:
        """Observations first..last and the transitions between them, read from disk."""
        with self._open() as file:
            try:
                observations = {
                    part: {k: file[f"{part}/{k}"][first : last + 1] for k in self._spec[part]}
                    for part in PARTS
                }
                transitions = {n: file[n][first:last] for n in TRANSITIONS}
                timestamp = file["timestamp"][first : last + 1]
            except (OSError, KeyError) as err:
                raise EpisodeFormatError(f"{self.path}: unreadable data ({err})") from err
        return Episode(
            observations["onboard"], observations["privileged"], transitions["action"], transitions["reward"],
            transitions["terminated"], transitions["truncated"], timestamp, self.attrs,
        )  # fmt: skip

    def load(self) -> Episode:
        episode = self.window(0, self.steps)
        try:
            episode.validate()
        except EpisodeFormatError as err:
            raise EpisodeFormatError(f"{self.path}: {err}") from err
        return episode


def load_episode(path: str | Path) -> Episode:
    return EpisodeFile(path).load()


def _dataset_names(file: h5py.File) -> dict[str, tuple[tuple[int, ...], str]]:
    names: dict[str, tuple[tuple[int, ...], str]] = {}

    def visit(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            names[name] = (tuple(item.shape), str(item.dtype))

    file.visititems(visit)
    return names


def _read_attrs(path: Path, file: h5py.File) -> dict[str, Any]:
    if file.attrs.get("format") != FORMAT:
        raise EpisodeFormatError(f"{path}: format {file.attrs.get('format')!r}, this code reads {FORMAT!r}")
    try:
        attrs = json.loads(file.attrs["attrs"])
    except (KeyError, json.JSONDecodeError) as err:
        raise EpisodeFormatError(f"{path}: attributes are not valid JSON ({err})") from err
    if not isinstance(attrs, dict):
        raise EpisodeFormatError(f"{path}: attributes must be a JSON object")
    return attrs


def _check_attrs(attrs: dict[str, Any]) -> None:
    try:
        json.dumps(attrs, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise EpisodeFormatError(f"episode attributes must be plain JSON values ({err})") from err


# --- datasets --------------------------------------------------------------------------------------


class EpisodeDataset:
    """A folder of episode files plus ``manifest.json`` (task, counts, key shapes)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __len__(self) -> int:
        return len(self.paths())

    def paths(self) -> list[Path]:
        return sorted(self.root.glob(EPISODE_GLOB))

    def files(self) -> list[EpisodeFile]:
        """Every episode, opened for windowed reads (nothing loaded)."""
        return [EpisodeFile(p) for p in self.paths()]

    def __iter__(self) -> Iterator[Episode]:
        for path in self.paths():
            yield load_episode(path)

    def load_all(self) -> list[Episode]:
        return list(self)

    def next_path(self) -> Path:
        """Where the next episode goes (for an EpisodeWriter); the folder is made if needed."""
        self.root.mkdir(parents=True, exist_ok=True)
        indices = [int(m.group(1)) for p in self.paths() if (m := re.match(r"episode_(\d+)\.h5$", p.name))]
        return self.root / f"episode_{max(indices, default=-1) + 1:06d}.h5"

    def append(self, episode: Episode) -> Path:
        """Add one episode; the manifest is updated from it alone, so a long session stays cheap."""
        return self.added(save_episode(episode, self.next_path()))

    def added(self, path: Path) -> Path:
        """Update the manifest for the episode just written at `path` (by `append` or a writer)."""
        previous = self.read_manifest()
        if previous is not None and previous["episodes"] == len(self) - 1:
            self._write(_merge_manifests(previous, _manifest([EpisodeFile(path)])))
        else:  # missing or out of step with the files (e.g. after a crash): rebuild it
            self.write_manifest()
        return path

    def add_file(self, source: str | Path) -> Path:
        """Copy an episode file into this dataset under the next name (checked first, copied under a
        hidden name, renamed when complete) and update the manifest: merges and splits keep every
        byte of an episode."""
        EpisodeFile(source)  # a torn or malformed file is refused before anything is copied
        path = self.next_path()
        temporary = _temporary(path)
        try:
            shutil.copyfile(source, temporary)
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return self.added(path)

    def remove(self, path: str | Path) -> Path:
        """Delete one episode of this dataset (taken back by the operator, or found incomplete) and
        rebuild the manifest from the files left."""
        path = Path(path)
        if path.parent.resolve() != self.root.resolve() or not path.is_file():
            raise EpisodeFormatError(f"{path} is no episode of {self.root}")
        path.unlink()
        self.write_manifest()
        return path

    def extend(self, episodes: list[Episode]) -> None:
        for episode in episodes:
            save_episode(episode, self.next_path())
        self.write_manifest()

    def write_manifest(self) -> None:
        """Summarise from the episode files themselves, so the manifest can always be rebuilt."""
        self._write(_manifest(self.files()))

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


def _manifest(episodes: list[EpisodeFile]) -> dict[str, Any]:
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
            part: {k: [list(shape), dtype] for k, (shape, dtype) in keys.items()}
            for part, keys in first.spec().items()
        }
        manifest["action_dim"] = int(first.action_dim)
    return manifest


def _merge_manifests(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    merged = {**new, **old}  # keys and action_dim: the first episode's
    for count in ("episodes", "steps", "successes"):
        merged[count] = old[count] + new[count]
    for names in ("tasks", "sources"):
        merged[names] = sorted(set(old[names]) | set(new[names]))
    return merged
