"""The episode recorder's core (no ROS): synchronisation and its counts, rewards equal to the sim's,
episode control (end, discard, device lost, late steps), storage checks before recording."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sim
from apsconfig import ConfigError, load_config
from policies.episodes import EpisodeDataset, load_episode
from robot_nodes.messages import outcome_vectors
from robot_nodes.recorder_core import NS, RecorderConfig, RecorderCore, RecorderError
from robot_nodes.sim_robot_core import SimRobotConfig, SimRobotCore
from sim.config import DemoConfig, TaskConfig
from sim.rewards import RewardUnavailable, privileged_reward

MS = 1_000_000
PERIOD = 100 * MS  # 10 Hz
BASE = 1_700_000_000 * NS  # a ROS-time-like epoch


def config(tmp_path: Path, **changes) -> RecorderConfig:
    values = {
        "dataset": str(tmp_path / "data"),
        "task": "unit",
        "reward": "label",
        "onboard_streams": ["camera", "joint_states"],
        "privileged_streams": ["privileged_state"],
        "min_free_space_mb": 1.0,
        **changes,
    }
    return load_config(RecorderConfig, values)


def frame(value: int) -> np.ndarray:
    """A small image that records which frame it is."""
    return np.full((4, 6, 3), value % 256, np.uint8)


def test_the_core_imports_no_rclpy() -> None:
    code = "import sys, robot_nodes.recorder_core; print('rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- synchronisation ----------------------------------------------------------------------------------


def test_steps_take_the_nearest_frames_and_count_what_falls_outside_the_tolerance(tmp_path) -> None:
    """A 30 Hz camera with jitter, joints at 100 Hz, a privileged tracker at 30 Hz that misses a
    stretch, actions at 10 Hz stamped with the camera frame they came from, arriving in any order."""
    core = RecorderCore(config(tmp_path, sync_tolerance=0.01))
    rng = np.random.default_rng(0)
    camera = [BASE + i * 33_333_333 + int(rng.integers(-2, 3)) * MS for i in range(64)]
    joints = [BASE + i * 10 * MS for i in range(220)]
    tracker = [stamp + 4 * MS for i, stamp in enumerate(camera) if not 30 <= i < 39]  # ~300 ms gap
    actions = camera[:61:3]  # 21 actions, every third camera frame: 10 Hz
    del actions[12]  # the policy missed a step
    messages = (
        [(s, "camera", {"camera": frame(i)}) for i, s in enumerate(camera)]
        + [(s, "joint_states", {"joints": np.full(6, i, np.float32)}) for i, s in enumerate(joints)]
        + [(s, "privileged_state", {"pos": np.full(3, s / NS, np.float64)}) for s in tracker]
        + [(s + 15 * MS, "action", {"action": np.full(2, i / 30, np.float32)}) for i, s in enumerate(actions)]
    )  # actions arrive 15 ms after their frames: the order of arrival is not the order of stamps
    messages.sort(key=lambda m: m[0])
    core.start(actions[0])
    for arrival, stream, arrays in messages:
        stamp = arrival - 15 * MS if stream == "action" else arrival
        core.add(stream, stamp, arrays)
    core.add("camera", camera[10], {"camera": frame(99)})  # an old frame: out of order, ignored
    core.end(actions[-1], success=True)
    (record,) = core.drain_records()
    assert record.status == "complete" and record.steps == len(actions) - 1
    episode = load_episode(record.path)
    # each observation is the camera frame the action was stamped with
    expected = [camera.index(stamp) for stamp in actions]
    assert [int(image[0, 0, 0]) for image in episode.onboard["camera"]] == expected
    np.testing.assert_allclose(episode.timestamp, (np.array(actions) - actions[0]) / NS)
    np.testing.assert_array_equal(
        episode.onboard["joints"][:, 0], [round((s - BASE) / (10 * MS)) for s in actions]
    )
    sync = record.sync
    assert sync.dropped_steps == 1 and sync.skipped == 0
    assert sync.streams["camera"].out_of_order == 1
    assert sync.streams["camera"].out_of_tolerance == 0 and sync.streams["joint_states"].out_of_tolerance == 0
    # the tracker's gap: the steps inside it took a frame > 10 ms away (the same one, repeated)
    in_gap = [s for s in actions if min(abs(t - s) for t in tracker) > 10 * MS]
    assert len(in_gap) >= 2 and sync.streams["privileged_state"].out_of_tolerance == len(in_gap)
    assert sync.streams["privileged_state"].repeated >= 1
    attrs = episode.attrs["recorder"]["sync"]
    assert attrs["streams"]["privileged_state"]["out_of_tolerance"] == len(in_gap)
    assert attrs["dropped_steps"] == 1


def test_steps_faster_than_the_control_rate_are_skipped_and_duplicates_ignored(tmp_path) -> None:
    core = RecorderCore(config(tmp_path))
    core.start(BASE)
    for i in range(13):  # a teleop at 30 Hz: two of every three are too soon for a 10 Hz step
        stamp = BASE + i * 33_333_334
        feed(core, stamp, i)
        core.add("camera", stamp, {"camera": frame(200)})  # the same stamp again: a duplicate
        core.add("action", stamp, {"action": np.array([0.1, 2.0], np.float32)})  # outside [-1, 1]
    core.end(success=False)  # the last observation: a control period after the last step
    for i in (13, 14, 15):
        assert core.recording
        feed(core, BASE + i * 33_333_334, i)
    (record,) = core.drain_records()
    episode = load_episode(record.path)
    assert len(episode) == 5 and record.sync.skipped == 8 and record.sync.steps == 5
    assert record.sync.streams["camera"].duplicates == 13
    assert record.sync.clipped_actions == 5 and np.all(episode.action[:, 1] == 1.0)
    assert [int(v) for v in episode.onboard["camera"][:, 0, 0, 0]] == [0, 3, 6, 9, 12, 15]
    assert episode.truncated[-1] and not episode.terminated[-1] and not episode.success


def feed(core: RecorderCore, stamp: int, value: int, privileged: dict | None = None) -> None:
    core.add("camera", stamp, {"camera": frame(value)})
    core.add("joint_states", stamp, {"joints": np.zeros(6, np.float32)})
    core.add("privileged_state", stamp, privileged or {"pos": np.full(3, value, np.float32)})


def run_steps(
    core: RecorderCore, first: int, steps: int, start: int = BASE, version: int | None = None
) -> list[int]:
    """Frames and an action (from policy `version`) at each of `steps` control steps; returns their stamps."""
    stamps = [start + (first + k) * PERIOD for k in range(steps)]
    for k, stamp in enumerate(stamps):
        feed(core, stamp, first + k)
        core.add("action", stamp, {"action": np.array([0.5, -0.5], np.float32)}, policy_version=version)
    return stamps


# --- rewards equal to the sim's ---------------------------------------------------------------------


class SimFeeder:
    """Steps a sim env and hands its observations and actions to a recorder core as the sim robot
    and the policy publish them (one stream per camera, joints, privileged state, the action)."""

    def __init__(
        self, task: str, env_config: TaskConfig, tmp_path: Path, demo: DemoConfig | None = None, **changes
    ) -> None:
        self.env = sim.make(task, env_config)
        spaces = self.env.observation_space["onboard"].spaces
        self.cameras = [k for k, s in spaces.items() if len(s.shape) == 3]
        vectors = [k for k in spaces if k not in self.cameras]
        streams = [f"{cam}/color/image_raw" for cam in self.cameras] + ["onboard_vectors"] * bool(vectors)
        self.core = RecorderCore(
            config(tmp_path, task=task, onboard_streams=streams, source="scripted", **changes)
        )
        self.demo = sim.make_demonstrator(self.env, demo or DemoConfig(action_noise=0.3), seed=1)

    def publish(self, obs: dict, stamp: int, extra: dict | None = None) -> None:
        for cam in self.cameras:
            self.core.add(f"{cam}/color/image_raw", stamp, {cam: obs["onboard"][cam]})
        vectors = {k: v for k, v in obs["onboard"].items() if k not in self.cameras}
        if vectors:
            self.core.add("onboard_vectors", stamp, vectors)
        self.core.add("privileged_state", stamp, {**obs["privileged"], **(extra or {})})

    def episode(self, seed: int, start: int, stream_outcome: bool = False) -> dict:
        obs, _ = self.env.reset(seed=seed)
        self.demo.reset()
        self.core.start(start, seed=seed)
        self.publish(obs, start, outcome_vectors(0.0, False) if stream_outcome else None)
        trace = {"observations": [obs], "actions": [], "rewards": [], "terminated": [], "truncated": []}
        stamp, done, info = start, False, {}
        while not done:
            action = self.demo.act(obs)
            self.core.add("action", stamp, {"action": action})
            obs, reward, terminated, truncated, info = self.env.step(action)
            stamp += PERIOD
            outcome = outcome_vectors(reward, info["success"])
            self.publish(obs, stamp, outcome if stream_outcome else None)
            for name, value in zip(
                ("actions", "rewards", "terminated", "truncated"),
                (action, reward, terminated, truncated),
                strict=True,
            ):
                trace[name].append(value)
            trace["observations"].append(obs)
            done = terminated or truncated
        self.core.end(stamp, success=info["success"], truncated=truncated)
        (record,) = self.core.drain_records()
        trace["record"], trace["success"] = record, info["success"]
        return trace


def assert_recorded_as_simulated(trace: dict) -> None:
    record = trace["record"]
    assert record.status == "complete"
    episode = load_episode(record.path)
    np.testing.assert_array_equal(episode.reward, np.asarray(trace["rewards"], np.float32))
    np.testing.assert_array_equal(episode.terminated, trace["terminated"])
    np.testing.assert_array_equal(episode.truncated, trace["truncated"])
    np.testing.assert_array_equal(episode.action, np.asarray(trace["actions"], np.float32))
    assert episode.success == trace["success"] and record.success == trace["success"]
    for part in ("onboard", "privileged"):
        for key, values in getattr(episode, part).items():  # full-size images and vectors, step by step
            np.testing.assert_array_equal(values, [o[part][key] for o in trace["observations"]])
    assert set(episode.privileged) == set(trace["observations"][0]["privileged"])
    assert record.sync.out_of_tolerance == 0 and record.sync.repeated == 0 and record.sync.dropped_steps == 0


@pytest.mark.parametrize("reward_type", ["dense", "sparse"])
def test_shelf_search_rewards_from_privileged_data_equal_the_sims(tmp_path, reward_type) -> None:
    env_config = TaskConfig(image_size=32, max_episode_steps=30, reward=reward_type)
    feeder = SimFeeder("shelf-search", env_config, tmp_path, reward="task", reward_type=reward_type)
    traces = [feeder.episode(seed, BASE + seed * 100 * NS) for seed in range(3)]
    for trace in traces:
        assert_recorded_as_simulated(trace)
    rewards = np.concatenate([t["rewards"] for t in traces])
    assert np.unique(rewards).size > (2 if reward_type == "dense" else 1)  # the reward was not constant
    assert len(EpisodeDataset(tmp_path / "data")) == 3


def test_tmaze_rewards_from_privileged_data_equal_the_sims(tmp_path) -> None:
    env_config = TaskConfig(max_episode_steps=16, reward="dense")
    demo = DemoConfig(wrong_direction_prob=0.5)
    feeder = SimFeeder("tmaze", env_config, tmp_path, demo, reward="task", reward_type="dense")
    traces = [feeder.episode(seed, BASE + seed * 100 * NS) for seed in range(6)]
    for trace in traces:
        assert_recorded_as_simulated(trace)
    assert {t["success"] for t in traces} == {True, False}  # guesses turn the wrong way at times


def test_pick_rewards_from_the_success_label_or_the_sims_stream_equal_the_sims(tmp_path) -> None:
    """search-pick (sparse, ends at the first success) with reward=label; blind-pick (dense) with
    the sim's own reward beside the privileged state."""
    with pytest.raises(RecorderError, match="finger contacts"):
        RecorderCore(config(tmp_path, task="search-pick", reward="task"))
    env_config = TaskConfig(image_size=32, max_episode_steps=40)
    feeder = SimFeeder("search-pick", env_config, tmp_path / "label", reward="label")
    traces = [feeder.episode(seed, BASE + seed * 100 * NS) for seed in range(2)]
    for trace in traces:
        assert_recorded_as_simulated(trace)
    assert any(t["success"] for t in traces)
    feeder = SimFeeder("blind-pick", TaskConfig(max_episode_steps=25), tmp_path / "stream", reward="stream")
    trace = feeder.episode(0, BASE, stream_outcome=True)
    assert_recorded_as_simulated(trace)
    assert np.unique(trace["rewards"]).size > 3  # dense


def test_the_sim_robot_gives_the_sims_outcome_beside_the_privileged_state() -> None:
    task_config = TaskConfig(max_episode_steps=12)
    robot = SimRobotCore(SimRobotConfig(task="blind-pick", command_input="action", env=task_config))
    env = sim.make("blind-pick", task_config)
    observation = robot.reset(3, BASE)
    env.reset(seed=3)
    assert (observation.reward, observation.success) == (0.0, False)
    rng, rewards, done = np.random.default_rng(0), [], False
    while not done:
        action = rng.uniform(-1, 1, 5).astype(np.float32)
        robot.on_arm_command(BASE, action)
        result = robot.step(BASE)
        _, reward, terminated, truncated, info = env.step(action)
        assert (result.observation.reward, result.observation.success) == (reward, info["success"])
        rewards.append(reward)
        done = terminated or truncated
    assert result.done and len(set(rewards)) > 3  # dense rewards, step by step


def test_privileged_reward_functions_name_their_keys() -> None:
    assert privileged_reward("shelf-search").keys == ("target_box_wrist",)
    assert set(privileged_reward("tmaze").keys) <= {"goal", "position"}
    with pytest.raises(RewardUnavailable, match="reward=label"):
        privileged_reward("my-real-task")


def test_a_missing_privileged_reward_key_is_a_clear_error(tmp_path) -> None:
    core = RecorderCore(config(tmp_path, task="shelf-search", reward="task"))
    core.start(BASE)
    with pytest.raises(
        RecorderError, match=r"needs privileged key\(s\) \['target_box_wrist'\].*reward=label"
    ):
        run_steps(core, 0, 1)
    assert not core.recording and not list((tmp_path / "data").iterdir())


# --- episode control -----------------------------------------------------------------------------------


def test_events_and_episodes_in_sequence(tmp_path) -> None:
    core = RecorderCore(config(tmp_path, robot="so101"))
    for index in range(3):
        start = BASE + index * 10 * NS
        event = core.start(start, seed=40 + index, attrs={"operator": f"op{index}"})
        assert (event.kind, event.episode, event.seed, event.stamp_ns) == ("start", index, 40 + index, start)
        stamps = run_steps(core, 0, 5, start)
        core.end(stamps[-1], success=index != 1)
    events = core.drain_events()
    assert [e.kind for e in events] == ["start", "end"] * 3
    ends = events[1::2]
    assert [e.success for e in ends] == [True, False, True] and all(e.steps == 4 for e in ends)
    assert [e.truncated for e in ends] == [False, True, False]
    episodes = EpisodeDataset(tmp_path / "data").load_all()
    assert [e.attrs["seed"] for e in episodes] == [40, 41, 42]
    assert [e.attrs["operator"] for e in episodes] == ["op0", "op1", "op2"]
    assert all("policy_version" not in e.attrs for e in episodes)  # no policy acted
    assert all(e.attrs["robot"] == "so101" and e.attrs["fps"] == 10.0 for e in episodes)
    # label: reward 1 at the last step of a success, terminated there; a failure is truncated
    np.testing.assert_array_equal(episodes[0].reward, [0, 0, 0, 1])
    assert episodes[0].terminated[-1] and not episodes[0].truncated.any()
    assert not episodes[1].reward.any() and episodes[1].truncated[-1] and not episodes[1].terminated.any()
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["episodes"] == 3 and manifest["successes"] == 2 and manifest["steps"] == 12


def test_discard_leaves_nothing(tmp_path) -> None:
    core = RecorderCore(config(tmp_path))
    core.start(BASE)
    stamps = run_steps(core, 0, 6)
    core.end(stamps[-1], success=True)
    kept = sorted((tmp_path / "data").iterdir())
    manifest = (tmp_path / "data" / "manifest.json").read_text()
    core.start(BASE + 10 * NS)
    run_steps(core, 0, 6, BASE + 10 * NS)
    assert any(p.name.startswith(".") for p in (tmp_path / "data").iterdir())  # being written
    core.discard()
    assert sorted((tmp_path / "data").iterdir()) == kept
    assert (tmp_path / "data" / "manifest.json").read_text() == manifest
    assert [r.status for r in core.drain_records()] == ["complete", "discarded"]
    assert core.drain_events()[-1].truncated
    with pytest.raises(RecorderError, match="nothing to discard"):
        core.discard()


def test_a_device_vanishing_mid_episode_closes_and_marks_the_episode(tmp_path) -> None:
    core = RecorderCore(config(tmp_path, stale_after=0.5))
    core.start(BASE)
    stamps = run_steps(core, 0, 8)
    core.poll(stamps[-1] + 400 * MS)  # not yet stale
    assert core.recording
    for k in range(8, 12):  # the camera is gone; the rest goes on
        stamp = BASE + k * PERIOD
        core.add("joint_states", stamp, {"joints": np.zeros(6, np.float32)})
        core.add("privileged_state", stamp, {"pos": np.zeros(3, np.float32)})
        core.add("action", stamp, {"action": np.zeros(2, np.float32)})
    core.poll(stamps[-1] + 600 * MS)
    assert not core.recording
    (record,) = core.drain_records()
    assert record.status == "interrupted" and "device lost: camera" in record.reason
    episode = load_episode(record.path)
    assert len(episode) == 7  # every step recorded before the camera vanished
    assert "camera" in episode.attrs["interrupted"] and episode.truncated[-1] and not episode.success
    assert core.drain_events()[-1].kind == "end"
    # a node that sees the device go (a camera driver's error) says so directly
    core.start(BASE + 10 * NS)
    run_steps(core, 0, 3, BASE + 10 * NS)
    core.device_lost("camera", "USB disconnect")
    (record,) = core.drain_records()
    assert record.status == "interrupted" and len(load_episode(record.path)) == 2
    assert load_episode(record.path).attrs["interrupted"] == "device lost: camera: USB disconnect"


def test_the_end_waits_for_the_last_frames_and_late_steps_go_to_the_next_episode(tmp_path) -> None:
    core = RecorderCore(config(tmp_path, stale_after=0.5))
    core.start(BASE)
    run_steps(core, 0, 5)
    end = BASE + 5 * PERIOD
    core.end(end, success=True)  # the end event came before the frames of the last observation
    assert core.recording
    core.start(BASE + 6 * PERIOD, seed=7)  # the next episode starts while this one closes
    feed(core, end, 5)
    assert [r.steps for r in core.drain_records()] == [5]
    run_steps(core, 6, 3)
    core.end(BASE + 8 * PERIOD, success=False)
    (second,) = core.drain_records()
    assert second.steps == 2 and load_episode(second.path).attrs["seed"] == 7
    # an action of the next episode, by newer policy weights, that comes before this episode's end event
    core.start(BASE + 20 * PERIOD)
    run_steps(core, 20, 5, version=3)  # the policy acted on the last observation too
    run_steps(core, 26, 1, version=4)  # the next episode's first step, recorded as a step of this one
    core.end(BASE + 24 * PERIOD, success=True, truncated=False)
    (third,) = core.drain_records()
    episode = load_episode(third.path)
    assert len(episode) == 4 and episode.terminated[-1] and episode.reward[-1] == 1.0
    assert [int(v) for v in episode.onboard["camera"][:, 0, 0, 0]] == [20, 21, 22, 23, 24]
    assert episode.attrs["policy_version"] == third.policy_version == 3  # not the next episode's 4
    core.start(BASE + 26 * PERIOD)  # its step is still there for it
    run_steps(core, 27, 1, version=4)
    core.end(BASE + 27 * PERIOD, success=False)
    (fourth,) = core.drain_records()
    episode = load_episode(fourth.path)
    assert [int(v) for v in episode.onboard["camera"][:, 0, 0, 0]] == [26, 27]
    assert episode.attrs["policy_version"] == fourth.policy_version == 4
    # an end whose frames never come closes after stale_after, with the nearest frames, keeping its label
    core.start(BASE + 40 * PERIOD)
    run_steps(core, 40, 3)
    core.end(BASE + 43 * PERIOD, success=True)
    core.poll(BASE + 43 * PERIOD + 600 * MS)
    (record,) = core.drain_records()
    assert record.status == "complete" and record.success and record.sync.out_of_tolerance == 3


def test_limits_and_success_end_episodes(tmp_path) -> None:
    core = RecorderCore(config(tmp_path, max_episode_steps=3))
    core.start(BASE)
    run_steps(core, 0, 6)
    (record,) = core.drain_records()
    assert record.steps == 3 and load_episode(record.path).truncated[-1]
    assert [e.kind for e in core.drain_events()] == ["start", "end"]
    # tmaze: the recorder ends the episode at the task's success, as the sim does
    core = RecorderCore(config(tmp_path / "t", task="tmaze", reward="task", end_on_success=True))
    core.start(BASE)
    positions = [0.0, 0.5, 1.0, 1.0]
    for k, position in enumerate(positions):
        stamp = BASE + k * PERIOD
        feed(core, stamp, k, {"goal": np.ones(1, np.float32), "position": np.array([position], np.float32)})
        core.add("action", stamp, {"action": np.array([1.0, 1.0], np.float32)})
    (record,) = core.drain_records()
    episode = load_episode(record.path)
    assert record.success and len(episode) == 3 and episode.terminated[-1]
    np.testing.assert_array_equal(episode.reward, [0, 0, 1])


# --- storage ---------------------------------------------------------------------------------------------


def test_an_unwritable_folder_or_a_full_disk_is_a_clear_error_before_recording(tmp_path) -> None:
    with pytest.raises(RecorderError, match="cannot write episodes into /proc/self/data"):
        RecorderCore(config(tmp_path, dataset="/proc/self/data"))  # not even root may write there
    with pytest.raises(RecorderError, match="MB free, below min_free_space_mb=1e\\+12"):
        RecorderCore(config(tmp_path, min_free_space_mb=1e12))
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").iterdir())
    core = RecorderCore(config(tmp_path))
    core.start(BASE)
    run_steps(core, 0, 4)
    core.config.min_free_space_mb = 1e12  # the disk fills up while recording
    core.poll(BASE + 4 * PERIOD)
    (record,) = core.drain_records()
    assert (
        record.status == "interrupted"
        and "disk space" in record.reason
        and len(load_episode(record.path)) == 3
    )
    with pytest.raises(RecorderError, match="MB free"):
        core.start(BASE + 10 * NS)


def test_bad_settings_and_messages_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="sync_tolerance must lie in"):
        config(tmp_path, sync_tolerance=0.06)
    with pytest.raises(ConfigError, match="dataset is not set"):
        load_config(RecorderConfig, {})
    with pytest.raises(ConfigError, match="named twice"):
        config(tmp_path, onboard_streams=["camera", "privileged_state"])
    core = RecorderCore(config(tmp_path))
    with pytest.raises(RecorderError, match="not a recorded stream"):
        core.add("cmera", BASE, {"camera": frame(0)})
    with pytest.raises(RecorderError, match="NaN"):
        core.add("action", BASE, {"action": np.array([np.nan, 0.0])})
    with pytest.raises(RecorderError, match="nothing to end"):
        core.end(BASE)
    core.start(BASE)
    with pytest.raises(RecorderError, match="end or discard it first"):
        core.start(BASE + PERIOD)


def test_a_step_that_cannot_be_written_closes_the_episode_with_the_steps_before_it(tmp_path) -> None:
    """A camera that changes its resolution mid-episode: the writer refuses the frame after the
    transition that led to it was written; that transition is undone and the episode kept, marked."""
    core = RecorderCore(config(tmp_path))
    core.start(BASE)
    run_steps(core, 0, 4)
    stamp = BASE + 4 * PERIOD
    core.add("camera", stamp, {"camera": np.zeros((8, 6, 3), np.uint8)})
    core.add("joint_states", stamp, {"joints": np.zeros(6, np.float32)})
    core.add("privileged_state", stamp, {"pos": np.zeros(3, np.float32)})
    core.add("action", stamp, {"action": np.zeros(2, np.float32)})
    (record,) = core.drain_records()
    assert record.status == "interrupted" and "writing step 4 failed" in record.reason
    episode = load_episode(record.path)
    assert len(episode) == 3 and episode.onboard["camera"].shape == (4, 4, 6, 3) and episode.truncated[-1]
