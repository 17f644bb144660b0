"""Shared pieces of the graph tests: a tiny trained checkpoint, node processes, a probe node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from apsconfig import load_config
from sim.pretrain import PRESETS, PretrainConfig, run

VENV_BIN = Path(sys.executable).parent


def train_tiny_policy(
    out_dir: Path, task: str = "search-pick", steps: int = 20
) -> tuple[Path, PretrainConfig]:
    """aps-pretrain's quick preset cut to a few updates: 32x32 images, short episodes."""
    settings = [
        f"task={task}", "algorithms=[aawr]", "num_demos=4", "offline_updates=8", "eval_episodes=2",
        "eval_every=1000", "env.image_size=32", f"env.max_episode_steps={steps}", "num_workers=0",
        "num_envs=2",
        "learner.batch_size=2", "learner.seq_len=4", "learner.burn_in=2", f"out_dir={out_dir}",
    ]  # fmt: skip
    cfg = load_config(PretrainConfig, PRESETS / "quick.yaml", settings)
    results, _ = run(cfg)
    return Path(results[0].checkpoint), cfg


def write_params(path: Path, sections: dict) -> Path:
    path.write_text(yaml.safe_dump({name: {"ros__parameters": values} for name, values in sections.items()}))
    return path


def start(executable: str, *args: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [str(VENV_BIN / executable), *args], stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy()
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spin_until(node, condition: Callable[[], bool], timeout: float) -> bool:
    import rclpy

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return condition()
