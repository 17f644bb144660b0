"""Every env seed the stack draws, from disjoint ranges: demonstrations, online rollouts, validation
(learning curves and checkpoint selection) and the final test episodes never share an initial
condition, whatever the run seed."""

from __future__ import annotations

DEMO_BASE = 1_000_000_000  # + run seed * DEMOS_PER_RUN + index
DEMOS_PER_RUN = 1_000_000
ONLINE_BASE = 2_000_000  # + run seed * ONLINE_PER_RUN + index
ONLINE_PER_RUN = 100_000
VALIDATION_BASE = 1_000_000  # + index: the same episodes for every run, so curves compare
HELD_OUT_BASE = 5_000_000_000  # + index: held out from everything above, for final figures only
SESSION_BASE = 6_000_000_000  # + session seed * SESSION_SCENES + scene: aps-eval's sim sessions
SESSION_SCENES = 1_000_000


def _index(index: int, limit: int, what: str) -> int:
    if not 0 <= index < limit:
        raise ValueError(f"{what} index must lie in [0, {limit}), got {index}")
    return index


def demo_seed(run_seed: int, index: int) -> int:
    return (
        DEMO_BASE + _index(run_seed, 1000, "run seed") * DEMOS_PER_RUN + _index(index, DEMOS_PER_RUN, "demo")
    )


def online_seed(run_seed: int, index: int) -> int:
    """The `index`-th online episode of the run with seed `run_seed`."""
    return (
        ONLINE_BASE
        + _index(run_seed, 1000, "run seed") * ONLINE_PER_RUN
        + _index(index, ONLINE_PER_RUN, "online episode")
    )


def validation_seed(index: int) -> int:
    return VALIDATION_BASE + _index(index, ONLINE_BASE - VALIDATION_BASE, "validation episode")


def held_out_seed(index: int) -> int:
    return HELD_OUT_BASE + _index(index, 1_000_000_000, "held-out episode")


def session_seed(session: int, scene: int) -> int:
    """The `scene`-th initial condition of an evaluation session (aps-eval) with seed `session`: apart
    from the training, validation and held-out ranges, so a session is an independent estimate."""
    return (
        SESSION_BASE
        + _index(session, 1000, "session seed") * SESSION_SCENES
        + _index(scene, SESSION_SCENES, "session scene")
    )
