"""Success statistics against published values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from policies.metrics import (
    compare_rates,
    difference_interval,
    exact_power,
    exact_test_p,
    holm_adjusted,
    trials_needed,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval_matches_newcombe_1998(successes: int, trials: int, low: float, high: float) -> None:
    assert wilson_interval(successes, trials) == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(29, 29)
    assert high == 1.0 and low == pytest.approx(1 - 0.1170, abs=5e-4)  # mirror of 0/29
    narrow, wide = wilson_interval(45, 90, confidence=0.8), wilson_interval(45, 90, confidence=0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]


# --- comparing two policies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "n_a", "b", "n_b", "low", "high"),
    [
        # Newcombe (1998), "Interval estimation for the difference between independent proportions:
        # comparison of eleven methods", Table II, method 10 (hybrid score), examples (a)-(h)
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0),
        (10, 10, 0, 10, 0.6075, 1.0),
    ],
)
def test_difference_interval_matches_newcombe_1998(
    a: int, n_a: int, b: int, n_b: int, low: float, high: float
) -> None:
    assert difference_interval(a, n_a, b, n_b) == pytest.approx((low, high), abs=5e-5)


def test_barnard_matches_the_published_vaccine_example() -> None:
    """Mehta & Senchaudhuri (2003), "Conditional versus unconditional exact tests for comparing two
    binomials": 7 of 15 vaccinated and 12 of 15 on placebo infected; one-sided Barnard p = 0.0341,
    Fisher p = 0.0641 (the session's orientation: policy a's successes first)."""
    assert exact_test_p(7, 15, 12, 15, "barnard", alternative="less") == pytest.approx(0.0341, abs=5e-5)
    assert exact_test_p(7, 15, 12, 15, "fisher", alternative="less") == pytest.approx(0.0641, abs=5e-5)
    assert exact_test_p(12, 15, 7, 15, "barnard", alternative="greater") == pytest.approx(0.0341, abs=5e-5)


def test_fisher_matches_the_lady_tasting_tea() -> None:
    """Fisher (1935): 3 of 4 cups right of each kind; two-sided p = 17/35."""
    assert exact_test_p(3, 4, 1, 4, "fisher") == pytest.approx(17 / 35, abs=1e-9)


def barnard_by_enumeration(a: int, n_a: int, b: int, n_b: int) -> float:
    """Barnard's two-sided test written out: the pooled-variance Wald statistic of every table with the
    same trials, and the largest chance, over a fine grid of the common rate, of one as extreme."""
    xa, xb = np.meshgrid(np.arange(n_a + 1), np.arange(n_b + 1), indexing="ij")

    def wald(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        pooled = (x + y) / (n_a + n_b)
        spread = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(spread > 0, (x / n_a - y / n_b) / spread, 0.0)

    extreme = np.abs(wald(xa, xb)) >= abs(float(wald(np.array(a), np.array(b)))) - 1e-12
    rates = np.linspace(1e-6, 1 - 1e-6, 20001)[:, None]
    chance_a, chance_b = binom.pmf(np.arange(n_a + 1), n_a, rates), binom.pmf(np.arange(n_b + 1), n_b, rates)
    return float((((chance_a @ extreme) * chance_b).sum(axis=1)).max())


@pytest.mark.parametrize(("a", "n_a", "b", "n_b"), [(7, 15, 12, 15), (18, 20, 11, 20), (4, 10, 4, 10)])
def test_barnard_two_sided_equals_its_definition(a: int, n_a: int, b: int, n_b: int) -> None:
    assert exact_test_p(a, n_a, b, n_b) == pytest.approx(barnard_by_enumeration(a, n_a, b, n_b), abs=2e-4)


def test_comparison_and_holm() -> None:
    comparison = compare_rates(40, 50, 30, 50)
    assert comparison.difference == pytest.approx(0.2)
    assert (comparison.low, comparison.high) == difference_interval(40, 50, 30, 50)
    assert comparison.p_value == exact_test_p(40, 50, 30, 50) < 0.05 and comparison.test == "barnard"
    # Holm (1979): sorted p-values times m, m-1, ..., kept monotone
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    with pytest.raises(ValueError, match="at least one trial"):
        compare_rates(0, 0, 1, 2)


def test_trials_needed_reaches_its_power_by_enumeration() -> None:
    """The continuity-corrected normal approximation (0.5 vs 0.8: 45 per policy, by hand from Fleiss'
    formula), checked against the exact power of Fisher's test, counted over every outcome."""
    needed = trials_needed(0.5, 0.8)
    assert needed == 45
    assert exact_power(needed, 0.5, 0.8) >= 0.8
    assert exact_power(round(0.75 * needed), 0.5, 0.8) < 0.8
    assert trials_needed(0.8, 0.5) == needed  # symmetric
    assert trials_needed(0.6, 0.8) > trials_needed(0.5, 0.8) > trials_needed(0.3, 0.8)
    assert trials_needed(0.5, 0.8, power=0.9) > needed
    with pytest.raises(ValueError, match="two different success rates"):
        trials_needed(0.5, 0.5)
