"""An evaluation session's folder and its per-trial log. No rclpy.

    <out>/plan.json         the plan, written once at the start (robot_nodes.eval_plan)
    <out>/trials.jsonl      one JSON line per trial, appended when the trial is finished
    <out>/episodes/         each trial's episode (policies.episodes format: it can be trained on)
    <out>/videos/           trial_NNN_<label>.mp4: the cameras side by side
    <out>/report.md, report.html, figures/   the report (robot_nodes.eval_report)
    <out>/graph.log         the eval graph's output, when aps-eval started it
    <out>/set_aside/        what a crash left half-done, moved out of the dataset on resume

The log is the session's commit point: a trial's line is appended (and fsynced) only once its
episode file and video are complete, so a kill -9 at any moment leaves every logged trial whole.
On resume a torn last line is cut off, an episode or video that no logged trial claims is set aside
(its trial runs again), and the plan's remaining trials run in their planned order.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal, get_args

from policies.dataset_tools import temporary_files
from policies.episodes import EpisodeDataset
from robot_nodes.eval_plan import Plan, PlanError, PlannedTrial, read_plan

FailureTag = Literal["missed_grasp", "never_found", "timeout", "intervention", "other"]
FAILURE_TAGS: tuple[FailureTag, ...] = get_args(FailureTag)
# task: the task ended it (success, or its own step limit in the sim); time_limit: the session's;
# estop: an e-stop (the operator's or any other); operator: a key; device_lost: a stream fell silent
EndReason = Literal["task", "step_limit", "time_limit", "estop", "operator", "device_lost"]
LabelSource = Literal["sensors", "operator", "override"]  # override: the operator against the sensors


@dataclass
class TrialRecord:
    session: str
    trial: int  # the plan's index
    block: int
    label: str  # A, B, ...
    policy: str  # the policy's name
    checkpoint: str
    checkpoint_sha256: str
    policy_version: int
    seed: int  # the sim's reset seed (-1 on a robot)
    condition: str  # the initial condition the scene was set up from
    status: Literal["done", "discarded"]  # discarded: redone or stopped, never counted
    success: bool
    label_source: LabelSource
    sensor_success: bool | None  # what the privileged success check said (None: no check)
    failure_tag: FailureTag | None
    ended_by: EndReason
    duration_s: float  # first to last observation, in the robot's (or the sim's) time
    steps: int
    time_to_first_sight_s: float | None  # when the privileged data first showed the object in view
    interventions: int  # e-stops and marked interventions during the trial
    episode: str  # relative to the session folder ("" when discarded)
    video: str
    started: str  # wall-clock ISO times
    finished: str
    note: str = ""

    @staticmethod
    def from_dict(data: dict) -> TrialRecord:
        known = {f.name for f in fields(TrialRecord)}
        return TrialRecord(**{k: v for k, v in data.items() if k in known})


class SessionFolder:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.plan = self.root / "plan.json"
        self.log = self.root / "trials.jsonl"
        self.episodes = self.root / "episodes"
        self.videos = self.root / "videos"
        self.figures = self.root / "figures"
        self.report_md = self.root / "report.md"
        self.report_html = self.root / "report.html"
        self.graph_log = self.root / "graph.log"
        self.set_aside = self.root / "set_aside"

    def video_path(self, trial: PlannedTrial) -> Path:
        return self.videos / f"trial_{trial.index:03d}_{trial.label}.mp4"

    def relative(self, path: Path | None) -> str:
        return "" if path is None else str(Path(path).resolve().relative_to(self.root.resolve()))


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def append_record(folder: SessionFolder, record: TrialRecord) -> None:
    """The trial's line, on disk before this returns."""
    with open(folder.log, "a") as handle:
        handle.write(json.dumps(asdict(record)) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_records(folder: SessionFolder, repair: bool = False) -> list[TrialRecord]:
    """The logged trials. A last line cut short by a crash is ignored (and with `repair`, cut off so
    the next line starts clean); damage anywhere else is a PlanError."""
    if not folder.log.is_file():
        return []
    data = folder.log.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    records = []
    for number, line in enumerate(complete.decode().splitlines(), start=1):
        try:
            records.append(TrialRecord.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError) as err:
            raise PlanError(
                f"{folder.log}:{number}: not a trial record ({err}); repair or move the file"
            ) from err
    if repair and len(complete) < len(data):
        with open(folder.log, "r+b") as handle:
            handle.truncate(len(complete))
    return records


def finished_trials(records: list[TrialRecord]) -> set[int]:
    return {r.trial for r in records if r.status == "done"}


def open_session(folder: SessionFolder, plan: Plan, resume: bool) -> tuple[Plan, list[TrialRecord]]:
    """The plan to run and the trials logged so far, checked before anything is written: a new session
    needs a new (or empty) folder, `resume` the same session in it (policies, seed, trials, settings),
    which it tidies (a torn log line, what a crash left half-done). Anything else is a PlanError.
    A new session's plan is written by `start_session`, once the robot is ready."""
    root = folder.root
    if folder.plan.is_file():
        planned = read_plan(folder.plan)
        records = read_records(folder)
        done = len(finished_trials(records))
        if not resume:
            raise PlanError(
                f"{root} holds a session already ({done} of {len(planned.trials)} trials done): add "
                "resume=true to continue it, or choose another out folder"
            )
        differences = planned.same_session(plan)
        if differences:
            raise PlanError(
                f"{root} holds another session, so it cannot be resumed with these settings: "
                + "; ".join(differences)
            )
        records = read_records(folder, repair=True)
        set_aside_unclaimed(folder, records)
        return planned, records
    if root.exists() and any(not _left_by_a_start(path) for path in root.iterdir()):
        raise PlanError(f"{root} holds files but no aps-eval session: choose a new or empty out folder")
    if resume:
        raise PlanError(f"{root} holds no session to resume: leave out resume=true to start one")
    return plan, []


def _left_by_a_start(path: Path) -> bool:
    """What a session that failed before its first trial leaves: empty folders, the graph's log."""
    return path.name == "graph.log" or (path.is_dir() and not any(path.iterdir()))


def start_session(folder: SessionFolder, plan: Plan) -> None:
    """A new session's plan, on disk before its first trial."""
    if not folder.plan.is_file():
        for path in (folder.episodes, folder.videos):
            path.mkdir(parents=True, exist_ok=True)
        write_atomically(folder.plan, plan.to_json())


def set_aside_unclaimed(folder: SessionFolder, records: list[TrialRecord]) -> list[Path]:
    """Move out what a crash left between a trial's episode and its log line: episode files (and
    the episode writer's hidden temporary files) that no logged trial claims go to set_aside/, videos
    no logged trial claims are deleted (they are made from the episode). Returns what moved."""
    claimed = {r.episode for r in records if r.episode} | {r.video for r in records if r.video}
    moved = []
    dataset = EpisodeDataset(folder.episodes)
    if folder.episodes.is_dir():
        for path in [*dataset.paths(), *temporary_files(dataset)]:
            if folder.relative(path) not in claimed:
                folder.set_aside.mkdir(exist_ok=True)
                target = folder.set_aside / path.name
                shutil.move(path, target)
                moved.append(target)
        if moved:
            dataset.write_manifest()
    if folder.videos.is_dir():
        for path in folder.videos.iterdir():
            if folder.relative(path) not in claimed:
                path.unlink()
    return moved
