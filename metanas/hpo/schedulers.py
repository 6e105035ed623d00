"""Random search, successive halving and Hyperband over any objective with a fidelity knob.

The objective is ``evaluate(config, fidelity) -> loss`` (lower is better); the fidelity is whatever knob the
experiment exposes (training steps, epochs, a data fraction). Configurations come from a *proposer*
``propose(n, history, rng) -> list[config]`` (random, warm-started, or model-based; see ``samplers``), so
the schedulers are the same for every way of choosing configurations, as in BOHB (Falkner et al. 2018).

- Successive halving (Jamieson & Talwalkar 2016; Li et al. 2018, Alg. 1 inner loop): ``n`` configurations at
  fidelity ``r0``; keep the best ``floor(n_i / eta)`` and multiply the fidelity by ``eta`` until ``max_fidelity``.
- Hyperband (Li et al. 2018, Alg. 1): ``s_max = floor(log_eta(R / r_min))``; bracket ``s`` runs successive
  halving with ``n = ceil((s_max + 1) / (s + 1) * eta**s)`` configurations starting at ``R * eta**-s``.

Host-side Python (the objective may launch whole training runs). Components are frozen dataclasses holding
hyper-parameters only; ``run`` is a pure function of its arguments and the generator it is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np


class Trial(NamedTuple):
    index: int  # order of evaluation (0-based)
    config: Any  # a dict from a HyperparameterSpace, or any hashable candidate (e.g. a config index)
    fidelity: float  # value of the fidelity knob used
    loss: float  # objective value (lower is better)
    bracket: int  # Hyperband bracket s (0 for random search / a single SH run)
    rung: int  # rung within the bracket (0 = lowest fidelity)
    cost: float  # fidelity / max_fidelity: full-evaluation equivalents spent


Evaluate = Callable[[Any, float], float]
Propose = Callable[[int, Sequence[Trial], np.random.Generator], list]


def rung_fidelities(min_fidelity: float, max_fidelity: float, eta: int, integer: bool) -> list[float]:
    """Fidelities ``max * eta**-k`` for k = s_max..0, with ``s_max = floor(log_eta(max / min))``."""
    if not (0 < min_fidelity <= max_fidelity):
        raise ValueError(f"need 0 < min_fidelity <= max_fidelity, got {min_fidelity}, {max_fidelity}")
    if eta < 2:
        raise ValueError(f"eta must be >= 2, got {eta}")
    s_max = int(math.floor(math.log(max_fidelity / min_fidelity) / math.log(eta) + 1e-9))
    out = [max_fidelity * eta ** -(s_max - i) for i in range(s_max + 1)]
    return [float(max(1, round(f))) if integer else float(f) for f in out]


def _evaluate_all(evaluate: Evaluate, configs: list, fidelity: float, max_fidelity: float, bracket: int,
                  rung: int, history: list[Trial]) -> list[Trial]:
    out = []
    for c in configs:
        t = Trial(len(history), c, fidelity, float(evaluate(c, fidelity)), bracket, rung, fidelity / max_fidelity)
        history.append(t)
        out.append(t)
    return out


def successive_halving_bracket(configs: list, evaluate: Evaluate, fidelities: Sequence[float], eta: int, *,
                               max_fidelity: float, bracket: int, history: list[Trial]) -> list[Trial]:
    """Run SH on ``configs`` over the rung ``fidelities`` (ascending); appends to and returns ``history``.

    At each rung the best ``max(1, floor(n_i / eta))`` survive; non-finite losses rank last.
    """
    survivors = list(configs)
    for rung, fid in enumerate(fidelities):
        trials = _evaluate_all(evaluate, survivors, fid, max_fidelity, bracket, rung, history)
        if rung == len(fidelities) - 1:
            break
        keep = max(1, len(survivors) // eta)
        losses = np.array([t.loss if math.isfinite(t.loss) else np.inf for t in trials])
        order = np.argsort(losses, kind="stable")[:keep]
        survivors = [survivors[i] for i in order]
    return history


@dataclass(frozen=True)
class RandomSearch:
    """``n_trials`` configurations, each evaluated once at ``max_fidelity`` (Bergstra & Bengio 2012)."""

    n_trials: int = 20
    max_fidelity: float = 1.0
    integer_fidelity: bool = False

    def run(self, propose: Propose, evaluate: Evaluate, rng: np.random.Generator,
            history: list[Trial] | None = None) -> list[Trial]:
        history = [] if history is None else history
        fid = float(round(self.max_fidelity)) if self.integer_fidelity else float(self.max_fidelity)
        for _ in range(self.n_trials):  # propose one at a time so model-based proposers see every result
            _evaluate_all(evaluate, propose(1, history, rng), fid, self.max_fidelity, 0, 0, history)
        return history


@dataclass(frozen=True)
class SuccessiveHalving:
    """One SH bracket: ``n_configs`` at ``min_fidelity``, the best 1/eta promoted each rung up to ``max_fidelity``."""

    n_configs: int = 27
    min_fidelity: float = 1.0
    max_fidelity: float = 27.0
    eta: int = 3
    integer_fidelity: bool = False

    def fidelities(self) -> list[float]:
        return rung_fidelities(self.min_fidelity, self.max_fidelity, self.eta, self.integer_fidelity)

    def run(self, propose: Propose, evaluate: Evaluate, rng: np.random.Generator,
            history: list[Trial] | None = None) -> list[Trial]:
        history = [] if history is None else history
        configs = propose(self.n_configs, history, rng)
        return successive_halving_bracket(configs, evaluate, self.fidelities(), self.eta,
                                          max_fidelity=self.max_fidelity, bracket=0, history=history)


@dataclass(frozen=True)
class Hyperband:
    """All Hyperband brackets s = s_max..0, repeated ``iterations`` times (Li et al. 2018, Alg. 1)."""

    min_fidelity: float = 1.0
    max_fidelity: float = 27.0
    eta: int = 3
    iterations: int = 1
    integer_fidelity: bool = False

    def brackets(self) -> list[tuple[int, int, list[float]]]:
        """[(s, n_configs, rung fidelities)] in the order they run."""
        fids = rung_fidelities(self.min_fidelity, self.max_fidelity, self.eta, self.integer_fidelity)
        s_max = len(fids) - 1
        out = []
        for s in range(s_max, -1, -1):
            n = int(math.ceil((s_max + 1) / (s + 1) * self.eta ** s))
            out.append((s, n, fids[s_max - s:]))
        return out

    def run(self, propose: Propose, evaluate: Evaluate, rng: np.random.Generator,
            history: list[Trial] | None = None) -> list[Trial]:
        history = [] if history is None else history
        for _ in range(self.iterations):
            for s, n, fids in self.brackets():
                configs = propose(n, history, rng)
                successive_halving_bracket(configs, evaluate, fids, self.eta, max_fidelity=self.max_fidelity,
                                           bracket=s, history=history)
        return history


def incumbent(history: Sequence[Trial]) -> Trial:
    """Best trial at the highest fidelity reached (lower-fidelity losses are not comparable)."""
    if not history:
        raise ValueError("no trials yet")
    top = max(t.fidelity for t in history)
    return min((t for t in history if t.fidelity == top and math.isfinite(t.loss)),
               key=lambda t: t.loss, default=history[0])


def incumbent_curve(history: Sequence[Trial], true_loss: Callable[[Any], float] | None = None) -> np.ndarray:
    """Incumbent loss after each trial, [len(history)]: the best full-fidelity loss seen so far, or (with
    ``true_loss``) the true loss of the config that has the best *observed* loss at the highest fidelity so far."""
    out, best_obs, best_val = [], (math.inf, math.inf), math.inf
    for t in history:
        if (-t.fidelity, t.loss) < best_obs:
            best_obs = (-t.fidelity, t.loss)
            best_val = true_loss(t.config) if true_loss is not None else t.loss
        out.append(best_val)
    return np.asarray(out, np.float64)


def dedup_key(config: Any) -> Hashable:
    if isinstance(config, dict):
        from metanas.hpo.space import config_key

        return config_key(config)
    return config
