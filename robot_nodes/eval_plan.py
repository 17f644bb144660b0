"""An evaluation session's plan: which policy runs each trial, in what order, from which initial
condition. No rclpy; written once at the session's start (plan.json) and never changed, so an
interrupted session resumes in the order it was planned.

    policies = describe_policies(["aawr=runs/r/checkpoints/aawr-seed0", "runs/r/checkpoints/bc-seed0"])
    plan = make_plan(policies, trials_per_policy=20, seed=0, blind=True, scenes=sim_scenes(0))

Order: permuted blocks, as clinical trials randomise. Trial block b holds every policy once, in an
order drawn from the session seed, so the policies stay balanced at every block's end (their counts
never differ by more than one) and time trends (a battery running down, light changing, the
operator tiring) fall on all of them alike. Every policy of a block starts from the block's initial
condition (paired scenes): a sim seed, or on a robot a condition from the operator's list, each used
equally often. Labels: the policies are A, B, ... in the order given; in blind mode the letters are
shuffled from the seed and the operator sees only them.
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from policies.checkpoint import CheckpointError, policy_digest, read_card
from sim.seeds import session_seed

PLAN_FORMAT = "aps-eval-plan/1"


class PlanError(ValueError):
    """Policies or a plan that cannot make a session; the message names the fix."""


@dataclass(frozen=True)
class PolicyEntry:
    name: str  # what the report calls it (given as name=path, or the checkpoint folder's name)
    checkpoint: str  # the checkpoint folder
    digest: str  # SHA-256 of its weights and card (policies.checkpoint.policy_digest)
    version: int  # the card's policy version
    task: str
    cameras: dict[str, list[int]]  # onboard camera -> image H, W, C: what the policy reads
    label: str = ""  # A, B, ...: what the operator sees
    node: str = ""  # its policy node in the eval graph (policy_0, ...)


@dataclass(frozen=True)
class Scene:
    """One initial condition: a sim seed, or a description the operator sets the scene up from."""

    seed: int  # the sim robot's reset seed; -1 on a real robot
    condition: str


@dataclass(frozen=True)
class PlannedTrial:
    index: int  # 0-based position in the session
    block: int  # every policy runs once per block, from the block's scene
    label: str  # the policy's label
    seed: int
    condition: str


@dataclass
class Plan:
    session: str  # the session's name (its folder)
    seed: int
    blind: bool
    policies: list[PolicyEntry]
    trials: list[PlannedTrial]
    settings: dict[str, Any] = field(default_factory=dict)  # what else shaped the session (task, limits)

    def policy(self, label: str) -> PolicyEntry:
        return next(p for p in self.policies if p.label == label)

    def to_json(self) -> str:
        return json.dumps({"format": PLAN_FORMAT, **asdict(self)}, indent=2)

    @staticmethod
    def from_json(text: str) -> Plan:
        data = json.loads(text)
        if data.pop("format", None) != PLAN_FORMAT:
            raise PlanError(f"not an aps-eval plan (format {PLAN_FORMAT} expected)")
        policies = [PolicyEntry(**p) for p in data.pop("policies")]
        trials = [PlannedTrial(**t) for t in data.pop("trials")]
        return Plan(policies=policies, trials=trials, **data)

    def same_session(self, other: Plan) -> list[str]:
        """What differs between this plan and `other` (empty: the same session)."""
        differences = []
        mine, theirs = self.to_comparable(), other.to_comparable()
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                differences.append(f"{key}: {mine.get(key)!r} there, {theirs.get(key)!r} now")
        return differences

    def to_comparable(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "blind": self.blind,
            "policies": [(p.name, p.digest, p.label) for p in self.policies],
            "trials": len(self.trials),
            **self.settings,
        }


def parse_policy(entry: str) -> tuple[str, str]:
    """A policy given as name=path, or as path (then named after its folder)."""
    name, sep, path = entry.partition("=")
    if not sep:
        name, path = Path(entry.rstrip("/")).name, entry
    if not name or not path:
        raise PlanError(f"policy {entry!r} must look like name=checkpoint_folder or checkpoint_folder")
    return name, path


def describe_policies(entries: list[str], task: str = "") -> list[PolicyEntry]:
    """The policies of a session from their checkpoints: each must load, and all be for one task
    (`task`, or the first checkpoint's). PlanError names the checkpoint at fault."""
    if not entries:
        raise PlanError("no policies: give their checkpoint folders (policies=[runs/.../aawr-seed0, ...])")
    if len(entries) > len(string.ascii_uppercase):
        raise PlanError(f"{len(entries)} policies: a session compares at most {len(string.ascii_uppercase)}")
    policies = []
    for entry in entries:
        name, path = parse_policy(entry)
        try:
            card = read_card(path)
            digest = policy_digest(path)
        except CheckpointError as err:
            raise PlanError(f"policy {name}: {err}") from err
        wanted = task or (policies[0].task if policies else card.task)
        if card.task != wanted:
            raise PlanError(
                f"policy {name} ({path}) was trained for task {card.task!r}, this session runs {wanted!r}: "
                "compare policies of one task"
            )
        cameras = {k: list(s.shape) for k, s in card.spec.onboard.items() if s.is_image}
        policies.append(PolicyEntry(name, str(path), digest, card.version, card.task, cameras))
    names = [p.name for p in policies]
    if len(set(names)) < len(names):
        raise PlanError(f"two policies share a name in {names}: name them (policies=[aawr=path, bc=path])")
    return policies


def sim_scenes(session_seed_value: int, count: int) -> list[Scene]:
    seeds = [session_seed(session_seed_value, block) for block in range(count)]
    return [Scene(seed, f"seed {seed}") for seed in seeds]


def robot_scenes(conditions: list[str], count: int, rng: np.random.Generator) -> list[Scene]:
    """Conditions in shuffled rounds: each one equally often (to within one)."""
    conditions = conditions or ["as the operator sets it up"]
    scenes: list[Scene] = []
    while len(scenes) < count:
        scenes += [Scene(-1, conditions[i]) for i in rng.permutation(len(conditions))]
    return scenes[:count]


def make_plan(
    policies: list[PolicyEntry],
    trials_per_policy: int,
    seed: int,
    blind: bool,
    conditions: list[str] | None = None,
    sim: bool = True,
    session: str = "",
    settings: dict[str, Any] | None = None,
) -> Plan:
    """Permuted blocks from `seed` (see the module's docstring). `sim`: each block's scene is a sim
    seed of the session's own range (sim.seeds.session_seed); else one of `conditions`."""
    if trials_per_policy < 1:
        raise PlanError(f"trials_per_policy must be >= 1, got {trials_per_policy}")
    rng = np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, 0xE7A1]))
    letters = list(string.ascii_uppercase[: len(policies)])
    order = rng.permutation(len(policies)) if blind else np.arange(len(policies))
    labelled = [replace(p, label=letters[order[i]], node=f"policy_{i}") for i, p in enumerate(policies)]
    scenes = (
        sim_scenes(seed, trials_per_policy) if sim else robot_scenes(conditions or [], trials_per_policy, rng)
    )
    trials = []
    for block, scene in enumerate(scenes):
        for position in rng.permutation(len(labelled)):
            policy = labelled[position]
            trials.append(PlannedTrial(len(trials), block, policy.label, scene.seed, scene.condition))
    return Plan(session, seed, blind, labelled, trials, dict(settings or {}))


def read_plan(path: Path) -> Plan:
    try:
        return Plan.from_json(path.read_text())
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise PlanError(f"{path}: unreadable plan ({err})") from err
