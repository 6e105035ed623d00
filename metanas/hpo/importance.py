"""Hyperparameter importance from a fitted surrogate: fANOVA main effects by Monte Carlo.

Hutter, Hoos & Leyton-Brown (2014), "An efficient approach for assessing hyperparameter importance": the
fraction of the predictor's variance explained by hyperparameter j alone is
``V_j / V``, with ``f_j(v) = E_{x_-j}[f(v, x_-j)]`` (the marginal prediction) and ``V_j = Var_v f_j(v)``.
fANOVA computes these exactly on a random forest; here they are estimated for any ``predict`` function by
averaging over a background sample of configurations (the observed or sampled ones): for each value ``v`` of
parameter j taken from the background, column group j of every background row is set to ``v``.
Conditional (inactive) encodings are substituted like any other value, which is an approximation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def main_effect_importance(predict: Callable[[np.ndarray], np.ndarray], background: np.ndarray,
                           groups: Sequence[tuple[str, slice]], *, max_values: int = 32,
                           ) -> dict[str, float]:
    """``{name: V_j / V}`` for each column group of ``background`` [N, D]; V = variance of predictions on it."""
    background = np.asarray(background, np.float32)
    total = float(np.var(np.asarray(predict(background))))
    out = {}
    for name, cols in groups:
        values, counts = np.unique(background[:, cols], axis=0, return_counts=True)
        if len(values) > max_values:  # evenly spaced quantiles of the (sorted) background values
            full = background[np.lexsort(background[:, cols].T[::-1]), cols]
            values = full[((np.arange(max_values) + 0.5) / max_values * len(full)).astype(int)]
            counts = np.ones(len(values))
        marg = []
        for v in values:
            x = background.copy()
            x[:, cols] = v
            marg.append(float(np.mean(np.asarray(predict(x)))))
        w = counts / counts.sum()
        m = np.asarray(marg)
        out[name] = float(np.sum(w * (m - np.sum(w * m)) ** 2)) / total if total > 0 else 0.0
    return out


def importance_table(scores: dict[str, float], *, title: str = "main-effect share of variance") -> str:
    """Markdown table, most important first."""
    rows = sorted(scores.items(), key=lambda kv: -kv[1])
    lines = [f"| hyperparameter | {title} |", "| --- | ---: |"]
    lines += [f"| {k} | {v:.3f} |" for k, v in rows]
    return "\n".join(lines) + "\n"
