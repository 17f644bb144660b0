"""The episode recorder's core: timestamped streams in, synchronised episodes on disk. No rclpy.

    core = RecorderCore(RecorderConfig(dataset="data/demos", task="shelf-search"))  # checks the disk
    core.start(stamp_ns, seed=3)                                   # -> EpisodeEvent("start", ...)
    core.add("wrist/color/image_raw", stamp_ns, {"wrist": image})  # as messages arrive, any order
    core.add("privileged_state", stamp_ns, {"target_box_wrist": box, ...})
    core.add("action", stamp_ns, {"action": action})
    core.end(stamp_ns, success=True)      # closes once the frames of its last observation are in
    core.poll(now_ns)                     # at the control rate: stale streams, free disk space
    for event in core.drain_events(): ... # start/end events to publish; core.drain_records(): results

Steps. The step stream (`step_stream`: the policy's or the teleoperator's `action`, stamped with the
stamp of the frames it was computed from) marks the control steps: each of its messages is one step
at its stamp (one that comes sooner than a control period after the previous step is skipped and
counted). A step is taken once every observation stream has a frame at or after its stamp (streams
arrive in any order and at any rate); from each stream, the frame nearest to the step's stamp. A
frame further than `sync_tolerance` from it is still used, so the episode stays continuous, and is
counted as out of tolerance; a frame that a previous step used already is counted as repeated (its
stream dropped one at the control rate); gaps in the step stream count as dropped steps. The counts
go into the episode's attributes (`recorder.sync`) and the session's totals.

Episodes. `start` opens one at a stamp (frames from then on belong to it); `end` closes it at the
stamp of its last observation, with a success label or none (then the reward function's verdict);
`discard` deletes it (re-record); `device_lost` (or `poll`, when a stream has been silent for
`stale_after`) closes it at the last step taken, truncated and marked `interrupted`, so nothing
recorded is lost. Episodes are streamed to disk through `EpisodeWriter` (full-resolution images as
they arrive: the learner resizes) into an `EpisodeDataset`, whose manifest follows each episode. An
unwritable folder or less free space than `min_free_space_mb` is a `RecorderError` before anything
is recorded; the free space is watched while recording, and an episode ends (marked) before it fills
the disk.

Reward (`reward`): "task", the task's reward function on privileged data (`sim.rewards`: the sim's
own function, so the recorded reward is the sim's); "label", sparse, 1 at the last step of an
episode labelled a success (the sim's reward for sparse tasks that end at their first success); or
"stream", the sim's own `reward` and `success` carried beside the privileged state (for tasks whose
reward needs state no privileged key holds, such as the pick tasks' finger contacts).
"""

from __future__ import annotations

import shutil
import tempfile
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from policies.episodes import PARTS, EpisodeDataset, EpisodeFormatError, EpisodeWriter
from robot_nodes.messages import OUTCOME_KEYS, EpisodeEvent
from sim.config import RewardType
from sim.rewards import PrivilegedReward, RewardUnavailable, StepOutcome, privileged_reward

NS = 1_000_000_000
MB = 1024 * 1024
VERSION_KEY = "policy_version"  # the episode attribute, and the label beside `action` in a policy's messages
RewardSource = Literal["task", "label", "stream"]
Status = Literal["complete", "interrupted", "discarded", "empty"]


class RecorderError(ValueError):
    """The recorder cannot do what was asked (storage, a stream, the episode state): the message says
    what to fix."""


@dataclass
class RecorderConfig:
    READ_ONLY: ClassVar[tuple[str, ...]] = (
        "dataset", "task", "step_stream", "onboard_streams", "privileged_streams", "reward",
    )  # fmt: skip

    dataset: str = ""  # folder of the episode dataset (episode_NNNNNN.h5 + manifest.json), made if missing
    task: str = ""  # task name written into each episode; with reward=task, the sim task whose reward applies
    robot: str = ""  # robot name written into each episode
    source: Literal["demo", "scripted", "policy"] = "demo"  # who acts: teleop demo, scripted expert, policy
    control_hz: float = 10.0  # control steps per second (the episode's fps)
    # the stream whose stamps mark the control steps: the actions, stamped with the frames they came from
    step_stream: str = "action"
    # streams (topics) whose frames make the onboard part of an observation: cameras, joints, vectors
    onboard_streams: list[str] = field(default_factory=lambda: ["wrist/color/image_raw", "joint_states"])
    # streams whose frames make the privileged part: trackers, motion capture, the sim's true state
    privileged_streams: list[str] = field(default_factory=lambda: ["privileged_state"])
    sync_tolerance: float = 0.02  # seconds: a frame further than this from its step is out of tolerance
    # task: the task's function on privileged data; label: 1 at the last step of a success, else 0;
    # stream: the sim's own reward and success, published beside its privileged state
    reward: RewardSource = "task"
    reward_type: RewardType | None = None  # sparse or dense (reward=task); none: the task's default
    # reward=task or stream: end the episode at the first success, as the sim does
    end_on_success: bool = False
    max_episode_steps: int = 0  # end an episode (truncated) after this many steps; 0: no limit
    stale_after: float = 1.0  # seconds a stream may stay silent during an episode before its device is lost
    min_free_space_mb: float = 2048.0  # refuse to start (or end the episode) below this much free disk space
    buffer_depth: int = 32  # frames kept per stream to match steps with (full-size images: memory)
    image_compression: Literal["lzf", "gzip", "none"] = "lzf"  # HDF5 filter of image datasets

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError(
                "dataset is not set: give the folder to record episodes into (dataset:=data/demos)"
            )
        if self.control_hz <= 0 or self.stale_after <= 0 or self.min_free_space_mb < 0:
            raise ValueError("control_hz and stale_after must be > 0, min_free_space_mb >= 0")
        if not 0 < self.sync_tolerance < 0.5 / self.control_hz:
            raise ValueError(
                f"sync_tolerance must lie in (0, half a control period = {0.5 / self.control_hz:g} s), got "
                f"{self.sync_tolerance}: a frame must not be near two steps"
            )
        if not self.onboard_streams:
            raise ValueError("onboard_streams is empty: name the topics of the onboard cameras and joints")
        streams = [self.step_stream, *self.onboard_streams, *self.privileged_streams]
        if len(set(streams)) != len(streams):
            raise ValueError(
                f"a stream is named twice in step_stream, onboard_streams, privileged_streams: {streams}"
            )
        if self.reward == "stream" and not self.privileged_streams:
            raise ValueError(
                "reward=stream reads the sim's reward beside the privileged state: name privileged_streams"
            )
        if self.max_episode_steps < 0 or self.buffer_depth < 2:
            raise ValueError("max_episode_steps must be >= 0 and buffer_depth >= 2")

    @property
    def period_ns(self) -> int:
        return round(NS / self.control_hz)

    @property
    def tolerance_ns(self) -> int:
        return round(self.sync_tolerance * NS)


@dataclass
class StreamStats:
    out_of_tolerance: int = 0  # steps whose nearest frame lay further than the tolerance
    repeated: int = 0  # steps that reused the previous step's frame (the stream dropped one)
    out_of_order: int = 0  # messages older than the stream's newest: ignored
    duplicates: int = 0  # messages with the stamp of the stream's newest: ignored
    max_offset_ms: float = 0.0  # the largest |frame stamp - step stamp| used

    def add(self, other: StreamStats) -> None:
        for name in ("out_of_tolerance", "repeated", "out_of_order", "duplicates"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_offset_ms = max(self.max_offset_ms, other.max_offset_ms)


@dataclass
class SyncStats:
    steps: int = 0  # steps taken (observations with an action)
    dropped_steps: int = 0  # control periods the step stream skipped
    skipped: int = 0  # step messages sooner than a control period after the previous step: ignored
    clipped_actions: int = 0  # actions outside [-1, 1], clipped
    streams: dict[str, StreamStats] = field(default_factory=dict)

    @property
    def out_of_tolerance(self) -> int:
        return sum(s.out_of_tolerance for s in self.streams.values())

    @property
    def repeated(self) -> int:
        return sum(s.repeated for s in self.streams.values())

    def add(self, other: SyncStats) -> None:
        for name in ("steps", "dropped_steps", "skipped", "clipped_actions"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name, stats in other.streams.items():
            self.streams.setdefault(name, StreamStats()).add(stats)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EpisodeRecord:
    """What became of one episode: for the operator's screen and the node's log."""

    episode: int
    seed: int
    status: Status
    path: Path | None
    steps: int
    success: bool
    sync: SyncStats
    reason: str = ""  # why it was interrupted or is empty
    policy_version: int | None = None  # of the last action written, when a policy's actions were recorded


@dataclass
class _Ending:
    stamp_ns: int
    success: bool | None
    truncated: bool | None
    reason: str = ""  # set when the episode is cut short (device lost, disk low)


@dataclass
class _Episode:
    index: int
    seed: int
    start_ns: int
    attrs: dict[str, Any]
    writer: EpisodeWriter | None = None
    cursor_ns: int = -1  # the latest step-stream stamp considered
    stamps: list[int] = field(default_factory=list)  # of the observations written
    actions: list[np.ndarray] = field(default_factory=list)  # of the observations written (with one)
    versions: list[int | None] = field(default_factory=list)  # the policy version of each action
    privileged: list[dict[str, np.ndarray]] = field(default_factory=list)
    outcomes: list[StepOutcome] = field(default_factory=list)  # of the transitions written
    used: dict[str, int] = field(default_factory=dict)  # stream -> stamp of the frame the last step used
    sync: SyncStats = field(default_factory=SyncStats)
    ending: _Ending | None = None


class _Stream:
    def __init__(self, name: str, part: str, depth: int) -> None:
        self.name, self.part = name, part
        self.frames: deque[tuple[int, dict[str, np.ndarray]]] = deque(maxlen=depth)

    @property
    def newest(self) -> int | None:
        return self.frames[-1][0] if self.frames else None

    def nearest(self, stamp_ns: int) -> tuple[int, dict[str, np.ndarray]]:
        return min(self.frames, key=lambda frame: abs(frame[0] - stamp_ns))


class RecorderCore:
    def __init__(self, config: RecorderConfig) -> None:
        self.config = config
        self.reward_function: PrivilegedReward | None = None
        if config.reward == "task":
            try:
                self.reward_function = privileged_reward(config.task)
            except RewardUnavailable as err:
                raise RecorderError(f"reward=task: {err}") from err
        self.dataset = EpisodeDataset(config.dataset)
        self.streams = {config.step_stream: _Stream(config.step_stream, "action", config.buffer_depth)}
        for part, names in (("onboard", config.onboard_streams), ("privileged", config.privileged_streams)):
            self.streams |= {name: _Stream(name, part, config.buffer_depth) for name in names}
        self.observed = [s for s in self.streams.values() if s.part != "action"]
        self.episode: _Episode | None = None
        self.queued_start: _Episode | None = None
        self.episodes_started = 0
        self.events: list[EpisodeEvent] = []
        self.records: list[EpisodeRecord] = []
        self.totals = SyncStats()
        self.check_storage()

    # --- storage --------------------------------------------------------------------------------
    def check_storage(self) -> None:
        """RecorderError unless the dataset folder can be written and has the minimum free space."""
        root = self.dataset.root
        try:
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
                pass
        except OSError as err:
            raise RecorderError(
                f"cannot write episodes into {root} ({err.strerror or err}): choose another dataset folder"
            ) from err
        free_mb = self.free_space_mb()
        if free_mb < self.config.min_free_space_mb:
            raise RecorderError(
                f"{root} has {free_mb:.0f} MB free, below min_free_space_mb="
                f"{self.config.min_free_space_mb:g}: free some space or record elsewhere"
            )

    def free_space_mb(self) -> float:
        return shutil.disk_usage(self.dataset.root).free / MB

    # --- episode control --------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self.episode is not None

    def start(
        self, stamp_ns: int, seed: int = -1, episode: int | None = None, attrs: dict | None = None
    ) -> EpisodeEvent:
        """Open an episode whose frames are stamped from `stamp_ns` on. An episode still closing
        (waiting for its last frames) finishes first; this one records from then on."""
        if self.episode is not None and self.episode.ending is None:
            raise RecorderError(f"episode {self.episode.index} is being recorded: end or discard it first")
        if self.queued_start is not None:
            raise RecorderError(f"episode {self.queued_start.index} is about to start already")
        self.check_storage()
        index = self.episodes_started if episode is None else episode
        self.episodes_started = index + 1
        started = _Episode(
            index, seed, stamp_ns, dict(attrs or {}), cursor_ns=stamp_ns - self.config.tolerance_ns - 1
        )
        event = EpisodeEvent("start", index, seed, stamp_ns, self.config.task)
        self.events.append(event)
        if self.episode is None:
            self._open(started)
        else:
            self.queued_start = started
        return event

    def end(
        self, stamp_ns: int | None = None, success: bool | None = None, truncated: bool | None = None
    ) -> None:
        """Close the episode at the stamp of its last observation (default: a control period after
        the last step). `success` labels it (None: the reward function's verdict on the last step);
        `truncated` (default: not a success) says it was cut short rather than ended by the task.
        The episode closes once every stream has a frame at `stamp_ns`, or at the next `poll` after
        `stale_after` with the nearest frames."""
        episode = self._current("end")
        if episode.ending is not None:
            return
        if stamp_ns is None:
            stamp_ns = episode.stamps[-1] + self.config.period_ns if episode.stamps else episode.start_ns
        episode.ending = _Ending(stamp_ns, success, truncated)
        self._advance()

    def discard(self) -> None:
        """Delete the episode being recorded (re-record); its end event says truncated."""
        episode = self._current("discard")
        if episode.writer is not None:
            episode.writer.abort()
        self._finished(episode, "discarded", None, False, True)

    def device_lost(self, stream: str, reason: str = "") -> None:
        """A device behind `stream` vanished: close the episode at its last step, truncated and
        marked, keeping everything recorded."""
        episode = self.episode
        if episode is None:
            return
        if episode.ending is None:
            last = episode.stamps[-1] if episode.stamps else episode.start_ns
            episode.ending = _Ending(
                last, None, True, f"device lost: {stream}{': ' + reason if reason else ''}"
            )
        self._finish(force=True)  # an episode already ending keeps its label, with the nearest frames

    def poll(self, now_ns: int) -> None:
        """Call at the control rate: a stream silent for `stale_after` during an episode is a lost
        device; an ending episode waits no longer than that for its last frames; low disk space ends
        the episode before the disk fills."""
        episode = self.episode
        if episode is None:
            return
        stale_ns = round(self.config.stale_after * NS)
        if episode.ending is not None:
            if now_ns - episode.ending.stamp_ns > stale_ns:
                self._finish(force=True)
            return
        for stream in self.streams.values():
            since = (
                stream.newest
                if stream.newest is not None and stream.newest >= episode.start_ns
                else episode.start_ns
            )
            if now_ns - since > stale_ns:
                seconds = (now_ns - since) / NS
                self.device_lost(
                    stream.name, f"no message for {seconds:.1f} s (stale_after {self.config.stale_after:g} s)"
                )
                return
        if self.free_space_mb() < self.config.min_free_space_mb:
            last = episode.stamps[-1] if episode.stamps else episode.start_ns
            limit = self.config.min_free_space_mb
            episode.ending = _Ending(last, None, True, f"disk space below min_free_space_mb={limit:g}")
            self._finish(force=True)

    def last_outcome(self) -> StepOutcome | None:
        """The reward function's outcome of the newest step of the episode being recorded (None before
        its first step, or with reward=label): an evaluation session's privileged success check."""
        if self.episode is None or not self.episode.outcomes or self.config.reward == "label":
            return None
        return self.episode.outcomes[-1]

    def drain_events(self) -> list[EpisodeEvent]:
        events, self.events = self.events, []
        return events

    def drain_records(self) -> list[EpisodeRecord]:
        records, self.records = self.records, []
        return records

    def close(self) -> None:
        """Shut down: an episode in progress is kept, closed as interrupted."""
        if self.episode is not None:
            self.device_lost("recorder", "shut down")

    # --- streams ----------------------------------------------------------------------------------
    def add(
        self, stream: str, stamp_ns: int, arrays: dict[str, np.ndarray], policy_version: int | None = None
    ) -> None:
        """A message of `stream` as named arrays (an image by its camera key, labelled vectors by
        their labels, the action as `action`; a step message may say which `policy_version` computed
        it). RecorderError for an unknown stream or bad values."""
        if stream not in self.streams:
            raise RecorderError(
                f"{stream!r} is not a recorded stream; the recorder's streams: {sorted(self.streams)}"
            )
        target = self.streams[stream]
        stats = (self.episode.sync if self.episode else self.totals).streams.setdefault(stream, StreamStats())
        newest = target.newest
        if newest is not None and stamp_ns <= newest:
            if stamp_ns == newest:
                stats.duplicates += 1
            else:
                stats.out_of_order += 1
            return
        arrays = {key: np.asarray(value) for key, value in arrays.items()}
        for key, value in arrays.items():
            if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise RecorderError(f"{stream}: {key} holds NaN or inf; message ignored")
        if target.part == "action":
            if set(arrays) != {"action"}:
                raise RecorderError(
                    f"{stream}: a step message holds one array named 'action', got {sorted(arrays)}"
                )
            arrays = {"action": np.asarray(arrays["action"], dtype=np.float32).reshape(-1)}
            if policy_version is not None:
                arrays[VERSION_KEY] = np.asarray(policy_version, dtype=np.int64)
        elif policy_version is not None:
            raise RecorderError(f"{stream}: only the step stream's messages carry a policy version")
        target.frames.append((stamp_ns, arrays))
        self._advance()

    # --- steps ------------------------------------------------------------------------------------
    def _current(self, what: str) -> _Episode:
        if self.episode is None:
            raise RecorderError(f"no episode is being recorded: nothing to {what}")
        return self.episode

    def _open(self, episode: _Episode) -> None:
        self.episode = episode
        self._advance()

    def _advance(self) -> None:
        """Take every step that can be taken now; close the episode when its end has come."""
        episode = self.episode
        if episode is None:
            return
        tolerance, period = self.config.tolerance_ns, self.config.period_ns
        for stamp, arrays in list(self.streams[self.config.step_stream].frames):
            if stamp <= episode.cursor_ns:
                continue
            if episode.ending is not None and stamp >= episode.ending.stamp_ns - tolerance:
                break  # at or after the last observation: not a step of this episode
            if not self._ready(stamp):
                break
            episode.cursor_ns = stamp
            if episode.stamps and stamp - episode.stamps[-1] < period - tolerance:
                episode.sync.skipped += 1
                continue
            if episode.stamps:
                episode.sync.dropped_steps += max(0, round((stamp - episode.stamps[-1]) / period) - 1)
            action = arrays["action"]
            if np.any(np.abs(action) > 1.0):
                episode.sync.clipped_actions += 1
                action = np.clip(action, -1.0, 1.0)
            version = int(arrays[VERSION_KEY]) if VERSION_KEY in arrays else None
            if not self._write(episode, stamp, action, version):
                return
            episode.sync.steps += 1
            if self.episode is not episode or episode.ending is not None:
                break
        if episode.ending is not None and self.episode is episode:
            self._finish(force=False)

    def _ready(self, stamp_ns: int) -> bool:
        return all(s.newest is not None and s.newest >= stamp_ns for s in self.observed)

    def _observation(self, episode: _Episode, stamp_ns: int) -> dict[str, dict[str, np.ndarray]]:
        """The frames nearest to `stamp_ns`, one per observation stream, counted against the tolerance."""
        observation: dict[str, dict[str, np.ndarray]] = {part: {} for part in PARTS}
        for stream in self.observed:
            if not stream.frames:
                raise RecorderError(f"{stream.name}: no frame yet to build an observation from")
            frame_stamp, arrays = stream.nearest(stamp_ns)
            stats = episode.sync.streams.setdefault(stream.name, StreamStats())
            offset = abs(frame_stamp - stamp_ns)
            stats.max_offset_ms = max(stats.max_offset_ms, offset / 1e6)
            stats.out_of_tolerance += offset > self.config.tolerance_ns
            stats.repeated += episode.used.get(stream.name) == frame_stamp
            episode.used[stream.name] = frame_stamp
            part = observation[stream.part]
            clash = sorted(set(part) & set(arrays))
            if clash:
                raise RecorderError(f"{stream.name}: key(s) {clash} come from two {stream.part} streams")
            part.update(arrays)
        return observation

    def _write(
        self, episode: _Episode, stamp_ns: int, action: np.ndarray | None, version: int | None = None
    ) -> bool:
        """Append the observation at `stamp_ns` (and the transition that led to it). False when the
        episode had to be closed (a write failed or the reward cannot be computed)."""
        observation = self._observation(episode, stamp_ns)
        outcome_values = {
            k: observation["privileged"].pop(k) for k in OUTCOME_KEYS if k in observation["privileged"]
        }
        if self.config.reward == "stream" and len(outcome_values) != 2:
            self._fail(
                episode, f"reward=stream: the privileged streams carry no {list(OUTCOME_KEYS)} vectors"
            )
            raise RecorderError(
                f"reward=stream needs the sim's {list(OUTCOME_KEYS)} beside the privileged state; "
                f"it has {sorted(observation['privileged'])}: publish them, or record with reward=label"
            )
        if self.reward_function is not None:
            missing = sorted(set(self.reward_function.keys) - set(observation["privileged"]))
            if missing:
                self._fail(episode, f"reward=task: privileged key(s) {missing} missing")
                raise RecorderError(
                    f"reward=task for {self.config.task} needs privileged key(s) {missing}; the privileged "
                    f"streams carry {sorted(observation['privileged'])}: add their stream or use reward=label"
                )
        try:
            if episode.writer is None:
                episode.writer = EpisodeWriter(self.dataset.next_path(), self._compression())
                episode.attrs["start_stamp_ns"] = stamp_ns
            else:
                outcome = self._outcome(episode, observation["privileged"], outcome_values)
                episode.writer.add_transition(episode.actions[-1], outcome.reward, False, False)
                episode.outcomes.append(outcome)
            start = episode.stamps[0] if episode.stamps else stamp_ns
            episode.writer.add_observation(observation, (stamp_ns - start) / NS)
        except (OSError, EpisodeFormatError) as err:
            if episode.writer is not None:
                episode.writer.rollback()
                del episode.outcomes[episode.writer.transitions :]
            self._fail(episode, f"writing step {len(episode.stamps)} failed: {err}")
            return False
        episode.stamps.append(stamp_ns)
        episode.actions.append(action if action is not None else np.zeros(0, np.float32))
        episode.versions.append(version)
        episode.privileged.append(observation["privileged"])
        if action is None:
            return True
        outcome = episode.outcomes[-1] if episode.outcomes else None
        limit = self.config.max_episode_steps
        if (
            outcome is not None
            and outcome.success
            and self.config.end_on_success
            and self.config.reward != "label"
        ):
            episode.ending = _Ending(stamp_ns, True, False)
        elif limit and len(episode.outcomes) >= limit:
            episode.ending = _Ending(stamp_ns, None, True)
        return True

    def _outcome(
        self, episode: _Episode, privileged: dict[str, np.ndarray], stream_values: dict
    ) -> StepOutcome:
        if self.config.reward == "stream":
            return StepOutcome(
                float(stream_values[OUTCOME_KEYS[0]][0]), bool(stream_values[OUTCOME_KEYS[1]][0] > 0.5)
            )
        if self.reward_function is not None:
            return self.reward_function(
                episode.privileged[-1], episode.actions[-1], privileged, self.config.reward_type
            )
        return StepOutcome(0.0, False)  # label: the last step's reward comes with the label

    def _compression(self) -> str | None:
        return None if self.config.image_compression == "none" else self.config.image_compression

    # --- closing ----------------------------------------------------------------------------------
    def _finish(self, force: bool) -> None:
        """Close the ending episode once its last observation is in (or now, with what is there)."""
        episode = self.episode
        assert episode is not None and episode.ending is not None
        ending, tolerance = episode.ending, self.config.tolerance_ns
        late = sum(stamp > ending.stamp_ns + tolerance for stamp in episode.stamps[1:])
        if late and episode.writer is not None:  # steps taken before the end was known: the next episode's
            episode.writer.drop_last_steps(late)
            for history in (
                episode.stamps,
                episode.actions,
                episode.versions,
                episode.privileged,
                episode.outcomes,
            ):
                del history[len(history) - late :]
            episode.sync.steps -= late
        last_is_final = episode.stamps and episode.stamps[-1] >= ending.stamp_ns - tolerance
        if not last_is_final and not ending.reason:
            if not force and not self._ready(ending.stamp_ns):
                return
            if episode.stamps and not self._write(episode, ending.stamp_ns, None):
                return
        if episode.writer is None or not episode.outcomes:
            if episode.writer is not None:
                episode.writer.abort()
            why = ending.reason or "it ended before its first step"
            self._finished(episode, "empty", None, False, True, f"nothing recorded: {why}")
            return
        verdict = episode.outcomes[-1].success if self.config.reward != "label" else False
        success = ending.success if ending.success is not None else verdict
        truncated = ending.truncated if ending.truncated is not None else not success
        reward = float(success) if self.config.reward == "label" else episode.outcomes[-1].reward
        attrs = {
            "task": self.config.task,
            "robot": self.config.robot,
            "source": self.config.source,
            "seed": episode.seed,
            **episode.attrs,
            "fps": self.config.control_hz,
            "success": bool(success),
            "recorder": {
                "reward": self.config.reward,
                "step_stream": self.config.step_stream,
                "sync_tolerance": self.config.sync_tolerance,
                "sync": episode.sync.to_dict(),
            },
        }
        if ending.reason:
            attrs["interrupted"] = ending.reason
        if (version := self._version(episode)) is not None:
            attrs[VERSION_KEY] = version
        try:
            episode.writer.set_last_outcome(reward, not truncated, truncated)
            path = episode.writer.close(attrs)
            self.dataset.added(path)
        except (OSError, EpisodeFormatError) as err:
            episode.writer.abort()
            self._finished(episode, "empty", None, False, True, f"closing the episode failed: {err}")
            return
        status: Status = "interrupted" if ending.reason else "complete"
        self._finished(episode, status, path, bool(success), truncated, ending.reason)

    @staticmethod
    def _version(episode: _Episode) -> int | None:
        """The policy version of the episode's last action: the policy swaps weights only between
        episodes, so it is the version of all of them (taken from the actions written, so a version
        is never put on the episode before the one it acted in)."""
        return next((v for v in reversed(episode.versions) if v is not None), None)

    def _fail(self, episode: _Episode, reason: str) -> None:
        """A step cannot be written: keep what was written before it, marked."""
        last = episode.stamps[-1] if episode.stamps else episode.start_ns
        episode.ending = _Ending(last, None, True, reason)
        self._finish(force=True)

    def _finished(
        self,
        episode: _Episode,
        status: Status,
        path: Path | None,
        success: bool,
        truncated: bool,
        reason: str = "",
    ) -> None:
        steps = len(episode.outcomes) if path is not None else 0
        end_stamp = episode.stamps[-1] if episode.stamps else episode.start_ns
        self.events.append(
            EpisodeEvent(
                "end", episode.index, episode.seed, end_stamp, self.config.task, steps, success, truncated
            )
        )
        version = self._version(episode)
        self.records.append(
            EpisodeRecord(
                episode.index, episode.seed, status, path, steps, success, episode.sync, reason, version
            )
        )
        self.totals.add(episode.sync)
        self.episode = None
        if self.queued_start is not None:
            started, self.queued_start = self.queued_start, None
            self._open(started)
