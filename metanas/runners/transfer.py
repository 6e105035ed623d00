"""Transfer experiments: ``transfer_transnas``, the NB201 sanity check ``transfer_nb201`` and search_nb201 with
``train.source_tasks``. Their ``train:`` blocks are the frozen dataclasses below (``TransferSettings`` shared).

transfer_transnas (``run_transnas``): hold out ``train.target`` of TransNAS-Bench-101 micro (or of a user's file of
the same shape, ``train.file``: any cell tuple length, tasks holding different cells; the target's own cells are
its candidates), use ``train.source_tasks`` (default: every other task; naming the target is an error), then
``train.mode``:
- ``trust`` (default): ``metanas.search.trust.TrustSearch``, a weighted ensemble of the prior members
  (``train.members``) and the target model(s) fitted on the target's queries (``train.target_model``: a GP, a
  random forest or both), weighted by how each ranks the queried cells (``train.weighting``), beside the capped
  zero-shot z-score order, from scratch and random search on the same seeds (paired: wins / ties / losses,
  Wilcoxon p);
- ``transfer``: query the pre-trained model's ``init`` best cells, then rounds of {fine-tune on the target's
  queries (with ``mix`` of source pairs, ``similarity_temp``-weighted), query the ``topk`` best} to ``budget``;
- ``zero_shot``: rank the target with the pre-trained model and query nothing.
Baselines on the same seeds (``seeds=K`` vmapped): the same search from scratch, random search, and the zero-shot
mean z-score order of the sources. Metrics: queries to one of the target's top-``top_frac`` cells (median over
seeds), Kendall tau of the target ranking after 0 / 10 / 20 target evaluations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

import hydra
import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from metanas.benchmarks.nb201 import DATASETS
from metanas.benchmarks.transnas import default_path, load_transnas, task_view, top_cells
from metanas.search import transfer as T
from metanas.config import (NONNEG, ConfigError, Count, Fraction, NonNeg, NonNegInt, Positive, Range, TrainBlock,
                            takes_train, train_block)
from metanas.runners.context import RunContext


@dataclass(frozen=True)
class TransferSettings(TrainBlock):
    """Pre-training and fine-tuning of ``TransferSearch`` (see ``metanas.search.transfer``): the flat keys
    of transfer_transnas / transfer_nb201 and ``train.transfer`` of search_nb201. The defaults of keys a yaml leaves
    out live here."""

    pretrain_steps: NonNegInt = 500
    finetune_steps: NonNegInt = 60
    mix: Fraction = 0.5  # share of source pairs in every fine-tuning batch
    similarity_temp: NonNeg = 0.0  # > 0: source pairs drawn by softmax(tau with the target's queries / temp)
    scale: Positive = 0.1  # pairwise target exp(scale * normal score of the rank)
    prior_weight: NonNeg = 0.0  # > 0: rank by standardised model score + w * standardised z-score order of the sources
    prior_halflife: NonNeg = 0.0  # the weight halves every prior_halflife target queries (0: constant)
    zscore_init: bool = False  # the first init queries from the sources' z-score order instead of the model

    def search(self, budget: int, init: int, topk: int) -> T.TransferSearch:
        """The ``TransferSearch`` of these settings; an impossible budget / init / topk is one ConfigError line."""
        try:
            return T.TransferSearch(budget=budget, init=init, topk=topk, pretrain_steps=self.pretrain_steps,
                                    finetune_steps=self.finetune_steps, mix=self.mix,
                                    similarity_temp=self.similarity_temp, scale=self.scale,
                                    prior_weight=self.prior_weight, prior_halflife=self.prior_halflife,
                                    zscore_init=self.zscore_init)
        except ValueError as e:
            raise ConfigError(f"train: {e}") from None


def check_source_datasets(names: tuple[str, ...] | None) -> None:
    """NB201 source data sets: each one of ``DATASETS``."""
    bad = [n for n in names or () if n not in DATASETS]
    if bad:
        raise ConfigError(f"train.source_tasks: unknown data set(s) {bad}; choose among {list(DATASETS)}")


def _no_target_among_sources(target: str, sources: tuple[str, ...] | None) -> None:
    if sources and target in sources:
        raise ConfigError(f"train.source_tasks must not contain the target {target!r} (leave-one-task-out)")


@dataclass(frozen=True)
class TransNASTrain(TransferSettings):
    """``train:`` of transfer_transnas."""

    file: str | None = None  # null: <data_dir>/nas_bench_suite_zero/zc_transbench101_micro.json
    lower_is_better: tuple[str, ...] = ()  # tasks of the file whose metric is lower-is-better (negated on load)
    target: str = "segmentsemantic"
    source_tasks: tuple[str, ...] | None = None  # null: every other task of the file
    mode: Literal["trust", "transfer", "zero_shot"] = "trust"
    members: str = "orders+pairwise"  # trust mode: prior members joined by '+': mean, orders, pairwise, proxies
    weighting: Literal["rgpe", "tstr"] = "tstr"  # trust mode: RGPE bootstrap votes or TST-R discordance weights
    # trust mode: the target member(s): a GP (jitted loop), a random forest or both side by side (host loop)
    target_model: Literal["gp", "forest", "gp+forest"] = "gp+forest"
    budget: Count = 50
    init: Count = 5  # first queries: the pre-trained model's top cells (or see zscore_init)
    topk: Count = 5
    # queries_to_top: to one of the target's ceil(top_frac * N) best cells
    top_frac: Annotated[float, Range(0, 1, lo_open=True)] = 0.01
    tau_at: Annotated[tuple[int, ...], NONNEG] = (0, 10, 20)  # Kendall tau after this many target evaluations

    def __post_init__(self):
        super().__post_init__()
        _no_target_among_sources(self.target, self.source_tasks)
        self.search(self.budget, self.init, self.topk)
        try:
            T.check_members(self.members)
        except ValueError as e:
            raise ConfigError(f"train.{e}") from None


@dataclass(frozen=True)
class NB201TransferTrain(TransferSettings):
    """``train:`` of transfer_nb201."""

    target: Literal["cifar10", "cifar100", "ImageNet16-120"] = "cifar100"
    source_tasks: tuple[str, ...] | None = None  # null: the other two data sets
    encoding: str = "onehot_pruned"
    budget: Count = 20
    init: Count = 5
    topk: Count = 5
    top: Count = 16  # queries_to_top: to one of the target's ``top`` best cells by the queried metric

    def __post_init__(self):
        super().__post_init__()
        check_source_datasets(self.source_tasks)
        _no_target_among_sources(self.target, self.source_tasks)
        self.search(self.budget, self.init, self.topk)


def _task_index(tasks, name, what) -> int:
    if name not in tasks:
        raise ConfigError(f"{what}={name!r} is not a task of the TransNAS file; choose one of {list(tasks)}")
    return tasks.index(name)


def _split_tasks(tasks, t: TransNASTrain | NB201TransferTrain) -> tuple[int, list[int], list[str]]:
    """(target index, source indices, source names) of ``train.target`` / ``train.source_tasks`` (default: every
    other task; the target among them was refused by the train block: leave-one-task-out)."""
    target = _task_index(tasks, t.target, "train.target")
    names = list(t.source_tasks) if t.source_tasks else [n for n in tasks if n != t.target]
    sources = [_task_index(tasks, n, "train.source_tasks") for n in names]
    return target, sources, names


def _plain(t) -> dict:
    """A train block as the JSON a record holds (lists for tuples)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(t).items()}


@takes_train(TransNASTrain)
def run_transnas(cfg: DictConfig, ctx: RunContext) -> dict:
    t = train_block(TransNASTrain, cfg)
    data = load_transnas(t.file or default_path(cfg.data_dir), lower_is_better=list(t.lower_is_better))
    target, sources, names = _split_tasks(data.tasks, t)
    predictor = hydra.utils.instantiate(cfg.predictor)
    search = t.search(t.budget, t.init, t.topk)
    # the target's own cells are its candidates; sources are NaN where they lack one of them
    _, x, src, tv, _ = task_view(data, target, sources)
    hit = top_cells(tv, t.top_frac)
    x = jnp.asarray(x)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    z = T.zscore_order(src)
    out: dict = {"zscore_queries_to_top": T.order_queries_to_hit(z, hit), "zscore_tau": T.kendall(z, tv),
                 "n_candidates": int(x.shape[0]), "n_top": int(hit.sum())}
    if t.mode == "trust":
        from metanas.stats import paired_rows

        ours = ({"kind": "trust"} if t.target_model == "gp" else {"kind": "trust_rf", "target": t.target_model})
        methods = {"trust": {**ours, "members": t.members, "weighting": t.weighting},
                   "zero_shot": {"kind": "zero_shot"}, "scratch": {"kind": "scratch"}, "random": {"kind": "random"}}
        r = T.paired_study(seeds, data, methods=methods, budget=t.budget, init=t.init, topk=t.topk,
                           hit_frac=t.top_frac, predictor=predictor, pretrain_steps=t.pretrain_steps,
                           targets=[target], sources=sources, log=lambda m: None)["targets"][t.target]
        q = r["queries"]
        out["queries_to_top"] = float(np.median(q["trust"]))
        out["queries_per_seed"] = q["trust"]
        for name in ("zero_shot", "scratch", "random"):
            out[f"{name}_queries_to_top"] = float(np.median(q[name]))
            out[f"{name}_queries_per_seed"] = q[name]
        if len(seeds) > 1:  # paired over the seeds (same first cells within a seed), censored at budget + 1
            for row in paired_rows(q, "trust"):
                for k in ("wins", "ties", "losses", "median_diff", "p"):
                    out[f"vs_{row['method']}_{k}"] = float(row[k])
        ctx.save_json("trust.json", {"member_weights_per_round": r.get("weights", {}).get("trust"),
                                     "first_cells": r["codes"], "queries": q, "target": t.target, "sources": names})
        ctx.meta_record = {"transfer": {"target": t.target, "sources": names, "config": _plain(t)}}
        return out
    if t.mode == "zero_shot":
        # the target's values are not passed: ranking needs no target query
        _, scores = jax.jit(jax.vmap(lambda k: search.zero_shot(k, x, jnp.asarray(src), predictor=predictor)))(keys)
        scores = np.asarray(scores)
        q = [T.order_queries_to_hit(s, hit) for s in scores]
        tau = [T.kendall(s, tv) for s in scores]
        out.update(queries_to_top=float(np.median(q)), tau_0=float(np.mean(tau)),
                   queries_to_top_per_seed=[float(v) for v in q])
        ctx.save_json("ranking.json", {"scores": scores.tolist(), "target": t.target, "sources": names})
        return out
    runs = {"transfer": search, "scratch": dataclasses.replace(search, source=False)}
    result = {}
    for name, s in runs.items():
        tr = jax.jit(jax.vmap(lambda k: s.run(k, x, jnp.asarray(src), jnp.asarray(tv), predictor=predictor)))(keys)
        result[name] = jax.tree_util.tree_map(np.asarray, tr)
        q = T.queries_to_hit(result[name].codes, hit)
        out[f"{name}_queries_to_top" if name != "transfer" else "queries_to_top"] = float(np.median(q))
        out[f"{name}_queries_per_seed"] = q.astype(float).tolist()
        for n in t.tau_at:
            sc = s.scores_after(result[name].scores, int(n))
            if sc is not None:
                out[f"{name}_tau_{n}"] = float(np.mean([T.kendall(v, tv) for v in sc]))
        ctx.log("search", 0, {"method": name, "median_queries_to_top": out[f"{name}_queries_per_seed"]})
    rnd = np.asarray(jax.vmap(lambda k: T.random_codes(k, x.shape[0], x.shape[0]))(keys))
    out["random_queries_to_top"] = float(np.median(T.queries_to_hit(rnd, hit)))
    ctx.save_json("queried.json", {name: {"codes": r.codes.tolist(), "values": r.values.tolist()}
                                   for name, r in result.items()})
    ctx.meta_record = {"transfer": {"target": t.target, "sources": names,
                                    "config": _plain(t)}}
    return out


def nb201_tables(metric: str, data_dir: str | None, encoding: str):
    """(features [15625, D], queried metric [3, N], report = 200-epoch test accuracy [3, N]) for NB201's data sets."""
    from metanas.benchmarks.nb201 import DATASETS, NB201Benchmark
    from metanas.predictors.encodings import encode_archs
    from metanas.search_spaces.nb201 import NB201Space

    space = NB201Space()
    benches = [NB201Benchmark(dataset=d, metric=metric, data_dir=data_dir) for d in DATASETS]
    x = np.asarray(encode_archs(space, space.enumerate(), encoding), np.float32)
    return (x, np.stack([b.table() for b in benches]).astype(np.float32),
            np.stack([b.report_table() for b in benches]).astype(np.float32), list(DATASETS))


@takes_train(NB201TransferTrain)
def run_nb201(cfg: DictConfig, ctx: RunContext) -> dict:
    """transfer_nb201: hold out ``train.target`` (an NB201 data set), pre-train on the other two (query the
    benchmark's metric -- a validation metric --, report test accuracy). Baselines as transfer_transnas."""
    t = train_block(NB201TransferTrain, cfg)
    if cfg.benchmark.metric == "test_acc":
        raise ConfigError("transfer_nb201 queries a validation metric (query validation, report test); set "
                          "benchmark.metric to a validation metric (lowfi_val, or valid_acc where available)")
    x, values, report, names = nb201_tables(cfg.benchmark.metric, cfg.benchmark.data_dir, t.encoding)
    target, sources, src_names = _split_tasks(names, t)
    predictor = hydra.utils.instantiate(cfg.predictor)
    search = t.search(t.budget, t.init, t.topk)
    src, tv = T.leave_one_out(values, target, sources)
    hit = top_cells(tv, t.top / tv.shape[0])
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(cfg.seed, cfg.seed + cfg.seeds)])
    z = T.zscore_order(src)
    out: dict = {"zscore_queries_to_top": T.order_queries_to_hit(z, hit)}
    queried = {}
    for name, s in (("transfer", search), ("scratch", dataclasses.replace(search, source=False))):
        tr = jax.jit(jax.vmap(lambda k: s.run(k, jnp.asarray(x), jnp.asarray(src), jnp.asarray(tv),
                                              predictor=predictor)))(keys)
        codes = np.asarray(tr.codes)
        prefix = "" if name == "transfer" else "scratch_"
        out[f"{prefix}queries_to_top"] = T.queries_to_hit(codes, hit).astype(float).tolist()
        out[f"{prefix}best_test_acc"] = [float(report[target, c[np.argmax(tv[c])]]) for c in codes]
        queried[name] = {"codes": codes.tolist(), "values": np.asarray(tr.values).tolist()}
    ctx.save_json("queried.json", queried)
    ctx.meta_record = {"transfer": {"target": t.target, "sources": src_names, "metric": cfg.benchmark.metric}}
    return out
