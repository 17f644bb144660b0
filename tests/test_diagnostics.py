"""aps-diagnose probe and informativeness: MINE against a known MI, the T-maze belief against Bayes,
the informativeness tests on a POMDP whose reward depends on known state components, the pretraining
job's checkpoint series read by the probe, and the command dispatcher."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from apsconfig import load_config
from diagnostics import cli
from diagnostics.mine import MineConfig, mutual_information
from policies.episodes import Episode, EpisodeDataset
from sim.config import TaskConfig, TMazeLayout
from sim.pretrain import PRESETS, PretrainConfig, checkpoint_series, run
from sim.tmaze import TMazeEnv

ROOT = Path(__file__).resolve().parent.parent


def test_mine_on_correlated_gaussians_is_within_ten_percent_of_the_true_mi() -> None:
    # x, y in R^2 with corr(x_k, y_k) = rho, independent across k: I = -d/2 log(1 - rho^2)
    dims, rho, n = 2, 0.6, 6000
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, dims))
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=(n, dims))
    true = -0.5 * dims * math.log(1 - rho**2)
    split = int(0.7 * n)
    estimate = mutual_information(
        x[:split], y[:split], x[split:], y[split:], MineConfig(hidden=64, steps=1000)
    )
    assert estimate.validation == pytest.approx(true, rel=0.1)
    assert abs(estimate.baseline) < 0.1 * true  # shuffled targets: no information


def test_tmaze_belief_is_the_analytic_posterior_along_whole_episodes() -> None:
    accuracy = 0.75
    env = TMazeEnv(
        TaskConfig(max_episode_steps=25, tmaze=TMazeLayout(corridor_length=2, sign_accuracy=accuracy))
    )
    rng = np.random.default_rng(1)
    checked = 0
    for seed in range(30):
        obs, _ = env.reset(seed=seed)
        ups = downs = 0
        done = False
        while not done:
            # sensors[0] is the sign's reading (+1 up, -1 down) on the sign cell, else 0
            reading = obs["onboard"]["sensors"][0]
            ups, downs = ups + (reading > 0), downs + (reading < 0)
            # P(up | readings) = a^u (1-a)^d / (a^u (1-a)^d + (1-a)^u a^d), prior 1/2
            up = accuracy**ups * (1 - accuracy) ** downs
            down = (1 - accuracy) ** ups * accuracy**downs
            assert obs["privileged"]["belief"][0] == pytest.approx(up / (up + down), abs=1e-6)
            checked += ups + downs > 0
            action = np.array([rng.choice([-1.0, 1.0], p=[0.6, 0.4]), rng.uniform(-1, 1)], np.float32)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    assert checked > 50  # many steps after at least one reading


def synthetic_pomdp(folder: Path, episodes: int = 48, steps: int = 10, seed: int = 0) -> None:
    """Per episode hidden a, b (never observed) and c (observed onboard at every step, with noise);
    reward r_t = (a + c) / 2 + noise. Privileged keys: a, c, and a shuffled across episodes."""
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=episodes)
    shuffled = rng.permutation(hidden)
    data = []
    for i in range(episodes):
        a, c = hidden[i], rng.normal()
        onboard = np.stack([c + 0.05 * rng.normal(size=steps + 1), np.arange(steps + 1) / steps], axis=1)
        privileged = {"a": a, "c": c, "shuffled": shuffled[i]}
        reward = 0.5 * (a + c) + 0.2 * rng.normal(size=steps)
        data.append(Episode(
            {"sensors": onboard.astype(np.float32)},
            {k: np.full((steps + 1, 1), v, np.float32) for k, v in privileged.items()},
            np.zeros((steps, 1), np.float32), reward.astype(np.float32),
            np.zeros(steps, bool), np.zeros(steps, bool), np.arange(steps + 1) / 10.0,
            {"task": "synthetic", "source": "scripted"},
        ))  # fmt: skip
    EpisodeDataset(folder).extend(data)


def test_informativeness_flags_the_signals_the_return_depends_on_given_the_history(tmp_path, capsys) -> None:
    synthetic_pomdp(tmp_path / "episodes")
    settings = [
        f"data={tmp_path / 'episodes'}", "folds=3", "permutations=100", "steps_per_episode=6",
        "critic.updates=200",
        "critic.network.core_hidden=16", "critic.network.vector_hidden=16", "critic.network.head_hidden=32",
    ]  # fmt: skip
    assert cli.main(["informativeness", *settings]) == 0
    out = tmp_path / "episodes" / "diagnostics"
    assert (out / "informativeness.png").stat().st_size > 1000
    assert "| 1 | a" in (out / "informativeness.md").read_text()  # a subset with a ranks first
    results = {tuple(r["keys"]): r for r in json.loads((out / "informativeness.json").read_text())}
    assert len(results) == 7  # every non-empty subset of {a, c, shuffled}
    for keys, result in results.items():
        if "a" in keys:  # the return depends on a, which the history never shows
            assert result["hsic_p"] < 0.05 and result["gain"] > 0, keys
        else:
            assert result["hsic_p"] >= 0.05, keys
    # c drives the return too, but the history shows it: the critic that sees it gains nothing
    assert results[("c",)]["gain"] < 0.1 * results[("a",)]["gain"]
    assert results[("shuffled",)]["gain_p"] >= 0.05


def test_pretrain_keeps_a_checkpoint_series_that_the_probe_reads(tmp_path) -> None:
    settings = [
        "algorithms=[aawr,awr]", "num_demos=8", "offline_updates=6", "eval_every=3", "eval_episodes=4",
        "test_episodes=4", "keep_checkpoints=true", f"out_dir={tmp_path}", "learner.batch_size=4",
    ]  # fmt: skip
    _, run_dir = run(load_config(PretrainConfig, PRESETS / "tmaze.yaml", settings))
    series = checkpoint_series(run_dir, "aawr-seed0")
    assert [p.name for p in series] == ["updates-0000000", "updates-0000003", "updates-0000006"]
    assert checkpoint_series(run_dir, "bc-seed0") == []  # no such run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "diagnostics.cli", "probe", f"run={run_dir}", "targets=[belief,position]",
        "source=scripted", "episodes=12", "mine.steps=50", "mine.batch_size=64",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    points = json.loads((run_dir / "diagnostics" / "probe.json").read_text())
    for name in ("aawr-seed0", "awr-seed0"):
        for target in ("belief", "position"):
            mine = [p for p in points if p["run"] == name and p["target"] == target]
            assert [p["updates"] for p in mine] == [0, 3, 6]
            assert all(math.isfinite(p["estimate"]["validation"]) for p in mine)
    assert (run_dir / "diagnostics" / "probe.png").stat().st_size > 1000
    assert "| aawr-seed0 | 6 | belief |" in (run_dir / "diagnostics" / "probe.md").read_text()
    bad = subprocess.run(
        [*command[:4], f"run={run_dir}", "targets=[no_such_key]"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "no_such_key" in bad.stderr and "belief" in bad.stderr


def test_dispatcher_lists_commands_and_names_a_missing_one(monkeypatch, capsys) -> None:
    assert cli.main([]) == 2
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command 'no-such-command'" in capsys.readouterr().err
    monkeypatch.setitem(cli.COMMANDS, "absent", "a command whose module is not installed")
    assert cli.main(["absent"]) == 2
    assert "module diagnostics.absent" in capsys.readouterr().err
    help_text = subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", "probe", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert (
        help_text.returncode == 0
        and "mine.ma_rate" in help_text.stdout
        and "validation_fraction" in help_text.stdout
    )
    assert cli.main(["probe", "targets=[belief]"]) == 2  # no run folder
    assert "run= is required" in capsys.readouterr().err
