"""``MetaLearnerPruner``: prune an Optuna trial on the learning-curve meta-learner's forecast of its FINAL value,
fitted on the learning curves of this study and of earlier (related) studies (warm-started pruning).

The core is ``metanas.hpo.curve_pruning`` (the same one ``train.pruner=metalearner`` of the HPO runner uses): the
``CurveModel`` ensemble of ``metanas.predictors.curves`` reads the trial's parameters (encoded from their
distributions: one-hot categoricals, numbers scaled to [0, 1], on a log scale where the distribution is) and its
intermediate values so far, and forecasts the value at the last step as a Gaussian; the trial is pruned when
P(it ends no better than the study's best finished trial) >= ``threshold``. Finished trials give full curves,
pruned trials partial ones; both feed the next fit. Curves live on the grid of report steps of the finished
trials (this study's and the ``history`` studies'); a trial's value at a grid step is its latest report at or
before it. Compared with Optuna's ``MedianPruner`` (the trial's *current* value against the others' at the same
step) it ranks a trial by where curves like it ended, and with ``history`` it can prune from the first trial of a
new study.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.pruners import BasePruner
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from metanas.hpo.curve_pruning import Curve, CurvePruner, CurvePruning


def encode_params(params: dict, dists: dict) -> np.ndarray:
    """Features of a trial's ``params`` under ``dists`` (name -> distribution, in sorted name order): one-hot
    categoricals, numbers in [0, 1] (log scale where the distribution is); a missing parameter encodes as zeros."""
    out: list[float] = []
    for name in sorted(dists):
        d, v = dists[name], params.get(name)
        if isinstance(d, CategoricalDistribution):
            out.extend(float(v is not None and c == v) for c in d.choices)
        elif isinstance(d, (FloatDistribution, IntDistribution)):
            if v is None:
                out.append(0.0)
            elif d.log:
                out.append((math.log(v) - math.log(d.low)) / max(math.log(d.high) - math.log(d.low), 1e-12))
            else:
                out.append((v - d.low) / max(d.high - d.low, 1e-12))
        else:
            raise ValueError(f"MetaLearnerPruner: parameter {name!r} has distribution {type(d).__name__}; expected "
                             f"Categorical, Float or Int")
    return np.asarray(out, np.float32)


class MetaLearnerPruner(BasePruner):
    """Curve-model pruner (module doc). ``history``: earlier studies (objects or study names in the same storage),
    whose finished and pruned curves are source curves; ``n_warmup_steps``: the trial's step must be at least this
    before it may be pruned; keywords of ``CurvePruning`` (``threshold``, ``min_checkpoints``, ``min_curves``,
    ``min_std``, model size and fit steps). Single-objective studies only."""

    def __init__(self, history: Sequence[optuna.Study | str] | None = None, *, n_warmup_steps: int = 0,
                 **settings) -> None:
        self._history = list(history or [])
        self._warmup = int(n_warmup_steps)
        self._settings = CurvePruning(**settings)
        self._core: CurvePruner | None = None
        self._key: tuple | None = None
        self.last_probability = math.nan

    def _history_trials(self, study: Study) -> list[tuple[FrozenTrial, float]]:
        out = []
        for h in self._history:
            hs = optuna.load_study(study_name=h, storage=study._storage) if isinstance(h, str) else h
            flip = -1.0 if hs.direction != study.direction else 1.0
            out.extend((t, flip) for t in hs.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                       if t.intermediate_values)
        return out

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        if len(study.directions) > 1:
            raise ValueError("MetaLearnerPruner supports single-objective studies (Optuna's pruners do too)")
        step = trial.last_step
        self.last_probability = math.nan
        if step is None or step < self._warmup:
            return False
        if not math.isfinite(trial.intermediate_values[step]):
            return True
        own = [(t, 1.0) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
               if t.intermediate_values]
        hist = self._history_trials(study)
        finished = [t for t, _ in own + hist if t.state == TrialState.COMPLETE]
        grid = sorted({s for t in finished for s in t.intermediate_values})
        if not grid:
            return False
        sign = 1.0 if study.direction == StudyDirection.MINIMIZE else -1.0  # the core minimises
        dists = dict(trial.distributions)
        for t, _ in own + hist:
            for k, d in t.distributions.items():
                dists.setdefault(k, d)

        def curve(t: FrozenTrial, flip: float) -> Curve:
            iv = t.intermediate_values
            y = np.full(len(grid), np.nan, np.float32)
            n = 0
            for i, g in enumerate(grid):
                seen = [s for s in iv if s <= g]
                if not seen or g > max(iv):
                    break
                y[i] = sign * flip * iv[max(seen)]
                n = i + 1
            return Curve(encode_params(t.params, dists), y, n)

        key = (tuple(grid), tuple(sorted(dists)))
        if self._core is None or key != self._key:
            self._core = CurvePruner(self._settings, len(grid), len(encode_params({}, dists)),
                                     source=[curve(t, f) for t, f in hist])
            self._key = key
        done = [sign * t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
        prune, p = self._core.decide(curve(trial, 1.0), [curve(t, 1.0) for t, _ in own],
                                     min(done) if done else None)
        self.last_probability = p
        return prune
