"""Paired comparison of two methods run on the same seeds (or tasks): the statistics every study reports.

A study runs every method on the same seeds with the same initial points (common random numbers), so the honest
comparison of two methods is per seed: how often one beats the other, whether the paired differences are centred
on zero (Wilcoxon signed-rank), and how large the typical difference is (bootstrap CI of the median difference).
Medians alone hide all of that.

"Never within budget" is a censored value: ``censor`` maps every value above the budget to ``budget + 1`` for every
method alike (a deterministic order that needs 137 queries and a search that never hits within 50 both count 51),
so no method is charged more than the cap and ties at the cap count as ties.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats


class Paired(NamedTuple):
    """``a`` against ``b`` over ``n`` paired runs; wins / ties / losses are ``a``'s."""

    n: int
    wins: int
    ties: int
    losses: int
    median_a: float
    median_b: float
    median_diff: float  # median of the paired differences a - b (not the difference of the medians)
    ci_low: float  # bootstrap 95 % CI of median_diff
    ci_high: float
    p: float  # two-sided Wilcoxon signed-rank p (zero differences dropped); 1.0 when every difference is zero


def censor(values, budget: int) -> np.ndarray:
    """``values`` with everything above ``budget`` set to ``budget + 1`` ("never within budget")."""
    v = np.asarray(values, np.float64)
    return np.where(v > budget, budget + 1, v)


def paired(a, b, *, lower_is_better: bool = True, n_boot: int = 10_000, seed: int = 0) -> Paired:
    """Compare per-seed results ``a`` and ``b`` (same length, same seeds in the same order)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired comparison needs two non-empty arrays of one length, got {a.size} and {b.size}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("paired comparison got NaN; censor 'never' at the budget (metanas.stats.censor) first")
    d = a - b
    better = d < 0 if lower_is_better else d > 0
    worse = d > 0 if lower_is_better else d < 0
    if np.any(d != 0):
        p = float(stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)
    else:
        p = 1.0
    rng = np.random.default_rng(seed)
    boot = np.median(d[rng.integers(0, d.size, (n_boot, d.size))], axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Paired(int(d.size), int(better.sum()), int((d == 0).sum()), int(worse.sum()), float(np.median(a)),
                  float(np.median(b)), float(np.median(d)), float(lo), float(hi), p)


def fmt(x: float) -> str:
    """A median as it is: 37.5 stays 37.5, 38.0 prints 38, 94.3667 prints 94.367, -0.0004 prints -0.0004."""
    x = float(x)
    if not np.isfinite(x):
        return str(x)
    if x == round(x):
        return str(int(round(x)))
    return f"{x:.3f}".rstrip("0").rstrip(".") if abs(x) >= 0.01 else f"{x:.2g}"


def fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def paired_rows(results: dict, ours: str, *, lower_is_better: bool = True, seed: int = 0) -> list[dict]:
    """One ``Paired`` (as a dict, with ``method``) of ``ours`` against each other method of ``results``
    (name -> per-seed values, all of one length)."""
    return [{"method": name, **paired(results[ours], v, lower_is_better=lower_is_better, seed=seed)._asdict()}
            for name, v in results.items() if name != ours]


def paired_table(results: dict, ours: str, *, lower_is_better: bool = True, what: str = "", seed: int = 0) -> str:
    """Markdown: ``ours`` against every other method of ``results`` (name -> per-seed values), one row each."""
    head = (f"| {ours} vs | median {what} ({ours}) | median (theirs) | median paired diff [95 % CI] | "
            f"wins / ties / losses | Wilcoxon p |\n|---|---|---|---|---|---|\n")
    rows = []
    for r in paired_rows(results, ours, lower_is_better=lower_is_better, seed=seed):
        rows.append(f"| {r['method']} | {fmt(r['median_a'])} | {fmt(r['median_b'])} | {fmt(r['median_diff'])} "
                    f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}] | {r['wins']} / {r['ties']} / {r['losses']} | "
                    f"{fmt_p(r['p'])} |")
    return head + "\n".join(rows) + "\n"
