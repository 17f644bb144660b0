"""T-maze: the exact belief, the contract, the demonstrator."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config import DemoConfig, TaskConfig, TMazeLayout
from sim.tmaze import TMazeDemonstrator, TMazeEnv

BACK, FORWARD = np.array([-1.0, 0.0], np.float32), np.array([1.0, 0.0], np.float32)


def test_belief_is_the_bayes_posterior_of_the_readings() -> None:
    env = TMazeEnv(TaskConfig(max_episode_steps=30, tmaze=TMazeLayout(corridor_length=3, sign_accuracy=0.8)))
    obs, _ = env.reset(seed=4)
    assert obs["privileged"]["belief"][0] == pytest.approx(0.5)
    up_readings = 0
    for looks in range(1, 8):
        obs, *_ = env.step(BACK)  # at (or stays at) the sign cell: one fresh reading each step
        reading = obs["onboard"]["sensors"][0]
        assert reading in (-1.0, 1.0)
        up_readings += reading > 0
        down_readings = looks - up_readings
        # P(up | k up-readings of n) = 0.8^k 0.2^(n-k) / (0.8^k 0.2^(n-k) + 0.2^k 0.8^(n-k))
        likelihood_up = 0.8**up_readings * 0.2**down_readings
        likelihood_down = 0.2**up_readings * 0.8**down_readings
        assert obs["privileged"]["belief"][0] == pytest.approx(
            likelihood_up / (likelihood_up + likelihood_down)
        )


def test_goal_is_visible_only_on_the_sign_cell_and_turning_ends_the_episode() -> None:
    env = TMazeEnv(TaskConfig(max_episode_steps=20))
    obs, _ = env.reset(seed=1)
    goal = obs["privileged"]["goal"][0]
    assert obs["onboard"]["sensors"][0] == 0.0
    obs, *_ = env.step(BACK)
    assert obs["onboard"]["sensors"][0] == goal  # accuracy 1: the sign tells the truth
    for _ in range(env.junction):
        obs, reward, terminated, _, _ = env.step(FORWARD)
        assert obs["onboard"]["sensors"][0] == 0.0 and not terminated
    assert obs["onboard"]["sensors"][1] == 1.0  # at the junction
    obs, reward, terminated, truncated, info = env.step(np.array([1.0, goal], np.float32))
    assert terminated and not truncated and info["success"] is True and reward == 1.0


def test_observation_parts_are_disjoint_and_match_the_spaces() -> None:
    env = TMazeEnv()
    obs, _ = env.reset(seed=0)
    assert not set(obs["onboard"]) & set(obs["privileged"])
    assert env.observation_space.contains(obs)
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros(3), r"shape \(2,\)"),
        (np.array([np.nan, 0.0]), "NaN or inf"),
        (np.array([0.0, np.inf]), "NaN or inf"),
        ("left", "not a numeric array"),
    ],
)
def test_bad_actions_are_refused_as_the_arm_tasks_refuse_them(bad: object, message: str) -> None:
    env = TMazeEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=f"tmaze: action .*{message}"):
        env.step(bad)


def run_demos(demo: DemoConfig, episodes: int = 40) -> float:
    env = TMazeEnv()
    demonstrator = TMazeDemonstrator(env, demo, seed=0)
    successes = 0
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        demonstrator.reset()
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(demonstrator.act(obs))
            done = terminated or truncated
        successes += info["success"]
    return successes / episodes


def test_demonstrator_success_rates() -> None:
    assert run_demos(DemoConfig()) == 1.0
    # Skipping the look means a coin flip at the junction: about 1 - p/2 success.
    assert (
        0.5 <= run_demos(DemoConfig(wrong_direction_prob=0.7, hesitation_prob=0.1, action_noise=0.1)) <= 0.8
    )
