"""aps-record's session: the keys and phases of a recording, over any backend (sim or ROS). No rclpy.

Phases, as LeRobot's recording runs them, with a marking step added (keys: arrows, or the letters):

- recording: -> or n ends the episode (so do the time limit, the task and a lost device): marking;
  <- or b discards it and re-records it after a reset; Esc or x saves it and stops.
- marking: s or up marks a success, f or down a failure, Enter takes the suggestion; then reset.
  <- or b discards the episode; Esc or x saves it and stops.
- reset (the scene is put back): after reset_time_s, or at -> / n / Enter, the next episode starts;
  <- or b deletes the episode just saved and re-records it; Esc or x stops.

Marking asks for success or failure; Enter takes what the sim or the privileged sensors reported
(shown as the suggestion), and `auto_mark` takes it without asking. An episode stopped with Esc is
saved with that report, or as a failure when there is none. The session ends after `num_episodes`
saved episodes, or at Esc.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Phase = Literal["recording", "marking", "reset", "done"]

END_KEYS = ("right", "n")
DISCARD_KEYS = ("left", "b")
STOP_KEYS = ("esc", "x", "ctrl-c")
SUCCESS_KEYS = ("s", "up")
FAILURE_KEYS = ("f", "down")


@dataclass
class SessionConfig:
    num_episodes: int = 10  # episodes to save; the session ends then
    episode_time_s: float = 60.0  # an episode ends after this long (0: only by key or by the task)
    reset_time_s: float = 10.0  # between episodes: time to reset the scene (-> starts the next one sooner)
    auto_mark: bool = False  # take the success the sim or privileged sensors report, without asking

    def __post_init__(self) -> None:
        if self.num_episodes < 1:
            raise ValueError(f"num_episodes must be >= 1, got {self.num_episodes}")
        if self.episode_time_s < 0 or self.reset_time_s < 0:
            raise ValueError("episode_time_s and reset_time_s must be >= 0")


@dataclass
class Ended:
    """An episode that ended without a key: by the task (the sim), or closed by the recorder itself
    (a device lost, the disk filling up), which has then saved it already, marked."""

    success: bool | None  # what the sim or the sensors report
    why: str
    closed: bool = False  # the recorder closed it itself: saved (marked) or, with nothing in it, not
    saved: Path | None = None


@dataclass
class BackendStats:
    steps: int  # control steps of the episode in progress
    fps: float  # control steps per second, measured
    target_fps: float
    dropped: int  # frames of this episode lost or outside the sync tolerance


class RecordBackend(Protocol):
    """Where episodes are recorded: the sim in-process, or the robot graph over ROS."""

    def stats(self) -> BackendStats: ...

    def begin(self, rerecord: bool) -> None:
        """Start an episode (the same scene again when `rerecord`, where the backend can)."""

    def finish(self) -> bool | None:
        """Stop acting; the success the sim or the privileged sensors report, None if unknown."""

    def save(self, success: bool) -> Path:
        """The finished episode, labelled, into the dataset."""

    def discard(self) -> None:
        """Drop the finished (or running) episode: nothing of it stays."""

    def undo(self) -> Path:
        """Delete the episode saved last."""


class RecordSession:
    def __init__(self, config: SessionConfig, backend: RecordBackend, now: float) -> None:
        self.config, self.backend = config, backend
        self.saved = 0
        self.successes = 0
        self.discarded = 0
        self.last_success: bool | None = None  # the label of the episode saved last (for undo)
        self.suggestion: bool | None = None  # what the sim/sensors reported for the finished episode
        self.message = ""  # one line about what just happened, for the display
        self.phase: Phase = "reset"
        self.since = now
        self._begin(now, rerecord=False)

    @property
    def episode(self) -> int:
        """The number (from 1) of the episode being recorded or about to be."""
        return self.saved + 1

    def elapsed(self, now: float) -> float:
        return now - self.since

    # --- inputs -------------------------------------------------------------------------------
    def key(self, key: str, now: float) -> None:
        if self.phase == "recording":
            if key in END_KEYS:
                self.episode_over(self.backend.finish(), now, "ended by key")
            elif key in DISCARD_KEYS:
                self.backend.finish()
                self._discard(now)
            elif key in STOP_KEYS:
                self.suggestion = self.backend.finish()
                self._save(bool(self.suggestion), now)
                self._stop("stopped")
        elif self.phase == "marking":
            if key in SUCCESS_KEYS + FAILURE_KEYS:
                self._save(key in SUCCESS_KEYS, now)
            elif key == "enter" and self.suggestion is not None:
                self._save(self.suggestion, now)
            elif key in DISCARD_KEYS:
                self._discard(now)
            elif key in STOP_KEYS:
                self._save(bool(self.suggestion), now)
                self._stop("stopped")
        elif self.phase == "reset":
            if key in END_KEYS or key == "enter":
                self._begin(now, rerecord=self.rerecord)
            elif key in DISCARD_KEYS and self.last_success is not None:
                path = self.backend.undo()
                self.saved -= 1
                self.successes -= int(self.last_success)
                self.discarded += 1
                self.last_success, self.rerecord = None, True
                self.message = f"deleted {path.name}: re-recording episode {self.episode}"
            elif key in STOP_KEYS:
                self._stop("stopped")

    def ended(self, ended: Ended, now: float) -> None:
        """The backend reports the episode over: on to marking, or (saved by the recorder) to reset."""
        if not ended.closed:
            self.episode_over(ended.success, now, ended.why)
        elif ended.saved is None:
            self.discarded += 1
            self.message = f"episode {self.episode} {ended.why}: nothing to keep, re-recording it"
            self.phase, self.since, self.rerecord, self.last_success = "reset", now, True, None
        else:
            self.message = f"episode {self.episode} {ended.why}: kept as {ended.saved.name}, marked"
            self._count_saved(bool(ended.success), now)

    def episode_over(self, success: bool | None, now: float, why: str) -> None:
        """The episode ended (a key, the time limit, the task): on to marking."""
        if self.phase != "recording":
            return
        self.suggestion = success
        if self.config.auto_mark and success is not None:
            self._save(success, now)
            return
        self.phase, self.since = "marking", now
        report = "unknown" if success is None else ("success" if success else "failure")
        self.message = f"episode {self.episode} {why} (sensors say: {report})"

    def tick(self, now: float) -> None:
        """Time limits: the episode's, and the reset phase's."""
        limit = self.config.episode_time_s
        if self.phase == "recording" and limit and self.elapsed(now) >= limit:
            self.episode_over(self.backend.finish(), now, f"reached {limit:g} s")
        elif self.phase == "reset" and self.elapsed(now) >= self.config.reset_time_s:
            self._begin(now, rerecord=self.rerecord)

    # --- transitions --------------------------------------------------------------------------
    def _begin(self, now: float, rerecord: bool) -> None:
        self.backend.begin(rerecord)
        self.phase, self.since, self.rerecord, self.suggestion = "recording", now, False, None
        self.last_success = None

    def _save(self, success: bool, now: float) -> None:
        if self.backend.stats().steps == 0:  # an episode needs one step at least: nothing to keep
            self.backend.discard()
            self.message = f"episode {self.episode} had no step: nothing saved"
            self.phase, self.since, self.rerecord = "reset", now, True
            return
        path = self.backend.save(success)
        self.message = f"saved {path.name} as {'success' if success else 'failure'}"
        self._count_saved(success, now)

    def _count_saved(self, success: bool, now: float) -> None:
        self.saved += 1
        self.successes += int(success)
        self.last_success = success
        if self.saved >= self.config.num_episodes:
            self._stop("done")
        else:
            self.phase, self.since, self.rerecord = "reset", now, False

    def _discard(self, now: float) -> None:
        self.backend.discard()
        self.discarded += 1
        self.message = f"episode {self.episode} discarded: re-recording it"
        self.phase, self.since, self.rerecord, self.last_success = "reset", now, True, None

    def _stop(self, why: str) -> None:
        if self.phase == "recording":
            self.backend.discard()
        self.phase = "done"
        self.message = (
            f"{why}: {self.saved} episodes saved ({self.successes} successes), {self.discarded} discarded"
        )
