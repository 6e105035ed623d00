"""Meta-learner experiments on NAS-Bench-201: ``search_nb201`` (predictor-guided search, the default experiment)
and ``predictor_nb201`` (predictor quality vs number of training architectures).

search_nb201 (``run_search``): the fine-tune loop of ``metanas.search.table_search.PredictorSearch`` run one
round per host step: query ``init`` random cells, then each round fit the predictor (``predictor:`` group, the
pairwise ensemble by default) on every queried cell, score all 15,625 cells (one jitted, vmapped program), query
the ``topk`` best unqueried ones (a table lookup), repeat until ``budget``. Checkpoint per round (resume), seeds
vmapped (``seeds=K``). Queries return the benchmark's ``metric`` (validation accuracy by default); every curve and
final metric reports the test accuracy of the cell with the best queried value. Random search, regularized evolution,
local search and BANANAS run on the same budget, seeds and query tables for comparison (``train.baselines``).

predictor_nb201 (``run_predictor``): fit each model of ``train.models`` on n random cells (or meta-dataset rows
written by ``collect``), rank the held-out rest: Kendall tau, Spearman rho, precision@10, per n and seed.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Literal

import hydra
import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from metanas.benchmarks.nb201 import NB201Benchmark
from metanas.config import ConfigError, Count, Counts, NonNeg, TrainBlock, takes_train, train_block
from metanas.plots import plot_curves, plot_quality
from metanas.predictors.encodings import encode_archs
from metanas.predictors.pairwise import Pairwise
from metanas.runners.context import RunContext, scalars, train_loop
from metanas.runners.transfer import TransferSettings, check_source_datasets
from metanas.search import table_search as S
from metanas.search import transfer as T
from metanas.search_spaces.nb201 import NB201Space


_SEARCH = S.PredictorSearch()  # the defaults of the search's own settings live in PredictorSearch


@dataclass(frozen=True)
class BananasBaseline(TrainBlock):
    """``train.bananas`` of ``search_nb201``: the BANANAS baseline's own predictor, encoding and acquisition (its
    ``PredictorSearch`` shares budget, init and topk with the search)."""

    encoding: str = "path"  # path encoding of the cell
    acquisition: S.Acquisition = "mutation"  # rank mutations of the best queried cells
    thompson: bool = True  # independent Thompson sampling (ITS) on the ensemble's mean and spread
    mutate_parents: int = _SEARCH.mutate_parents
    mutation_candidates: int = _SEARCH.mutation_candidates
    max_mutations: int = _SEARCH.max_mutations
    predictor: Any = None  # a predictor node (_target_)


@dataclass(frozen=True)
class TrustArm(TrainBlock):
    """``train.trust`` of ``search_nb201``: an extra arm ``trust``, the pairwise search whose ranking is the trust
    ensemble of the target model and the prior ``members`` (``PredictorSearch(trust_folds=folds)``): zero-cost
    proxies (a name of ``metanas.benchmarks.nb201.ZC_COLUMNS``, or ``zc`` for all 13; computed on CIFAR-10, or on
    ImageNet16-120 for that target; need the shared data) and NB201 data sets other than the target (their
    ``benchmark.metric`` table as an order). Empty ``members``: no trust arm."""

    members: tuple[str, ...] = ()  # zc (13 zero-cost proxies), a proxy name, or an NB201 data set
    folds: int = 3  # out-of-fold scores of the target model (folds extra fits per round)
    boot: int = 100  # bootstrap resamples of the RGPE weights


@dataclass(frozen=True)
class SearchTrain(TrainBlock):
    """``train:`` of ``search_nb201`` (the meta-learner's predictor-guided search and its baselines). The fields up to
    ``rl_batch`` are ``PredictorSearch``'s (same names, its defaults; ``predictor_search`` builds it from them)."""

    budget: Count = _SEARCH.budget  # queries per search
    init: Count = _SEARCH.init  # random queries before the first fit
    topk: Count = _SEARCH.topk  # queries per round
    acquisition: S.Acquisition = _SEARCH.acquisition  # exhaustive (rank all cells) | evolution | reinforce
    beta: NonNeg = _SEARCH.beta  # UCB: mean + beta * ensemble spread
    encoding: str = _SEARCH.encoding  # onehot | onehot_pruned | path | onehot_path
    evo_population: Count = _SEARCH.evo_population
    evo_generations: Count = _SEARCH.evo_generations
    rl_steps: Count = _SEARCH.rl_steps
    rl_batch: Count = _SEARCH.rl_batch
    canonical: bool = True  # search only the canonical cells
    baselines: tuple[str, ...] = ("random", "rea", "ls", "bananas")  # same seeds, budget and query tables
    rea_population: Count = 10  # the R-EA settings of the NB201 paper (Dong & Yang, ICLR 2020)
    rea_sample_size: Count = 3
    bananas: BananasBaseline = BananasBaseline()
    target: float = 94.2  # test accuracy of the queries-to-target metric
    source_tasks: tuple[str, ...] | None = None  # NB201 data sets to pre-train on (metanas.runners.transfer)
    transfer: TransferSettings = TransferSettings()  # with source_tasks: pre-training and fine-tuning settings
    prior_sources: tuple[str, ...] | None = None  # also run the search pre-trained on these (arm ``prior``);
    # [others]: every NB201 data set but the target; ignored with source_tasks (the search itself is pre-trained)
    trust: TrustArm = TrustArm()  # arm ``trust``: the trust ensemble with these prior members

    def __post_init__(self):
        super().__post_init__()
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise ConfigError(f"train.baselines: unknown {unknown}; choose from {', '.join(BASELINES)}")
        if self.source_tasks:
            check_source_datasets(self.source_tasks)
            self.transfer.search(self.budget, self.init, self.topk)
        else:
            predictor_search(self)
        if self.prior_sources and not self.source_tasks:  # with source_tasks the search itself is pre-trained
            if tuple(self.prior_sources) != ("others",):
                check_source_datasets(self.prior_sources)
            self.transfer.search(self.budget, self.init, self.topk)
        if self.trust.members:
            from metanas.benchmarks.nb201 import DATASETS, ZC_COLUMNS

            bad = sorted(set(self.trust.members) - {"zc", *ZC_COLUMNS, *DATASETS})
            if bad:
                raise ConfigError(f"train.trust.members: unknown {bad}; choose zc, a zero-cost proxy "
                                  f"({', '.join(ZC_COLUMNS)}) or an NB201 data set ({', '.join(DATASETS)})")
            if self.trust.folds < 2:
                raise ConfigError(f"train.trust.folds={self.trust.folds}; the out-of-fold scores need at least 2")
        if "bananas" in self.baselines:
            predictor_search(self.bananas, budget=self.budget, init=self.init, topk=self.topk)


def predictor_search(settings, **fixed) -> S.PredictorSearch:
    """``PredictorSearch`` from the fields of the train block ``settings`` that it shares (by name) and ``fixed``;
    an impossible combination is one ConfigError line."""
    names = {f.name for f in dataclasses.fields(S.PredictorSearch)}
    shared = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name in names}
    try:
        return S.PredictorSearch(**(shared | fixed))
    except ValueError as e:
        raise ConfigError(f"train: {e}") from None


@dataclass(frozen=True)
class PredictorTrain(TrainBlock):
    """``train:`` of ``predictor_nb201`` (predictor quality on NB201 rows or on the run store's records)."""

    source: Literal["nb201", "meta_dataset"] = "nb201"  # nb201: the table | meta_dataset: rows of meta_dataset
    meta_dataset: str | None = None  # source=meta_dataset: this file, else the top-level meta_dataset
    experiment: str | None = "collect:arch"  # the records' experiment (null: any)
    metric: str = "val_acc"  # meta_dataset: the target metric (> 0)
    reencode: bool = False  # re-encode the records' arch with ``encoding``
    encoding: str = "onehot_pruned"
    n_train: Counts = (50, 100, 200)
    top: Count = 10
    proxies: tuple[str, ...] = ()  # need the shared data: params, flops or zero-cost names (synflow, nwot, ...)
    models: Any = None  # mapping name -> predictor node

    def __post_init__(self):
        super().__post_init__()
        if not self.models:
            raise ConfigError("train.models is empty; name at least one predictor (see conf/experiment/"
                              "predictor_nb201.yaml)")


def _space_and_bench(cfg: DictConfig) -> tuple[NB201Space, NB201Benchmark]:
    space = hydra.utils.instantiate(cfg.search_space)
    bench = hydra.utils.instantiate(cfg.benchmark)
    if not isinstance(space, NB201Space) or not isinstance(bench, NB201Benchmark):
        raise ConfigError(f"{cfg.name} needs search_space=nb201 and benchmark=nb201, got "
                          f"{type(space).__name__} / {type(bench).__name__}")
    return space, bench


def queries_to(curve: np.ndarray, target: float) -> np.ndarray:
    """[S] number of queries until the best-found value first reaches ``target``; budget + 1 when never."""
    hit = curve >= target
    return np.where(hit.any(-1), hit.argmax(-1) + 1, curve.shape[-1] + 1)


def curve_summary(curves: dict, optimum: float, target: float) -> dict[str, float | list[float]]:
    """The summary of every arm's best-so-far test curve [S, budget]: best test accuracy, regret and queries to
    ``target``, prefixed by the arm's name (none for ``predictor``)."""
    out: dict[str, float | list[float]] = {}
    for name, c in curves.items():
        prefix = "" if name == "predictor" else f"{name}_"
        out[f"{prefix}best_test_acc"] = scalars(c[:, -1])
        out[f"{prefix}regret"] = scalars(optimum - c[:, -1])
        out[f"{prefix}queries_to_target"] = scalars(queries_to(c, target).astype(np.float64))
    return out


def _quartiles(curves: np.ndarray) -> dict[str, list[float]]:
    q = np.percentile(curves, [25, 50, 75], axis=0)
    return {"q25": q[0].tolist(), "median": q[1].tolist(), "q75": q[2].tolist()}


BASELINES = {"random": "random search", "rea": "regularized evolution", "ls": "local search",
             "bananas": "BANANAS (path-encoding MLP ensemble, ITS, mutation)"}


def query_tables(bench: NB201Benchmark, keys: jax.Array) -> jax.Array:
    """float32 [S, N]: what each seed's search reads when it queries a cell (one seed drawn per cell and search when
    ``benchmark.seed_draw``; else the seed-mean table for every search)."""
    if bench.seed_draw:
        from metanas.benchmarks.nb201 import draw_table

        seeds = jnp.asarray(bench.seed_tables())
        return jax.vmap(lambda k: draw_table(jax.random.fold_in(k, 2), seeds))(keys)
    return jnp.broadcast_to(jnp.asarray(bench.table()), (keys.shape[0], bench.table().shape[0]))


def excluded_cells(t: SearchTrain, space: NB201Space) -> np.ndarray | None:
    """``train.canonical``: every method searches only the canonical cells (one per class of equivalent cells)."""
    return ~S.canonical_cells(space) if t.canonical else None


def baseline_traces(t: SearchTrain, space: NB201Space, tables: jax.Array, keys: jax.Array, budget: int,
                    init_keys: jax.Array | None = None) -> dict[str, S.Trace]:
    """The baselines of ``train.baselines``, each one jit(vmap) program over the seeds (same seeds, budget, tables).
    ``init_keys`` [S]: the key each seed's methods draw their initial random cells from (common random numbers:
    within a seed every method starts from the same cells); None: each baseline draws its own."""
    k_base = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    init_keys = k_base if init_keys is None else init_keys
    excluded = excluded_cells(t, space)
    out = {}
    for name in t.baselines:
        if name == "random":
            fn = functools.partial(S.random_search, budget=budget, excluded=excluded)
        elif name == "rea":
            fn = functools.partial(S.regularized_evolution, space=space, budget=budget, excluded=excluded,
                                   population=min(t.rea_population, budget), sample_size=t.rea_sample_size)
        elif name == "ls":
            fn = functools.partial(S.local_search, space=space, budget=budget, init=t.init, excluded=excluded)
        else:  # BANANAS: the predictor-guided search with its own predictor, encoding and acquisition
            search = predictor_search(t.bananas, budget=budget, init=t.init, topk=t.topk)
            feats = encode_archs(space, space.enumerate(), search.encoding)
            fn = functools.partial(_trace_of_search, search=search, features=feats, excluded=excluded,
                                   predictor=hydra.utils.instantiate(t.bananas.predictor), space=space)
        out[name] = jax.jit(jax.vmap(lambda k, tab, ki, fn=fn: fn(k, tab, init_key=ki)))(k_base, tables, init_keys)
    return out


def _trace_of_search(key, table, *, search, features, predictor, space, excluded, init_key=None, members=None):
    return search.run(key, table, features, predictor=predictor, space=space, excluded=excluded, init_key=init_key,
                      members=members)


def trust_members(names, space: NB201Space, bench: NB201Benchmark, data_dir) -> dict[str, np.ndarray]:
    """The trust ensemble's prior members [N] by name (``TrustArm.members``): zero-cost proxies (on CIFAR-10, or on
    ImageNet16-120 for that target) and other NB201 data sets' ``benchmark.metric`` tables."""
    from metanas.benchmarks.nb201 import ZC_COLUMNS, load_zero_cost
    from metanas.predictors.encodings import nb201_zero_cost_features

    out: dict[str, np.ndarray] = {}
    zc_names = [n for n in names if n == "zc" or n in ZC_COLUMNS]
    if zc_names:
        zc_set = "ImageNet16-120" if bench.dataset == "ImageNet16-120" else "cifar10"
        try:
            zc = nb201_zero_cost_features(space, load_zero_cost(bench.data_dir or data_dir, zc_set))
        except (FileNotFoundError, OSError) as e:
            raise ConfigError(f"train.trust.members: the zero-cost proxies need the shared NB201 data ({e}); set "
                              "data_dir or leave the proxies out") from None
        for n in ZC_COLUMNS if "zc" in zc_names else zc_names:
            out[f"zc_{n}"] = np.nan_to_num(zc[:, ZC_COLUMNS.index(n)], nan=float(np.nanmin(zc[:, ZC_COLUMNS.index(n)])))
    for n in names:
        if n == "zc" or n in ZC_COLUMNS:
            continue
        if n == bench.dataset:
            raise ConfigError(f"train.trust.members must not contain the target benchmark.dataset={n!r}")
        out[n] = NB201Benchmark(dataset=n, metric=bench.metric, data_dir=bench.data_dir).table()
    return out


def prior_source_names(names, target: str) -> list[str]:
    """``train.prior_sources`` as data set names: ``[others]`` is every NB201 data set but ``target``."""
    from metanas.benchmarks.nb201 import DATASETS

    if not names:
        return []
    return [d for d in DATASETS if d != target] if tuple(names) == ("others",) else list(names)


def check_sources(names, bench: NB201Benchmark, predictor) -> None:
    """The prior arm's requirements, checked before anything runs (one ConfigError line each)."""
    if bench.dataset in names:
        raise ConfigError(f"train.source_tasks / prior_sources must not contain the target benchmark.dataset="
                          f"{bench.dataset!r} (leave-one-task-out)")
    if bench.oracle or bench.seed_draw:
        raise ConfigError("train.source_tasks / prior_sources need a deterministic validation metric "
                          "(benchmark.metric=valid_acc or lowfi_val, benchmark.seed_draw=false)")
    if not isinstance(predictor, Pairwise):
        raise ConfigError(f"train.source_tasks / prior_sources need predictor=pairwise (pre-training on pairs within "
                          f"a task), got {type(predictor).__name__}; set train.prior_sources=[] to search without "
                          f"the prior arm")


def transfer_codes(t: SearchTrain, names, space: NB201Space, bench: NB201Benchmark, keys: jax.Array, predictor,
                   budget: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes [S, budget], zero-shot z-score codes [budget]) in enumerate order: the search pre-trained on the NB201
    data sets ``names`` (``TransferSearch`` with ``train.transfer``; never the target's records) and the sources'
    z-score order, on the canonical cells when ``train.canonical``."""
    check_sources(names, bench, predictor)
    search = t.transfer.search(budget, t.init, t.topk)
    cells = np.flatnonzero(S.canonical_cells(space) if t.canonical else np.ones(space.size(), bool))
    x = jnp.asarray(np.asarray(encode_archs(space, space.enumerate(), t.encoding), np.float32)[cells])
    src = np.stack([NB201Benchmark(dataset=d, metric=bench.metric, data_dir=bench.data_dir).table()[cells]
                    for d in names]).astype(np.float32)
    target = np.asarray(bench.table(), np.float32)
    # the tables enter as arguments, not as closed-over constants (XLA would constant-fold their sorts)
    run = lambda k, xx, s, v: search.run(k, xx, s, v, predictor=predictor)  # noqa: E731
    tr = jax.jit(jax.vmap(run, (0, None, None, None)))(keys, x, jnp.asarray(src), jnp.asarray(target[cells]))
    z_codes = cells[np.argsort(-T.zscore_order(src), kind="stable")[:budget]]
    return cells[np.asarray(tr.codes)], z_codes


METHOD_NAMES = {"predictor": "metanas", "prior": "metanas + prior", "trust": "metanas trust", **{
    "random": "random", "rea": "REA", "ls": "local search", "bananas": "BANANAS",
    "zero_shot_zscore": "sources' z-score order"}}


def paired_report(curves: dict[str, np.ndarray], target: float, budget: int, *, title: str) -> tuple[str, dict]:
    """Markdown report of queries to ``target`` per seed (censored at ``budget`` + 1 for every method alike): the
    median and never-count of every method, and the paired table (metanas_stats.paired_table) of each metanas arm
    against every other method. Returns (text, per-seed censored values by method)."""
    from metanas.stats import censor, fmt, paired_table

    qt = {METHOD_NAMES.get(k, k): censor(queries_to(c, target), budget) for k, c in curves.items()}
    n = len(next(iter(qt.values())))
    lines = [f"## {title}", "", f"Queries until the best-by-validation cell's test accuracy reaches {target:g} %, "
             f"{n} seed(s), budget {budget}; never within budget = {budget + 1} for every method.", "",
             "| method | median | seeds never |", "|---|---|---|"]
    lines += [f"| {m} | {fmt(np.median(v))} | {int((v > budget).sum())} |" for m, v in qt.items()]
    for ours in ("metanas", "metanas + prior", "metanas trust"):
        if ours in qt and n >= 2:
            lines += ["", paired_table(qt, ours, what="queries").rstrip()]
    return "\n".join(lines) + "\n", {m: v.tolist() for m, v in qt.items()}


@takes_train(SearchTrain)
def run_search(cfg: DictConfig, ctx: RunContext) -> dict[str, float | list[float]]:
    t = train_block(SearchTrain, cfg)
    if t.source_tasks:  # transfer from other NB201 data sets: metanas.runners.transfer

        return run_search_with_sources(cfg, t, ctx)
    space, bench = _space_and_bench(cfg)
    predictor = hydra.utils.instantiate(cfg.predictor)
    prior_sources = prior_source_names(t.prior_sources, bench.dataset)
    if prior_sources:  # before the first checkpoint: a config error leaves no run directory
        check_sources(prior_sources, bench, predictor)
    search = predictor_search(t)
    members = trust_members(t.trust.members, space, bench, cfg.data_dir) if t.trust.members else {}
    report = bench.report_table()
    optimum = float(report.max())
    feats = encode_archs(space, space.enumerate(), search.encoding)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(cfg.seed, cfg.seed + cfg.seeds)])  # [S]
    tables = query_tables(bench, keys)  # [S, N]
    k_init, round_keys = jax.vmap(search.round_keys)(keys)  # [S], [S, rounds]; k_init: every method's initial cells
    excluded = excluded_cells(t, space)
    state = jax.vmap(functools.partial(search.init_state, excluded=excluded))(k_init, tables)
    round_fn = search.round_fn(feats, predictor=predictor, space=space)  # a host model (trees) fits on the host

    def best(state, n):
        values, codes = np.asarray(state.values)[:, :n], np.asarray(state.codes)[:, :n]
        return S.reported_best_so_far(values, report, codes)[:, -1]

    def step_fn(state, step):
        state = round_fn(state, jnp.int32(step - 1), round_keys[:, step - 1], tables)
        n = search.init + step * search.topk
        b = best(state, n)
        return state, {"queries": n, "best_test_acc": b, "regret": optimum - b}

    state, _ = train_loop(ctx, "search", state, step_fn, search.rounds, log_every=1, checkpoint_every=1,
                          loss_key=None)

    curves = {"predictor": S.reported_best_so_far(np.asarray(state.values), report, np.asarray(state.codes))}
    arm_codes = {}  # every other arm's queries, per seed (queried.json)
    if members:  # the trust ensemble: same keys as the search (same fits where the states agree), same initial cells
        trust = dataclasses.replace(search, trust_folds=t.trust.folds, trust_boot=t.trust.boot)
        fn = functools.partial(_trace_of_search, search=trust, features=feats, excluded=excluded, predictor=predictor,
                               space=space, members=jnp.asarray(np.stack(list(members.values())), jnp.float32))
        tr = jax.jit(jax.vmap(lambda k, tab, ki: fn(k, tab, init_key=ki)))(keys, tables, k_init)
        curves["trust"] = S.reported_best_so_far(np.asarray(tr.values), report, np.asarray(tr.codes))
        arm_codes["trust"] = np.asarray(tr.codes).tolist()
    if prior_sources:
        codes, z_codes = transfer_codes(t, prior_sources, space, bench, keys, predictor, search.budget)
        target = np.asarray(bench.table(), np.float32)
        curves["prior"] = S.reported_best_so_far(target[codes], report, codes)
        arm_codes["prior"] = codes.tolist()
        # the simplest use of the same prior knowledge: query the sources' mean z-score order (deterministic)
        curves["zero_shot_zscore"] = S.reported_best_so_far(target[z_codes], report, z_codes)[None].repeat(
            len(codes), 0)
    for name, tr in baseline_traces(t, space, tables, keys, search.budget, init_keys=k_init).items():
        curves[name] = S.reported_best_so_far(np.asarray(tr.values), report, np.asarray(tr.codes))
        arm_codes[name] = np.asarray(tr.codes).tolist()

    ctx.metrics.truncate_after("curve", -1)  # written once, after the search (a resumed run rewrites it)
    for q in range(search.budget):
        ctx.log("curve", q + 1, {name: float(np.median(c[:, q])) for name, c in curves.items()})
    codes = np.asarray(state.codes)
    top = np.argmax(np.asarray(state.values), axis=1)
    queried = bench.metric + (" (one seed drawn per query)" if bench.seed_draw else "")
    text, per_seed = paired_report(curves, t.target, search.budget,
                                   title=f"NB201 {bench.dataset}, seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}")
    ctx.save_text("report.md", text)
    ctx.save_json("curves.json", {"optimum": optimum, "target": t.target, "queried_metric": queried,
                                  "reported_metric": "test_acc", "oracle": bench.oracle, "dataset": bench.dataset,
                                  "seeds": list(range(cfg.seed, cfg.seed + cfg.seeds)),
                                  "trust_members": list(members), "prior_sources": prior_sources,
                                  "queries_to_target": per_seed,
                                  **{k: _quartiles(v) for k, v in curves.items()}})
    ctx.save_json("queried.json", {"codes": codes.tolist(), "values": np.asarray(state.values).tolist(),
                                   "best_arch": [space.to_string(space.enumerate()[codes[s, top[s]]])
                                                 for s in range(len(top))], "other_arms": arm_codes})
    what = "test acc of the best-by-test cell (ORACLE queries)" if bench.oracle else \
        f"test acc of the best-by-{bench.metric} cell"
    plot_curves({METHOD_NAMES.get(k, k): c for k, c in curves.items()}, optimum, t.target,
                ctx.path("plots/search_curve.png"),
                f"NB201 {bench.dataset}: {what} vs queries ({cfg.seeds} seed(s))")
    best_arch = space.enumerate()[codes[0, top[0]]]
    ctx.meta_record = {"nb201": {"dataset": bench.dataset, "queried_metric": queried,
                                 "best_arch": space.to_string(best_arch),
                                 "best_arch_encoding": np.asarray(space.encode(best_arch)).tolist()}}

    return curve_summary(curves, optimum, t.target)


def _nb201_rows(cfg: DictConfig, space: NB201Space, bench: NB201Benchmark, encoding: str):
    return np.asarray(encode_archs(space, space.enumerate(), encoding)), bench.table()


def _proxies(cfg: DictConfig, names, space: NB201Space, bench: NB201Benchmark) -> dict[str, np.ndarray]:
    """Fixed scores of every cell: ``params`` / ``flops`` (official cost table) and the zero-cost proxies."""
    from metanas.benchmarks.nb201 import ZC_COLUMNS, load_cost, load_zero_cost
    from metanas.predictors.encodings import nb201_zero_cost_features

    data_dir = bench.data_dir or cfg.data_dir
    out = {}
    for name in names:
        if name in ("params", "flops"):
            out[name] = load_cost(data_dir)[:, 1 if name == "params" else 0]
        elif name in ZC_COLUMNS:
            out[f"zc_{name}"] = nb201_zero_cost_features(space, load_zero_cost(data_dir))[:, ZC_COLUMNS.index(name)]
        else:
            raise ConfigError(f"train.proxies: unknown {name!r}; choose from params, flops, {', '.join(ZC_COLUMNS)}")
    return out


@takes_train(PredictorTrain)
def run_predictor(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    from metanas.predictors.evaluate import canonical_groups, quality_table
    from metanas.predictors.meta_dataset import read_meta_dataset

    t = train_block(PredictorTrain, cfg)
    models = {str(k): hydra.utils.instantiate(v) for k, v in t.models.items()}
    n_train = [int(n) for n in t.n_train]
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    proxies: dict[str, np.ndarray] = {}
    groups = None  # NB201: rank only canonical held-out cells (pruned encoding unlike any training / other cell's)
    if t.source == "nb201":
        space, bench = _space_and_bench(cfg)
        x, y = _nb201_rows(cfg, space, bench, t.encoding)
        groups = canonical_groups(np.asarray(encode_archs(space, space.enumerate(), "onehot_pruned")))
        proxies = _proxies(cfg, list(t.proxies), space, bench)
        what = f"NB201 {bench.dataset} {bench.metric}, canonical held-out cells"
    elif t.source == "meta_dataset":
        path = t.meta_dataset or cfg.meta_dataset
        space = hydra.utils.instantiate(cfg.search_space) if t.reencode else None  # rows' arch -> train.encoding
        md = read_meta_dataset(path, t.metric, experiment=t.experiment, space=space,
                               arch_encoding=t.encoding if t.reencode else None)
        x, y = md.x, md.y
        what = f"{path} ({len(y)} rows of {t.experiment or 'any experiment'}, {t.metric})"
    else:
        raise ConfigError(f"train.source={t.source!r}; choose nb201 or meta_dataset")
    if max(n_train) >= len(y):
        raise ConfigError(f"train.n_train up to {max(n_train)} but only {len(y)} rows; lower it or collect more")
    table = quality_table(models, ctx.key, x, y, seeds=seeds, n_train=n_train, proxies=proxies, top=t.top,
                          groups=groups)
    prec = f"precision_at_{t.top}"
    for n in n_train:
        row = {}
        for name, per_n in table.items():
            for m, short in (("kendall_tau", "tau"), ("spearman_rho", "rho"), (prec, f"p@{t.top}")):
                row[f"{name}/{short}"] = float(np.mean(per_n[n][m]))
        ctx.log("quality", n, row)
    ctx.save_json("quality.json", {"source": what, "seeds": seeds, "n_train": n_train,
                                   "table": {name: {str(n): {m: v.tolist() for m, v in d.items()}
                                                    for n, d in per_n.items()} for name, per_n in table.items()}})
    plot_quality(table, "kendall_tau", ctx.path("plots/kendall_tau.png"), f"{what}: held-out ranking")
    out = {}
    for name, per_n in table.items():
        for n in n_train:
            out[f"{name}_tau_n{n}"] = float(np.mean(per_n[n]["kendall_tau"]))
            out[f"{name}_{prec}_n{n}"] = float(np.mean(per_n[n][prec]))
    return out


def run_search_with_sources(cfg: DictConfig, t, ctx: RunContext) -> dict:
    """``search_nb201 train.source_tasks=[...]``: the default experiment's search on ``benchmark.dataset`` with the
    pairwise meta-learner pre-trained on the listed NB201 data sets (their ``benchmark.metric`` tables, never the
    target's) and fine-tuned on the target's queries every round (``TransferSearch``, settings in
    ``train.transfer``); its first ``init`` queries are the pre-trained model's best cells. Same seeds, budget,
    query table and baselines (``train.baselines``) as search_nb201, plus the sources' zero-shot z-score order;
    same summary keys (best_test_acc, regret, queries_to_target, prefixed per baseline). Searches the canonical
    cells when ``train.canonical``. One jitted program for all rounds (no per-round checkpoint). ``t``: the
    search runner's ``SearchTrain`` (source names and the search's budget were checked when it was built)."""
    space, bench = _space_and_bench(cfg)
    names = list(t.source_tasks)
    predictor = hydra.utils.instantiate(cfg.predictor)
    budget = t.transfer.search(t.budget, t.init, t.topk).budget
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(cfg.seed, cfg.seed + cfg.seeds)])
    codes, z_codes = transfer_codes(t, names, space, bench, keys, predictor, budget)
    target = np.asarray(bench.table(), np.float32)
    report = bench.report_table()
    optimum = float(report.max())
    curves = {"predictor": S.reported_best_so_far(target[codes], report, codes),
              "zero_shot_zscore": S.reported_best_so_far(target[z_codes], report, z_codes)[None].repeat(len(codes), 0)}
    tables = query_tables(bench, keys)
    init_keys = jax.vmap(lambda k: S.PredictorSearch.round_keys(_SEARCH, k)[0])(keys)  # as the search from scratch
    for name, b in baseline_traces(t, space, tables, keys, budget, init_keys=init_keys).items():
        curves[name] = S.reported_best_so_far(np.asarray(b.values), report, np.asarray(b.codes))
    for q in range(budget):
        ctx.log("curve", q + 1, {name: float(np.median(c[:, q])) for name, c in curves.items()})
    ctx.save_json("curves.json", {"optimum": optimum, "target": t.target, "queried_metric": bench.metric,
                                  "reported_metric": "test_acc", "dataset": bench.dataset, "source_tasks": names,
                                  **{k: _quartiles(v) for k, v in curves.items()}})
    ctx.save_json("queried.json", {"codes": codes.tolist(), "values": target[codes].tolist()})
    named = {("prior" if k == "predictor" else k): c for k, c in curves.items()}  # this search is the prior arm
    text, _ = paired_report(named, t.target, budget, title=f"NB201 {bench.dataset} pre-trained on "
                            f"{', '.join(names)}, seeds {cfg.seed}..{cfg.seed + cfg.seeds - 1}")
    ctx.save_text("report.md", text)
    plot_curves({METHOD_NAMES.get(k, k): c for k, c in named.items()}, optimum, t.target,
                ctx.path("plots/search_curve.png"),
                f"NB201 {bench.dataset}, pre-trained on {', '.join(names)}: test acc of the best-by-"
                f"{bench.metric} cell vs queries ({cfg.seeds} seed(s))")
    ctx.meta_record = {"transfer": {"target": bench.dataset, "sources": names, "metric": bench.metric}}
    return curve_summary(curves, optimum, t.target)
