"""Export a dataset to LeRobotDataset v3.0 (a bridge: the stack's own format stays HDF5 episodes).

`lerobot` itself cannot be installed beside this stack's torch on Python 3.11 (STACK.md), so the
layout is written here, following LeRobot's own writer (lerobot/datasets/dataset_writer.py,
dataset_metadata.py, utils.py at v3.0):

    meta/info.json                               codebase_version "v3.0", fps, features, totals, paths
    meta/stats.json                              per feature: min, max, mean, std, count, q01..q99
    meta/tasks.parquet                           index "task" (the text), column task_index
    meta/episodes/chunk-000/file-000.parquet     one row per episode: length, tasks, data and video
                                                 file indices, from/to frame and timestamp, stats/...
    data/chunk-000/file-000.parquet              one row per frame, episodes one after the other
    videos/<key>/chunk-000/file-000.mp4          one stream per camera, episodes one after the other

One LeRobot frame is (observation t, action t): an episode of T steps gives T frames (its last
observation, which no action follows, is not exported) with `next.reward`, `next.done`,
`next.terminated` and `next.truncated` of step t. Keys: onboard images -> observation.images.<key>
(videos), onboard `joints` -> observation.state, other onboard vectors -> observation.<key>,
privileged vectors -> privileged.<key> (outside `observation.`, so LeRobot policies never see them).
`timestamp` is frame_index / fps, as LeRobot's loader checks; the recorded times are not exported.
Files roll over at LeRobot's default sizes (100 MB of data, 200 MB of video, 1000 files a chunk).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policies.dataset_tools import DatasetError, open_dataset
from policies.episodes import EpisodeFile
from robot_nodes.episode_video import VideoEncoder

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
IMAGE_SAMPLES = 100  # frames per episode that image statistics are computed from
IMAGE_STATS_SIZE = 150  # pixels: images are strided down to about this for statistics


def feature_name(part: str, key: str, is_image: bool) -> str:
    if part == "onboard":
        if is_image:
            return f"observation.images.{key}"
        return "observation.state" if key == "joints" else f"observation.{key}"
    return f"privileged.images.{key}" if is_image else f"privileged.{key}"


@dataclass
class _FileSlot:
    """Which chunk/file the next episode goes into, rolling over at a size limit."""

    limit_mb: float
    chunk: int = 0
    file: int = 0

    def advance(self) -> None:
        self.file += 1
        if self.file >= CHUNKS_SIZE:
            self.chunk, self.file = self.chunk + 1, 0

    def path(self, template: str, **names: str) -> str:
        return template.format(chunk_index=self.chunk, file_index=self.file, **names)


def export_lerobot(
    root: str | Path, out: str | Path, codec: str = "av1", task_description: str = ""
) -> dict[str, Any]:
    """Write `root` as a LeRobotDataset v3.0 in `out` (a new folder, removed again if the export
    fails); returns info.json's content."""
    dataset = open_dataset(root)
    files = [EpisodeFile(p) for p in dataset.paths()]
    if not files:
        raise DatasetError(f"{dataset.root} holds no episodes to export")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} exists and is not empty: export into a new folder")
    try:
        return _export(files, out, codec, task_description)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise


def _export(files: list[EpisodeFile], out: Path, codec: str, task_description: str) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fps_values = {float(f.attrs.get("fps", 0)) for f in files}
    if len(fps_values) != 1 or next(iter(fps_values)) <= 0:
        raise DatasetError(f"a LeRobot dataset has one fps; these episodes have {sorted(fps_values)}")
    fps = next(iter(fps_values))
    columns, features = _features(files)
    videos = [name for name, feature in features.items() if feature["dtype"] == "video"]
    schema = pa.schema([(name, _arrow_type(pa, f)) for name, f in features.items() if f["dtype"] != "video"])
    tasks = sorted({task_description or str(f.attrs.get("task", "")) for f in files})
    data_slot, data_bytes, data_writer = _FileSlot(DATA_FILE_MB), 0, None
    video_slots = {name: _FileSlot(VIDEO_FILE_MB) for name in videos}
    encoders: dict[str, VideoEncoder] = {}
    rows: list[dict[str, Any]] = []
    episode_stats: list[dict[str, dict[str, np.ndarray]]] = []
    frames_done = 0
    try:
        for index, file in enumerate(files):
            episode = file.load()
            length = len(episode)
            task = task_description or str(file.attrs.get("task", ""))
            frame = np.arange(length)
            values: dict[str, np.ndarray] = {
                name: getattr(episode, part)[key][:length] for name, (part, key) in columns.items()
            }
            values |= {
                "action": episode.action,
                "next.reward": episode.reward,
                "next.done": frame == length - 1,
                "next.terminated": episode.terminated,
                "next.truncated": episode.truncated,
                "timestamp": (frame / fps).astype(np.float32),
                "frame_index": frame,
                "episode_index": np.full(length, index),
                "index": frames_done + frame,
                "task_index": np.full(length, tasks.index(task)),
            }
            table = pa.Table.from_arrays(
                [_arrow_column(pa, values[name], features[name]) for name in schema.names], schema=schema
            )
            if data_writer is not None and data_bytes + table.nbytes >= DATA_FILE_MB * 2**20:
                data_writer.close()
                data_writer, data_bytes = None, 0
                data_slot.advance()
            if data_writer is None:
                path = out / data_slot.path(DATA_PATH)
                path.parent.mkdir(parents=True, exist_ok=True)
                data_writer = pq.ParquetWriter(path, schema, compression="snappy", use_dictionary=True)
            data_writer.write_table(table)
            data_bytes += table.nbytes
            row: dict[str, Any] = {
                "episode_index": index,
                "tasks": [task],
                "length": length,
                "data/chunk_index": data_slot.chunk,
                "data/file_index": data_slot.file,
                "dataset_from_index": frames_done,
                "dataset_to_index": frames_done + length,
            }
            stats = {name: _vector_stats(values[name]) for name in schema.names}
            for name in videos:
                row |= _add_video(encoders, video_slots[name], out, name, values[name], fps, codec)
                stats[name] = _image_stats(values[name])
            row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            row |= {f"stats/{name}/{k}": v.tolist() for name, s in stats.items() for k, v in s.items()}
            rows.append(row)
            episode_stats.append(stats)
            frames_done += length
    finally:
        if data_writer is not None:
            data_writer.close()
        for encoder in encoders.values():
            encoder.close()
    episodes_path = out / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), episodes_path, compression="snappy")
    _write_tasks(out, tasks)
    for name in videos:
        features[name]["info"] = _video_info(
            out / VIDEO_PATH.format(video_key=name, chunk_index=0, file_index=0), fps
        )
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": str(files[0].attrs.get("robot", "")) or None,
        "total_episodes": len(files),
        "total_frames": frames_done,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": VIDEO_FILE_MB,
        "fps": int(fps) if fps.is_integer() else fps,
        "splits": {"train": f"0:{len(files)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if videos else None,
        "features": features,
    }
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    merged = {name: _merge_stats([s[name] for s in episode_stats]) for name in episode_stats[0]}
    serialised = {name: {k: v.tolist() for k, v in s.items()} for name, s in merged.items()}
    (out / "meta" / "stats.json").write_text(json.dumps(serialised, indent=4))
    return info


def _features(files: list[EpisodeFile]) -> tuple[dict[str, tuple[str, str]], dict[str, dict]]:
    """(feature -> (part, key) of the episode arrays it comes from, LeRobot's features dict)."""
    spec, action_dim = files[0].spec(), files[0].action_dim
    for episode in files[1:]:
        if (episode.spec(), episode.action_dim) != (spec, action_dim):
            raise DatasetError(
                f"{episode.path}: keys or shapes differ from {files[0].path}'s; export one kind"
            )
    columns, features = {}, {}
    for part, keys in spec.items():
        for key, (shape, dtype) in keys.items():
            is_image = dtype == "uint8" and len(shape) == 3
            name = feature_name(part, key, is_image)
            columns[name] = (part, key)
            if not is_image:
                features[name] = {"dtype": dtype, "shape": list(shape), "names": None}
            elif shape[0] % 2 or shape[1] % 2 or shape[2] != 3:
                raise DatasetError(f"{part}/{key} is {list(shape)}: video needs RGB of an even size")
            else:
                features[name] = {
                    "dtype": "video",
                    "shape": list(shape),
                    "names": ["height", "width", "channels"],
                }
    features["action"] = {"dtype": "float32", "shape": [action_dim], "names": None}
    for name in ("next.reward", "next.done", "next.terminated", "next.truncated"):
        features[name] = {
            "dtype": "float32" if name == "next.reward" else "bool",
            "shape": [1],
            "names": None,
        }
    return columns, features | DEFAULT_FEATURES


def _arrow_type(pa: Any, feature: dict) -> Any:
    """As LeRobot's hf features: a scalar for shape [1], a fixed-size list for shape [n]."""
    item = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_()}[
        feature["dtype"]
    ]
    return item if feature["shape"] == [1] else pa.list_(item, feature["shape"][0])


def _arrow_column(pa: Any, values: np.ndarray, feature: dict) -> Any:
    kind = _arrow_type(pa, feature)
    flat = np.ascontiguousarray(values).reshape(-1).astype(feature["dtype"])
    if feature["shape"] == [1]:
        return pa.array(flat, type=kind)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=kind.value_type), feature["shape"][0])


def _add_video(
    encoders: dict[str, VideoEncoder],
    slot: _FileSlot,
    out: Path,
    name: str,
    images: np.ndarray,
    fps: float,
    codec: str,
) -> dict[str, Any]:
    """Append an episode's frames to the camera's current video file (a new file past the size
    limit): its file indices and the episode's from/to timestamps in it."""
    encoder = encoders.get(name)
    if encoder is not None and encoder.bytes >= slot.limit_mb * 2**20:
        encoder.close()
        slot.advance()
        encoder = None
    if encoder is None:
        path = out / slot.path(VIDEO_PATH, video_key=name)
        path.parent.mkdir(parents=True, exist_ok=True)
        height, width = images.shape[1:3]
        encoder = encoders[name] = VideoEncoder(path, fps, width, height, codec)
    start = encoder.frames / fps
    for image in images:
        encoder.add(image)
    return {
        f"videos/{name}/chunk_index": slot.chunk,
        f"videos/{name}/file_index": slot.file,
        f"videos/{name}/from_timestamp": start,
        f"videos/{name}/to_timestamp": encoder.frames / fps,
    }


def _stats(values: np.ndarray, axis: tuple[int, ...] | int) -> dict[str, np.ndarray]:
    values = values.astype(np.float64)
    stats = {
        "min": values.min(axis=axis),
        "max": values.max(axis=axis),
        "mean": values.mean(axis=axis),
        "std": values.std(axis=axis),
    }
    quantiles = np.quantile(values, QUANTILES, axis=axis)
    stats |= {f"q{round(q * 100):02d}": quantiles[i] for i, q in enumerate(QUANTILES)}
    return stats


def _vector_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per-dimension statistics of a [N] or [N, D] feature (shape [1] or [D], as LeRobot's)."""
    stats = _stats(values.reshape(len(values), -1), axis=0)
    return stats | {"count": np.array([len(values)])}


def _image_stats(images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel statistics in [0, 1], shape [3, 1, 1], from up to IMAGE_SAMPLES frames strided
    down to about IMAGE_STATS_SIZE pixels (LeRobot samples images the same way)."""
    picks = np.unique(np.linspace(0, len(images) - 1, min(len(images), IMAGE_SAMPLES)).round().astype(int))
    stride = max(1, max(images.shape[1:3]) // IMAGE_STATS_SIZE)
    sample = images[picks, ::stride, ::stride].transpose(0, 3, 1, 2) / 255.0  # N, C, H, W
    stats = {k: v.reshape(3, 1, 1) for k, v in _stats(sample, axis=(0, 2, 3)).items()}
    return stats | {"count": np.array([len(picks)])}


def _merge_stats(stats: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset statistics from episodes' (count-weighted; quantiles averaged, as LeRobot does)."""
    counts = np.array([s["count"][0] for s in stats], dtype=np.float64)
    weights = counts / counts.sum()

    def weighted(name: str) -> np.ndarray:
        return sum(w * s[name] for w, s in zip(weights, stats, strict=True))

    mean = weighted("mean")
    variance = sum(w * (s["std"] ** 2 + (s["mean"] - mean) ** 2) for w, s in zip(weights, stats, strict=True))
    merged = {
        "min": np.min([s["min"] for s in stats], axis=0),
        "max": np.max([s["max"] for s in stats], axis=0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": np.array([int(counts.sum())]),
    }
    return merged | {name: weighted(name) for name in stats[0] if name.startswith("q")}


def _write_tasks(out: Path, tasks: list[str]) -> None:
    """meta/tasks.parquet as LeRobot writes it: a pandas frame indexed by the task's text."""
    import pandas as pd

    frame = pd.DataFrame({"task_index": range(len(tasks))}, index=pd.Index(tasks, name="task"))
    frame.to_parquet(out / "meta" / "tasks.parquet")


def _video_info(path: Path, fps: float) -> dict[str, Any]:
    """What LeRobot's get_video_info records, read back from the video file."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate) if float(stream.base_rate).is_integer() else fps,
            "video.channels": 3,
            "has_audio": bool(container.streams.audio),
        }
    return info
