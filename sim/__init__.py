"""MuJoCo active-perception tasks, scripted demonstrators and vectorised rollouts.

    env = sim.make("search-pick", TaskConfig(image_size=48))
    demos = sim.collect_demos("search-pick", 100, seed=0, demo_config=DemoConfig(action_noise=0.1))

Tasks are imported on first use, so `import sim` (and the T-maze) does not pay for MuJoCo.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import gymnasium as gym

from sim.config import DemoConfig, TaskConfig

if TYPE_CHECKING:
    from policies.episodes import Episode

# name -> (env class, scripted demonstrator class), as lazy "module:attribute" paths
_REGISTRY: dict[str, tuple[str, str]] = {
    "fully-obs-pick": ("sim.pick:FullyObsPickEnv", "sim.demos:PickDemonstrator"),
    "camouflage-pick": ("sim.pick:CamouflagePickEnv", "sim.demos:PickDemonstrator"),
    "search-pick": ("sim.pick:SearchPickEnv", "sim.demos:PickDemonstrator"),
    "blind-pick": ("sim.pick:BlindPickEnv", "sim.demos:PickDemonstrator"),
    "shelf-search": ("sim.shelf:ShelfSearchEnv", "sim.demos:ShelfDemonstrator"),
    "tmaze": ("sim.tmaze:TMazeEnv", "sim.tmaze:TMazeDemonstrator"),
}
TASK_NAMES: tuple[str, ...] = tuple(_REGISTRY)

__all__ = [
    "TASK_NAMES",
    "DemoConfig",
    "TaskConfig",
    "UnknownTaskError",
    "collect_demos",
    "make",
    "make_demonstrator",
]


class UnknownTaskError(KeyError, ValueError):
    def __init__(self, name: object) -> None:
        super().__init__(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _load(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _entry(name: str) -> tuple[str, str]:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise UnknownTaskError(name)
    return _REGISTRY[name]


def make(name: str, config: TaskConfig | None = None) -> gym.Env:
    """A fresh env of task `name` (unwrapped: gymnasium wrappers are the caller's choice). Without
    a config each task uses its own defaults."""
    env_path, _ = _entry(name)
    return _load(env_path)(config)


def make_demonstrator(env: gym.Env, demo_config: DemoConfig | None = None, seed: int = 0) -> Any:
    """The scripted demonstrator of `env`'s task: `reset()` at each episode, then `act(obs)`."""
    _, demo_path = _entry(env.unwrapped.task_name)
    return _load(demo_path)(env.unwrapped, demo_config or DemoConfig(), seed)


def collect_demos(
    task: str,
    num_episodes: int,
    seed: int,
    task_config: TaskConfig | None = None,
    demo_config: DemoConfig | None = None,
    num_workers: int = 1,
) -> list[Episode]:
    """`num_episodes` scripted episodes (successful or not), reproducible from `seed`."""
    from sim.demos import collect_demos as collect

    _entry(task)
    return collect(
        task, num_episodes, seed, task_config or TaskConfig(), demo_config or DemoConfig(), num_workers
    )


for _name, (_env_path, _) in _REGISTRY.items():
    if f"aps/{_name}-v0" not in gym.registry:
        gym.register(id=f"aps/{_name}-v0", entry_point=_env_path)
