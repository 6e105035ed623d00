"""The one core behind every outside front end (the Hydra sweeper, the Optuna sampler): given the records
``(params, value, status)`` of this study and of earlier studies, and a search space, propose the next batch.

- **Cold** (no usable record from another study): exactly ``MetaLearnerSampler`` (``metanas.hpo.metalearner``,
  what ``train.sampler=metalearner`` runs): the pairwise meta-learner fitted on this study's finished trials,
  65,536 (default 4,096) candidates drawn from the space and scored in one jitted program, the best ones not yet
  run proposed; random draws until ``min_points`` trials have finished.
- **Warm** (records of earlier studies: earlier sweeps of the same app, related apps, other Optuna studies):
  1. *Replay*: the first ``replay`` proposals are the earlier studies' best configurations (``replay_list``: each
     study's best first, round robin over the studies), skipping any this study has already tried.
  2. *Model*: an RGPE-style ensemble (Feurer et al. 2018). One member per earlier study, fitted once on that study's
     records (all of them in one ``jit(vmap(fit))`` program, cached for the whole sweep), plus this study's member:
     the joint model, fitted on every record (pairs only within a study) so that it follows this study's trials;
     with ``refit_steps`` its fits fine-tune the first earlier study's member for that many steps instead of
     training from scratch (cheaper per trial, deterministic). The members' weights come from
     ``metanas.predictors.trust.ranking_loss_weights`` on this study's finished trials (for the joint model: its
     out-of-fold scores, ``folds`` fits; RGPE's weight dilution rule on), so an earlier study that ranks this
     study's trials badly gets little or no weight; before ``min_points`` trials the earlier studies share the
     weight equally. Candidates are scored by the weighted sum of the members' utilities (log-ratio units, one
     scale) plus ``beta`` times the weighted ensemble spread, in one jitted program. A candidate closer than
     ``radius`` (root-mean-square distance per parameter, encoded configurations) to a configuration this study
     has tried or is about to try is never proposed: without it the proposals pile up where the earlier studies'
     optimum lies, and on an objective that is locally flat (a table of recorded configurations, a categorical
     space) they re-measure one point over and over. A share ``random_fraction`` of the model's proposals are
     random draws (BOHB's rule).

A record's value is the objective as reported (``maximize`` says its direction); failed and unfinished records
(``status != "ok"``) and non-finite values are not fitted, but their configurations count as tried. Values must
be > 0 for a minimised objective (the pairwise target is a ratio of utilities, 1 / value for a loss); records
that break this are skipped and counted.

Deterministic given (records, the generator's state): a resumed sweep replays the same proposals.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metanas.hpo.metalearner import (MetaLearnerSampler, PastRecords, _decoder, _default_predictor, _is_pairwise,
                                     active_config, add_random_distinct, draw_units, encode_units, decode_units,
                                     utility_of)
from metanas.hpo.schedulers import Trial
from metanas.hpo.space import HyperparameterSpace, config_key


class Record(NamedTuple):
    """One trial of a study, as every front end stores it."""

    params: dict  # the configuration (parameter name -> value)
    value: float | None  # the objective as reported (None / nan when not finished)
    status: str = "ok"  # ok | failed | running | pruned


def _cap(n: int) -> int:
    return max(32, 1 << max(n - 1, 0).bit_length())  # padded rows: one compile per power of two


def utilities(values: Sequence[float], maximize: bool, transform: str = "auto") -> np.ndarray:
    """Positive utilities (higher is better) of one study's values. ``raw``: the value (maximised) or 1 / value
    (minimised), nan where that is not > 0, as ``train.sampler=metalearner`` uses; ``zscore``: exp(+-z) of the
    standardised value (log-ratio = difference in standard deviations; any sign); ``auto``: raw when every value
    gives a positive utility, else zscore."""
    v = np.asarray(values, np.float64)
    if transform not in ("auto", "raw", "zscore"):
        raise ValueError(f"transform={transform!r}; expected auto, raw or zscore")
    raw = np.array([utility_of(float(x), maximize) for x in v]) if len(v) else np.zeros(0)
    if transform == "raw" or (transform == "auto" and np.all(np.isfinite(raw))):
        return raw
    z = (v - v.mean()) / (v.std() + 1e-12) if len(v) > 1 else np.zeros_like(v)
    return np.exp(np.clip(z if maximize else -z, -5.0, 5.0))


def usable(space: HyperparameterSpace, records: Sequence[Record], maximize: bool,
           transform: str = "auto") -> tuple[list[dict], list[float]]:
    """(configs, utilities) of the finished records whose configuration lies in ``space`` and whose utility is
    finite (``utilities``)."""
    configs, values = [], []
    for r in records:
        if r.status != "ok" or r.value is None or not math.isfinite(float(r.value)):
            continue
        cfg = active_config(space, r.params)
        if cfg is not None:
            configs.append(cfg)
            values.append(float(r.value))
    u = utilities(values, maximize, transform)
    keep = np.isfinite(u)
    return [c for c, k in zip(configs, keep) if k], [float(x) for x, k in zip(u, keep) if k]


@functools.lru_cache(maxsize=8)
def _fit_members(predictor: Any):
    """jit(keys [M], x [M, R, D], p [M, R], n [M]) -> member params (leading axes M, ensemble)."""
    return jax.jit(jax.vmap(lambda k, x, p, n: predictor.fit(k, x, p, n), in_axes=(0, 0, 0, 0)))


@functools.lru_cache(maxsize=8)
def _target_program(predictor: Any, folds: int, n_boot: int, finetune: bool):
    """jit(key, hist_params, x [R, D], p [R], n, group [R], current [R]) -> (joint params, weights [M + 1]).
    ``finetune``: every fit of this program starts from the first earlier study's member (``predictor.steps``
    steps of fine-tuning) instead of a random init.

    The study's own member is the joint model: fitted on every row (the earlier studies' records and this study's
    trials, pairs only within a study: ``group``), so it follows this study's trials while the earlier ones shape
    its encoder. Its row of the trust matrix holds out-of-fold utilities on this study's trials (``folds`` fits,
    each holding out a fold of this study's rows, which are put in pair groups of their own)."""
    from metanas.predictors.trust import ranking_loss_weights

    def utility(params, x):  # mean over the ensemble, [R]
        return jax.vmap(predictor.utility, in_axes=(0, None))(params, x).mean(0)

    def program(key, hist, x, p, n, group, current):
        k_fit, k_oof, k_w = jax.random.split(key, 3)
        rows = jnp.arange(x.shape[0])
        mine = current & (rows < n)
        init = jax.tree.map(lambda h: h[0], hist) if finetune else None
        joint = predictor.fit(k_fit, x, p, n, group, init=init)
        fold = jnp.cumsum(mine) % folds

        def oof(k, f):
            held = mine & (fold == f)
            g = jnp.where(held, x.shape[0] + rows, group).astype(jnp.int32)  # a held-out row pairs with nothing
            params = predictor.fit(k, x, p, n, g, init=init)
            return jnp.where(held, utility(params, x), 0.0)

        u_oof = jax.vmap(oof)(jax.random.split(k_oof, folds), jnp.arange(folds)).sum(0)
        u_hist = jax.vmap(utility, in_axes=(0, None))(hist, x)  # [M, R]
        scores = jnp.concatenate([u_hist, u_oof[None]], 0)
        w = ranking_loss_weights(k_w, scores, p, mine, n_boot=n_boot, target=scores.shape[0] - 1)
        return joint, w

    return jax.jit(program)


@functools.lru_cache(maxsize=8)
def _score_program(space: HyperparameterSpace, predictor: Any, n_candidates: int, chunk: int, top: int, beta: float):
    """jit(key, params [M+1, ...], w [M+1], tried [T, W], tmask [T], radius) -> (top scores, top indices):
    weighted-ensemble UCB over candidates; a candidate closer than ``radius`` (root-mean-square distance per
    parameter of the encoded configurations) to a tried configuration of this study scores -inf."""
    n_chunks = n_candidates // chunk
    n_params = len(space.params)

    def program(key, params, w, tried, tmask, radius):
        def score_chunk(idx):
            u = jax.vmap(lambda i: draw_units(space, jax.random.fold_in(key, i)))(idx)
            feats = jax.vmap(lambda v: encode_units(space, v))(u)
            d2 = ((feats[:, None, :] - tried[None]) ** 2).sum(-1) / n_params  # [C, T]
            near = jnp.any((d2 < radius ** 2) & tmask[None], 1)
            feats = jnp.concatenate([feats, jnp.zeros((idx.shape[0], 1), feats.dtype)], 1)  # fidelity feature 0
            util = jax.vmap(lambda pm: jax.vmap(predictor.utility, in_axes=(0, None))(pm, feats))(params)  # [M,E,C]
            mean = jnp.einsum("m,mc->c", w, util.mean(1))
            spread = jnp.einsum("m,mc->c", w, util.std(1))
            return jnp.where(near, -jnp.inf, mean + beta * spread)

        scores = jax.lax.map(score_chunk, jnp.arange(n_candidates, dtype=jnp.int32).reshape(n_chunks, chunk))
        return jax.lax.top_k(scores.reshape(-1), top)

    return jax.jit(program)


def replay_list(space: HyperparameterSpace, history: Mapping[str, Sequence[Record]], maximize: bool, k: int,
                transform: str = "auto") -> list[dict]:
    """The ``k`` best distinct configurations of the earlier studies: each study's records best first, taken in
    turn from each study (round robin, in ``history``'s order)."""
    ranked = []
    for recs in history.values():
        configs, utils = usable(space, recs, maximize, transform)
        ranked.append([configs[i] for i in np.argsort(-np.asarray(utils), kind="stable")])
    out, keys = [], set()
    for i in range(max((len(r) for r in ranked), default=0)):
        for r in ranked:
            if i < len(r) and config_key(r[i]) not in keys and len(out) < k:
                out.append(r[i])
                keys.add(config_key(r[i]))
    return out


@dataclass(frozen=True)
class Proposer:
    """``propose(n, current, history, rng) -> list[config]`` (module doc). ``history``: {study name: records}."""

    space: HyperparameterSpace
    maximize: bool = False
    predictor: Any = None  # a pairwise predictor (metanas.predictors.pairwise.Pairwise); None: steps=300, ensemble=3
    n_candidates: int = 4096
    chunk: int = 4096
    beta: float = 0.5
    min_points: int = 3
    top: int = 256
    folds: int = 2  # out-of-fold fits of this study's member for its trust weight
    n_boot: int = 200
    transform: str = "auto"  # values -> positive utilities (``utilities``)
    random_fraction: float = 0.25  # warm path: share of proposals drawn at random (BOHB's rule, as ModelBasedSampler)
    replay: int = 3  # warm path: the earlier studies' best configurations, proposed first (``replay_list``)
    radius: float = 0.3  # warm path: no proposal closer than this to a tried configuration (``_score_program``)
    refit_steps: int | None = 100  # warm path: this study's fits fine-tune the first earlier member for this many
    # steps (None: fitted from scratch with the predictor's own steps)

    @property
    def _predictor(self):
        p = self.predictor if self.predictor is not None else _default_predictor()
        if not _is_pairwise(p):
            raise ValueError(f"the proposer needs a pairwise predictor (metanas.predictors.pairwise.Pairwise), got "
                             f"{type(p).__name__}")
        return p

    def _cold(self, exclude: frozenset = frozenset()) -> MetaLearnerSampler:  # fed utilities: -loss = utility
        records = PastRecords.empty()._replace(seen=frozenset(exclude)) if exclude else None
        return MetaLearnerSampler(self.space, self._predictor, records=records, maximize=True,
                                  n_candidates=self.n_candidates, chunk=self.chunk, beta=self.beta,
                                  min_points=self.min_points, top=self.top)

    def _trials(self, records: Sequence[Record]) -> list[Trial]:
        """This study's records as trials with loss = -utility (nan: unfinished / failed / unusable)."""
        ok = [i for i, r in enumerate(records) if r.status == "ok" and r.value is not None
              and math.isfinite(float(r.value))]
        u = dict(zip(ok, utilities([float(records[i].value) for i in ok], self.maximize, self.transform)))
        out = []
        for i, r in enumerate(records):
            cfg = active_config(self.space, r.params)
            if cfg is not None:
                out.append(Trial(len(out), cfg, 1.0, -float(u.get(i, math.nan)), 0, 0, 1.0))
        return out

    def history_members(self, history: Mapping[str, Sequence[Record]], seed: int = 0):
        """(names, stacked member params) of the earlier studies with >= 2 usable records (None if there are none).
        Fitted in one jit(vmap(fit)) program; cache the result for a sweep (it depends on the records only)."""
        rows = {name: usable(self.space, recs, self.maximize, self.transform) for name, recs in history.items()}
        rows = {k: v for k, v in rows.items() if len(v[0]) >= 2}
        if not rows:
            return None
        cap = _cap(max(len(c) for c, _ in rows.values()))
        m = len(rows)
        x = np.zeros((m, cap, self.space.width + 1), np.float32)
        p = np.ones((m, cap), np.float32)
        n = np.zeros(m, np.int32)
        for i, (configs, utils) in enumerate(rows.values()):
            x[i, : len(configs), : self.space.width] = np.stack([self.space.encode(c) for c in configs])
            p[i, : len(utils)] = utils
            n[i] = len(utils)
        keys = jax.random.split(jax.random.PRNGKey(seed), m)
        params = _fit_members(self._predictor)(keys, jnp.asarray(x), jnp.asarray(p), jnp.asarray(n))
        return list(rows), params

    def propose(self, n: int, current: Sequence[Record], history: Mapping[str, Sequence[Record]] | None,
                rng: np.random.Generator, *, members=None, info: dict | None = None,
                exclude: frozenset = frozenset()) -> list[dict]:
        """``n`` new configurations. ``members``: ``history_members(history)`` computed once (else fitted here).
        ``info`` (a dict) receives the trust weights per study when the warm path runs. ``exclude``: config keys
        never to propose (e.g. configurations already run on this task by an earlier study)."""
        if self.n_candidates % self.chunk:
            raise ValueError(f"n_candidates={self.n_candidates} must be a multiple of chunk={self.chunk}")
        members = members if members is not None else (self.history_members(history) if history else None)
        trials = self._trials(current)
        if members is None:
            return _fill(self.space, self._cold(exclude)(n, trials, rng), n, rng)
        names, hist = members
        predictor = self._predictor
        key = jax.random.PRNGKey(int(rng.integers(2**31 - 1)))  # drawn every call: replays stay aligned
        k_t, k_s = jax.random.split(key)
        seen = {config_key(t.config) for t in trials} | set(exclude)
        out, keys = [], set()
        for c in replay_list(self.space, history, self.maximize, self.replay, self.transform) if history else []:
            if len(out) < n and config_key(c) not in seen:
                out.append(c)
                keys.add(config_key(c))
        if len(out) == n:
            if info is not None:
                info["replayed"] = len(out)
            return out
        configs, utils = usable(self.space, current, self.maximize, self.transform)
        m = len(names)
        if len(configs) >= self.min_points:
            hist_rows = [usable(self.space, history[k], self.maximize, self.transform) for k in names]
            all_cfg = configs + [c for hc, _ in hist_rows for c in hc]
            cap = _cap(len(all_cfg))
            x = np.zeros((cap, self.space.width + 1), np.float32)
            x[: len(all_cfg), : self.space.width] = np.stack([self.space.encode(c) for c in all_cfg])
            p = np.ones(cap, np.float32)
            p[: len(all_cfg)] = utils + [u for _, hu in hist_rows for u in hu]
            group = np.zeros(cap, np.int32)
            group[len(configs): len(all_cfg)] = np.concatenate([np.full(len(hc), 1 + i) for i, (hc, _) in
                                                                enumerate(hist_rows)])
            cur = np.zeros(cap, bool)
            cur[: len(configs)] = True
            folds = max(2, min(self.folds, len(configs)))
            fine = self.refit_steps is not None
            target_predictor = dataclasses.replace(predictor, steps=self.refit_steps) if fine else predictor
            target, w = _target_program(target_predictor, folds, self.n_boot, fine)(
                k_t, hist, jnp.asarray(x), jnp.asarray(p), len(all_cfg), jnp.asarray(group), jnp.asarray(cur))
            params = jax.tree.map(lambda h, t: jnp.concatenate([h, t[None]], 0), hist, target)
        else:  # too few trials of this study: the earlier studies alone, equal weights
            params = hist
            w = jnp.full((m,), 1.0 / m)
        if info is not None:
            info["weights"] = dict(zip(names + (["this study"] if w.shape[0] > m else []),
                                       np.asarray(w).round(4).tolist()))
        top = min(self.n_candidates, max(self.top, 4 * n))
        tried = [t.config for t in trials] + out
        cap = _cap(len(tried))
        tf = np.zeros((cap, self.space.width), np.float32)
        if tried:
            tf[: len(tried)] = np.stack([self.space.encode(c) for c in tried])
        val, idx = _score_program(self.space, predictor, self.n_candidates, self.chunk, top, float(self.beta))(
            k_s, params, jnp.asarray(w, jnp.float32), jnp.asarray(tf), jnp.arange(cap) < len(tried),
            jnp.float32(self.radius))
        n_model = len(out) + int((rng.uniform(size=n - len(out)) >= self.random_fraction).sum())  # rest: random
        picked = [self.space.encode(c) for c in out]
        for u, v in zip(np.asarray(_decoder(self.space)(k_s, idx)), np.asarray(val)):  # winners in score order
            if len(out) >= n_model or not np.isfinite(v):  # -inf: every candidate near a tried configuration
                break
            c = decode_units(self.space, u)
            k = config_key(c)
            f = self.space.encode(c)
            if k not in seen and k not in keys and all(  # spaced from this batch's earlier picks too
                    ((f - g) ** 2).sum() / len(self.space.params) >= self.radius ** 2 for g in picked):
                out.append(c)
                keys.add(k)
                picked.append(f)
        add_random_distinct(self.space, rng, out, keys, seen, n)  # every winner known (tiny spaces)
        return _fill(self.space, out, n, rng)


def _fill(space: HyperparameterSpace, out: list[dict], n: int, rng: np.random.Generator) -> list[dict]:
    """Every configuration of a tiny space already tried: repeats (random draws) rather than fewer than ``n``."""
    return out + [space.sample(rng) for _ in range(n - len(out))]


@dataclass
class TrustSampler:
    """``train.sampler=metalearner`` with ``train.metalearner.trust=true``: the run store's records of earlier
    studies are not pooled into one fit (``MetaLearnerSampler``) but enter the proposer's warm path as members, one
    per pair group (experiment, data set, split), weighted by how well each ranks this study's finished trials
    (RGPE, ``metanas.predictors.trust.ranking_loss_weights``), so a related study that ranks this one badly loses
    its say. Configurations already run on this task (``PastRecords.seen``) are never proposed. A sampler of the
    HPO runner: ``__call__(n, trials, rng)``; single fidelity (the proposer has no fidelity feature)."""

    proposer: Proposer  # maximize=True, transform="raw": it is fed utilities
    history: dict  # {group: [Record]} the earlier studies' records (values: utilities)
    maximize: bool  # the objective's direction (a trial's loss is minus the metric when it is maximised)
    exclude: frozenset = frozenset()
    seed: int = 0
    weights: list = dataclasses.field(default_factory=list)  # per call: the trust weights per study (a log)
    _members: Any = None

    @classmethod
    def from_records(cls, proposer: Proposer, records: PastRecords, maximize: bool, seed: int = 0) -> "TrustSampler":
        history: dict[str, list[Record]] = {}
        for c, u, g in zip(records.configs, records.utility, records.group):
            history.setdefault(g, []).append(Record(c, float(u)))
        return cls(proposer, history, maximize, frozenset(records.seen), seed)

    def __call__(self, n: int, trials: Sequence[Trial], rng: np.random.Generator) -> list[dict]:
        if self._members is None and self.history:
            self._members = self.proposer.history_members(self.history, self.seed)
        current = []
        for t in trials:
            u = utility_of(-t.loss if self.maximize else t.loss, self.maximize)
            current.append(Record(t.config, u, "ok" if math.isfinite(u) else "failed"))
        info: dict = {}
        out = self.proposer.propose(n, current, self.history or None, rng, members=self._members, info=info,
                                    exclude=self.exclude)
        self.weights.append(info.get("weights"))
        return out
