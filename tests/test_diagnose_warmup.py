"""aps-diagnose warmup: its report on fresh cores and on a run's checkpoints, its help and its errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import sim
from apsconfig import load_config, save_config
from diagnostics.warmup import main
from policies.checkpoint import save_checkpoint
from policies.learner import Learner
from policies.networks import ObsSpec
from sim.pretrain import PRESETS, PretrainConfig

SMALL = ["demos=3", "windows=6", "steps=3", "settle=200"]


def test_report_on_fresh_cores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preset=tmaze", "cores=[gru,bmru]", *SMALL, f"out={tmp_path}"]) == 0
    rows = json.loads((tmp_path / "warmup.json").read_text())
    assert [(r["source"], r["network"]) for r in rows] == [
        ("fresh gru", "actor"), ("fresh gru", "critic"), ("fresh bmru", "actor"), ("fresh bmru", "critic"),
    ]  # fmt: skip
    for row in rows:
        assert 1 / 6 - 1e-9 <= row["result"]["vaa_before"] <= 1.0
        assert 1 / 6 - 1e-9 <= row["result"]["vaa_after"] <= 1.0
        assert len(row["result"]["vaa_star"]) == 3
    report = (tmp_path / "warmup.md").read_text()
    assert "| fresh bmru | critic | bmru |" in report
    assert (tmp_path / "warmup.png").read_bytes()[:4] == b"\x89PNG"
    assert "warmup.md" in capsys.readouterr().out


def test_report_on_a_runs_checkpoints_goes_into_the_run(tmp_path: Path) -> None:
    """A run folder as aps-pretrain leaves it: its config.yaml and two BC checkpoints."""
    job = load_config(PretrainConfig, PRESETS / "tmaze.yaml", ["algorithms=[bc]"])
    save_config(job, tmp_path / "config.yaml")
    demos = sim.collect_demos("tmaze", 1, seed=0, task_config=job.env)
    learner = Learner(ObsSpec.from_episode(demos[0]), dataclasses.replace(job.learner, algorithm="bc"))
    for name in ("bc-seed0", "bc-seed0-best"):
        save_checkpoint(learner, tmp_path / "checkpoints" / name, "tmaze", 1)
    assert main([f"run={tmp_path}", *SMALL]) == 0
    rows = json.loads((tmp_path / "diagnostics" / "warmup.json").read_text())
    assert [(r["source"], r["network"]) for r in rows] == [("bc-seed0", "actor"), ("bc-seed0-best", "actor")]


def test_help_lists_the_settings_and_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as help_exit:
        main(["--help"])
    assert help_exit.value.code == 0
    assert "windows (int, default 32)" in capsys.readouterr().out
    assert main(["run=/nonexistent", "cores=[gru]"]) == 2
    assert main(["preset=nope"]) == 2
    assert main(["window=3"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("aps-diagnose warmup: ") for line in errors)
