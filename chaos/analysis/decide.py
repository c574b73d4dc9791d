"""The statistics that decide a comparative hypothesis from a handful of windows.

Every function here is pure (numpy/scipy, seeded where random) and works on one
value per fault window: the window is the unit of replication, never the request
(requests within a window share the same proxy, connections and moment, so they
are not independent draws).

* ``p_greater`` / ``p_less``: an exact permutation test on the difference of means,
  one-sided, against a shift (H0: the two samples are exchangeable once ``shift`` is
  taken off). Every arrangement of the pooled values is enumerated while there are
  at most ``MAX_EXACT`` of them; beyond that a seeded Monte Carlo sample of
  arrangements is used, with ``p = (1 + hits) / (1 + draws)`` so it stays valid.
* ``tost``: equivalence within ``±margin`` by two one-sided tests.
* ``holm``: Holm's step-down correction for a family of p-values.
* ``spent``: how much of ``alpha`` a sequential design has spent at information
  fraction ``t`` (Lan-DeMets spending functions, Pocock or O'Brien-Fleming type);
  ``boundaries`` turns it into a p-value threshold per look, counting at each past
  look only the false-positive probability the exact test could actually attain
  there (a look with 3 windows a side cannot spend 0.01 when its smallest p is 0.05).
* ``difference_interval``: a stratified percentile bootstrap interval of the
  difference of means.
* ``needed_per_group``: the usual sample size for a one-sided test (or TOST) at
  80 % power (Student's t quantiles, iterated), raised to the smallest size at which
  the exact test can reach the level at all.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.stats import norm
from scipy.stats import t as student_t

FloatArray = NDArray[np.float64]
Spending = Literal["pocock", "obrien-fleming"]

#: Enumerate every arrangement up to this many (C(18, 9) = 48,620; C(20, 10) = 184,756).
MAX_EXACT = 200_000
#: Monte Carlo arrangements when there are more than ``MAX_EXACT``.
RESAMPLES = 20_000
#: Float tolerance when comparing permutation statistics to the observed one.
_EPS = 1e-9


def _array(values: Sequence[float] | FloatArray) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _arrangements(n: int, k: int) -> NDArray[np.bool_]:
    """Every way to pick ``k`` of ``n`` positions, as a boolean mask per row."""
    count = math.comb(n, k)
    mask = np.zeros((count, n), dtype=np.bool_)
    for row, chosen in enumerate(combinations(range(n), k)):
        mask[row, list(chosen)] = True
    mask.setflags(write=False)
    return mask


def arrangements(n_x: int, n_y: int) -> int:
    """How many distinct ways the pooled windows can be split into the two groups."""
    return math.comb(n_x + n_y, n_x)


def p_greater(
    x: Sequence[float] | FloatArray,
    y: Sequence[float] | FloatArray,
    shift: float = 0.0,
    *,
    seed: int = 0,
) -> float:
    """One-sided permutation p-value for ``mean(x) - mean(y) > shift``.

    H0: ``x`` and ``y + shift`` are exchangeable. Returns 1.0 when either side is empty.
    """
    a = _array(x)
    b = _array(y) + shift
    n_x, n_y = len(a), len(b)
    if n_x == 0 or n_y == 0:
        return 1.0
    pooled = np.r_[a, b]
    total = float(pooled.sum())
    observed = float(a.mean() - b.mean())
    scale = _EPS * max(1.0, float(np.abs(pooled).max()))
    if arrangements(n_x, n_y) <= MAX_EXACT:
        mask = _arrangements(n_x + n_y, n_x)
        sums = mask.astype(np.float64) @ pooled
        stats = sums / n_x - (total - sums) / n_y
        return float(np.mean(stats >= observed - scale))
    rng = np.random.default_rng(seed)
    order = np.argsort(rng.random((RESAMPLES, n_x + n_y)), axis=1)[:, :n_x]
    sums = pooled[order].sum(axis=1)
    stats = sums / n_x - (total - sums) / n_y
    hits = int(np.sum(stats >= observed - scale))
    return (1 + hits) / (1 + RESAMPLES)


def p_less(
    x: Sequence[float] | FloatArray,
    y: Sequence[float] | FloatArray,
    shift: float = 0.0,
    *,
    seed: int = 0,
) -> float:
    """One-sided permutation p-value for ``mean(x) - mean(y) < shift``."""
    return p_greater(y, x, -shift, seed=seed)


def tost(
    x: Sequence[float] | FloatArray,
    y: Sequence[float] | FloatArray,
    margin: float,
    *,
    seed: int = 0,
) -> float:
    """Two one-sided tests: p-value for ``|mean(x) - mean(y)| < margin`` (equivalence)."""
    return max(p_greater(x, y, -margin, seed=seed), p_less(x, y, margin, seed=seed))


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise ``alpha``."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    m = len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


def spent(alpha: float, t: float, kind: Spending = "pocock") -> float:
    """Alpha spent by information fraction ``t`` (0..1) under a Lan-DeMets spending function.

    Pocock type: ``alpha * ln(1 + (e - 1) t)``; O'Brien-Fleming type (one-sided):
    ``2 (1 - Phi(z_{1 - alpha/2} / sqrt(t)))``. Both reach ``alpha`` at ``t = 1``.
    """
    t = min(max(t, 0.0), 1.0)
    if t <= 0.0:
        return 0.0
    if kind == "pocock":
        return alpha * math.log(1.0 + (math.e - 1.0) * t)
    z = float(norm.ppf(1.0 - alpha / 2.0))
    return float(2.0 * (1.0 - norm.cdf(z / math.sqrt(t))))


def attainable(level: float, n_x: int, n_y: int) -> float:
    """The largest false-positive probability an exact test with these sizes has at ``level``.

    Under H0 every arrangement is equally likely, so ``P(p <= level)`` is at most
    ``floor(level * C) / C`` with ``C`` arrangements (ties only lower it). Monte Carlo
    tests (more than ``MAX_EXACT`` arrangements) are taken at ``level`` itself.
    """
    if level <= 0.0 or n_x == 0 or n_y == 0:
        return 0.0
    count = arrangements(n_x, n_y)
    if count > MAX_EXACT:
        return level
    return math.floor(level * count + 1e-9) / count


@dataclass(frozen=True)
class Look:
    """One interim analysis: the windows each side had, and the information fraction."""

    n_x: int
    n_y: int
    t: float


def boundaries(alpha: float, looks: Sequence[Look], kind: Spending = "pocock") -> list[float]:
    """The p-value threshold at each look, so that the chance of any false rejection <= alpha.

    Look ``k`` may use what the spending function allows by ``t_k`` minus what the
    earlier looks could actually have spent (their attainable size). The union bound
    over looks then keeps the overall false-positive probability at or below
    ``alpha``, whatever the correlation between looks.
    """
    used = 0.0
    result = []
    for look in looks:
        level = max(0.0, spent(alpha, look.t, kind) - used)
        result.append(level)
        used += attainable(level, look.n_x, look.n_y)
    return result


def smallest_p(n_x: int, n_y: int) -> float:
    """The smallest one-sided p-value an exact permutation test can give with these sizes."""
    if n_x == 0 or n_y == 0:
        return 1.0
    count = arrangements(n_x, n_y)
    return 1.0 / count if count <= MAX_EXACT else 1.0 / (1 + RESAMPLES)


def difference_interval(
    x: Sequence[float] | FloatArray,
    y: Sequence[float] | FloatArray,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(x) - mean(y)``, resampling within each group."""
    a, b = _array(x), _array(y)
    if len(a) == 0 or len(b) == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    ma = a[rng.integers(0, len(a), size=(resamples, len(a)))].mean(axis=1)
    mb = b[rng.integers(0, len(b), size=(resamples, len(b)))].mean(axis=1)
    diffs = ma - mb
    tail = (1.0 - confidence) / 2.0
    return (
        float(np.quantile(diffs, tail, method="inverted_cdf")),
        float(np.quantile(diffs, 1.0 - tail, method="inverted_cdf")),
    )


def pooled_sd(x: Sequence[float] | FloatArray, y: Sequence[float] | FloatArray) -> float:
    """The pooled standard deviation of two groups (0 when there is no spread to pool)."""
    a, b = _array(x), _array(y)
    dof = len(a) + len(b) - 2
    if dof <= 0:
        return 0.0
    ss = float(((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) if len(a) else 0.0
    return math.sqrt(ss / dof)


def _exact_floor(level: float) -> int:
    """The smallest n per group at which an exact test (n against n) can reach ``level``."""
    n = 1
    while smallest_p(n, n) > level and n < 1000:
        n += 1
    return n


def needed_per_group(
    effect: float,
    sd: float,
    level: float,
    *,
    power: float = 0.8,
    equivalence: bool = False,
) -> int | None:
    """Windows per group for a test at ``level`` to detect ``effect`` with ``power``.

    ``effect`` is the distance from the null to the observed difference in the
    claimed direction (for equivalence: margin minus the observed distance). None
    when it is not positive: more windows are not expected to decide.
    """
    if effect <= 0.0 or level <= 0.0:
        return None
    floor = _exact_floor(level)
    if sd <= 0.0:
        return floor
    beta = 1.0 - power
    tail = 1.0 - beta / 2.0 if equivalence else 1.0 - beta
    z = float(norm.ppf(1.0 - level)) + float(norm.ppf(tail))
    n = max(2, math.ceil(2.0 * (z * sd / effect) ** 2))
    for _ in range(20):  # Student's t instead of the normal for small groups
        dof = 2 * n - 2
        q = float(student_t.ppf(1.0 - level, dof)) + float(student_t.ppf(tail, dof))
        better = max(2, math.ceil(2.0 * (q * sd / effect) ** 2))
        if better == n:
            break
        n = better
    return max(n, floor)
