"""aps-eval's cores without ROS: the plan (reproducible, balanced, interleaved, paired scenes, blind
labels), the policies' checks, the session folder and its log (resume after a torn line, what a crash
left half-done set aside), the report (self-contained HTML that parses, every figure a PNG), the
failure-tag suggestions, and the action mux's switch with its lease."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from policies.checkpoint import policy_digest, save_checkpoint
from policies.episodes import EpisodeDataset
from policies.learner import Learner
from policies.networks import ObsSpec
from robot_nodes.action_mux_core import ActionMuxConfig, ActionMuxCore, SelectionError
from robot_nodes.eval_plan import PlanError, describe_policies, make_plan
from robot_nodes.eval_records import (
    FAILURE_TAGS,
    SessionFolder,
    TrialRecord,
    append_record,
    finished_trials,
    open_session,
    read_records,
    start_session,
)
from robot_nodes.eval_report import build_report, write_report
from robot_nodes.eval_session import TrialFacts, suggest_failure_tag
from sim.seeds import session_seed
from tests.test_learner import make_episode, small_config

pytestmark = pytest.mark.usefixtures("seeded_torch")


def checkpoint(folder: Path, task: str = "search-pick", cameras: tuple[str, ...] = ("wrist",)) -> Path:
    """An untrained but real checkpoint of `task` whose policy reads `cameras` (32x32) and joints."""
    onboard = {camera: np.zeros((32, 32, 3), np.uint8) for camera in cameras}
    onboard["joints"] = np.zeros(6, np.float32)
    spec = ObsSpec.from_arrays(onboard, {"object_pos": np.zeros(3, np.float32)}, 5)
    return save_checkpoint(Learner(spec, small_config()), folder, task, version=3)


@pytest.fixture(scope="module")
def policies(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return describe_policies([f"aawr={checkpoint(root / 'a')}", str(checkpoint(root / "bc-seed0"))])


def test_policies_are_read_from_their_checkpoints(policies, tmp_path) -> None:
    aawr, bc = policies
    assert (aawr.name, bc.name) == ("aawr", "bc-seed0")  # given, or the folder's name
    assert aawr.task == "search-pick" and aawr.version == 3 and aawr.cameras == {"wrist": [32, 32, 3]}
    assert aawr.digest == policy_digest(aawr.checkpoint) != bc.digest  # their weights differ
    with pytest.raises(PlanError, match=r"policy ghost: .*no checkpoint\.json"):
        describe_policies([f"ghost={tmp_path / 'nowhere'}"])
    other = checkpoint(tmp_path / "shelf", task="shelf-search")
    with pytest.raises(PlanError, match="trained for task 'shelf-search', this session runs 'search-pick'"):
        describe_policies([aawr.checkpoint, str(other)])
    with pytest.raises(PlanError, match="share a name"):
        describe_policies([aawr.checkpoint, aawr.checkpoint])


def test_the_plan_is_reproducible_balanced_and_interleaved(policies) -> None:
    three = [*policies, policies[0].__class__(**{**policies[0].__dict__, "name": "third"})]
    plan = make_plan(three, trials_per_policy=12, seed=7, blind=False)
    again = make_plan(three, trials_per_policy=12, seed=7, blind=False)
    other = make_plan(three, trials_per_policy=12, seed=8, blind=False)
    order = [t.label for t in plan.trials]
    assert order == [t.label for t in again.trials]  # the same seed, the same session
    assert order != [t.label for t in other.trials]
    assert Counter(order) == {"A": 12, "B": 12, "C": 12}
    for block, trials in itertools.groupby(plan.trials, key=lambda t: t.block):
        trials = list(trials)
        assert sorted(t.label for t in trials) == ["A", "B", "C"]  # every policy once per block
        assert len({t.seed for t in trials}) == 1 and trials[0].seed == session_seed(7, block)  # paired
    for prefix in range(1, len(order) + 1):  # balanced all along: counts never differ by more than one
        counts = Counter(order[:prefix])
        assert max(counts.values()) - min(counts.get(label, 0) for label in "ABC") <= 2
    assert max(len(list(run)) for _, run in itertools.groupby(order)) <= 2  # interleaved, never in runs
    assert len({tuple(order[i : i + 3]) for i in range(0, len(order), 3)}) > 1  # blocks in several orders
    assert [t.index for t in plan.trials] == list(range(36))


def test_blind_labels_are_shuffled_from_the_seed(policies) -> None:
    plain = make_plan(policies, 2, seed=0, blind=False)
    assert [(p.name, p.label, p.node) for p in plain.policies] == [
        ("aawr", "A", "policy_0"),
        ("bc-seed0", "B", "policy_1"),
    ]
    swapped = [make_plan(policies, 2, seed=s, blind=True).policies[0].label for s in range(20)]
    assert set(swapped) == {"A", "B"}  # which policy is A depends on the seed only
    assert swapped == [make_plan(policies, 2, seed=s, blind=True).policies[0].label for s in range(20)]


def test_robot_conditions_are_used_equally_often(policies) -> None:
    plan = make_plan(policies, 9, seed=1, blind=False, conditions=["left", "right", "behind"], sim=False)
    conditions = Counter(t.condition for t in plan.trials)
    assert conditions == {"left": 6, "right": 6, "behind": 6}
    assert all(t.seed == -1 for t in plan.trials)


def record(plan, trial, success: bool, status: str = "done", **changes) -> TrialRecord:
    policy = plan.policy(trial.label)
    fields = dict(
        session=plan.session, trial=trial.index, block=trial.block, label=trial.label, policy=policy.name,
        checkpoint=policy.checkpoint, checkpoint_sha256=policy.digest, policy_version=3, seed=trial.seed,
        condition=trial.condition, status=status, success=success, label_source="sensors",
        sensor_success=success, failure_tag=None if success else "timeout",
        ended_by="task" if success else "step_limit", duration_s=2.0, steps=20,
        time_to_first_sight_s=0.5, interventions=0, episode="", video="", started="", finished="",
    )  # fmt: skip
    return TrialRecord(**{**fields, **changes})


def test_a_session_folder_resumes_where_it_stopped(policies, tmp_path) -> None:
    folder = SessionFolder(tmp_path / "session")
    plan = make_plan(policies, 3, seed=0, blind=False, session="session", settings={"task": "search-pick"})
    opened, records = open_session(folder, plan, resume=False)
    assert records == [] and not folder.root.exists()  # nothing written before the robot is ready
    start_session(folder, opened)
    assert json.loads(folder.plan.read_text())["trials"][0]["index"] == 0
    first, second, third = plan.trials[:3]
    append_record(folder, record(plan, first, True))
    append_record(folder, record(plan, second, False, status="discarded"))  # redone: not finished
    append_record(folder, record(plan, second, False))
    with open(folder.log, "a") as log:  # kill -9 in the middle of the next line
        log.write(json.dumps(record(plan, third, True).__dict__)[:40])
    # a crash between the episode file and its log line: the file is no finished trial's
    dataset = EpisodeDataset(folder.episodes)
    orphan = dataset.append(make_episode(0, 3, np.random.default_rng(0)))
    (folder.videos / "trial_002_A.mp4").write_bytes(b"half a video")
    (folder.episodes / ".episode_000009.h5.tmp").write_bytes(b"torn")

    with pytest.raises(PlanError, match=r"holds a session already \(2 of 6 trials done\): add resume=true"):
        open_session(folder, plan, resume=False)
    other = make_plan(policies, 3, seed=1, blind=False, session="session", settings={"task": "search-pick"})
    with pytest.raises(PlanError, match=r"holds another session.*seed: 0 there, 1 now"):
        open_session(folder, other, resume=True)
    resumed, records = open_session(folder, plan, resume=True)
    assert resumed.to_json() == opened.to_json()  # the planned order, kept
    assert finished_trials(records) == {0, 1} and len(records) == 3
    assert folder.log.read_bytes().endswith(b"\n") and len(read_records(folder)) == 3  # the torn line cut off
    assert not orphan.exists() and (folder.set_aside / orphan.name).is_file() and len(dataset) == 0
    assert (folder.set_aside / ".episode_000009.h5.tmp").is_file()
    assert not (folder.videos / "trial_002_A.mp4").exists()
    append_record(folder, record(plan, third, True))
    assert [r.trial for r in read_records(folder)] == [0, 1, 1, 2]


def test_a_folder_that_is_no_session_is_refused(policies, tmp_path) -> None:
    plan = make_plan(policies, 1, seed=0, blind=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(PlanError, match="holds files but no aps-eval session"):
        open_session(SessionFolder(tmp_path / "busy"), plan, resume=False)
    with pytest.raises(PlanError, match="no session to resume"):
        open_session(SessionFolder(tmp_path / "new"), plan, resume=True)
    # a start that failed before its first trial (the graph was not up) leaves a folder that starts anew
    (tmp_path / "failed" / "episodes").mkdir(parents=True)
    (tmp_path / "failed" / "graph.log").write_text("policy_0 exited")
    assert open_session(SessionFolder(tmp_path / "failed"), plan, resume=False) == (plan, [])


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        for name in ("src", "href"):
            value = attrs.get(name) or ""
            if value and not value.startswith(("data:", "videos/")):
                self.external.append(value)

    def handle_data(self, data: str) -> None:
        self.text += data


def test_the_report_reads_the_log(policies, tmp_path) -> None:
    folder = SessionFolder(tmp_path / "s")
    plan = make_plan(
        policies, 10, seed=0, blind=False, session="s", settings={"task": "search-pick", "robot": "sim"}
    )
    start_session(folder, open_session(folder, plan, resume=False)[0])
    wins = {"A": 9, "B": 3}
    seen: Counter = Counter()
    for trial in plan.trials[:-2]:  # two trials short: an interim report
        seen[trial.label] += 1
        success = seen[trial.label] <= wins[trial.label]
        append_record(
            folder, record(plan, trial, success, video=f"videos/trial_{trial.index:03d}_{trial.label}.mp4")
        )
    report = write_report(folder, plan)
    a, b = report.results
    assert (a.successes, a.count, b.successes, b.count) == (9, 9, 3, 9)
    pair = report.pairs[0]
    assert (
        pair.comparison.difference == pytest.approx(6 / 9)
        and pair.p_adjusted == pair.comparison.p_value < 0.05
    )
    assert pair.needed is not None and not report.complete
    page = Page()
    page.feed(folder.report_html.read_text())
    assert page.external == []  # self-contained: every image inline, links only to the trials' videos
    assert len(page.images) == 4
    for source in page.images:
        assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "INTERIM: 18 of 20 trials done" in page.text and "Barnard's exact test p = " in page.text
    assert "A: aawr" in page.text and "100% (9/9; 95% CI 70%-100%)" in folder.report_md.read_text()
    assert sorted(p.name for p in folder.figures.iterdir()) == [
        "failure_tags.png", "success_rates.png", "time_to_success.png", "trials_in_order.png",
    ]  # fmt: skip
    assert build_report(plan, []).pairs == []  # nothing run yet: nothing to compare


def test_failure_tags_follow_the_sensors() -> None:
    seen, grasped = TrialFacts(False, True, True), TrialFacts(False, True, False)
    assert suggest_failure_tag("estop", seen, 0) == "intervention"
    assert suggest_failure_tag("step_limit", seen, 1) == "intervention"
    assert suggest_failure_tag("step_limit", TrialFacts(False, False, True), 0) == "never_found"
    assert suggest_failure_tag("time_limit", seen, 0) == "missed_grasp"
    assert suggest_failure_tag("time_limit", grasped, 0) == "timeout"
    assert suggest_failure_tag("operator", TrialFacts(None, None, None), 0) == "other"
    assert set(FAILURE_TAGS) == {"missed_grasp", "never_found", "timeout", "intervention", "other"}


def test_the_mux_forwards_only_the_selection_while_its_lease_holds() -> None:
    mux = ActionMuxCore(ActionMuxConfig(sources=["policy_0/action", "policy_1/action"], lease=2.0))
    assert not mux.forward("policy_0/action")  # nothing selected at first: the arm is held
    assert mux.select("policy_1/action", now_s=10.0) == "forwarding policy_1/action (was nothing)"
    assert mux.forward("policy_1/action") and not mux.forward("policy_0/action")
    assert mux.select("policy_1/action", now_s=11.5) is None  # a renewal
    assert mux.lapse(13.4) is None and mux.forward("policy_1/action")
    assert "not renewed for 2 s" in mux.lapse(13.6) and not mux.forward("policy_1/action")
    with pytest.raises(SelectionError, match="not a source of the mux"):
        mux.select("policy_7/action", now_s=14.0)
    assert mux.select("", now_s=14.0) is None  # nothing selected already
    with pytest.raises(ValueError, match="distinct"):
        ActionMuxConfig(sources=["a", "a"])


def test_the_cores_import_no_rclpy() -> None:
    modules = "eval_plan eval_records eval_session eval_report eval_display action_mux_core"
    imports = f"for m in '{modules}'.split(): __import__('robot_nodes.' + m)"
    code = f"import sys\n{imports}\nprint('rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
