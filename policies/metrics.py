"""Success statistics shared by sim evaluation and on-robot evaluation sessions."""

from __future__ import annotations

from scipy.stats import binomtest


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate (scipy's); honest at 0 or N successes. With no trials
    every rate is possible: (0, 1)."""
    if trials <= 0:
        return 0.0, 1.0
    interval = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)
