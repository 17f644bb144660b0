"""aps-eval's session: trials in their planned order, their phases and keys, over any backend. No rclpy.

Phases of a trial, with the recording tool's keys (arrows, or letters over a plain SSH terminal):

- reset: put the scene back as the prompt says (the trial's initial condition); -> / Enter / n starts
  the trial (or after `reset_time_s`; at once in a sim session); Esc / x stops the session.
- running: the policy acts until the task ends it (a success, or the sim's step limit), the time
  limit, an e-stop, or a key: -> ends it a success, <- a failure; space engages the e-stop (the
  trial ends as an intervention); i counts an intervention and goes on; r redoes the trial after a
  reset; Esc / x stops the session (this trial runs again on resume).
- marking (unless the sensors' label is taken as it is): -> / s / up success, <- / f / down failure,
  Enter takes the privileged success check's call (shown); a key against it is an override.
- tagging (a failure): 1 missed grasp, 2 never found the object, 3 timeout, 4 intervention,
  5 other; Enter takes the suggested tag.

Labels (`labels`): sensors, the privileged success check decides (sim sessions, no operator); confirm,
it suggests and the operator confirms or overrides; operator, keys only (no check for the task).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from robot_nodes.eval_plan import Plan, PlannedTrial, PolicyEntry
from robot_nodes.eval_records import FAILURE_TAGS, EndReason, FailureTag, LabelSource, TrialRecord
from robot_nodes.record_session import END_KEYS, STOP_KEYS
from robot_nodes.record_session import FAILURE_KEYS as MARK_FAILURE
from robot_nodes.record_session import SUCCESS_KEYS as MARK_SUCCESS

Phase = Literal["reset", "running", "marking", "tagging", "done"]
LabelMode = Literal["sensors", "confirm", "operator"]

# aps-record's keys (robot_nodes/record_session.py), with the arrows for success and failure
SUCCESS_KEYS = ("right", *MARK_SUCCESS)
FAILURE_KEYS = ("left", *MARK_FAILURE)
START_KEYS = (*END_KEYS, "enter")
ESTOP_KEYS = ("space",)
INTERVENTION_KEYS = ("i",)
REDO_KEYS = ("r",)
TAG_KEYS: dict[str, FailureTag] = {str(i + 1): tag for i, tag in enumerate(FAILURE_TAGS)}


class EvalError(RuntimeError):
    """A session that cannot start or go on (its settings, the robot's graph); the text names the fix."""


@dataclass
class TrialFacts:
    """What the robot side knows about a trial once the policy stopped acting."""

    success: bool | None  # the privileged success check (None: the task has none here)
    seen: bool | None  # the privileged data showed the object in view (None: no such key)
    grasp_attempted: bool | None  # the gripper closed at some step (None: no gripper)


@dataclass
class Ending:
    """A trial ended by the robot side: the task, an e-stop, a lost stream."""

    reason: EndReason
    success: bool | None = None  # the task's verdict when it ended it
    why: str = ""  # more words, for the operator (which stream fell silent)


@dataclass
class SavedTrial:
    episode: str  # relative to the session folder
    video: str  # relative to the session folder; "" when none was made
    duration_s: float
    steps: int
    time_to_first_sight_s: float | None
    policy_version: int


@dataclass
class TrialStats:
    steps: int
    fps: float  # control steps per second of the robot's time, measured
    elapsed_s: float  # robot (or sim) time since the trial's first observation


class EvalBackend(Protocol):
    """The robot side of a session: the eval graph over ROS (robot_nodes.eval_ros)."""

    def begin(self, trial: PlannedTrial, policy: PolicyEntry) -> None:
        """Start the trial: the scene's reset (sim), the policy switched in, the episode recorded."""

    def poll(self) -> Ending | None: ...

    def stats(self) -> TrialStats: ...

    def engage_estop(self) -> None: ...

    def stop_acting(self) -> TrialFacts:
        """The policy no longer drives the robot (it holds); the last frames are in."""

    def save(self, trial: PlannedTrial, success: bool) -> SavedTrial:
        """The trial's episode, labelled, into the dataset, and its video."""

    def discard(self) -> None: ...

    def blocked(self) -> str:
        """Why a trial cannot start now (an e-stop engaged elsewhere), or ''."""


def suggest_failure_tag(ended_by: EndReason, facts: TrialFacts, interventions: int) -> FailureTag:
    """The tag the sensors point to: an intervention, the object never in view, a grasp that closed
    on nothing (or lost the object), a time or step limit, else other."""
    if ended_by == "estop" or interventions:
        return "intervention"
    if facts.seen is False:
        return "never_found"
    if facts.grasp_attempted:
        return "missed_grasp"
    if ended_by in ("time_limit", "step_limit"):
        return "timeout"
    return "other"


@dataclass
class SessionRules:
    labels: LabelMode
    trial_time_s: float  # a trial ends after this long (robot time); 0: only by the task or a key
    reset_time_s: float  # between trials: start after this long; 0 at once; < 0 wait for a key


class EvalSession:
    def __init__(
        self,
        plan: Plan,
        records: list[TrialRecord],
        rules: SessionRules,
        backend: EvalBackend,
        log: Callable[[TrialRecord], None],
        now: float,
    ) -> None:
        self.plan, self.rules, self.backend, self.log = plan, rules, backend, log
        self.records = [r for r in records if r.status == "done"]
        done = {r.trial for r in self.records}
        self.pending = [t for t in plan.trials if t.index not in done]
        self.message = ""
        self.phase: Phase = "reset"
        self.since = now
        self.trial: PlannedTrial | None = self.pending[0] if self.pending else None
        self.started_at = ""
        self.ended_by: EndReason = "task"
        self.facts = TrialFacts(None, None, None)
        self.sensed: bool | None = None  # the privileged success check of the trial just ended
        self.suggestion: bool | None = None  # the label it suggests (a failure after an e-stop)
        self.label: tuple[bool, LabelSource] | None = None
        self.tag_suggestion: FailureTag = "other"
        self.interventions = 0
        if self.trial is None:
            self._stop("nothing left to run: every planned trial is logged")

    # --- what the display shows -----------------------------------------------------------------
    @property
    def total(self) -> int:
        return len(self.plan.trials)

    @property
    def done(self) -> int:
        return len(self.records)

    def tally(self, label: str) -> tuple[int, int]:
        """(successes, trials) of the policy labelled `label` so far."""
        mine = [r for r in self.records if r.label == label]
        return sum(r.success for r in mine), len(mine)

    def policy_name(self, trial: PlannedTrial) -> str:
        """What the operator is shown: the label, and the name unless the session is blind."""
        policy = self.plan.policy(trial.label)
        return trial.label if self.plan.blind else f"{trial.label} ({policy.name})"

    def elapsed(self, now: float) -> float:
        return now - self.since

    # --- inputs -------------------------------------------------------------------------------
    def key(self, key: str, now: float) -> None:
        if self.phase == "reset":
            if key in START_KEYS:
                self._start(now)
            elif key in STOP_KEYS:
                self._stop("stopped")
        elif self.phase == "running":
            if key in SUCCESS_KEYS or key in FAILURE_KEYS:
                self._end("operator", now, operator_label=key in SUCCESS_KEYS)
            elif key in ESTOP_KEYS:
                self.backend.engage_estop()
                self._end("estop", now)
            elif key in INTERVENTION_KEYS:
                self.interventions += 1
                self.message = f"intervention {self.interventions} marked"
            elif key in REDO_KEYS:
                self.backend.stop_acting()
                self._discard("redone by the operator", now)
            elif key in STOP_KEYS:
                self.backend.stop_acting()
                self._discard("the session was stopped", now)
                self._stop("stopped")
        elif self.phase == "marking":
            if key in SUCCESS_KEYS or key in FAILURE_KEYS:
                self._labelled(key in SUCCESS_KEYS, accepted=False, now=now)
            elif key == "enter" and self.suggestion is not None:
                self._labelled(self.suggestion, accepted=True, now=now)
            elif key in REDO_KEYS:
                self._discard("redone by the operator", now)
            elif key in STOP_KEYS:
                self._discard("the session was stopped before the trial was labelled", now)
                self._stop("stopped")
        elif self.phase == "tagging":
            if key in TAG_KEYS:
                self._save(TAG_KEYS[key], now)
            elif key == "enter":
                self._save(self.tag_suggestion, now)
            elif key in REDO_KEYS:
                self._discard("redone by the operator", now)
            elif key in STOP_KEYS:
                self._discard("the session was stopped before the trial was tagged", now)
                self._stop("stopped")

    def tick(self, now: float) -> None:
        """Ends from the robot side, the trial's time limit, the reset phase's countdown."""
        if self.phase == "running":
            ending = self.backend.poll()
            if ending is not None:
                self._end(ending.reason, now, task_success=ending.success, why=ending.why)
            elif self.rules.trial_time_s and self.backend.stats().elapsed_s >= self.rules.trial_time_s:
                self._end("time_limit", now)
        elif self.phase == "reset" and 0 <= self.rules.reset_time_s <= self.elapsed(now):
            self._start(now)

    # --- transitions --------------------------------------------------------------------------
    def _start(self, now: float) -> None:
        assert self.trial is not None
        blocked = self.backend.blocked()
        if blocked:
            self.message = f"cannot start trial {self.trial.index + 1}: {blocked}"
            self.since = now  # a countdown starts again
            return
        self.backend.begin(self.trial, self.plan.policy(self.trial.label))
        self.phase, self.since, self.started_at = "running", now, _wall_time()
        self.interventions, self.label, self.sensed, self.suggestion = 0, None, None, None
        self.ended_by = "operator"  # until the trial ends otherwise
        self.message = (
            f"trial {self.trial.index + 1}: {self.policy_name(self.trial)} from {self.trial.condition}"
        )

    def _end(
        self,
        reason: EndReason,
        now: float,
        operator_label: bool | None = None,
        task_success: bool | None = None,
        why: str = "",
    ) -> None:
        self.ended_by = reason
        self.facts = self.backend.stop_acting()
        if reason == "estop":
            self.interventions = max(1, self.interventions)
        self.sensed = self.facts.success if self.facts.success is not None else task_success
        self.suggestion = False if reason == "estop" else self.sensed
        self.tag_suggestion = suggest_failure_tag(reason, self.facts, self.interventions)
        self.phase, self.since = "marking", now
        if operator_label is not None:
            self._labelled(operator_label, accepted=False, now=now)
        elif reason == "estop":  # the e-stop is the intervention: a failure, tagged so
            self.label = (False, "operator")
            self._save("intervention", now)
        elif self.rules.labels == "sensors" and self.suggestion is not None:
            self._labelled(self.suggestion, accepted=True, now=now)
        elif self.rules.labels == "sensors":  # no call to take and no operator to ask: a broken trial
            ended = f"{reason.replace('_', ' ')}{': ' + why if why else ''}"
            self._discard(f"ended without a sensor call ({ended})", now)
            self._stop(f"trial {self._number()} ended without a sensor call ({ended}); fix that and resume")
        else:
            call = {None: "no call", True: "success", False: "failure"}[self.suggestion]
            self.message = (
                f"trial {self._number()} ended ({reason.replace('_', ' ')}{': ' + why if why else ''}); "
                f"the sensors say: {call}"
            )

    def _labelled(self, success: bool, accepted: bool, now: float) -> None:
        against = self.suggestion is not None and success != self.suggestion
        source: LabelSource = "sensors" if accepted else ("override" if against else "operator")
        self.label = (success, source)
        if success:
            self._save(None, now)
        elif self.rules.labels == "sensors":
            self._save(self.tag_suggestion, now)
        else:
            self.phase, self.since = "tagging", now
            self.message = (
                f"trial {self._number()}: a failure; why? (Enter: {self.tag_suggestion.replace('_', ' ')})"
            )

    def _save(self, tag: FailureTag | None, now: float) -> None:
        assert self.trial is not None and self.label is not None
        success, source = self.label
        saved = self.backend.save(self.trial, success)
        record = self._record("done", success, source, tag, saved)
        self.log(record)
        self.records.append(record)
        self.message = f"trial {self._number()} saved: {'success' if success else 'failure'}" + (
            f" ({tag.replace('_', ' ')})" if tag else ""
        )
        self._next(now)

    def _discard(self, why: str, now: float) -> None:
        assert self.trial is not None
        self.backend.discard()
        self.log(self._record("discarded", False, "operator", None, None, note=why))
        self.message = f"trial {self._number()} discarded ({why}): it runs again"
        self.phase, self.since = "reset", now

    def _next(self, now: float) -> None:
        self.pending.pop(0)
        if not self.pending:
            self._stop("done")
            return
        self.trial = self.pending[0]
        self.phase, self.since = "reset", now

    def _stop(self, why: str) -> None:
        self.phase = "done"
        left = len(self.pending)
        self.message = f"{why}: {self.done} of {self.total} trials done" + (
            f", {left} left (resume=true continues)" if left and why != "done" else ""
        )

    def _number(self) -> str:
        assert self.trial is not None
        return f"{self.trial.index + 1}/{self.total}"

    def _record(
        self,
        status: Literal["done", "discarded"],
        success: bool,
        source: LabelSource,
        tag: FailureTag | None,
        saved: SavedTrial | None,
        note: str = "",
    ) -> TrialRecord:
        trial = self.trial
        assert trial is not None
        policy = self.plan.policy(trial.label)
        return TrialRecord(
            session=self.plan.session,
            trial=trial.index,
            block=trial.block,
            label=trial.label,
            policy=policy.name,
            checkpoint=policy.checkpoint,
            checkpoint_sha256=policy.digest,
            policy_version=saved.policy_version if saved else policy.version,
            seed=trial.seed,
            condition=trial.condition,
            status=status,
            success=success,
            label_source=source,
            sensor_success=self.sensed,
            failure_tag=None if success else tag,
            ended_by=self.ended_by,
            duration_s=saved.duration_s if saved else 0.0,
            steps=saved.steps if saved else 0,
            time_to_first_sight_s=saved.time_to_first_sight_s if saved else None,
            interventions=self.interventions,
            episode=saved.episode if saved else "",
            video=saved.video if saved else "",
            started=self.started_at,
            finished=_wall_time(),
            note=note,
        )


def _wall_time() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
