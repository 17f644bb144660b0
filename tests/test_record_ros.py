"""aps-record live over ROS 2 (tier c): the record graph (sim robot in lockstep + robot interface, by
aps-launch) driven from the keyboard through a pseudo-terminal; episodes ended by a key and by the
sim, one discarded and re-recorded on a new scene, every frame at its own stamp."""

from __future__ import annotations

import os
import subprocess

import numpy as np

from policies.episodes import EpisodeDataset
from tests.ros_graph_helpers import VENV_BIN, stop, write_params
from tests.test_record_keys import LEFT, RIGHT, Terminal

STEPS = 60


def test_keys_drive_the_sim_robot_graph_and_its_streams_are_recorded(tmp_path) -> None:
    params = write_params(
        tmp_path / "record.yaml",
        {
            "sim_robot": {"task": "search-pick", "env": {"image_size": 32, "max_episode_steps": STEPS},
                          "lockstep": True, "seeds": [3_000_000]},
            "robot_interface": {"output": "twist", "control_hz": 10.0,
                                "workspace": {"low": [0.15, -0.4, -0.035], "high": [0.55, 0.4, 0.4]}},
        },
    )  # fmt: skip
    with open(tmp_path / "graph.log", "w") as log:
        graph = subprocess.Popen(
            [str(VENV_BIN / "aps-launch"), "record", f"params_file:={params}"],
            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
        )  # fmt: skip
    dataset = tmp_path / "demos"
    terminal = Terminal([
        "mode=ros", f"dataset={dataset}", "session.num_episodes=2", "session.reset_time_s=60",
        "ros.startup_timeout=60", "min_free_space_mb=1",
    ])  # fmt: skip
    try:
        terminal.expect("RECORDING   episode 1 of 2", timeout=90)
        terminal.type(b"w")
        terminal.expect("steps 3")
        terminal.type(RIGHT)
        terminal.expect("MARK IT")
        terminal.type(b"s")
        terminal.expect("saved episode_000000.h5 as success")
        terminal.type(RIGHT)
        terminal.expect("RECORDING   episode 2 of 2")
        terminal.expect("steps 2")
        terminal.type(LEFT)
        terminal.expect("episode 2 discarded: re-recording it")
        terminal.type(RIGHT)
        terminal.expect("RECORDING   episode 2 of 2")
        terminal.expect("ended by the sim (sensors say: failure)", timeout=60)  # its step limit
        terminal.type(b"\r")  # Enter: the sim's call
        assert terminal.wait() == 0, terminal.screen[-2000:]
        assert "done: 2 episodes saved (1 successes), 1 discarded" in terminal.screen
    finally:
        terminal.close()
        stop(graph)
    first, second = EpisodeDataset(dataset).load_all()
    assert first.attrs["success"] and first.terminated[-1] and first.reward[-1] == 1.0
    assert np.any(first.action[:, 0] > 0) and np.all(first.action[:, 1:4] == 0)  # w: +x only
    assert not second.attrs["success"] and second.truncated[-1] and len(second) == STEPS
    assert first.attrs["teleop"] == second.attrs["teleop"] == "keyboard" and first.attrs["source"] == "demo"
    # each episode began with the sim robot's reset: three scenes for two episodes and a discarded one
    assert second.attrs["seed"] == first.attrs["seed"] + 2
    for episode in (first, second):  # lockstep sim time: one frame a step, each at its own stamp
        np.testing.assert_allclose(np.diff(episode.timestamp), 0.1, atol=1e-6)
        sync = episode.attrs["recorder"]["sync"]
        assert sync["dropped_steps"] == 0 and sync["skipped"] == 0
        assert all(s["out_of_tolerance"] == 0 and s["repeated"] == 0 for s in sync["streams"].values())
