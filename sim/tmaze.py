"""T-maze: the smallest active-perception POMDP, for fast learning tests and belief diagnostics.

    [sign] [start] [ ] ... [junction]  -> up / down

The goal (up or down) is shown only on the sign cell, one step *behind* the start: the agent must
first move away from the goal to look, remember what it saw down the corridor, then turn the right
way. The sign reads correctly with probability `sign_accuracy`; the privileged part carries the
true goal and the exact Bayes-filter belief P(goal = up | readings so far).

Action in [-1, 1]^2: a[0] < 0 steps back, a[0] >= 0 steps forward (at the junction: turns), a[1]
picks the side when turning (> 0 up). Reward 1 for the right side; the episode ends at a turn.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from sim.actions import checked_action
from sim.config import DemoConfig, RewardType, TaskConfig
from sim.rewards import StepOutcome, Vectors


class TMazeEnv(gym.Env):
    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium's class attribute)
    task_name = "tmaze"
    control_hz = 10.0

    def __init__(self, config: TaskConfig | None = None) -> None:
        self.config = config or TaskConfig(max_episode_steps=16)
        self.layout = self.config.tmaze
        self.max_episode_steps = self.config.max_episode_steps
        self.junction = self.layout.corridor_length + 1
        vector = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = gym.spaces.Dict(
            {
                "onboard": gym.spaces.Dict({"sensors": gym.spaces.Box(-1.0, 1.0, (3,), np.float32)}),
                "privileged": gym.spaces.Dict(
                    {"goal": vector, "belief": gym.spaces.Box(0.0, 1.0, (1,), np.float32), "position": vector}
                ),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.goal_up = bool(self.np_random.random() < 0.5)
        self.position = 1
        self.steps = 0
        self.belief_up = 0.5
        self.reading = 0.0
        return self._observation(), {"success": False}

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]:
        action = checked_action(self.task_name, action, self.action_space)
        move = action[0]
        previous = self._privileged()
        self.steps += 1
        turned = move >= 0 and self.position == self.junction
        if move >= 0 and not turned:
            self.position += 1
        elif move < 0:
            self.position = max(0, self.position - 1)
        self.reading = self._read_sign() if self.position == 0 and not turned else 0.0
        observation = self._observation()
        outcome = privileged_outcome(previous, action, observation["privileged"], self.config.reward)
        truncated = not turned and self.steps >= self.max_episode_steps
        return observation, outcome.reward, bool(turned), truncated, {"success": outcome.success}

    def _read_sign(self) -> float:
        """One noisy reading; the belief follows Bayes: b' = P(r | up) b / P(r)."""
        correct = self.np_random.random() < self.layout.sign_accuracy
        says_up = self.goal_up if correct else not self.goal_up
        p_up = self.layout.sign_accuracy if says_up else 1.0 - self.layout.sign_accuracy
        self.belief_up = (
            p_up * self.belief_up / (p_up * self.belief_up + (1.0 - p_up) * (1.0 - self.belief_up))
        )
        return 1.0 if says_up else -1.0

    def _scaled_position(self) -> float:
        return 2.0 * self.position / self.junction - 1.0  # -1 at the sign, +1 at the junction

    def _privileged(self) -> dict[str, np.ndarray]:
        return {
            "goal": np.array([1.0 if self.goal_up else -1.0], dtype=np.float32),
            "belief": np.array([self.belief_up], dtype=np.float32),
            "position": np.array([self._scaled_position()], dtype=np.float32),
        }

    def _observation(self) -> dict[str, dict[str, np.ndarray]]:
        at_junction = float(self.position == self.junction)
        sensors = np.array([self.reading, at_junction, self._scaled_position()], dtype=np.float32)
        return {"onboard": {"sensors": sensors}, "privileged": self._privileged()}


PRIVILEGED_REWARD_KEYS = ("goal", "position")


def privileged_outcome(
    previous: Vectors, action: np.ndarray, current: Vectors | None, reward_type: RewardType | None
) -> StepOutcome:
    """A forward action at the junction (privileged position +1) turns to the side of the action's
    second value; success when that is the goal's side. Dense: a small price per step favours short
    paths."""
    turned = float(previous["position"][0]) >= 1.0 and float(action[0]) >= 0
    success = turned and (float(action[1]) > 0) == (float(previous["goal"][0]) > 0)
    return StepOutcome(float(success) - (0.01 if reward_type == "dense" else 0.0), success)


class TMazeDemonstrator:
    """Looks at the sign, walks to the junction, turns by the belief. Sub-optimal knobs:
    `wrong_direction_prob` skips the look and guesses, `hesitation_prob` takes a step back (a dither),
    `action_noise` perturbs the continuous action."""

    def __init__(self, env: TMazeEnv, config: DemoConfig, seed: int) -> None:
        self.env, self.config = env, config
        # Its own stream: seeded like the env, it would draw the same numbers as the goal does.
        self.rng = np.random.default_rng([seed, 7])

    def reset(self) -> None:
        self.skip_look = self.rng.random() < self.config.wrong_direction_prob
        self.looked = False
        self.guess_up = self.rng.random() < 0.5

    def act(self, obs: dict) -> np.ndarray:
        env = self.env
        belief = float(obs["privileged"]["belief"][0])
        self.looked |= env.position == 0
        if self.rng.random() < self.config.hesitation_prob or (not self.looked and not self.skip_look):
            move = -1.0
        else:
            move = 1.0
        up = self.guess_up if self.skip_look else belief > 0.5
        action = np.array([move, 1.0 if up else -1.0]) + self.rng.normal(0.0, self.config.action_noise, 2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
