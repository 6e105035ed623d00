"""Proposers ``propose(n, history, rng) -> list[config]`` for the schedulers.

- ``RandomSampler``: i.i.d. draws from a declared ``HyperparameterSpace``.
- ``PortfolioSampler``: a warm start: first the given configurations (e.g. the best configurations of the k
  most similar past tasks), then another proposer.
- ``ModelBasedSampler``: BOHB-style model-based sampling (Falkner et al. 2018) with a GP + EI instead of TPE:
  fit on the highest fidelity that has at least ``min_points`` results, propose the best-EI among random
  candidates, with a ``random_fraction`` of pure random proposals kept for robustness.
- ``CandidateSampler``: the same three ideas over a *finite* candidate set (config indices), used by the
  TabRepo study where every candidate has a recorded outcome: random order without replacement, optional
  warm-start list, optional GP-EI on candidate features with an optional meta-learned prior mean.
- ``MetaLearnerSampler`` (``metanas.hpo.metalearner``, JAX): fit a meta-learner (the pairwise model by default) on
  the run store's records and this study's trials, score thousands to millions of candidates in one jitted
  program, propose the best not yet run (UCB on the ensemble spread optional).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metanas.hpo.schedulers import Trial, dedup_key
from metanas.hpo.space import HyperparameterSpace
from metanas.hpo.surrogate import expected_improvement, gp_posterior


@dataclass(frozen=True)
class RandomSampler:
    space: HyperparameterSpace

    def __call__(self, n: int, history: Sequence[Trial], rng: np.random.Generator) -> list[dict]:
        return [self.space.sample(rng) for _ in range(n)]


@dataclass(frozen=True)
class PortfolioSampler:
    """Propose ``initial`` (skipping those already evaluated) before falling back to ``base``, whose proposals
    are drawn again when they repeat an evaluated or already proposed config (up to ``redraws`` times)."""

    initial: tuple[Any, ...]
    base: Any  # another proposer
    redraws: int = 20

    def __call__(self, n: int, history: Sequence[Trial], rng: np.random.Generator) -> list:
        seen = {dedup_key(t.config) for t in history}
        out, keys = [], set()
        for c in self.initial:
            k = dedup_key(c)
            if k not in seen and k not in keys and len(out) < n:
                out.append(c)
                keys.add(k)
        for _ in range(self.redraws):
            if len(out) >= n:
                break
            for c in self.base(n - len(out), history, rng):
                k = dedup_key(c)
                if k not in seen and k not in keys:
                    out.append(c)
                    keys.add(k)
        return out + (self.base(n - len(out), history, rng) if len(out) < n else [])  # small spaces: repeats


def _fit_set(history: Sequence[Trial], min_points: int) -> list[Trial]:
    """Trials of the highest fidelity with >= min_points finite results (BOHB's model-selection rule)."""
    by_fid: dict[float, list[Trial]] = {}
    for t in history:
        if math.isfinite(t.loss):
            by_fid.setdefault(t.fidelity, []).append(t)
    ok = [f for f, ts in by_fid.items() if len(ts) >= min_points]
    return by_fid[max(ok)] if ok else []


@dataclass(frozen=True)
class ModelBasedSampler:
    space: HyperparameterSpace
    n_candidates: int = 256
    min_points: int = 4
    random_fraction: float = 0.25
    lengthscale: float = 0.3

    def __call__(self, n: int, history: Sequence[Trial], rng: np.random.Generator) -> list[dict]:
        fit = _fit_set(history, self.min_points)
        out: list[dict] = []
        if not fit:
            return [self.space.sample(rng) for _ in range(n)]
        x = np.stack([self.space.encode(t.config) for t in fit])
        y = np.array([t.loss for t in fit], np.float32)
        y = (y - y.mean()) / (y.std() + 1e-8)
        cands = [self.space.sample(rng) for _ in range(self.n_candidates)]
        xc = np.stack([self.space.encode(c) for c in cands])
        mean, std = gp_posterior(x, y, xc, lengthscale=self.lengthscale, noise=1e-2)
        ei = np.asarray(expected_improvement(mean, std, float(y.min())))
        order = list(np.argsort(-ei))
        for _ in range(n):
            if rng.uniform() < self.random_fraction or not order:
                out.append(self.space.sample(rng))
            else:
                out.append(cands[order.pop(0)])
        return out


@dataclass(frozen=True)
class CandidateSampler:
    """Proposals over candidates ``0..C-1`` with features ``features`` [C, F].

    ``warm``: indices proposed first (warm start). ``model``: GP-EI over the candidates once ``min_points``
    results exist at one fidelity; ``prior`` [C] (a meta-learner's predicted loss) is then the GP prior mean,
    and before any result the candidates are proposed in the prior's order (zero-shot meta-learned ranking).
    Never proposes an index twice within one call or one already evaluated.
    """

    features: np.ndarray
    warm: tuple[int, ...] = ()
    model: bool = False
    prior: np.ndarray | None = field(default=None, hash=False, compare=False)
    min_points: int = 3
    lengthscale: float = 1.0

    def __call__(self, n: int, history: Sequence[Trial], rng: np.random.Generator) -> list[int]:
        c = self.features.shape[0]
        used = {int(t.config) for t in history}
        out: list[int] = []
        for i in self.warm:
            if len(out) < n and i not in used and i not in out:
                out.append(int(i))
        free = np.array([i for i in range(c) if i not in used and i not in out])
        need = min(n - len(out), len(free))
        if need <= 0:
            return out
        fit = _fit_set(history, self.min_points) if self.model else []
        if self.model and fit:
            idx = np.array([int(t.config) for t in fit])
            y = np.array([t.loss for t in fit], np.float32)
            mu, sd = y.mean(), y.std() + 1e-8
            yz = (y - mu) / sd
            kw = {}
            if self.prior is not None:  # prior in its own units: standardise it over all candidates
                pr = np.asarray(self.prior, np.float64)
                p = (pr - pr.mean()) / (pr.std() + 1e-8)
                kw = dict(prior_mean_obs=p[idx], prior_mean_query=p[free])
            mean, std = gp_posterior(self.features[idx], yz, self.features[free], lengthscale=self.lengthscale,
                                     noise=1e-2, **kw)
            score = -np.asarray(expected_improvement(mean, std, float(yz.min())))
        elif self.model and self.prior is not None:
            score = np.asarray(self.prior)[free] + 1e-9 * rng.uniform(size=len(free))
        else:
            score = rng.uniform(size=len(free))
        return out + [int(i) for i in free[np.argsort(score, kind="stable")[:need]]]
