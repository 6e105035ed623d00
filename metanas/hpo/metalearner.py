"""The meta-learner sampler: fit a performance predictor on past runs, score a large candidate set in one jitted
program, propose the best configurations not yet run.

Each call (a round of random search, a successive-halving bracket, a Hyperband bracket):

1. Fit set: ``records`` (earlier runs read from the run store's meta-dataset, see ``load_records``) plus this
   study's finished trials (``history``). A point is (configuration, fidelity, task features) -> a positive
   utility ``p`` (higher is better): the metric itself for a maximised metric (accuracy), ``1 / metric`` for a
   minimised one (a loss), so the pairwise target ``(p_i - p_j) / p_j`` is a relative improvement either way.
   Features: ``HyperparameterSpace.encode`` (numeric -> unit interval, categorical -> one-hot, inactive -> ``INACTIVE``),
   the log fidelity relative to the top fidelity, and the task features (standardised).
2. One ``jax.jit`` program: fit the predictor (default: the pairwise meta-learner, an ensemble of 3), draw
   ``n_candidates`` configurations from the declared space (conditional parameters included; candidate ``i`` is a
   pure function of ``fold_in(key, i)``, so only the winners' indices come back to the host), encode them at the
   top fidelity for the current task, score them in chunks (``lax.map``) with ``mean + beta * spread`` (UCB over
   the ensemble; ``beta = 0``: pure exploitation) and keep the ``top`` best.
3. Host: decode the winners in score order, drop configurations already run (this study's trials and records of
   the same experiment on the same task) or already proposed, return the first ``n``. Before ``min_points`` usable
   points exist (or if the winners are all known) the rest are random draws, also de-duplicated.

Pairs for the pairwise model are formed only within one group (experiment, data set, split; this study's trials
are one group), so records of another task never compare directly with this one; they still shape the shared
encoder, and with ``task_keys`` their task features say which task a row comes from.

Deterministic given (history, rng state, records): a resumed study replays the same proposals (the runner
snapshots the records it read at the first start, so records appended later by other runs cannot change them).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metanas.hpo.schedulers import Trial
from metanas.hpo.space import INACTIVE, HyperparameterSpace, config_key


class PastRecords(NamedTuple):
    """Usable earlier runs (host-side): one row per record."""

    configs: list[dict]  # active configuration under the space
    fidelity: list[float]  # value of the fidelity knob (nan: not recorded / no fidelity)
    utility: list[float]  # > 0, higher is better
    group: list[str]  # pair group: experiment|dataset|split
    task: list[list[float]]  # [T] task features
    seen: frozenset  # config keys already run on the current task (never proposed again)
    stats: dict  # counts: used, other_experiment, no_overlap, missing_keys, bad_metric, own_study

    @staticmethod
    def empty() -> "PastRecords":
        return PastRecords([], [], [], [], [], frozenset(), {})

    def to_json(self) -> dict:
        return {"configs": self.configs, "fidelity": self.fidelity, "utility": self.utility, "group": self.group,
                "task": self.task, "seen": sorted(self.seen), "stats": self.stats}

    @staticmethod
    def from_json(d: Mapping) -> "PastRecords":
        return PastRecords(list(d["configs"]), list(d["fidelity"]), list(d["utility"]), list(d["group"]),
                           [list(t) for t in d["task"]], frozenset(d["seen"]), dict(d["stats"]))


def utility_of(value: float, maximize: bool) -> float:
    """The predictor's positive target of a metric value (nan if unusable)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return math.nan
    p = float(value) if maximize else (1.0 / value if value > 0 else math.nan)
    return p if p > 0 and math.isfinite(p) else math.nan


def active_config(space: HyperparameterSpace, flat: Mapping[str, Any]) -> dict | None:
    """The active configuration of a flattened run config under ``space`` (None if a needed key is missing or a
    value lies outside the declared space)."""
    out: dict[str, Any] = {}
    for p in space.params:
        if not space.is_active(p, out):
            continue
        if p.name not in flat:
            return None
        v = flat[p.name]
        if p.type == "categorical":
            match = [c for c in p.choices if c == v or str(c) == str(v)]
            if not match:
                return None
            out[p.name] = match[0]
        else:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                return None
            if not (p.low - 1e-12 * abs(p.low) <= v <= p.high + 1e-12 * abs(p.high)):
                return None
            out[p.name] = int(round(v)) if p.type == "int" else float(v)
    return out


def load_records(path: str | Path | None, space: HyperparameterSpace, *, metric: str, maximize: bool, experiment: str,
                 fidelity_key: str | None = None, task_keys: Sequence[str] = (), transfer: bool = False,
                 current_task: Sequence[float] | None = None, exclude_run_dir: str | None = None) -> PastRecords:
    """Usable rows of a run store's meta-dataset (``results/meta_dataset.jsonl``; every finished run appends one).

    A row is used when it comes from ``experiment`` (or, with ``transfer``, from any experiment), has a finite
    ``metrics[metric]``, and its flattened ``config`` holds every parameter of the space that is active for it
    (and ``fidelity_key`` / ``task_keys`` when given), with values inside the declared space. So records of an
    unrelated experiment that share no keys are ignored. Rows under ``exclude_run_dir`` (this study's own trials,
    which the sampler sees as its history) are skipped.

    Rows are read with ``run_store.read_jsonl`` and filtered row by row: ``read_meta_dataset`` requires every row of
    an experiment to carry the metric > 0, and one diverged trial (NaN loss) must not stop a search.
    """
    from metanas.run_store import read_jsonl

    stats = dict(used=0, other_experiment=0, no_overlap=0, missing_keys=0, bad_metric=0, own_study=0)
    if not path or not Path(path).exists():
        return PastRecords.empty()._replace(stats=stats)
    configs, fids, utils, groups, tasks, seen = [], [], [], [], [], set()
    names = set(space.names)
    for row in read_jsonl(path):
        exp = row.get("experiment")
        own = exp == experiment
        if not own and not transfer:
            stats["other_experiment"] += 1
            continue
        if exclude_run_dir and str(row.get("run_dir", "")).startswith(str(exclude_run_dir)):
            stats["own_study"] += 1
            continue
        flat = row.get("config")
        if not isinstance(flat, dict) or not names & set(flat):
            stats["no_overlap"] += 1
            continue
        cfg = active_config(space, flat)
        fid = flat.get(fidelity_key) if fidelity_key else math.nan
        task = [flat.get(k) for k in task_keys]
        if (cfg is None or not isinstance(fid, (int, float)) or isinstance(fid, bool)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in task)):
            stats["missing_keys"] += 1
            continue
        u = utility_of((row.get("metrics") or {}).get(metric), maximize)
        if not math.isfinite(u):
            stats["bad_metric"] += 1
            continue
        stats["used"] += 1
        configs.append(cfg)
        fids.append(float(fid))
        utils.append(u)
        groups.append(f"{exp}|{row.get('dataset')}|{row.get('split')}")
        tasks.append([float(v) for v in task])
        if own and (current_task is None or np.allclose(task, current_task)):
            seen.add(config_key(cfg))
    return PastRecords(configs, fids, utils, groups, tasks, frozenset(seen), stats)


# ---- jittable candidate draws from a declared space -----------------------------------------------------------

def draw_units(space: HyperparameterSpace, key: jax.Array) -> jax.Array:
    """float32 [P]: one uniform per parameter (categorical index = floor(u * K)). Jittable."""
    return jax.random.uniform(key, (len(space.params),))


def encode_units(space: HyperparameterSpace, u: jax.Array) -> jax.Array:
    """``HyperparameterSpace.encode`` of the configuration that the unit draws ``u`` [P] decode to (``decode_units``),
    conditional parameters included. Jittable and vmappable."""
    cols, active, value = [], {}, {}
    for i, p in enumerate(space.params):
        act = jnp.asarray(True)
        for parent, allowed in p.condition:
            par = space.params[space.names.index(parent)]
            if par.type == "categorical":
                hit = jnp.isin(value[parent], jnp.asarray([par.choices.index(a) for a in allowed]))
            else:
                hit = jnp.any(value[parent] == jnp.asarray([float(a) for a in allowed]))
            act = act & active[parent] & hit
        active[p.name] = act
        if p.type == "categorical":
            k = len(p.choices)
            idx = jnp.minimum(jnp.floor(u[i] * k).astype(jnp.int32), k - 1)
            value[p.name] = idx
            cols.append(jax.nn.one_hot(idx, k, dtype=jnp.float32) * act)
        else:
            v = p.unit_value(u[i], jnp)
            value[p.name] = v
            unit = p.unit_of(v, jnp) if p.type == "int" else u[i]
            cols.append(jnp.where(act, unit, INACTIVE)[None].astype(jnp.float32))
    return jnp.concatenate(cols)


def decode_units(space: HyperparameterSpace, u: np.ndarray) -> dict[str, Any]:
    """The configuration (active parameters only) of unit draws ``u`` [P] (host)."""
    config: dict[str, Any] = {}
    for i, p in enumerate(space.params):
        if not space.is_active(p, config):
            continue
        if p.type == "categorical":
            k = len(p.choices)
            config[p.name] = p.choices[min(int(math.floor(float(u[i]) * k)), k - 1)]
        else:
            config[p.name] = p.from_unit(float(u[i]))
    return config


# ---- the sampler -------------------------------------------------------------------------------------------------

def _default_predictor():
    from metanas.predictors.pairwise import Pairwise

    return Pairwise(steps=300, ensemble=3)


def _is_pairwise(predictor) -> bool:
    from metanas.predictors.pairwise import Pairwise

    return isinstance(predictor, Pairwise)


@functools.lru_cache(maxsize=16)
def _program(space: HyperparameterSpace, predictor: Any, n_candidates: int, chunk: int, top: int, beta: float):
    """jit(key, x [R, D], p [R], n, group [R], query [Q]) -> (top indices [top], top scores [top], candidate key):
    fit + draw + encode + score + top-k, one XLA program per (space, predictor, sizes)."""
    pairwise = _is_pairwise(predictor)
    n_chunks = n_candidates // chunk

    def program(key, x, p, n, group, query):
        k_fit, k_cand = jax.random.split(key)
        if pairwise:
            params = predictor.fit(k_fit, x, p, n, group)
            # each member's utility is defined up to an offset: centre it on the fit rows (not per chunk, which
            # would shift members differently in every chunk)
            mask = (jnp.arange(x.shape[0]) < n).astype(jnp.float32)
            uref = jax.vmap(predictor.utility, in_axes=(0, None))(params, x) @ mask / jnp.maximum(mask.sum(), 1.0)

            def score_std(feats):
                u = jax.vmap(predictor.utility, in_axes=(0, None))(params, feats) - uref[:, None]
                return u.mean(0), u.std(0)
        else:  # pointwise regressors: log utility (a ratio scale, like the pairwise target)
            params = predictor.fit(k_fit, x, jnp.log(p), n)

            def score_std(feats):
                return predictor.score_std(params, feats)

        def score_chunk(idx):
            u = jax.vmap(lambda i: draw_units(space, jax.random.fold_in(k_cand, i)))(idx)
            enc = jax.vmap(lambda v: encode_units(space, v))(u)
            feats = jnp.concatenate([enc, jnp.broadcast_to(query, (idx.shape[0], query.shape[0]))], 1)
            mean, std = score_std(feats)
            return mean + beta * std

        scores = jax.lax.map(score_chunk, jnp.arange(n_candidates, dtype=jnp.int32).reshape(n_chunks, chunk))
        val, idx = jax.lax.top_k(scores.reshape(-1), top)
        return idx, val, k_cand

    return jax.jit(program)


@functools.lru_cache(maxsize=16)
def _decoder(space: HyperparameterSpace):
    return jax.jit(jax.vmap(lambda k, i: draw_units(space, jax.random.fold_in(k, i)), in_axes=(None, 0)))


@dataclass(frozen=True)
class MetaLearnerSampler:
    """Proposer ``propose(n, history, rng) -> list[config]`` ranking candidates with a meta-learner (module doc).

    ``fidelity``: (min, max) of the fidelity knob (a feature: log(f / max) / log(max / min); candidates at max).
    ``task``: the current task's features (same order as the records' ``task_keys``).
    """

    space: HyperparameterSpace
    predictor: Any = None  # fit/score_std (metanas.predictors); None: Pairwise(steps=300, ensemble=3)
    records: PastRecords | None = field(default=None, hash=False, compare=False)
    task: tuple[float, ...] = ()
    maximize: bool = False  # trial losses are -metric (maximised metric) or the metric itself
    fidelity: tuple[float, float] | None = None
    n_candidates: int = 4096
    chunk: int = 4096
    beta: float = 0.0  # UCB exploration bonus on the ensemble spread
    min_points: int = 3
    top: int = 256  # winners decoded per round (at least 4 n); known ones are skipped, random draws fill up

    def _fid_feature(self, f: float) -> float:
        if self.fidelity is None or not math.isfinite(f):
            return 0.0
        lo, hi = self.fidelity
        return math.log(f / hi) / math.log(max(hi / lo, math.e))

    def _points(self, history: Sequence[Trial]):
        rec = self.records or PastRecords.empty()
        rows = []  # (config, fidelity, utility, group, task)
        for c, f, u, g, t in zip(rec.configs, rec.fidelity, rec.utility, rec.group, rec.task):
            rows.append((c, f, u, g, list(t)))
        for t in history:
            u = utility_of(-t.loss if self.maximize else t.loss, self.maximize)
            if math.isfinite(u):
                rows.append((t.config, t.fidelity, u, "__this_study__", list(self.task)))
        return rows

    def features(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """(x [N, D], query [D - space.width]): space encoding, fidelity, standardised task features."""
        enc = np.stack([self.space.encode(c) for c, *_ in rows]) if rows else np.zeros((0, self.space.width))
        fid = np.array([[self._fid_feature(f)] for _, f, *_ in rows], np.float32).reshape(len(rows), 1)
        t = np.array([r[4] for r in rows], np.float64).reshape(len(rows), len(self.task))
        cur = np.asarray(self.task, np.float64)[None, :]
        allt = np.concatenate([t, cur], 0)
        mu, sd = allt.mean(0), allt.std(0) + 1e-8
        x = np.concatenate([enc, fid, (t - mu) / sd], 1).astype(np.float32)
        query = np.concatenate([[0.0], ((cur - mu) / sd)[0]]).astype(np.float32)
        return x, query

    def __call__(self, n: int, history: Sequence[Trial], rng: np.random.Generator) -> list[dict]:
        if self.n_candidates % self.chunk:
            raise ValueError(f"n_candidates={self.n_candidates} must be a multiple of chunk={self.chunk}")
        seen = set((self.records or PastRecords.empty()).seen) | {config_key(t.config) for t in history}
        rows = self._points(history)
        key = jax.random.PRNGKey(int(rng.integers(2**31 - 1)))  # drawn every call: replays stay aligned
        out: list[dict] = []
        if len(rows) >= self.min_points:
            x, query = self.features(rows)
            cap = max(32, 1 << (len(rows) - 1).bit_length())  # padded rows: one compile per power of two
            xp = np.zeros((cap, x.shape[1]), np.float32)
            xp[: len(rows)] = x
            pp = np.ones(cap, np.float32)
            pp[: len(rows)] = [r[2] for r in rows]
            gid = {g: i for i, g in enumerate(dict.fromkeys(r[3] for r in rows))}
            gp = np.zeros(cap, np.int32)
            gp[: len(rows)] = [gid[r[3]] for r in rows]
            predictor = self.predictor if self.predictor is not None else _default_predictor()
            top = min(self.n_candidates, max(self.top, 4 * n))
            prog = _program(self.space, predictor, self.n_candidates, self.chunk, top, float(self.beta))
            idx, _, k_cand = prog(key, jnp.asarray(xp), jnp.asarray(pp), len(rows), jnp.asarray(gp), jnp.asarray(query))
            keys = set()
            for u in np.asarray(_decoder(self.space)(k_cand, idx)):  # winners in score order
                c = decode_units(self.space, u)
                k = config_key(c)
                if k not in seen and k not in keys:
                    out.append(c)
                    keys.add(k)
                if len(out) >= n:
                    break
        keys = {config_key(c) for c in out}
        add_random_distinct(self.space, rng, out, keys, seen, n)  # too few points, or every candidate known
        return out


def add_random_distinct(space, rng, out: list, keys: set, seen: set, n: int) -> None:
    """Append random draws of ``space`` to ``out`` until it holds ``n`` configs, skipping any whose key is in ``seen``
    (already evaluated) or ``keys`` (already proposed; updated); at most ``100 * n`` draws."""
    for _ in range(100 * n):
        if len(out) >= n:
            break
        c = space.sample(rng)
        k = config_key(c)
        if k not in seen and k not in keys:
            out.append(c)
            keys.add(k)


def save_records(path: Path, records: PastRecords) -> None:
    from metanas.run_store import atomic_write_text

    atomic_write_text(path, json.dumps(records.to_json()))


def load_snapshot(path: Path) -> PastRecords:
    return PastRecords.from_json(json.loads(Path(path).read_text()))
