"""aps-dataset: look at, check, view, merge, split, export and import episode datasets.

    aps-dataset info data/demos                                   # episodes, frames, success, keys
    aps-dataset check data/demos                                  # every problem; exit 1 if any
    aps-dataset check data/demos --fix-manifest                   # rebuild manifest.json from the files
    aps-dataset view data/demos --episode 3 --out ep3.mp4         # cameras side by side
    aps-dataset view data/demos --episode 3 --out ep3.png --frames 8   # an image strip
    aps-dataset merge data/all data/demos data/online             # copies every episode once
    aps-dataset split data/all --out data/split --ratio 0.9 --seed 0   # data/split/{train,val}
    aps-dataset split data/all --out data/by-source --by source   # data/by-source/{demo,policy}
    aps-dataset export-lerobot data/demos --out data/demos-lerobot --task "pick up the cube"
    aps-dataset import-bag runs/bag_0 --out data/demos task=search-pick reward=label \\
        onboard_streams=[wrist/color/image_raw,joint_states] privileged_streams=[privileged_state]
    aps-dataset export-mcap data/demos --episode 3 --out ep3.mcap # opens in Foxglove

import-bag takes the episode recorder's settings (`aps-dataset import-bag -h` lists them) as
key=value overrides or --config file.yaml. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from apsconfig import ConfigError, config_help, load_config
from policies.dataset_tools import (
    DatasetError,
    check_dataset,
    merge,
    open_dataset,
    split,
    split_groups,
    summarise,
)
from policies.episodes import EpisodeDataset, EpisodeFile, EpisodeFormatError

PROG = "aps-dataset"


def _episode(root: Path, index: int) -> EpisodeFile:
    paths = open_dataset(root).paths()
    if not 0 <= index < len(paths):
        raise DatasetError(f"{root} has episodes 0..{len(paths) - 1}; --episode {index} is not one of them")
    return EpisodeFile(paths[index])


def _console():
    from rich.console import Console

    return Console(highlight=False)


def escape(text: str) -> str:
    """Text shown as it is (rich reads [brackets] as markup)."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


# --- commands --------------------------------------------------------------------------------------


def info(args: argparse.Namespace) -> int:
    from rich.table import Table

    summary = summarise(args.dataset)
    keys = summary.spec
    if args.json:
        print(
            json.dumps(
                {
                    "episodes": summary.episodes, "frames": summary.steps, "successes": summary.successes,
                    "success_rate": summary.success_rate, "sources": dict(summary.sources),
                    "tasks": dict(summary.tasks), "disk_bytes": summary.disk_bytes,
                    "keys": {p: {k: [list(s), d] for k, (s, d) in ks.items()} for p, ks in keys.items()},
                    "action_dim": summary.action_dim, "unreadable": summary.unreadable,
                },
                indent=2,
            )
        )  # fmt: skip
        return 0
    console = _console()
    table = Table(title=f"{summary.root}", show_header=False)
    lengths = summary.lengths or [0]
    rows = [
        ("episodes", f"{summary.episodes}"),
        (
            "frames (steps)",
            f"{summary.steps}  (episode length {min(lengths)}..{max(lengths)}, mean {np.mean(lengths):.1f})",
        ),
        ("duration", f"{summary.duration_s:.1f} s at {sorted(set(summary.fps))} fps"),
        ("success", f"{summary.successes}/{summary.episodes} ({100 * summary.success_rate:.0f}%)"),
        ("sources", ", ".join(f"{k} {v}" for k, v in summary.sources.most_common())),
        ("tasks", ", ".join(f"{k} {v}" for k, v in summary.tasks.most_common())),
        ("disk", f"{summary.disk_bytes / 2**20:.1f} MB"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    shapes = Table(title="keys (per step)")
    for column in ("part", "key", "shape", "dtype"):
        shapes.add_column(column)
    for part, spec in keys.items():
        for key, (shape, dtype) in spec.items():
            shapes.add_row(part, key, str(list(shape)), dtype)
    shapes.add_row("", "action", f"[{summary.action_dim}]", "float32")
    console.print(shapes)
    for problem in summary.unreadable:
        console.print(f"[red]unreadable[/red] {escape(problem)}")
    return 0


def check(args: argparse.Namespace) -> int:
    if args.fix_manifest:
        try:
            open_dataset(args.dataset).write_manifest()
        except EpisodeFormatError as err:
            raise DatasetError(
                f"cannot rebuild the manifest: {err}; move that file out of the dataset"
            ) from err
    problems, warnings = check_dataset(args.dataset)
    console = _console()
    for item in warnings:
        console.print(f"[yellow]warning[/yellow] {escape(item.where)}: {escape(item.what)}")
    for item in problems:
        console.print(f"[red]problem[/red] {escape(item.where)}: {escape(item.what)}")
    episodes = len(open_dataset(args.dataset).paths())
    if problems:
        console.print(f"{len(problems)} problem(s) in {episodes} episode file(s) of {args.dataset}")
        return 1
    console.print(f"[green]ok[/green]: {episodes} episodes of {args.dataset} are sound")
    return 0


def view(args: argparse.Namespace) -> int:
    import cv2

    from robot_nodes.episode_video import episode_cameras, episode_frame, write_episode_video

    episode = _episode(args.dataset, args.episode).load()
    cameras = [key for _, key in episode_cameras(episode)]
    if not cameras:
        raise DatasetError(f"episode {args.episode} of {args.dataset} has no camera images to view")
    out = Path(args.out)
    if out.suffix.lower() == ".png":
        picks = np.unique(
            np.linspace(0, len(episode), min(args.frames, len(episode) + 1)).round().astype(int)
        )
        strip = np.concatenate([episode_frame(episode, int(t), args.height) for t in picks], axis=1)
        if not cv2.imwrite(str(out), strip[..., ::-1]):
            raise DatasetError(f"cannot write {out}")
        print(f"wrote {out}: steps {picks.tolist()} of episode {args.episode}, {cameras} side by side")
        return 0
    if out.suffix.lower() != ".mp4":
        raise DatasetError(f"--out {out}: write an .mp4 video or a .png strip")
    fps = args.fps or float(episode.attrs.get("fps", 10.0))
    write_episode_video(episode, out, fps, args.codec, args.height)
    print(f"wrote {out}: {len(episode) + 1} frames at {fps:g} fps, {cameras} side by side")
    return 0


def merge_command(args: argparse.Namespace) -> int:
    results = merge(args.out, args.datasets)
    copied = sum(target is not None for _, target in results)
    print(f"merged {copied} episodes from {len(args.datasets)} datasets into {args.out} "
          f"({len(results) - copied} already there, skipped; {len(EpisodeDataset(args.out))} "
          "episodes there now)")  # fmt: skip
    return 0


def split_command(args: argparse.Namespace) -> int:
    names = tuple(args.names.split(","))
    if len(names) != 2 or not all(names):
        raise DatasetError(f"--names {args.names!r}: give two names, e.g. train,val")
    groups = split_groups(args.dataset, args.ratio, args.seed, args.by, names)  # type: ignore[arg-type]
    copied = split(args.out, groups)
    for name, paths in copied.items():
        print(f"{Path(args.out) / name}: {len(paths)} episodes")
    return 0


def export_lerobot_command(args: argparse.Namespace) -> int:
    from robot_nodes.lerobot_export import export_lerobot

    info = export_lerobot(args.dataset, args.out, args.codec, args.task)
    print(f"wrote LeRobotDataset {info['codebase_version']} to {args.out}: {info['total_episodes']} "
          f"episodes, {info['total_frames']} frames, features {sorted(info['features'])}")  # fmt: skip
    return 0


def import_bag_command(args: argparse.Namespace) -> int:
    from robot_nodes.bag_io import BagImportConfig, import_bag

    config = load_config(BagImportConfig, args.config, [*args.overrides, f"dataset={args.out}"])
    records = import_bag(args.bag, config)
    for record in records:
        note = f" ({record.reason})" if record.reason else ""
        print(f"episode {record.episode}: {record.status}, {record.steps} steps, success {record.success}, "
              f"{record.sync.out_of_tolerance} frames out of tolerance{note} -> {record.path}")  # fmt: skip
    print(f"imported {sum(r.path is not None for r in records)} episodes from {args.bag} into {args.out}")
    return 0


def export_mcap_command(args: argparse.Namespace) -> int:
    from robot_nodes.bag_io import export_mcap

    path = export_mcap(_episode(args.dataset, args.episode), args.out)
    print(f"wrote {path}: episode {args.episode} of {args.dataset} as ROS 2 messages (open it in Foxglove)")
    return 0


# --- command line -------------------------------------------------------------------------------


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from robot_nodes.bag_io import BagImportConfig

    parsers: dict[str, argparse.ArgumentParser] = {}

    def command(name: str, summary: str, run: Callable[[argparse.Namespace], int], epilog: str = ""):
        sub = parsers[name] = argparse.ArgumentParser(
            prog=f"{PROG} {name}", description=summary, epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        sub.set_defaults(run=run)
        return sub

    sub = command("info", "episodes, frames, success rate, sources, tasks, disk size, keys and shapes", info)
    sub.add_argument("dataset", type=Path)
    sub.add_argument("--json", action="store_true", help="print JSON instead of tables")
    sub = command(
        "check", "schema, shapes, dtypes, timestamps, finite values, action range, end flags", check
    )
    sub.add_argument("dataset", type=Path)
    sub.add_argument(
        "--fix-manifest", action="store_true", help="rebuild manifest.json from the episode files"
    )
    sub = command("view", "an episode's cameras side by side, as an .mp4 video or a .png strip", view)
    sub.add_argument("dataset", type=Path)
    sub.add_argument("--episode", type=int, default=0, help="index of the episode in the dataset (0: first)")
    sub.add_argument("--out", type=Path, required=True, help="ep.mp4 (video) or ep.png (image strip)")
    sub.add_argument("--frames", type=int, default=8, help="steps in a .png strip, evenly spread")
    sub.add_argument("--fps", type=float, default=0.0, help="video frame rate (default: the episode's)")
    sub.add_argument("--height", type=int, default=None, help="scale every camera to this height (pixels)")
    sub.add_argument("--codec", choices=("h264", "av1"), default="h264")
    sub = command(
        "merge", "copy the episodes of several datasets into one (each episode once)", merge_command
    )
    sub.add_argument("out", type=Path, help="dataset folder to merge into (made, or appended to)")
    sub.add_argument("datasets", type=Path, nargs="+")
    sub = command("split", "split a dataset by a seeded ratio or by source, task or success", split_command)
    sub.add_argument("dataset", type=Path)
    sub.add_argument("--out", type=Path, required=True, help="folder for one dataset per group")
    sub.add_argument("--ratio", type=float, default=None, help="share of episodes in the first group")
    sub.add_argument("--seed", type=int, default=0, help="seed of the shuffle before a ratio split")
    sub.add_argument("--names", default="train,val", help="the two groups of a ratio split")
    sub.add_argument("--by", choices=("source", "task", "success"), default=None)
    sub = command(
        "export-lerobot", "write a LeRobotDataset v3.0 (parquet, mp4, meta)", export_lerobot_command
    )
    sub.add_argument("dataset", type=Path)
    sub.add_argument("--out", type=Path, required=True, help="new folder for the LeRobot dataset")
    sub.add_argument("--codec", choices=("av1", "h264"), default="av1", help="av1: LeRobot's default")
    sub.add_argument("--task", default="", help="the task's text (default: the episodes' task name)")
    sub = command(
        "import-bag", "episodes from a rosbag2 recording (sqlite3 or MCAP)", import_bag_command,
        config_help(BagImportConfig),
    )  # fmt: skip
    sub.add_argument("bag", type=Path, help="rosbag2 folder or .mcap file")
    sub.add_argument("--out", type=Path, required=True, help="dataset folder to add the episodes to")
    sub.add_argument("--config", type=Path, default=None, help="YAML of the import's settings")
    sub.add_argument("overrides", nargs="*", help="key=value settings, e.g. task=search-pick reward=label")
    sub = command("export-mcap", "an episode as MCAP with ROS 2 messages (Foxglove)", export_mcap_command)
    sub.add_argument("dataset", type=Path)
    sub.add_argument("--episode", type=int, default=0)
    sub.add_argument("--out", type=Path, required=True, help="the .mcap file to write")
    return parsers


def main(argv: list[str] | None = None) -> int:
    parsers = _parsers()
    top = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    top.add_argument("command", choices=parsers)
    top.add_argument("arguments", nargs=argparse.REMAINDER, help=f"see {PROG} COMMAND -h")
    command = top.parse_args(argv)
    # Per-command parser, so key=value overrides may come before or after the options.
    args = parsers[command.command].parse_intermixed_args(command.arguments)
    try:
        return args.run(args)
    except ModuleNotFoundError as err:  # the format bridges live in an install extra
        print(f"{PROG} {command.command}: needs {err.name}, from the `data` extra: "
              "pip install -e '.[data]' in the repo", file=sys.stderr)  # fmt: skip
        return 2
    except (DatasetError, EpisodeFormatError, ConfigError, ValueError, OSError) as err:
        print(f"{PROG} {command.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
