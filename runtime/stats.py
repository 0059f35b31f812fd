"""Statistics on accuracy changes: paired bootstrap confidence intervals and McNemar's exact test.

Both compare two classifiers on the same test images, given each one's per-image correctness (bool arrays).
No TensorFlow, no scipy: numpy and the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DeltaStats:
    """Accuracy change of `b` against `a` (b - a), in percentage points, with its uncertainty."""

    delta_points: float  # (accuracy_b - accuracy_a) * 100
    ci_low: float  # 95% paired bootstrap interval on delta_points
    ci_high: float
    p_value: float  # McNemar's exact two-sided test on the discordant pairs
    only_a: int  # images a gets right and b wrong
    only_b: int  # images b gets right and a wrong
    n: int  # test images
    resolvable_points: float  # smallest change this test set can resolve, in points (see resolvable_points)

    @property
    def significant(self) -> bool:
        """True when the change is significant at the 5% level."""
        return self.p_value < 0.05


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test of min(only_a, only_b) among the discordant pairs."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def bootstrap_ci(correct_a: np.ndarray, correct_b: np.ndarray, resamples: int = 2000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile interval on (accuracy_b - accuracy_a) * 100, resampling test images with replacement (paired)."""
    diff = correct_b.astype(np.int8) - correct_a.astype(np.int8)
    n = diff.size
    rng = np.random.default_rng(seed)
    sums = np.empty(resamples)
    for i in range(0, resamples, 200):
        idx = rng.integers(0, n, size=(min(200, resamples - i), n))
        sums[i:i + idx.shape[0]] = diff[idx].sum(axis=1)
    lo, hi = np.quantile(sums / n * 100, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def resolvable_points(n: int) -> float:
    """Smallest accuracy change (points) McNemar's exact test can call significant on n images: every
    discordant image going one way, the fewest such images with p < 0.05 (6), as a share of n."""
    k = 1
    while mcnemar_exact(0, k) >= 0.05:
        k += 1
    return k / n * 100


def delta_stats(correct_a: np.ndarray, correct_b: np.ndarray, seed: int = 0, resamples: int = 2000) -> DeltaStats:
    """Change in accuracy of b against a on the same images, with a 95% CI and McNemar's exact p-value."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two equal-length 1-D correctness arrays, got {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    lo, hi = bootstrap_ci(a, b, resamples=resamples, seed=seed)
    return DeltaStats((b.mean() - a.mean()) * 100, lo, hi, mcnemar_exact(only_a, only_b), only_a, only_b,
                      a.size, resolvable_points(a.size))
