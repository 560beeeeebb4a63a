"""Group-sequential stopping for ``--until-settled``: an O'Brien-Fleming boundary and the verdicts it settles.

Pure statistics over plain arrays (``harness.verdicts`` holds the paired tests it uses);
``harness/run/settle.py`` runs the rounds of seeds and calls ``settle`` after each.

Sequential stopping (``--until-settled``): looks after each round of seeds at n_1 < n_2 <
... <= n_max pairs, information fraction t_k = n_k / n_max. Alpha is spent with the Lan-DeMets
O'Brien-Fleming-type function alpha(t) = 2 − 2 Phi(z_{1-alpha/2} / sqrt(t)); the boundaries
c_k solve P(no crossing before k, |Z_k| >= c_k) = alpha(t_k) − alpha(t_{k−1}) for the
Brownian-motion score process (recursive numerical integration, Armitage-McPherson-Rowe).
Each look rejects "no difference" when the paired test's p is below the nominal level
2(1 − Phi(c_k)) (the nominal-significance-level approach for t and rank tests, Jennison and
Turnbull 2000, ch. 3 and 11); the simulation test in tests/harness/test_verdicts.py checks the
false-positive rate. Several comparisons: Holm step-down at each look, the i-th smallest p of
the m comparisons still open compared with the boundary of the spending function at
alpha / (m − i), a comparison that is settled better/worse freeing its share for the others
(Maurer and Bretz 2013, group-sequential graphical Holm). Equivalence at each look: the TOST
p against half the nominal two-sided level of the spending function at 2 alpha (one-sided
alpha on each side). A comparison stays settled once it is; if the last look (n_max) leaves it
open it is ``inconclusive``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from harness.metrics import higher_is_better
from harness.verdicts import ALPHA, DEFAULT_EQUIVALENCE_MARGIN, check_margin, paired_test, tost_p


def obrien_fleming_spending(t, alpha: float = ALPHA) -> np.ndarray:
    """Lan-DeMets O'Brien-Fleming-type spending: alpha(t) = 2 − 2 Phi(z_{1−alpha/2} / sqrt(t)), t in (0, 1]."""
    t = np.asarray(t, float)
    return 2.0 - 2.0 * stats.norm.cdf(stats.norm.ppf(1 - alpha / 2) / np.sqrt(t))


@dataclass(frozen=True)
class Boundary:
    """A two-sided group-sequential boundary: at look k (n_k pairs), reject when |Z| >= z[k], i.e. when the
    test's two-sided p is below nominal[k]."""

    looks: tuple[int, ...]
    max_n: int
    alpha: float
    information: tuple[float, ...]
    spent: tuple[float, ...]  # cumulative alpha spent up to each look
    z: tuple[float, ...]
    nominal: tuple[float, ...]


def boundary(looks: Sequence[int], max_n: int, alpha: float = ALPHA, grid: int = 401) -> Boundary:
    """O'Brien-Fleming-type Lan-DeMets boundary for looks at ``looks`` pairs out of at most ``max_n``
    (memoised: a pure function of its arguments, recomputed by ``settle`` for every Holm share)."""
    return _boundary(tuple(int(n) for n in looks), int(max_n), float(alpha), int(grid))


@functools.lru_cache(maxsize=256)
def _boundary(looks: tuple[int, ...], max_n: int, alpha: float, grid: int) -> Boundary:
    """O'Brien-Fleming-type Lan-DeMets boundary for looks at ``looks`` pairs out of at most ``max_n``.

    Recursive numerical integration of the continuation density of the score S(t) = Z sqrt(t) (a
    Brownian motion under H0) on a grid of ``grid`` points; the last look at max_n spends what is left."""
    if not looks or any(b <= a for a, b in zip(looks, looks[1:])) or looks[0] < 2 or looks[-1] > max_n:
        raise ValueError(f"looks must increase from at least 2 pairs up to max_n={max_n}, got {looks}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    t = np.asarray(looks, float) / max_n
    spent = obrien_fleming_spending(t, alpha)
    z = [float(stats.norm.isf(spent[0] / 2))]
    s = np.linspace(-z[0] * math.sqrt(t[0]), z[0] * math.sqrt(t[0]), grid)
    density = stats.norm.pdf(s, scale=math.sqrt(t[0]))
    for k in range(1, len(looks)):
        step = math.sqrt(t[k] - t[k - 1])
        weights = np.full(grid, s[1] - s[0])
        weights[[0, -1]] /= 2  # trapezoid rule
        mass = density * weights
        increment = spent[k] - spent[k - 1]

        if increment <= 1e-15:
            c = 40.0
        else:
            args = (math.sqrt(t[k]), s, mass, step, increment)
            c = float(optimize.brentq(_excess_exit, 0.0, 40.0, args=args, xtol=1e-10))
        z.append(c)
        new_s = np.linspace(-c * math.sqrt(t[k]), c * math.sqrt(t[k]), grid)
        density = (stats.norm.pdf((new_s[:, None] - s[None, :]) / step) / step) @ mass
        s = new_s
    nominal = tuple(float(2 * stats.norm.sf(c)) for c in z)
    return Boundary(looks, int(max_n), float(alpha), tuple(map(float, t)), tuple(map(float, spent)), tuple(z), nominal)


def _excess_exit(c: float, root_t: float, s: np.ndarray, mass: np.ndarray, step: float, target: float) -> float:
    return _exit_probability(c * root_t, s, mass, step) - target


def _exit_probability(edge: float, s: np.ndarray, mass: np.ndarray, step: float) -> float:
    """P(|S_k| >= edge and no earlier crossing), from the continuation mass at grid points s."""
    return float(np.sum(mass * (stats.norm.sf((edge - s) / step) + stats.norm.cdf((-edge - s) / step))))


@dataclass(frozen=True)
class SequentialVerdict:
    """Where one comparison stands after the looks so far."""

    variant: str
    verdict: str  # better / worse / equivalent once settled, else inconclusive
    settled: bool
    look: int | None  # index of the look that settled it
    n_pairs: int  # pairs at that look (or at the last look when open)
    p: float  # the paired test's p at that look (last look when open)
    nominal: float  # the nominal level it was compared with at that look


def settle(
    diffs: Mapping[str, Sequence[float]],
    looks: Sequence[int],
    max_n: int,
    metric: str,
    margin: float = DEFAULT_EQUIVALENCE_MARGIN,
    alpha: float = ALPHA,
) -> tuple[dict[str, SequentialVerdict], Boundary]:
    """Per comparison, whether the looks so far settle it (better, worse or equivalent), with the boundary.

    ``diffs`` maps each variant to its paired differences variant − reference, in seed order, at least
    ``looks[-1]`` of them; look k sees the first ``looks[k]``. Stateless: every earlier look is re-read from
    the data, so an interrupted and resumed run reaches the same verdicts."""
    check_margin(margin)
    higher = higher_is_better(metric)
    arrays = {v: np.asarray(d, float) for v, d in diffs.items()}
    short = [v for v, d in arrays.items() if len(d) < looks[-1]]
    if short:
        raise ValueError(f"fewer than {looks[-1]} paired differences for {short}")
    m = len(arrays)
    tables = {j: boundary(looks, max_n, alpha / j) for j in range(1, m + 1)}  # Holm shares of alpha
    equivalence = boundary(looks, max_n, min(2 * alpha, 0.999))
    done: dict[str, SequentialVerdict] = {}
    last_p: dict[str, float] = {}
    for k, n in enumerate(looks):
        open_ = [v for v in arrays if v not in done]
        tests = {v: paired_test(arrays[v][:n], np.zeros(n)) for v in open_}
        rejected = sum(1 for r in done.values() if r.verdict in ("better", "worse"))
        order = sorted((p, v) for v, (_, p) in tests.items() if not np.isnan(p))
        for rank, (p, v) in enumerate(order):  # Holm step-down over the difference hypotheses still open
            share = m - rejected - rank
            level = tables[share].nominal[k]
            if p >= level:
                break
            mean = float(np.mean(arrays[v][:n]))
            verdict = "better" if (mean > 0) == higher else "worse"
            done[v] = SequentialVerdict(v, verdict, True, k, n, p, level)
        level = equivalence.nominal[k] / 2
        for v in open_:
            if v in done:
                continue
            d = arrays[v][:n]
            tost = tost_p(d, np.zeros(n), margin)
            if not np.isnan(tost) and tost < level:
                done[v] = SequentialVerdict(v, "equivalent", True, k, n, tests[v][1], level)
        last_p = {v: p for v, (_, p) in tests.items()}
    n, level = looks[-1], tables[1].nominal[-1]
    out = {v: done.get(v) or SequentialVerdict(v, "inconclusive", False, None, n, last_p[v], level) for v in arrays}
    return out, tables[1]
