"""The pretraining job end to end: real sims, real files, real checkpoints; and a seeded learning test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sim
from apsconfig import load_config
from bench.behaviour import trace_checkpoint
from policies.checkpoint import CheckpointError, load_policy
from policies.episodes import EpisodeDataset
from sim.pretrain import PRESETS, PretrainConfig, RunResult, main, run


def tiny(task: str, tmp_path, *overrides: str) -> PretrainConfig:
    settings = [
        f"task={task}", "algorithms=[aawr,bc]", "num_demos=4", "offline_updates=6", "online_rounds=1",
        "updates_per_step=0.05", "num_envs=2", "num_workers=0", "eval_episodes=2", "eval_every=3",
        "test_episodes=3", "env.image_size=32", "env.max_episode_steps=12", f"out_dir={tmp_path}",
        "learner.batch_size=2", "learner.seq_len=4", "learner.burn_in=2", *overrides,
    ]  # fmt: skip
    return load_config(PretrainConfig, PRESETS / "quick.yaml", settings)


def test_job_writes_table_curves_and_loadable_checkpoints(tmp_path) -> None:
    results, run_dir = run(tiny("search-pick", tmp_path))
    assert {r.algorithm for r in results} == {"aawr", "bc"}
    table = (run_dir / "results.md").read_text()
    assert "| aawr |" in table and "| bc |" in table and "Wilson" in table
    assert (run_dir / "curves.png").stat().st_size > 1000
    assert len(list((run_dir / "demos" / "seed0").glob("episode_*.h5"))) == 4
    saved = [RunResult.from_dict(r) for r in json.loads((run_dir / "results.json").read_text())]
    assert saved == results
    for result in results:
        assert result.updates >= 6 and result.online_steps > 0 and result.test_episodes == 3
        # validation at 3 and 6 updates, then after the online round's updates (if any were earned)
        assert [p.updates for p in result.curve][:2] == [3, 6] and result.curve[-1].updates == result.updates
        assert result.checkpoint.endswith(f"{result.algorithm}-seed0")
        assert (run_dir / "tensorboard" / f"{result.algorithm}-seed0").is_dir()
        policy = load_policy(result.checkpoint, task="search-pick")
        env = sim.make("search-pick", load_config(PretrainConfig, run_dir / "config.yaml").env)
        obs, _ = env.reset(seed=0)
        policy.reset()
        action = policy.act(obs["onboard"])
        assert action.shape == env.action_space.shape and np.all(np.abs(action) <= 1.0)
        with pytest.raises(CheckpointError, match="not 'camouflage-pick'"):
            load_policy(result.checkpoint, task="camouflage-pick")
    # the behaviour bench replays a checkpoint with the settings it was trained with (12-step episodes)
    traces = trace_checkpoint(Path(results[0].checkpoint), episodes=2)
    assert len(traces) == 2 and all(1 <= len(t.grasp_xy) <= 12 for t in traces)
    assert all(abs(t.cube_xy[1]) > 0.15 for t in traces)  # search-pick's cube starts off to a side


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task=no-such-task"], "unknown task 'no-such-task'"),
        (["learner.beta=-1"], "beta must be > 0"),
        (["num_demos=many"], "expected an integer"),
        (["algorithms=[aawr,ppo]"], "not one of"),
        (["eval_every=0"], "eval_every must be >= 1"),
        (["seeds=[0,0]"], "must not repeat"),
        (["learner.target_tau=1.5"], "target_tau"),
    ],
)
def test_cli_rejects_bad_settings_with_exit_2(args: list[str], message: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("APS_NO_TCMALLOC", "1")
    assert main(["--preset", "quick", *args]) == 2
    assert message in capsys.readouterr().err


def test_cli_rejects_a_malformed_config_file(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("APS_NO_TCMALLOC", "1")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: search-pick\nlearner: {batch_size: 8\n")
    assert main(["--config", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_learners_solve_the_tmaze_better_than_their_demos(tmp_path) -> None:
    """Seeded T-maze: 70% of the demos skip the sign and guess (about 67% succeed). The recurrent
    learners must learn to step back, read, remember and turn right: well above the demos."""
    results, run_dir = run(load_config(PretrainConfig, PRESETS / "tmaze.yaml", [f"out_dir={tmp_path}"]))
    demos = EpisodeDataset(run_dir / "demos" / "seed0").load_all()
    demo_success = np.mean([d.success for d in demos])
    assert 0.55 <= demo_success <= 0.8
    success = {r.algorithm: r.test_success for r in results}
    for algorithm in ("aawr", "awr"):
        assert success[algorithm] >= max(0.9, demo_success + 0.2), success


def test_aawr_with_a_belief_critic_learns_to_look_sooner_than_awr(tmp_path) -> None:
    """Seeded T-maze race (two seeds, 1000 updates): 80% of the demos guess without looking. The
    AAWR critic sees the exact belief, the AWR critic must learn the memory from the onboard
    history. Measured: AAWR 78% (156/200), AWR 60% (119/200); over seeds 0-3 AAWR leads by 17 points."""
    results, _ = run(load_config(PretrainConfig, PRESETS / "tmaze-belief.yaml", [f"out_dir={tmp_path}"]))
    success = {
        algorithm: sum(r.test_successes for r in results if r.algorithm == algorithm)
        / sum(r.test_episodes for r in results if r.algorithm == algorithm)
        for algorithm in ("aawr", "awr")
    }
    assert success["aawr"] >= success["awr"] + 0.1, success


@pytest.mark.parametrize("preset", sorted(p.name for p in PRESETS.glob("*.yaml")))
def test_every_shipped_preset_loads(preset: str) -> None:
    cfg = load_config(PretrainConfig, PRESETS / preset)
    assert cfg.task in sim.TASK_NAMES and cfg.algorithms


def test_learning_benchmark_rows_and_their_table(tmp_path, capsys, monkeypatch) -> None:
    """Rows run one by one into JSON files (with the commit), then one table from the files."""
    from bench.learning import main as bench

    monkeypatch.setenv("APS_NO_TCMALLOC", "1")  # main() would re-launch this process with tcmalloc
    results = tmp_path / "results"
    common = ["--results", str(results), "--out", str(tmp_path / "runs"), "--preset", "quick"]
    tiny_settings = [
        "num_demos=3", "offline_updates=4", "eval_every=4", "eval_episodes=2", "test_episodes=4",
        "num_envs=2", "num_workers=0", "env.image_size=32", "env.max_episode_steps=8",
        "learner.batch_size=2", "learner.seq_len=4", "learner.burn_in=2",
    ]  # fmt: skip
    args = [
        "run",
        *common,
        "--variant",
        "tiny",
        "--task",
        "search-pick",
        "--algorithm",
        "bc",
        "--seed",
        "0",
        "1",
    ]
    assert bench([*args, "--", *tiny_settings]) == 0
    files = sorted((results / "quick-tiny" / "search-pick").glob("*.json"))
    assert [f.name for f in files] == ["bc-seed0.json", "bc-seed1.json"]
    rows = [json.loads(f.read_text()) for f in files]
    assert all(
        len(r["commit"]) >= 40 and r["test_episodes"] == 4 and r["overrides"] == tiny_settings for r in rows
    )
    assert bench([*args, "--missing", "--", *tiny_settings]) == 0  # nothing left to run
    assert [f.stat().st_mtime for f in files] == [f.stat().st_mtime for f in sorted(files)]
    capsys.readouterr()
    assert bench(["table", "--results", str(results)]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["rows"]
    rates = [r["test_success"] for r in rows]
    assert entry["seeds"] == [0, 1] and entry["iqm"] == pytest.approx(np.mean(rates), abs=1e-4)
    assert entry["iqm_ci95"][0] <= entry["iqm"] <= entry["iqm_ci95"][1]
    assert "| quick (tiny) | search-pick | bc | 2 |" in (results / "README.md").read_text()


def checkpoint_bytes(result: RunResult) -> bytes:
    return (Path(result.checkpoint) / "policy.safetensors").read_bytes()


def test_a_seeded_run_gives_the_same_numbers_twice(tmp_path) -> None:
    cfg = tiny("search-pick", tmp_path, "algorithms=[aawr]")
    (first,), _ = run(cfg)
    (second,), _ = run(cfg)
    assert (first.test_successes, first.curve, first.updates) == (
        second.test_successes,
        second.curve,
        second.updates,
    )
    assert checkpoint_bytes(first) == checkpoint_bytes(second)


def test_the_ray_sweep_gives_the_sequential_runs_results(tmp_path) -> None:
    """Each (algorithm, seed) as a Ray task on this machine: the same numbers and the same weights."""
    cfg = tiny("search-pick", tmp_path, "algorithms=[aawr,bc]", "seeds=[1]")
    sequential, _ = run(cfg)
    swept, sweep_dir = run(cfg, ray_address="local")
    for ours, theirs in zip(sequential, swept, strict=True):
        assert (ours.algorithm, ours.seed) == (theirs.algorithm, theirs.seed)
        assert (ours.test_successes, ours.curve, ours.updates) == (
            theirs.test_successes,
            theirs.curve,
            theirs.updates,
        )
        assert checkpoint_bytes(ours) == checkpoint_bytes(theirs)
        assert Path(theirs.checkpoint).is_relative_to(sweep_dir)
    assert (sweep_dir / "results.md").is_file() and any((sweep_dir / "tensorboard").iterdir())
