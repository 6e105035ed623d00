"""``MetaLearnerSampler``: the metanas meta-learner as an Optuna sampler (relative sampling, warm starts from other
studies). A thin adapter over ``metanas.hpo.proposer.Proposer`` (the core the Hydra sweeper uses too)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from metanas.hpo.proposer import Proposer, Record
from metanas.hpo.space import HyperparameterSpace, Hyperparameter

_STATUS = {TrialState.COMPLETE: "ok", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
           TrialState.RUNNING: "running", TrialState.WAITING: "running"}


def space_from_distributions(dists: dict[str, BaseDistribution]) -> HyperparameterSpace:
    """A ``HyperparameterSpace`` of Optuna distributions (sorted by name; steps are snapped after proposing)."""
    params = []
    for name in sorted(dists):
        d = dists[name]
        if isinstance(d, CategoricalDistribution):
            params.append(Hyperparameter(name, "categorical", choices=tuple(d.choices)))
        elif isinstance(d, IntDistribution):
            params.append(Hyperparameter(name, "int", low=float(d.low), high=float(d.high), log=d.log))
        elif isinstance(d, FloatDistribution):
            params.append(Hyperparameter(name, "float", low=float(d.low), high=float(d.high), log=d.log))
        else:
            raise ValueError(f"MetaLearnerSampler: parameter '{name}' has a {type(d).__name__}; expected a "
                             f"FloatDistribution, IntDistribution or CategoricalDistribution")
    return HyperparameterSpace(tuple(params))


def _snap(value: Any, d: BaseDistribution) -> Any:
    """A proposed value as the distribution holds it (steps, int, bounds)."""
    if isinstance(d, CategoricalDistribution):
        return value
    v = float(value)
    if getattr(d, "step", None) is not None:
        v = d.low + round((v - d.low) / d.step) * d.step
    v = min(max(v, d.low), d.high)
    return int(round(v)) if isinstance(d, IntDistribution) else float(v)


def _records(trials: Sequence[FrozenTrial], flip: bool) -> list[Record]:
    out = []
    for t in trials:
        status = _STATUS.get(t.state)
        if status is None:
            continue
        value = t.value if (status == "ok" and t.values is not None and len(t.values) == 1) else None
        if value is not None and flip:
            value = -value
        out.append(Record(dict(t.params), value, status))
    return out


class MetaLearnerSampler(BaseSampler):
    """Optuna sampler backed by the metanas meta-learner.

    ``history``: earlier studies to warm-start from (``optuna.Study`` objects, or study names in the storage of the
    study being sampled); their completed trials are fitted once as ensemble members whose weight is decided by how
    well they rank this study's trials (``metanas.hpo.proposer``). ``seed``: the generator of the candidate draws.
    ``n_startup_trials``: trials before the model proposes (without history: random draws until then; with
    history: the earlier studies propose from the first trial). ``n_candidates``: configurations scored per
    trial in one jitted program. ``beta``: UCB bonus on the ensemble spread. Parameters outside the relative
    search space (the intersection of the completed trials' distributions) come from ``independent_sampler``
    (default ``RandomSampler(seed)``). Single-objective studies only: a multi-objective study is rejected with a
    ValueError at its first sample.
    """

    def __init__(self, history: Sequence[Study | str] | None = None, *, seed: int | None = None,
                 n_startup_trials: int = 3, n_candidates: int = 4096, beta: float = 0.5,
                 independent_sampler: BaseSampler | None = None, predictor: Any = None) -> None:
        self._history = list(history or [])
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._n_startup = int(n_startup_trials)
        self._n_candidates = int(n_candidates)
        self._beta = float(beta)
        self._predictor = predictor
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace(include_pruned=True)
        self._members: dict[tuple, Any] = {}  # (space, history sizes) -> fitted history members
        self.last_weights: dict | None = None  # trust weights of the last warm proposal (for logs and tests)

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._independent.reseed_rng()

    def _check(self, study: Study) -> None:
        if len(study.directions) > 1:
            raise ValueError(f"MetaLearnerSampler supports single-objective studies; study '{study.study_name}' has "
                             f"{len(study.directions)} directions. Use optuna.samplers.NSGAIISampler (or TPESampler) "
                             f"for multi-objective studies, or optimise one objective.")

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._check(study)
        space = self._search_space.calculate(study)
        if not space and self._history and not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            # nothing completed yet: the earlier studies' space, so that the warm start proposes trial 0 too
            for h in self._history:
                h = optuna.load_study(study_name=h, storage=study._storage) if isinstance(h, str) else h
                space = IntersectionSearchSpace().calculate(h)
                if space:
                    break
        return {n: d for n, d in space.items() if not d.single()}

    def _history_records(self, study: Study) -> dict[str, list[Record]]:
        out = {}
        for h in self._history:
            if isinstance(h, str):
                h = optuna.load_study(study_name=h, storage=study._storage)
            if len(h.directions) > 1:
                raise ValueError(f"MetaLearnerSampler: history study '{h.study_name}' is multi-objective; only "
                                 f"single-objective studies can warm-start")
            if h.study_name == study.study_name and h._storage is study._storage:
                continue
            flip = h.direction != study.direction
            out[h.study_name] = _records(h.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), flip)
        return out

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        self._check(study)
        if not search_space:
            return {}
        space = space_from_distributions(search_space)
        maximize = study.direction == StudyDirection.MAXIMIZE
        chunk = min(self._n_candidates, 4096)
        proposer = Proposer(space, maximize=maximize, predictor=self._predictor, n_candidates=self._n_candidates,
                            chunk=chunk if self._n_candidates % chunk == 0 else self._n_candidates,
                            beta=self._beta, min_points=self._n_startup)
        current = _records([t for t in study.get_trials(deepcopy=False) if t.number != trial.number], False)
        history = self._history_records(study) if self._history else {}
        members = None
        if history:
            key = (space, tuple((k, len(v)) for k, v in history.items()))
            if key not in self._members:
                self._members[key] = proposer.history_members(history, seed=0 if self._seed is None else self._seed)
            members = self._members[key]
        info: dict = {}
        config = proposer.propose(1, current, history, self._rng, members=members, info=info)[0]
        self.last_weights = info.get("weights")
        return {name: _snap(config[name], search_space[name]) for name in search_space if name in config}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        self._check(study)
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._independent.after_trial(study, trial, state, values)

