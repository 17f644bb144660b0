"""Success statistics shared by sim evaluation and on-robot evaluation sessions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import binomtest, trim_mean


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate (scipy's); honest at 0 or N successes. With no trials
    every rate is possible: (0, 1)."""
    if trials <= 0:
        return 0.0, 1.0
    interval = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def iqm(scores: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle half of the scores (rliable's aggregate, robust to
    one outlying run and less noisy than the median)."""
    return float(trim_mean(np.ravel(scores), 0.25))


def bootstrap_interval(
    runs_per_task: Sequence[Sequence[float]],
    statistic: Callable[[np.ndarray], float] = iqm,
    confidence: float = 0.95,
    repetitions: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of `statistic` over the runs (seeds), by a stratified bootstrap as rliable
    computes it (Agarwal et al. 2021): each repetition resamples every task's runs with replacement,
    then applies the statistic to all resampled scores together."""
    rng = np.random.default_rng(seed)
    tasks = [np.asarray(runs, dtype=float) for runs in runs_per_task]
    draws = [
        statistic(np.concatenate([runs[rng.integers(0, len(runs), len(runs))] for runs in tasks]))
        for _ in range(repetitions)
    ]
    alpha = 1.0 - confidence
    return float(np.quantile(draws, alpha / 2)), float(np.quantile(draws, 1 - alpha / 2))
