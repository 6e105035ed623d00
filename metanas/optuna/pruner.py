"""``MetaLearnerPruner``: prune on the predicted FINAL value of a trial, from the learning curves of this study and
of earlier studies (warm-started pruning).

The learning-curve model of the curve work has not landed in metanas; this pruner uses a k-nearest-curves model:
at the trial's latest step s, the finished trials (this study's and the ``history`` studies') whose value at s
(their latest report at or before s) is closest to the trial's value are its neighbours, and the median of their
final values is the trial's predicted final value. The trial is pruned when that prediction is worse than the
``percentile``-th best final value of the finished trials (50: the median). Compared with Optuna's
``MedianPruner`` (which compares the trial's *current* value with the others' values at the same step) it ranks
the trial by where curves like it ended, and with ``history`` it can prune from the first trial of a new study.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState


def predict_final(curves: Sequence[tuple[dict, float]], value: float, step: int, k: int) -> float | None:
    """Median final value of the ``k`` finished curves ({step: value}, final) closest to ``value`` at ``step``."""
    near = []
    for iv, final in curves:
        steps = [s for s in iv if s <= step]
        if steps:
            near.append((abs(iv[max(steps)] - value), final))
    if not near:
        return None
    near.sort(key=lambda r: r[0])
    return float(np.median([f for _, f in near[:k]]))


class MetaLearnerPruner(BasePruner):
    """Warm-started k-nearest-curves pruner (module doc). ``history``: earlier studies (objects or study names in
    the same storage). ``n_min_trials``: finished curves needed before pruning; ``n_warmup_steps``: steps
    reported before a trial may be pruned; ``k``: neighbours; ``percentile``: the prune threshold among finished
    final values (lower = prunes less). Single-objective studies only."""

    def __init__(self, history: Sequence[optuna.Study | str] | None = None, *, n_min_trials: int = 5,
                 n_warmup_steps: int = 0, k: int = 5, percentile: float = 50.0) -> None:
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile={percentile}; expected a value in [0, 100]")
        self._history = list(history or [])
        self._n_min = int(n_min_trials)
        self._warmup = int(n_warmup_steps)
        self._k = int(k)
        self._percentile = float(percentile)
        self._cache: dict[str, list] = {}

    def _finished(self, study: Study) -> list[tuple[dict, float]]:
        out = []
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.intermediate_values and t.value is not None:
                out.append((dict(t.intermediate_values), float(t.value)))
        for h in self._history:
            name = h if isinstance(h, str) else h.study_name
            if name not in self._cache:
                hs = optuna.load_study(study_name=h, storage=study._storage) if isinstance(h, str) else h
                flip = -1.0 if hs.direction != study.direction else 1.0
                self._cache[name] = [({s: flip * v for s, v in t.intermediate_values.items()}, flip * float(t.value))
                                     for t in hs.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                                     if t.intermediate_values and t.value is not None]
            out.extend(self._cache[name])
        return out

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        if len(study.directions) > 1:
            raise ValueError("MetaLearnerPruner supports single-objective studies (Optuna's pruners do too)")
        step = trial.last_step
        if step is None or step < self._warmup:
            return False
        value = trial.intermediate_values[step]
        if not np.isfinite(value):
            return True
        curves = self._finished(study)
        if len(curves) < self._n_min:
            return False
        pred = predict_final(curves, value, step, self._k)
        if pred is None:
            return False
        finals = np.array([f for _, f in curves])
        if study.direction == StudyDirection.MAXIMIZE:
            return pred < np.percentile(finals, 100.0 - self._percentile)
        return pred > np.percentile(finals, self._percentile)
