"""The sim tasks: spaces, determinism, the onboard/privileged split, bad input, IK, camera geometry."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import sim
from apsconfig import ConfigError, load_config
from sim.config import TaskConfig
from sim.scene import ik

ARM_TASKS = [t for t in sim.TASK_NAMES if t != "tmaze"]
SMALL = TaskConfig(image_size=32, max_episode_steps=6)
# What each task may show the policy; everything else must stay privileged.
ONBOARD_KEYS = {
    "fully-obs-pick": {"side", "joints"},
    "camouflage-pick": {"side", "wrist", "joints"},
    "search-pick": {"wrist", "joints"},
    "blind-pick": {"joints", "object_hint"},
    "shelf-search": {"wrist", "joints"},
    "tmaze": {"sensors"},
}


def random_episode(env: gym.Env, seed: int) -> list[dict]:
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    trace = [obs]
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
        trace.append({**obs, "reward": reward, "success": info["success"]})
        done = terminated or truncated
    return trace


@pytest.mark.parametrize("task", sim.TASK_NAMES)
def test_spaces_match_what_reset_and_step_return(task: str) -> None:
    env = sim.make(task, SMALL)
    assert env.task_name == task and env.max_episode_steps == 6 and env.control_hz > 0
    assert set(env.observation_space.spaces) == {"onboard", "privileged"}
    assert env.action_space.dtype == np.float32 and np.all(env.action_space.low == -1)
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs), task
    assert info == {"success": False}
    for _ in range(env.max_episode_steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs), task
        assert isinstance(reward, float) and isinstance(info["success"], bool)
        if terminated or truncated:
            break
    assert truncated or terminated, "episodes have a fixed maximum length"
    for key, space in env.observation_space["onboard"].spaces.items():
        if len(space.shape) == 3:
            assert space.shape == (32, 32, 3) and space.dtype == np.uint8, key
        else:
            assert len(space.shape) == 1 and space.dtype == np.float32, key
    env.close()


@pytest.mark.parametrize("task", sim.TASK_NAMES)
def test_no_privileged_key_appears_onboard(task: str) -> None:
    env = sim.make(task, SMALL)
    obs, _ = env.reset(seed=0)
    assert set(obs["onboard"]) == ONBOARD_KEYS[task]
    assert not set(obs["onboard"]) & set(obs["privileged"])
    env.close()


@pytest.mark.parametrize("task", ["search-pick", "camouflage-pick", "shelf-search", "tmaze"])
def test_same_seed_gives_the_same_episode(task: str) -> None:
    first, second = (random_episode(sim.make(task, SMALL), seed=5) for _ in range(2))
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        for part in ("onboard", "privileged"):
            for key in a[part]:
                np.testing.assert_array_equal(a[part][key], b[part][key], err_msg=f"{part}/{key}")
        assert a.get("reward") == b.get("reward")
    env = sim.make(task, SMALL)
    starts = [env.reset(seed=seed)[0]["privileged"] for seed in range(6, 10)]
    assert any(not np.array_equal(start[k], first[0]["privileged"][k]) for start in starts for k in start)


def test_registry_errors_and_gymnasium_ids() -> None:
    with pytest.raises(sim.UnknownTaskError, match="known tasks: fully-obs-pick, camouflage-pick") as err:
        sim.make("serch-pick")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    with pytest.raises(sim.UnknownTaskError):
        sim.collect_demos("nope", 1, 0)
    env = gym.make("aps/blind-pick-v0", config=SMALL)
    obs, _ = env.reset(seed=0)
    assert env.unwrapped.task_name == "blind-pick" and "object_hint" in obs["onboard"]
    with pytest.raises(ConfigError, match="action_mode"):
        load_config(TaskConfig, {"action_mode": "torque"})
    with pytest.raises(ConfigError, match="image_size"):
        load_config(TaskConfig, {}, ["image_size=4"])


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (np.zeros(4), r"shape \(5,\)"),
        (np.zeros((1, 5)), r"shape \(5,\)"),
        (np.array([0, 0, np.nan, 0, 0]), "NaN or inf"),
        (np.array([0, 0, 0, np.inf, 0]), "NaN or inf"),
        ("left", "not a numeric array"),
    ],
)
def test_bad_actions_get_a_clear_error_before_mujoco(action: object, message: str) -> None:
    env = sim.make("search-pick", SMALL)
    env.reset(seed=0)
    before = env.data.qpos.copy()
    with pytest.raises(ValueError, match=message):
        env.step(action)
    np.testing.assert_array_equal(env.data.qpos, before)  # nothing was simulated


def test_step_before_reset_and_clipping() -> None:
    env = sim.make("blind-pick", SMALL)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(5))
    env.reset(seed=0)
    env.step(np.array([50.0, 0, 0, 0, -1]))  # clipped to one full step
    np.testing.assert_allclose(env.ee_pos[0], env.home_pos[0] + 0.04)


@pytest.mark.parametrize("task", ARM_TASKS)
def test_every_arm_task_reaches_and_holds_its_home_pose(task: str) -> None:
    """Simulated with contacts (mj_step), not only kinematics: a self-collision would stop the arm."""
    env = sim.make(task, TaskConfig(image_size=32, max_episode_steps=30))
    idle = np.zeros(env.action_space.shape, np.float32)
    if env.has_gripper:
        idle[-1] = -1.0  # open, as at reset
    for seed in range(3):
        env.reset(seed=seed)
        np.testing.assert_allclose(env.grasp_point(), env.home_pos, atol=2e-3)
        for _ in range(20):
            env.step(idle)
            assert env.self_contacts() == 0
        np.testing.assert_allclose(env.grasp_point(), env.home_pos, atol=2e-3)
    env.close()


def test_ik_reaches_the_commanded_pose() -> None:
    env = sim.make("blind-pick", SMALL)
    site = env.model.site("grasp").id
    for pos, pitch, yaw in [((0.4, 0.1, 0.05), -np.pi / 2, 0.3), ((0.3, -0.25, 0.2), -np.pi / 2, -0.6)]:
        solution = ik(np.array(pos), pitch, yaw)
        assert solution.reachable
        env.data.qpos[:5] = solution.qpos
        mujoco.mj_kinematics(env.model, env.data)
        np.testing.assert_allclose(env.data.site_xpos[site], pos, atol=1e-6)
        rotation = env.data.site_xmat[site].reshape(3, 3)
        np.testing.assert_allclose(rotation[:, 2], [0, 0, -1], atol=1e-6)  # approach straight down
        finger_axis = np.arctan2(rotation[1, 1], rotation[0, 1])
        np.testing.assert_allclose(finger_axis, yaw + np.pi / 2, atol=1e-6)
    assert not ik(np.array([1.5, 0.0, 0.1]), -np.pi / 2).reachable


def wrist_view_with_and_without(env: gym.Env, remove: Callable[[], None]) -> tuple[np.ndarray, np.ndarray]:
    """The wrist image of the current state, then the same after `remove()` takes an object away."""
    size = env.config.image_size
    mujoco.mj_kinematics(env.model, env.data)
    present = env.render_camera("wrist", size)
    remove()
    mujoco.mj_kinematics(env.model, env.data)
    return present, env.render_camera("wrist", size)


def test_search_pick_starts_with_the_object_outside_the_wrist_view() -> None:
    env = sim.make("search-pick", TaskConfig(image_size=84))
    cube = env.model.joint("object").qposadr[0]

    def remove() -> None:
        env.data.qpos[cube : cube + 3] = (0.0, 0.0, -5.0)  # under the table

    for seed in range(200):
        obs, _ = env.reset(seed=seed)
        assert obs["privileged"]["object_in_view"][0] == 0.0, seed
        present, removed = wrist_view_with_and_without(env, remove)
        assert np.array_equal(present, removed), f"seed {seed}: the cube shows in the wrist image at reset"
    # Both sides occur, so the policy cannot learn a fixed search direction.
    sides = {np.sign(env.reset(seed=s)[0]["privileged"]["object_pos"][1]) for s in range(10)}
    assert sides == {-1.0, 1.0}


def test_shelf_target_is_hidden_from_the_home_view() -> None:
    env = sim.make("shelf-search", TaskConfig(image_size=84))
    target = env.model.body("target").id

    def remove() -> None:
        env.model.body_pos[target] = (0.0, 0.0, -5.0)

    for seed in range(200):
        obs, _ = env.reset(seed=seed)
        assert obs["privileged"]["target_box_wrist"][-1] == 0.0, seed
        present, removed = wrist_view_with_and_without(env, remove)
        assert np.array_equal(present, removed), f"seed {seed}: the target shows in the wrist image at reset"
    places = {int(np.argmax(env.reset(seed=s)[0]["privileged"]["target_place"])) for s in range(20)}
    assert len(places) >= 4


def test_rendering_is_headless_and_shows_the_scene() -> None:
    env = sim.make("fully-obs-pick", TaskConfig(image_size=48))
    obs, _ = env.reset(seed=3)
    side = obs["onboard"]["side"]
    assert side.shape == (48, 48, 3) and side.dtype == np.uint8 and side.std() > 10
    for _ in range(3):
        moved, *_ = env.step(np.array([0, 1, 0, 0, -1], np.float32))
    assert np.abs(moved["onboard"]["side"].astype(int) - side).mean() > 1  # the arm moved in view
    assert env.render().shape == (48, 48, 3)


def test_camouflage_object_blends_into_the_table() -> None:
    """The camouflaged cube differs from the table by a few percent; the control task's is bright."""

    def contrast(task: str) -> float:
        env = sim.make(task, SMALL)
        env.reset(seed=0)
        table = env.model.mat_rgba[env.model.mat("table").id, :3]
        return float(np.abs(env.model.mat_rgba[env.model.mat("object").id, :3] - table).max())

    assert contrast("camouflage-pick") < 0.06 < 0.3 < contrast("fully-obs-pick")


def test_randomisation_is_seeded_and_can_be_turned_off() -> None:
    def appearance(config: TaskConfig, seed: int) -> np.ndarray:
        env = sim.make("search-pick", config)
        env.reset(seed=seed)
        return np.concatenate(
            [env.model.light_diffuse.ravel(), env.model.cam_pos.ravel(), env.model.mat_rgba.ravel()]
        )

    assert np.array_equal(appearance(SMALL, 1), appearance(SMALL, 1))
    assert not np.array_equal(appearance(SMALL, 1), appearance(SMALL, 2))
    plain = TaskConfig(image_size=32, randomize=False)
    assert np.array_equal(appearance(plain, 1), appearance(plain, 2))


def test_rewards_sparse_and_dense() -> None:
    sparse = random_episode(sim.make("search-pick", SMALL), seed=0)
    assert all(step["reward"] == float(step["success"]) for step in sparse[1:])
    env = sim.make("blind-pick", SMALL)  # dense by default
    assert env.reward_type == "dense"
    env.reset(seed=0)
    _, far, *_ = env.step(np.zeros(5, np.float32))
    for _ in range(8):  # hover just above the cube, gripper open
        error = env.object_pos() + np.array([0, 0, 0.06]) - env.ee_pos
        _, near, *_ = env.step(np.append(np.clip(error / 0.04, -1, 1), [0, -1]).astype(np.float32))
    assert 0.0 <= far < near <= 1.0
