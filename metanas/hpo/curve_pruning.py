"""Prune a live training run on the learning-curve meta-learner's forecast of where it ends (one core for
``train.pruner=metalearner`` of the HPO runner and for ``metanas.optuna.MetaLearnerPruner``).

Curves are on a fixed grid of ``L`` checkpoints (lower is better; NaN = not observed). At a checkpoint, the
``CurveModel`` of ``metanas.predictors.curves`` (an ensemble; config features + the observed prefix -> the value at
the final checkpoint), fitted on the curves at hand -- finished runs' full curves and pruned runs' partial ones, of
this study and of the related ``source`` studies -- gives the run's final value as a Gaussian (ensemble mean,
ensemble std, floored at ``min_std``). The run is pruned when P(final >= incumbent) >= ``threshold``, the incumbent
being the best FINAL value of this study's finished runs. Never before ``min_checkpoints`` checkpoints, never
before ``min_curves`` curves are at hand and a run has finished, never at the last checkpoint (it is finished).
A non-finite observed value (a diverged run) is pruned at once.

Fits: with ``source`` curves the model is pre-trained on them once (``pretrain_steps``); each time the set of
curves changes it is fitted on source + target curves (``fit_steps`` from the pre-trained parameters, with a key
folded from the number of curves: a function of the curves at hand, so a resumed study decides as the
uninterrupted one did), and a pruned run's partial curve feeds the next decision. Row tables are padded to a
power of two so the jitted fit compiles a handful of times per study, not once per trial.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metanas.predictors.curves import CurveModel, Rows, data_scale


class Curve(NamedTuple):
    """One run's curve: config features ``x`` [D], values ``y`` [L] (lower is better; NaN past ``n``), ``n``
    observed checkpoints (``n == L``: finished)."""

    x: np.ndarray
    y: np.ndarray
    n: int


@dataclass(frozen=True)
class CurvePruning:
    """Settings of the curve-model pruner (``train.pruner_settings`` / ``MetaLearnerPruner`` keywords)."""

    threshold: float = 0.9  # prune when P(final value no better than the incumbent) >= threshold
    min_checkpoints: int = 2  # observed checkpoints before a run may be pruned
    min_curves: int = 5  # curves at hand (this study's and the sources') before pruning starts
    min_std: float = 0.0  # floor of the forecast's std (the ensemble spread), in the values' units
    hidden: int = 32
    layers: int = 2
    ensemble: int = 5
    lr: float = 3e-3
    batch: int = 128
    pretrain_steps: int = 400
    fit_steps: int = 300
    seed: int = 0

    def __post_init__(self):
        if not 0.5 <= self.threshold <= 1.0:
            raise ValueError(f"pruner threshold={self.threshold}; expected a probability in [0.5, 1]")
        if self.min_checkpoints < 1:
            raise ValueError(f"pruner min_checkpoints={self.min_checkpoints}; expected >= 1")

    @property
    def model(self) -> CurveModel:
        return CurveModel(hidden=self.hidden, layers=self.layers, ensemble=self.ensemble, lr=self.lr,
                          batch=self.batch)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _train(model: CurveModel, key, params, x, rows: Rows, steps: int):
    return model.train(key, params, x, rows, steps)


@functools.partial(jax.jit, static_argnums=(0,))
def _final(model: CurveModel, params, x, y, n):
    return model.final(params, x, y, n)


def _table(curves: Sequence[Curve], L: int, D: int) -> tuple[np.ndarray, Rows]:
    cap = max(64, 1 << max(len(curves) - 1, 0).bit_length())
    x = np.zeros((cap, D), np.float32)
    y = np.full((cap, L), np.nan, np.float32)
    prog = np.zeros(cap, np.int32)
    for i, c in enumerate(curves):
        x[i] = c.x
        y[i, :c.n] = np.asarray(c.y, np.float32)[:c.n]
        prog[i] = c.n
    return x, Rows(jnp.asarray(y), jnp.asarray(prog), jnp.arange(cap, dtype=jnp.int32))


class CurvePruner:
    """Host-side pruning state of one study: the fitted curve model, refitted when the curves change."""

    def __init__(self, settings: CurvePruning, L: int, D: int, source: Sequence[Curve] = ()):
        self.s, self.L, self.D = settings, int(L), int(D)
        self.source = [c for c in source if c.n >= 1]
        self._params = self._base = None
        self._seen: tuple | None = None
        self._key = jax.random.PRNGKey(settings.seed)
        self.fits = 0

    def _check(self, c: Curve) -> None:
        if len(c.x) != self.D or len(c.y) != self.L or not 0 <= c.n <= self.L:
            raise ValueError(f"curve with {len(c.x)} features, {len(c.y)} checkpoints, {c.n} observed; this pruner "
                             f"expects {self.D} features and {self.L} checkpoints")

    def fit(self, curves: Sequence[Curve]) -> None:
        """Fit on ``source`` + ``curves`` unless these curves were the last fit's. The fit is a function of the
        curves alone (from the source-pretrained parameters, with a key folded from the number of curves), so a
        resumed study decides as the uninterrupted one did."""
        curves = [c for c in curves if c.n >= 1]
        sig = tuple((c.n, float(np.nansum(c.y[:c.n]))) for c in curves)
        if sig == self._seen:
            return
        for c in curves:
            self._check(c)
        model = self.s.model
        if self._base is None:  # initial (source-pretrained) parameters, scaled by the source curves or the first fit's
            _, rows = _table(self.source + curves, self.L, self.D)
            mu, sd = data_scale(rows.y, rows.prog)
            k0, k1 = jax.random.split(self._key)
            self._base = model.init(k0, self.D, mu, sd)
            if self.source and self.s.pretrain_steps > 0:
                xs, rs = _table(self.source, self.L, self.D)
                self._base = _train(model, k1, self._base, jnp.asarray(xs), rs, self.s.pretrain_steps)
        x, rows = _table(self.source + curves, self.L, self.D)
        k = jax.random.fold_in(self._key, len(curves))
        self._params = _train(model, k, self._base, jnp.asarray(x), rows, self.s.fit_steps)
        self._seen = sig
        self.fits += 1

    def forecast(self, c: Curve) -> tuple[float, float]:
        """(mean, std) of the final value of the run with curve ``c`` (its first ``c.n`` values observed)."""
        self._check(c)
        y = np.nan_to_num(np.asarray(c.y, np.float32)[None])
        m, s = _final(self.s.model, self._params, jnp.asarray(c.x, jnp.float32)[None], jnp.asarray(y),
                      jnp.asarray([c.n], jnp.int32))
        return float(m[0]), max(float(s[0]), self.s.min_std)

    def decide(self, run: Curve, curves: Sequence[Curve], incumbent: float | None) -> tuple[bool, float]:
        """(prune?, P(final >= incumbent)) for ``run`` given the other ``curves`` at hand (finished and pruned runs
        of this study; the sources are added here) and this study's ``incumbent`` (best final value, None: none
        finished yet). Fits the model only when a decision needs it."""
        n = run.n
        if n < 1 or n >= self.L:
            return False, math.nan
        if not np.all(np.isfinite(np.asarray(run.y[:n], float))):
            return True, 1.0
        if (n < self.s.min_checkpoints or incumbent is None or not math.isfinite(incumbent)
                or len(self.source) + sum(c.n >= 1 for c in curves) < self.s.min_curves):
            return False, math.nan
        self.fit(curves)
        m, s = self.forecast(run)
        p = 1.0 - float(jax.scipy.stats.norm.cdf((incumbent - m) / max(s, 1e-12)))
        return p >= self.s.threshold, p
