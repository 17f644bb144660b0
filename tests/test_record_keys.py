"""aps-record's keys and session: keys decoded from terminal bytes, the recording driven through a
pseudo-terminal (end, mark, discard and re-record, delete the last episode, stop), the scripted
expert labelled by the sim, the time limit, and clear errors before anything is recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from policies.episodes import EpisodeDataset
from robot_nodes.record_cli import RecordConfig, SimBackend
from robot_nodes.record_session import RecordSession, SessionConfig
from robot_nodes.teleop import decode_keys
from sim.seeds import demo_seed
from tests.pty_terminal import ESC, LEFT, RIGHT
from tests.pty_terminal import Terminal as PtyTerminal

APS_RECORD = str(Path(sys.executable).parent / "aps-record")
SMALL = ["task=search-pick", "env.image_size=32"]


def test_terminal_bytes_decode_to_keys() -> None:
    assert decode_keys("\x1b[C\x1b[Dw \r") == (["right", "left", "w", "space", "enter"], "")
    assert decode_keys("\x1bOA\x1b[B") == (["up", "down"], "")  # application cursor mode too
    assert decode_keys("a\x1b") == (["a"], "\x1b")  # a lone Esc may start an arrow: kept for later
    assert decode_keys("\x1b[") == ([], "\x1b[")
    assert decode_keys("\x1b[15~x") == (["x"], "")  # F5 and the like are skipped whole
    assert decode_keys("\x03") == (["ctrl-c"], "")


class Terminal(PtyTerminal):
    """aps-record on a pseudo-terminal."""

    def __init__(self, args: list[str]) -> None:
        super().__init__([APS_RECORD, *args])


def test_keys_through_a_pty_end_mark_rerecord_delete_and_stop(tmp_path) -> None:
    dataset = tmp_path / "demos"
    terminal = Terminal([
        *SMALL, f"dataset={dataset}", "session.num_episodes=5", "session.reset_time_s=60",
        "env.terminate_on_success=false", "env.max_episode_steps=1000",
    ])  # fmt: skip
    try:
        terminal.expect("RECORDING   episode 1 of 5")
        terminal.type(b"w")  # teleop: +x, held for key_hold
        terminal.expect("steps 3")
        terminal.type(RIGHT)
        terminal.expect("MARK IT")
        terminal.type(b"s")
        terminal.expect("saved episode_000000.h5 as success")
        terminal.expect("RESET THE SCENE")
        terminal.type(RIGHT)  # start the next one now
        terminal.expect("RECORDING   episode 2 of 5")
        terminal.type(LEFT)  # discard it: reset, then the same episode again
        terminal.expect("episode 2 discarded: re-recording it")
        terminal.expect("RESET THE SCENE")
        terminal.type(b"n")
        terminal.expect("RECORDING   episode 2 of 5")
        terminal.expect("steps 2")
        terminal.type(b"n")
        terminal.expect("MARK IT")
        terminal.type(b"f")
        terminal.expect("saved episode_000001.h5 as failure")
        terminal.expect("RESET THE SCENE")
        terminal.type(LEFT)  # in the reset phase: delete the episode just saved, record it again
        terminal.expect("deleted episode_000001.h5: re-recording episode 2")
        terminal.type(RIGHT)
        terminal.expect("RECORDING   episode 2 of 5")
        terminal.expect("steps 2")
        terminal.type(ESC)  # stop: the episode in progress is saved (the sim saw no success)
        assert terminal.wait() == 0, terminal.screen[-1500:]
        assert "stopped: 2 episodes saved (1 successes), 2 discarded" in terminal.screen
    finally:
        terminal.close()
    files = EpisodeDataset(dataset).files()
    assert [f.path.name for f in files] == ["episode_000000.h5", "episode_000001.h5"]
    first, second = (f.load() for f in files)
    assert first.attrs["success"] is True and second.attrs["success"] is False
    assert first.attrs["source"] == "demo" and first.attrs["teleop"] == "keyboard"
    # the discarded and the deleted recordings of episode 2 were re-recorded on the same scene
    assert [first.attrs["seed"], second.attrs["seed"]] == [demo_seed(0, 0), demo_seed(0, 1)]
    assert np.any(first.action[:, 0] > 0) and np.all(first.action[:, 1:4] == 0)  # w moved along +x only
    # ended by a key: a success ends terminal, a failure truncated, on the last step only
    assert first.terminated[-1] and not first.truncated.any() and not first.terminated[:-1].any()
    assert second.truncated[-1] and not second.terminated.any() and not second.truncated[:-1].any()
    assert EpisodeDataset(dataset).read_manifest()["episodes"] == 2
    assert sorted(p.name for p in dataset.iterdir()) == [
        "episode_000000.h5",
        "episode_000001.h5",
        "manifest.json",
    ]


def test_the_scripted_expert_runs_without_a_terminal_and_the_sim_labels_it(tmp_path) -> None:
    dataset = tmp_path / "scripted"
    result = subprocess.run(
        [APS_RECORD, *SMALL, "source=scripted", "realtime=false", "session.auto_mark=true",
         "session.reset_time_s=0", "session.num_episodes=3", f"dataset={dataset}",
         "env.max_episode_steps=40"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    episodes = EpisodeDataset(dataset).load_all()
    assert len(episodes) == 3
    for episode in episodes:
        assert episode.attrs["source"] == "scripted"
        # labelled by the sim: search-pick ends at its first success, with the sim's reward
        assert episode.terminated[-1] == episode.attrs["success"] == (episode.reward[-1] == 1.0)
        assert episode.terminated[-1] or episode.truncated[-1]
    assert any(e.success for e in episodes)  # the expert is good at this task


def test_the_time_limit_ends_an_episode_into_marking(tmp_path) -> None:
    config = RecordConfig(
        dataset=str(tmp_path / "d"), source="scripted", realtime=False,
        session=SessionConfig(num_episodes=1, episode_time_s=5.0),
    )  # fmt: skip
    backend = SimBackend(config)
    try:
        session = RecordSession(config.session, backend, now=0.0)
        for _ in range(3):
            backend.poll(0.0)
        session.tick(4.9)
        assert session.phase == "recording"
        session.tick(5.0)
        assert session.phase == "marking" and "reached 5 s" in session.message
        session.key("enter", 5.1)  # takes the sim's call
        assert session.phase == "done" and session.saved == 1
    finally:
        backend.close()
    assert len(EpisodeDataset(tmp_path / "d")) == 1


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("dataset={file}/demos", "cannot write episodes into"),
        ("min_free_space_mb=1e12", "MB free, below min_free_space_mb"),
    ],
)
def test_an_unwritable_or_full_dataset_folder_is_refused_before_recording(tmp_path, setting, message) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    overrides = [*SMALL, f"dataset={tmp_path / 'ok'}", setting.format(file=blocker)]
    result = subprocess.run([APS_RECORD, *overrides], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_joystick_and_leader_arm_teleop_map_to_the_tasks_action() -> None:
    from robot_nodes.teleop import ActionLayout, JoyConfig, JoyTeleop, LeaderArmTeleop, LeaderConfig
    from sim.base import EE_STEP
    from sim.scene import ARM_JOINTS, FINGER_OPEN, ik

    layout = ActionLayout(("x", "y", "z", "yaw"), gripper=True)
    joy = JoyTeleop(layout, JoyConfig(signs=[1.0, -1.0, 1.0, 1.0], deadzone=0.1))
    # spacenav: axes [x, y, z, roll, pitch, yaw], buttons [left, right]; small deflections are zero
    action = joy.action([0.5, 0.5, 0.05, 0.9, 0.9, -2.0], [1, 0])
    np.testing.assert_allclose(action, [0.5, -0.5, 0.0, -1.0, 1.0])  # clipped; left button closes
    assert joy.action([0.0] * 6, [0, 0])[-1] == -1.0

    leader = LeaderArmTeleop(layout, LeaderConfig(gripper_joint="finger_left"), "", list(ARM_JOINTS))
    home = ik(np.array([0.36, 0.0, 0.28]), -np.pi / 2, 0.0).qpos
    same = leader.action({**dict(zip(ARM_JOINTS, home, strict=True)), "finger_left": FINGER_OPEN}, home)
    np.testing.assert_allclose(same[:4], 0.0, atol=1e-6)
    assert same[-1] == -1.0  # the leader's gripper is open
    ahead = ik(np.array([0.36 + EE_STEP / 2, 0.0, 0.28]), -np.pi / 2, 0.0).qpos  # half a step further out
    moved = leader.action({**dict(zip(ARM_JOINTS, ahead, strict=True)), "finger_left": 0.0}, home)
    np.testing.assert_allclose(moved[:4], [0.5, 0.0, 0.0, 0.0], atol=1e-3)
    assert moved[-1] == 1.0  # closed below close_below
    with pytest.raises(ValueError, match="lack"):
        leader.action({"shoulder": 0.0}, home)
