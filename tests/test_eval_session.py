"""aps-eval on the sim robot over DDS (tier c: the eval graph started by aps-eval, a process per node):
a 2 policies x 5 trials session gives the log, the videos, the episodes and a report, and each trial's
recorded actions are its own policy's (the mux switched to the right one); kill -9 mid-session, then
resume, loses and repeats no trial; the operator's keys through a pseudo-terminal label, override,
tag, e-stop and stop; bad input is one line and exit 2 before any trial."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import sim
from policies.checkpoint import save_checkpoint
from policies.episodes import EpisodeDataset, load_episode
from policies.learner import Learner
from policies.networks import ObsSpec
from robot_nodes.episode_video import decode_video
from robot_nodes.eval_cli import main as eval_main
from robot_nodes.eval_plan import describe_policies, make_plan, read_plan
from robot_nodes.eval_records import SessionFolder, open_session, start_session
from sim.config import TaskConfig
from tests.pty_terminal import ENTER, ESC, LEFT, RIGHT, Terminal
from tests.test_eval_core import Page
from tests.test_learner import small_config
from tests.test_ros_graph import in_process

TASK = "search-pick"
STEPS = 12
APS_EVAL = str(Path(sys.executable).parent / "aps-eval")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[Path]:
    """Two untrained policies of search-pick (different weights) in an aps-pretrain-like run folder,
    whose config.yaml gives the sim's settings: 32x32 images, STEPS steps an episode."""
    run = tmp_path_factory.mktemp("run")
    env = sim.make(TASK, TaskConfig(image_size=32))
    observation, _ = env.reset(seed=0)
    spec = ObsSpec.from_arrays(observation["onboard"], observation["privileged"], env.action_space.shape[0])
    env.close()
    folders = []
    for seed, name in enumerate(("aawr", "bc")):
        torch.manual_seed(seed)
        folders.append(
            save_checkpoint(Learner(spec, small_config(name)), run / "checkpoints" / name, TASK, 1)
        )
    (run / "config.yaml").write_text(
        yaml.safe_dump({"task": TASK, "env": {"image_size": 32, "max_episode_steps": STEPS}})
    )
    return folders


def aps_eval(checkpoints: list[Path], out: Path, *settings: str) -> list[str]:
    return [APS_EVAL, f"policies=[{checkpoints[0]}, {checkpoints[1]}]", f"out={out}", *settings]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


def test_a_sim_session_of_two_policies(checkpoints, tmp_path) -> None:
    out = tmp_path / "session"
    result = subprocess.run(
        aps_eval(checkpoints, out, "trials_per_policy=5", "seed=3"),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    log = (out / "graph.log").read_text() if (out / "graph.log").exists() else ""
    assert result.returncode == 0, result.stderr[-2000:] + log[-3000:]
    plan = read_plan(out / "plan.json")
    done = records(out)
    assert [r["trial"] for r in done] == list(range(10)) and all(r["status"] == "done" for r in done)
    assert [r["label"] for r in done] == [t.label for t in plan.trials]  # in the planned order
    episodes = EpisodeDataset(out / "episodes")
    assert len(episodes) == 10 and episodes.read_manifest()["episodes"] == 10
    names = {"A": checkpoints[0], "B": checkpoints[1]}
    # each policy in-process on every seed of the session, with the per-episode draws the node uses
    seeds = sorted({r["seed"] for r in done})
    env_config = TaskConfig(image_size=32, max_episode_steps=STEPS)
    alone = {
        label: dict(zip(seeds, in_process(path, env_config, seeds), strict=True))
        for label, path in names.items()
    }
    for record in done:
        episode = load_episode(out / record["episode"])
        assert episode.attrs["trial"] == record["trial"] and episode.attrs["seed"] == record["seed"]
        assert len(episode) == record["steps"] == STEPS and record["ended_by"] == "step_limit"
        assert episode.attrs["success"] is record["success"] is record["sensor_success"]
        assert record["label_source"] == "sensors" and record["duration_s"] == pytest.approx(STEPS / 10)
        assert record["checkpoint"] == str(names[record["label"]])
        # the mux forwarded this trial's policy: its actions are the ones it takes in-process, seed for seed
        mine, success = alone[record["label"]][record["seed"]]
        other = alone["B" if record["label"] == "A" else "A"][record["seed"]][0]
        np.testing.assert_allclose(episode.action, mine, atol=1e-5)
        assert record["success"] == success and not np.allclose(episode.action, other, atol=1e-3)
        frames = decode_video(out / record["video"])  # wrist and side cameras side by side
        assert frames.shape[0] == STEPS + 1 and frames.shape[2] == 2 * frames.shape[1]
    assert sorted({r["seed"] for r in done}) == sorted({t.seed for t in plan.trials})  # paired scenes
    page = Page()
    page.feed((out / "report.html").read_text())
    assert page.external == [] and len(page.images) == 4 and "session complete" in page.text
    assert "Barnard's exact test" in page.text and "A: aawr" in (out / "report.md").read_text()


def test_kill_9_then_resume_loses_and_repeats_no_trial(checkpoints, tmp_path) -> None:
    out = tmp_path / "interrupted"
    command = aps_eval(checkpoints, out, "trials_per_policy=3")
    output = tmp_path / "first.out"
    with open(output, "w") as log:
        first = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not ((out / "trials.jsonl").exists() and len(records(out)) >= 2):
            running = first.poll() is None and time.monotonic() < deadline
            assert running, f"the session never logged 2 trials: {output.read_text()[-2000:]}"
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)  # mid-session, most likely mid-trial
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    killed = len(records(out))
    # the graph died with the session: no node of it runs on
    deadline = time.monotonic() + 15
    while (left := nodes_of(checkpoints)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, left
    resumed = subprocess.run(
        [*command, "resume=true"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    done = records(out)
    plan = read_plan(out / "plan.json")
    assert [r["trial"] for r in done] == list(range(6))  # none lost, none twice, in the planned order
    assert [r["label"] for r in done] == [t.label for t in plan.trials] and killed >= 2
    episodes = EpisodeDataset(out / "episodes")
    assert sorted(r["episode"] for r in done) == sorted(f"episodes/{p.name}" for p in episodes.paths())
    assert sorted(load_episode(p).attrs["trial"] for p in episodes.paths()) == list(range(6))
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(Path(r["video"]).name for r in done)


def nodes_of(checkpoints: list[Path]) -> list[str]:
    """Command lines of running policy nodes that load these checkpoints."""
    found = subprocess.run(["pgrep", "-af", str(checkpoints[0])], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if "aps-policy" in line]


def test_operator_keys_label_override_tag_estop_and_stop(checkpoints, tmp_path) -> None:
    # the same policies in a run whose episodes last 200 steps: a trial runs until the time limit (3 s of
    # sim time, 30 steps) or a key, long enough for the keys to come while it runs
    run = tmp_path / "run"
    for folder in checkpoints:
        shutil.copytree(folder, run / "checkpoints" / folder.name)
    (run / "config.yaml").write_text(yaml.safe_dump({"env": {"image_size": 32, "max_episode_steps": 200}}))
    operated = [run / "checkpoints" / folder.name for folder in checkpoints]
    out = tmp_path / "operated"
    terminal = Terminal(aps_eval(
        operated, out, "trials_per_policy=3", "labels=confirm", "trial_time_s=3", "reset_time_s=-1",
    ))  # fmt: skip
    try:
        terminal.expect("RESET THE SCENE")
        terminal.type(ENTER)
        terminal.expect(
            "SUCCESS?"
        )  # trial 1 ran into the time limit (8 of 12 steps): the sensors say failure
        terminal.expect("the sensors say: failure")
        terminal.type(RIGHT)  # the operator overrides: a success
        terminal.expect("trial 1/6 saved: success")
        terminal.expect("RESET THE SCENE")
        terminal.type(RIGHT)
        terminal.expect("TRIAL RUNNING")
        terminal.type(LEFT)  # a failure, called while it runs
        terminal.expect("WHY DID IT FAIL?")
        terminal.type(b"2")  # never found the object
        terminal.expect("trial 2/6 saved: failure (never found)")
        terminal.type(ENTER)
        terminal.expect("SUCCESS?")
        terminal.type(ENTER)  # the sensors' call
        terminal.expect("WHY DID IT FAIL?")
        terminal.type(ENTER)  # the suggested tag
        terminal.expect("trial 3/6 saved: failure")
        terminal.type(ENTER)
        terminal.expect("TRIAL RUNNING")
        terminal.type(b" ")  # the e-stop: the trial ends as an intervention
        terminal.expect("trial 4/6 saved: failure (intervention)")
        terminal.type(ENTER)  # the session released its e-stop, so the next trial starts
        terminal.expect("TRIAL RUNNING")
        terminal.type(ESC)  # stop mid-trial: this trial runs again on resume
        assert terminal.wait() == 0, terminal.screen[-2000:]
        assert "stopped: 4 of 6 trials done, 2 left (resume=true continues)" in terminal.screen
    finally:
        terminal.close()
    done = records(out)
    assert [(r["trial"], r["status"]) for r in done] == [
        (0, "done"),
        (1, "done"),
        (2, "done"),
        (3, "done"),
        (4, "discarded"),
    ]
    first, second, third, fourth = done[:4]
    assert (first["success"], first["label_source"], first["sensor_success"]) == (True, "override", False)
    assert first["ended_by"] == "time_limit" and first["failure_tag"] is None
    assert (second["success"], second["label_source"], second["failure_tag"]) == (
        False,
        "operator",
        "never_found",
    )
    assert second["ended_by"] == "operator"
    assert (third["success"], third["label_source"], third["ended_by"]) == (False, "sensors", "time_limit")
    assert third["failure_tag"] in ("never_found", "missed_grasp", "timeout")
    assert (fourth["ended_by"], fourth["failure_tag"], fourth["interventions"]) == (
        "estop",
        "intervention",
        1,
    )
    assert len(EpisodeDataset(out / "episodes")) == 4  # the stopped trial left no episode


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown", "policy ghost: .* no checkpoint.json"),
        ("task", "trained for task 'shelf-search', this session runs 'search-pick'"),
        ("cameras", r"reads camera\(s\) \['side'\], which search-pick does not have"),
        ("folder", r"holds a session already \(0 of 4 trials done\): add resume=true"),
        (
            "another",
            r"holds another session, so it cannot be resumed.*seed: 5 there, 0 now",
        ),
        ("topics", "not running after 2 s: policy A"),
    ],
)
def test_bad_input_is_one_line_before_any_trial(checkpoints, tmp_path, capsys, case, message) -> None:
    out = tmp_path / "bad"
    good = [str(checkpoints[0]), str(checkpoints[1])]
    settings: list[str] = []
    if case == "unknown":
        good[1] = f"ghost={tmp_path / 'nowhere'}"
    elif case in ("task", "cameras"):
        other = checkpoint_for(
            tmp_path / "other", "shelf-search" if case == "task" else TASK, case == "cameras"
        )
        good[1] = str(other)
    elif case in ("folder", "another"):  # a session of these policies with other settings is there
        plan = make_plan(describe_policies(good), 2, seed=5, blind=False, session="bad")
        start_session(SessionFolder(out), open_session(SessionFolder(out), plan, resume=False)[0])
        settings = ["trials_per_policy=2"] + (["resume=true"] if case == "another" else [])
    elif case == "topics":  # the eval graph is not running (it was to be started by aps-launch eval)
        settings = ["launch=false", "startup_timeout=2"]
    code = eval_main([f"policies=[{good[0]}, {good[1]}]", f"out={out}", *settings])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("aps-eval: "), lines
    assert re.search(message, lines[0]), lines[0]
    assert not (out / "trials.jsonl").exists()
    if case == "topics":  # nothing in the way of the next start, once the graph runs
        plan = make_plan(describe_policies(good), 10, seed=0, blind=False)
        assert open_session(SessionFolder(out), plan, resume=False) == (plan, [])


def checkpoint_for(folder: Path, task: str, side_camera: bool) -> Path:
    onboard = {
        ("side" if side_camera else "wrist"): np.zeros((32, 32, 3), np.uint8),
        "joints": np.zeros(6, np.float32),
    }
    spec = ObsSpec.from_arrays(onboard, {"object_pos": np.zeros(3, np.float32)}, 5)
    return save_checkpoint(Learner(spec, small_config()), folder, task, version=1)


def test_sample_size_command(capsys) -> None:
    assert eval_main(["sample-size", "0.5", "0.8"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("45 trials per policy") and "Fisher's exact test has 82% power there" in printed
