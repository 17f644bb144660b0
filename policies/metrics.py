"""Success statistics shared by sim evaluation and on-robot evaluation sessions."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import barnard_exact, binom, binomtest, fisher_exact, norm, trim_mean


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


# --- comparing two success rates (evaluation sessions) ---------------------------------------------

ExactTest = Literal["barnard", "fisher"]


@dataclass(frozen=True)
class RateComparison:
    """Policy a against policy b: the difference of their success rates and an exact test of it."""

    difference: float  # rate a - rate b
    low: float  # Newcombe's hybrid score interval of the difference
    high: float
    p_value: float  # two-sided, of the exact test: no difference
    test: ExactTest


def difference_interval(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Interval of rate a - rate b by Newcombe's hybrid score method (Newcombe 1998, method 10): the
    companion of the Wilson interval, built from the two Wilson intervals, honest at 0 or N successes.
    Written here because scipy has none (statsmodels, which does, is not a dependency)."""
    rate_a, rate_b = successes_a / trials_a, successes_b / trials_b
    low_a, high_a = wilson_interval(successes_a, trials_a, confidence)
    low_b, high_b = wilson_interval(successes_b, trials_b, confidence)
    difference = rate_a - rate_b
    return (
        difference - math.hypot(rate_a - low_a, high_b - rate_b),
        difference + math.hypot(high_a - rate_a, rate_b - low_b),
    )


def exact_test_p(
    successes_a: int,
    trials_a: int,
    successes_b: int,
    trials_b: int,
    test: ExactTest = "barnard",
    alternative: Literal["two-sided", "less", "greater"] = "two-sided",
) -> float:
    """p-value of an exact test that two policies share one success rate. Barnard's (unconditional)
    fits a session, where the trials per policy are fixed and the successes free, and is more powerful
    than Fisher's (conditional on the total successes too). `alternative` "greater": rate a > rate b."""
    table = [[successes_a, successes_b], [trials_a - successes_a, trials_b - successes_b]]
    if test == "barnard":
        if trials_a == 0 or trials_b == 0:
            return 1.0
        return float(barnard_exact(table, alternative=alternative).pvalue)
    return float(fisher_exact(table, alternative=alternative).pvalue)


def compare_rates(
    successes_a: int,
    trials_a: int,
    successes_b: int,
    trials_b: int,
    test: ExactTest = "barnard",
    confidence: float = 0.95,
) -> RateComparison:
    if min(trials_a, trials_b) <= 0:
        raise ValueError("comparing success rates needs at least one trial of each policy")
    low, high = difference_interval(successes_a, trials_a, successes_b, trials_b, confidence)
    return RateComparison(
        successes_a / trials_a - successes_b / trials_b,
        low,
        high,
        exact_test_p(successes_a, trials_a, successes_b, trials_b, test),
        test,
    )


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of several p-values (every pair of three or more policies)."""
    order = np.argsort(p_values)
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def trials_needed(rate_a: float, rate_b: float, power: float = 0.8, alpha: float = 0.05) -> int:
    """Trials per policy for a two-sided test at level `alpha` to tell success rates `rate_a` and
    `rate_b` apart with probability `power`: the normal approximation with Fleiss' continuity
    correction (Fleiss, Levin & Paik, "Statistical Methods for Rates and Proportions", 4.14), which
    tracks Fisher's exact test; `exact_power` checks a size by enumeration."""
    if not (0 <= rate_a <= 1 and 0 <= rate_b <= 1) or rate_a == rate_b:
        raise ValueError(f"two different success rates in [0, 1] are needed, got {rate_a} and {rate_b}")
    if not (0 < power < 1 and 0 < alpha < 1):
        raise ValueError(f"power and alpha must lie in (0, 1), got {power} and {alpha}")
    difference = abs(rate_a - rate_b)
    mean = (rate_a + rate_b) / 2
    z_alpha, z_power = norm.ppf(1 - alpha / 2), norm.ppf(power)
    spread = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_power * math.sqrt(
        rate_a * (1 - rate_a) + rate_b * (1 - rate_b)
    )
    uncorrected = (spread / difference) ** 2
    corrected = uncorrected / 4 * (1 + math.sqrt(1 + 4 / (uncorrected * difference))) ** 2
    return math.ceil(corrected - 1e-9)


def exact_power(
    trials: int, rate_a: float, rate_b: float, alpha: float = 0.05, test: ExactTest = "fisher"
) -> float:
    """Probability that `test` (two-sided, level `alpha`) tells the rates apart with `trials` per
    policy: every outcome pair (successes a, successes b) weighted by its binomial probability. Fisher's
    test by default: (trials + 1)^2 Barnard tests take minutes beyond ~50 trials."""
    outcomes = np.arange(trials + 1)
    weight_a, weight_b = binom.pmf(outcomes, trials, rate_a), binom.pmf(outcomes, trials, rate_b)
    power = 0.0
    for a in outcomes:
        for b in outcomes:
            weight = weight_a[a] * weight_b[b]
            if weight > 1e-12 and exact_test_p(int(a), trials, int(b), trials, test) <= alpha:
                power += weight
    return float(power)
