"""Hardware as meta-data: few-shot cost prediction on an unseen device (``hw_latency``) and latency-constrained /
Pareto search on NB201 (``search_nb201_constrained``).

hw_latency (``run_latency``): leave one device out. For each held-out device of ``train.devices`` its columns are
dropped from every input size's table (``HardwareTable.without``) before anything is fitted; the cost prior
(``metanas.predictors.cost``) is meta-trained on the other devices at all three input sizes, its two
hyperparameters chosen by leave-one-SOURCE-out on those devices (never on the held-out one, and on other seeds than
the reported ones); then, for every input size, k in ``train.ks`` and seed, the k cells are chosen by the design rule,
measured (a table lookup; a cell the device never measured is a failed measurement, skipped and counted), the model
is adapted and ranks all cells: Spearman rho against the true table over every measured cell. Baselines on the same
seeds (their k cells are random, drawn again where a measurement fails): FLOPs, params, the mean rank on the source
devices, the nearest source device (best Spearman on the k cells), ridge on the sources' log latencies, random
forest and MLP fitted on the k target cells only, the pooled-source prior without the meta-learnt covariance
("fine-tune without meta-training"), and our model on the random cells. The ceiling: our model family fitted on
every cell of the held-out device. The candidate families (``FAMILIES``) include one gradient meta-learned model,
``maml_mlp`` (``metanas.meta.cost_model``: an MLP whose initialisation MAML meta-trains on the sources' tasks,
adapted by a few SGD steps to k random cells), scored by the same leave-one-source-out rule.

search_nb201_constrained (``run_constrained``): see ``metanas.search.latency_search``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig
from scipy.stats import rankdata

from metanas.benchmarks.hardware import HW_DEVICES, HW_ENERGY_DEVICES, load_hw_bench
from metanas.benchmarks.nb201 import DATASETS, load_cost
from metanas.config import ConfigError, Count, TrainBlock, takes_train, train_block
from metanas.predictors import cost as C
from metanas.meta.cost_model import MetaMLPCost
from metanas.predictors.pointwise import MLP
from metanas.predictors.trees import RandomForest
from metanas.runners.context import RunContext
from metanas.search_spaces.nb201 import NB201Space

BASELINES = {
    "flops": "FLOPs (no target sample)",
    "params": "params (no target sample)",
    "source_mean": "mean rank on the source devices (no target sample)",
    "nearest_source": "nearest source device (best Spearman on the k cells)",
    "ridge_sources": "ridge on the sources' log costs (k cells)",
    "rf_target": "random forest on the k target cells only (one-hot)",
    "mlp_target": "MLP on the k target cells only (one-hot)",
    "finetune_no_meta": "pooled-source prior mean, isotropic covariance (no meta-learnt covariance)",
    "ours_random_cells": "ours on random cells (no design)",
}

# the candidate model families of the nested choice (declared up front; one is chosen per held-out device by
# leave-one-source-out on the five sources, each with its own settings chosen the same way)
FAMILIES = {
    "additive": "per-op additive model, meta-learnt Gaussian prior (mean + scaled covariance of the sources' fits)",
    "with_sources": "the additive model plus a regression on the sources' costs of the same cell (beta ~ N(0, v I))",
    "pretrain_finetune": "pooled-source prior mean with an isotropic covariance (pre-train + fine-tune), design cells",
    "maml_mlp": "MLP (64 x 2) on the same features, initialisation meta-learnt by MAML across the sources' tasks, "
                "5 SGD steps on the k target cells (random cells), standardised log cost",
    "ensemble": "the mean of the standardised predictions of additive and with_sources (beta ~ N(0, v I)), both "
                "adapted to the same k cells, chosen by the additive family's design rule",
}
BAYES_FAMILIES = ("additive", "with_sources", "pretrain_finetune")  # closed-form models with a Gaussian prior


@dataclass(frozen=True)
class HWLatencyTrain(TrainBlock):
    """``train:`` of ``hw_latency``."""

    devices: tuple[str, ...] = HW_DEVICES  # held out in turn (the sources are every other device of the table)
    datasets: tuple[str, ...] = DATASETS  # input sizes
    metric: str = "latency"  # latency | energy (edgegpu, eyeriss, fpga)
    ks: tuple[int, ...] = (5, 10, 20)
    select_k: int = 10  # the k the nested hyperparameter choice is made at
    select_seeds: int = 5  # seeds of the nested choice (drawn apart from the reported seeds)
    pool: int = 2000  # candidate pool of the design rule (random per seed)
    prior_grid: tuple[tuple[float, float], ...] = C.PRIOR_GRID  # (cov_scale, jitter) candidates of the nested choice
    baselines: tuple[str, ...] = tuple(BASELINES)
    ridge_grid: tuple[float, ...] = (0.1, 1.0, 10.0)  # ridge_sources' lambda, chosen by the same nested split
    finetune_grid: tuple[float, ...] = (1e-3, 1e-2, 1e-1)  # finetune_no_meta's prior variance, likewise
    source_var_grid: tuple[float, ...] = (1e-2, 1e-1, 1.0)  # the with_sources family's prior variance of beta
    # candidates of the nested choice (ensemble: adopted after its leave-one-source-out scores, loso_ensemble.json)
    families: tuple[str, ...] = ("additive", "with_sources", "pretrain_finetune", "ensemble")
    # maml_mlp (metanas.meta.cost_model.MetaMLPCost; its other settings are that class's defaults): meta-steps
    # of one meta-training, and the inner step sizes the nested choice scores
    maml_meta_steps: int = 1000
    maml_inner_lr_grid: tuple[float, ...] = (0.1,)
    rf_trees: int = 100
    mlp_steps: int = 300
    plot_device: str = "edgegpu"

    def __post_init__(self):
        super().__post_init__()
        devs = HW_DEVICES if self.metric == "latency" else HW_ENERGY_DEVICES
        if self.metric not in ("latency", "energy"):
            raise ConfigError(f"train.metric={self.metric!r}; choose latency or energy")
        bad = sorted(set(self.devices) - set(devs))
        if bad or not self.devices:
            raise ConfigError(f"train.devices: {bad or 'empty'}; choose from {', '.join(devs)} ({self.metric})")
        if sorted(set(self.datasets) - set(DATASETS)) or not self.datasets:
            raise ConfigError(f"train.datasets={list(self.datasets)}; choose from {', '.join(DATASETS)}")
        unknown = sorted(set(self.baselines) - set(BASELINES))
        if unknown:
            raise ConfigError(f"train.baselines: unknown {unknown}; choose from {', '.join(BASELINES)}")
        bad_f = sorted(set(self.families) - set(FAMILIES))
        if bad_f or not self.families:
            raise ConfigError(f"train.families: {bad_f or 'empty'}; choose from {', '.join(FAMILIES)}")
        if self.maml_meta_steps < 1 or not self.maml_inner_lr_grid or min(self.maml_inner_lr_grid) <= 0:
            raise ConfigError(f"train.maml_meta_steps={self.maml_meta_steps}, maml_inner_lr_grid="
                              f"{list(self.maml_inner_lr_grid)}: need >= 1 step and step sizes > 0")
        if not self.ks or min(self.ks) < 2 or self.select_k < 2:
            raise ConfigError(f"train.ks={list(self.ks)}, select_k={self.select_k}: need k >= 2 measurements")


def true_ranks(y: np.ndarray) -> np.ndarray:
    """Average ranks of the measured cells (0 elsewhere; they are masked)."""
    r = np.zeros(len(y))
    m = np.isfinite(y)
    r[m] = rankdata(y[m])
    return r


def source_stack(tables: dict, devices: list[str], metric: str) -> dict[str, np.ndarray]:
    """device -> [I, N] cost on every input size (NaN = not measured)."""
    return {d: np.stack([tables[ds].column(f"{d}_{metric}") for ds in tables]) for d in devices}


def imputed_logs(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """[M, N] log costs (cached by content)"""
    key = (ys.shape, hash(ys.tobytes()))
    if key not in _IMPUTED:
        _IMPUTED[key] = _imputed_logs(x, ys)
    return _IMPUTED[key]


_IMPUTED: dict = {}


def _imputed_logs(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """[M, N] log costs of source tables ``ys`` [M, N] with their unmeasured cells filled by the additive model fitted
    on that source's own measured cells (source data only)."""
    out = []
    for y in ys:
        if not np.isfinite(y).all():
            w, _ = C.fit_weights(jnp.asarray(x), jnp.asarray(y))
            fill = np.asarray(jnp.asarray(x) @ w) * np.nanmedian(y)
            y = np.where(np.isfinite(y), y, np.maximum(fill, 1e-6 * np.nanmedian(y)))
        out.append(np.log(y))
    return np.stack(out)


def _ridge_sources(z, y, codes, lam):
    """Ridge of the target's log cost on the sources' standardised log costs ``z`` [N, M], fitted on ``codes``."""
    zk, yk = z[codes], jnp.log(y[codes])
    zm, ym = zk.mean(0), yk.mean()
    zc = zk - zm[None, :]
    w = jnp.linalg.solve(zc.T @ zc + lam * jnp.eye(z.shape[1]), zc.T @ (yk - ym))
    return (z - zm[None, :]) @ w


def _nearest(z, y, codes):
    """The source whose costs on the k cells rank them most like the target's."""
    zk, yk = z[codes], y[codes]
    rz = jnp.argsort(jnp.argsort(zk, 0), 0).astype(jnp.float32)
    ry = jnp.argsort(jnp.argsort(yk)).astype(jnp.float32)
    rz, ry = rz - rz.mean(0)[None, :], ry - ry.mean()
    rho = (rz.T @ ry) / jnp.sqrt((rz * rz).sum(0) * (ry @ ry) + 1e-12)
    return z[:, jnp.argmax(rho)]


# mapped over the seeds' cells, not vmapped: a batched solve is a batched LAPACK call (see cost._over_keys)
_RIDGE = jax.jit(lambda z, y, codes, lam: jax.lax.map(lambda c: _ridge_sources(z, y, c, lam), codes))
_NEAREST = jax.jit(jax.vmap(_nearest, in_axes=(None, None, 0)))
_CODES = jax.jit(jax.vmap(C.random_cells, in_axes=(0, None, None)), static_argnums=2)
_RHO = jax.jit(jax.vmap(C.spearman, in_axes=(0, None, None)))
_MLP: dict = {}


def _mlp_fn(k: int, steps: int):
    if (k, steps) not in _MLP:
        mlp = MLP(hidden=32, layers=2, steps=steps, batch=min(16, k))

        def fit(kk, c, onehot, y):
            return mlp.score(mlp.fit(kk, onehot[c], jnp.log(y[c]), k), onehot)

        _MLP[(k, steps)] = jax.jit(jax.vmap(fit, in_axes=(0, 0, None, None)))
    return _MLP[(k, steps)]


def _baseline_preds(name, *, x, onehot, z, y, keys, k, prior, lam, ft_var, rf_trees, mlp_steps):
    """[S, N] predictions of a baseline that uses k random target cells (same cells per key for every baseline)."""
    codes, _ = _CODES(keys, jnp.isfinite(y), k)
    if name == "ridge_sources":
        return _RIDGE(z, y, codes, lam)
    if name == "nearest_source":
        return _NEAREST(z, y, codes)
    if name == "mlp_target":
        return _mlp_fn(k, mlp_steps)(keys, codes, onehot, y)
    if name == "rf_target":
        rf = RandomForest(trees=rf_trees)
        oh, yl, cs = np.asarray(onehot), np.log(np.asarray(y)), np.asarray(codes)
        return np.stack([rf.score(rf.fit(keys[s], oh[cs[s]], yl[cs[s]], k), oh) for s in range(len(cs))])
    if name in ("finetune_no_meta", "ours_random_cells"):
        p = C.isotropic_prior(prior, ft_var) if name == "finetune_no_meta" else prior
        return C.few_shot_run(p, x, y, jnp.asarray(true_ranks(np.asarray(y))), keys, k=k, chooser="random")[1]
    raise ValueError(name)


def _rho_many(preds, y) -> np.ndarray:
    tr = jnp.asarray(true_ranks(np.asarray(y)))
    return np.asarray(_RHO(jnp.asarray(preds, jnp.float32), tr, jnp.isfinite(jnp.asarray(y))))


def nested_choice(x, onehot, src: dict[str, np.ndarray], keys, k, t: HWLatencyTrain) -> dict:
    """Leave-one-source-out choice of the prior's and the tuned baselines' hyperparameters (sources only)."""
    ranks = {d: jnp.asarray(np.stack([true_ranks(r) for r in v])) for d, v in src.items()}
    srcj = {d: jnp.asarray(v) for d, v in src.items()}
    choice = C.select_prior(x, srcj, ranks, k=k, keys=keys, pool=t.pool, grid=t.prior_grid)
    scores = {"ridge_sources": {}, "finetune_no_meta": {}}
    devs = list(src)
    fits = {d: C.source_fits(x, srcj[d]) for d in devs}
    for d in devs:
        others = [o for o in devs if o != d]
        prior = C.prior_from_fits(jnp.concatenate([fits[o][0] for o in others], 0),
                                  jnp.concatenate([fits[o][1] for o in others], 0))
        for i in range(src[d].shape[0]):
            z = _standardise(imputed_logs(np.asarray(x), np.stack([src[o][i] for o in others])))
            y = jnp.asarray(src[d][i])
            for lam in t.ridge_grid:
                p = _baseline_preds("ridge_sources", x=x, onehot=onehot, z=z, y=y, keys=keys, k=k, prior=prior,
                                    lam=lam, ft_var=0, rf_trees=0, mlp_steps=0)
                scores["ridge_sources"].setdefault(lam, []).append(_rho_many(p, y).mean())
            for v in t.finetune_grid:
                p = _baseline_preds("finetune_no_meta", x=x, onehot=onehot, z=z, y=y, keys=keys, k=k, prior=prior,
                                    lam=0, ft_var=v, rf_trees=0, mlp_steps=0)
                scores["finetune_no_meta"].setdefault(v, []).append(_rho_many(p, y).mean())
    # the candidate families, each with its settings, on the same pseudo-targets and keys (the additive family's
    # score is select_prior's; with_sources uses the additive prior chosen there)
    fam = {"with_sources": {}, "pretrain_finetune": {}, "maml_mlp": {}, "ensemble": {}}
    for d in devs:
        others = [o for o in devs if o != d]
        prior = C.prior_from_fits(jnp.concatenate([fits[o][0] for o in others], 0),
                                  jnp.concatenate([fits[o][1] for o in others], 0),
                                  cov_scale=choice["cov_scale"], jitter=choice["jitter"])
        for i in range(src[d].shape[0]):
            y, tr = srcj[d][i], ranks[d][i]
            if {"with_sources", "ensemble"} & set(t.families):  # ensemble: its own v, chosen by the same rule
                xs = with_source_columns(x, np.stack([src[o][i] for o in others]))
                for v in t.source_var_grid:
                    p = C.with_sources(prior, len(others), v)
                    if "with_sources" in t.families:
                        fam["with_sources"].setdefault(v, []).append(
                            float(C.few_shot_spearman(p, xs, y, tr, keys, k=k, pool=t.pool).mean()))
                    if "ensemble" in t.families:
                        fam["ensemble"].setdefault(v, []).append(
                            float(C.ensemble_run(prior, x, p, xs, y, tr, keys, k=k, pool=t.pool)[0].mean()))
            if "pretrain_finetune" in t.families:
                for v in t.finetune_grid:
                    fam["pretrain_finetune"].setdefault(v, []).append(float(C.few_shot_spearman(
                        C.isotropic_prior(prior, v), x, y, tr, keys, k=k, pool=t.pool).mean()))
        if "maml_mlp" in t.families:  # meta-trained on the other sources only (every input size: one task each)
            tabs = np.concatenate([src[o] for o in others], 0)
            for lr in t.maml_inner_lr_grid:
                model = maml_model(t, lr)
                theta = maml_meta_train(model, maml_key(keys[0]), x, tabs, k)
                for i in range(src[d].shape[0]):
                    fam["maml_mlp"].setdefault(lr, []).append(
                        float(model.few_shot_run(theta, x, srcj[d][i], ranks[d][i], keys, k)[0].mean()))
    family_scores = {"additive": max(choice["grid"].values())}
    for f, sc in fam.items():
        if sc:
            best = max(sc, key=lambda v: np.mean(sc[v]))
            choice[FAMILY_SETTING.get(f, f"{f}_var")] = best
            family_scores[f] = float(np.mean(sc[best]))
    choice["family_scores"] = family_scores
    choice["family_grid"] = {f: {str(g): float(np.mean(v)) for g, v in sc.items()} for f, sc in fam.items()}
    choice["family"] = max((f for f in t.families if f in family_scores), key=family_scores.get)
    choice["ridge_lambda"] = max(scores["ridge_sources"], key=lambda v: np.mean(scores["ridge_sources"][v]))
    choice["finetune_var"] = max(scores["finetune_no_meta"], key=lambda v: np.mean(scores["finetune_no_meta"][v]))
    choice["baseline_grid"] = {m: {str(g): float(np.mean(s)) for g, s in d.items()} for m, d in scores.items()}
    return choice


FAMILY_SETTING = {"maml_mlp": "maml_mlp_inner_lr"}  # the choice's key of a family's chosen setting (else <family>_var)


def maml_model(t: HWLatencyTrain, inner_lr: float) -> MetaMLPCost:
    return MetaMLPCost(inner_lr=float(inner_lr), meta_steps=t.maml_meta_steps)


def maml_meta_train(model: MetaMLPCost, key: jax.Array, x, tables: np.ndarray, k: int) -> dict:
    """``model.meta_train`` on the source ``tables`` [T, N], cached by content: the pseudo-target d of held-out
    device h and the pseudo-target h of held-out device d meta-train on the same four sources."""
    sig = (model, tables.shape, hash(np.asarray(tables).tobytes()), tuple(np.asarray(key).tolist()), k)
    if sig not in _MAML_THETA:
        _MAML_THETA[sig] = model.meta_train(key, x, jnp.asarray(tables), k)[0]
    return _MAML_THETA[sig]


_MAML_THETA: dict = {}


def maml_key(key: jax.Array) -> jax.Array:
    """The meta-training key of maml_mlp (apart from the keys that draw the k cells)."""
    return jax.random.fold_in(key, 7919)


def with_source_columns(x, src: np.ndarray) -> jax.Array:
    """[N, D + M] the cost features with the sources' (imputed, median-normalised) costs appended."""
    lin = np.exp(imputed_logs(np.asarray(x), src))
    return jnp.concatenate([jnp.asarray(x), jnp.asarray(C.source_features(lin))], 1)


def family_prior(family: str, prior: C.CostPrior, choice: dict, m: int) -> C.CostPrior:
    if family == "with_sources":
        return C.with_sources(prior, m, choice["with_sources_var"])
    if family == "pretrain_finetune":
        return C.isotropic_prior(prior, choice["pretrain_finetune_var"])
    return prior


def _standardise(logs: np.ndarray) -> jax.Array:
    """[N, M] z-scored log costs (columns = sources)."""
    z = (logs - logs.mean(1, keepdims=True)) / logs.std(1, keepdims=True)
    return jnp.asarray(z.T, jnp.float32)


@takes_train(HWLatencyTrain)
def run_latency(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    t = train_block(HWLatencyTrain, cfg)
    if not cfg.data_dir:
        raise ConfigError("hw_latency reads HW-NAS-Bench from data_dir; set data_dir=PATH (holding nasbench201/)")
    space = NB201Space()
    x = jnp.asarray(C.cost_features(space))
    onehot = x[:, 1:31]
    flops_params = load_cost(str(cfg.data_dir))[:, :2].astype(np.float64)
    tables = {ds: load_hw_bench(str(cfg.data_dir), ds) for ds in t.datasets}
    all_devs = HW_DEVICES if t.metric == "latency" else HW_ENERGY_DEVICES
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    sel_keys = jnp.stack([jax.random.PRNGKey(10**6 + s) for s in range(t.select_seeds)])  # apart from the reported
    rho: dict[str, dict] = {}  # method -> device -> k -> [I, S]
    failed: dict[str, dict] = {}
    choices, ceiling, plot_data = {}, {}, None
    t0 = time.perf_counter()
    for dev in t.devices:
        col = f"{dev}_{t.metric}"
        sources = [d for d in all_devs if d != dev]
        held = {ds: tab.without(col) for ds, tab in tables.items()}  # the held-out device is gone from here on
        src = source_stack(held, sources, t.metric)
        choice = nested_choice(x, onehot, src, sel_keys, t.select_k, t)
        choices[dev] = choice
        prior = C.meta_train_prior(x, jnp.asarray(np.concatenate(list(src.values()), 0)),
                                   cov_scale=choice["cov_scale"], jitter=choice["jitter"])
        if "maml_mlp" in t.families:  # meta-trained on the sources at the choice's k and inner step size
            maml = maml_model(t, choice["maml_mlp_inner_lr"])
            theta = maml_meta_train(maml, maml_key(keys[0]), x, np.concatenate(list(src.values()), 0), t.select_k)
        for i, ds in enumerate(t.datasets):
            y = tables[ds].column(col)  # the held-out device: read only to measure the chosen cells and to score
            yj, tr = jnp.asarray(y), jnp.asarray(true_ranks(y))
            z = _standardise(imputed_logs(np.asarray(x), np.stack([src[d][i] for d in sources])))
            w, _ = C.fit_weights(x, yj)
            ceiling.setdefault(dev, []).append(float(C.spearman(x @ w, tr, jnp.isfinite(yj))))
            fixed = {"flops": flops_params[:, 0], "params": flops_params[:, 1],
                     "source_mean": np.asarray(jnp.argsort(jnp.argsort(z, 0), 0).mean(1))}
            xs = with_source_columns(x, np.stack([src[d][i] for d in sources]))
            for k in t.ks:
                for f in t.families:
                    xf = xs if f == "with_sources" else x
                    if f == "maml_mlp":
                        run = maml.few_shot_run(theta, x, yj, tr, keys, k)
                    elif f == "ensemble":
                        run = C.ensemble_run(prior, x, C.with_sources(prior, len(sources), choice["ensemble_var"]),
                                             xs, yj, tr, keys, k=k, pool=t.pool)
                    else:
                        run = C.few_shot_run(family_prior(f, prior, choice, len(sources)), xf, yj, tr, keys, k=k,
                                             pool=t.pool)
                    rho.setdefault(f"family_{f}", {}).setdefault(dev, {}).setdefault(k, []).append(np.asarray(run[0]))
                    if f == choice["family"]:
                        r, preds, codes, nf = run
                rho.setdefault("ours", {}).setdefault(dev, {}).setdefault(k, []).append(np.asarray(r))
                failed.setdefault(dev, {}).setdefault(k, []).append(np.asarray(nf).tolist())
                if dev == t.plot_device and ds == t.datasets[0] and k == 10 or plot_data is None:
                    plot_data = (dev, ds, k, y, np.asarray(preds[0]), np.asarray(codes[0]))
                for b in t.baselines:
                    if b in fixed:
                        rb = np.full(len(seeds), _rho_many(fixed[b][None], yj)[0])
                    else:
                        p = _baseline_preds(b, x=x, onehot=onehot, z=z, y=yj, keys=keys, k=k, prior=prior,
                                            lam=choice["ridge_lambda"], ft_var=choice["finetune_var"],
                                            rf_trees=t.rf_trees, mlp_steps=t.mlp_steps)
                        rb = _rho_many(p, yj)
                    rho.setdefault(b, {}).setdefault(dev, {}).setdefault(k, []).append(rb)
        ctx.log("device", t.devices.index(dev) + 1,
                {"device_index": t.devices.index(dev), **{f"ours_k{k}": float(np.mean(rho["ours"][dev][k]))
                                                          for k in t.ks}})
        out = _latency_outputs(ctx, t, rho, failed, ceiling, choices, seeds, time.perf_counter() - t0)
    dev, ds, k, y, pred, codes = plot_data
    from metanas.plots import plot_pred_vs_true

    plot_pred_vs_true(y, pred, codes, ctx.path("plots/pred_vs_true.png"),
                      f"{dev} {t.metric} ({ds} input), held out, k={k} measured cells (seed {seeds[0]})")
    return out


def _latency_outputs(ctx, t: HWLatencyTrain, rho, failed, ceiling, choices, seeds, wall) -> dict[str, float]:
    """Summary metrics of the devices done so far; writes hw_latency.json (rewritten after every device)."""
    done = [d for d in t.devices if d in rho["ours"]]
    per = {m: {d: {k: np.stack(v) for k, v in dd.items()} for d, dd in md.items()} for m, md in rho.items()}
    out: dict[str, float] = {}
    for m, md in per.items():
        prefix = "" if m == "ours" else f"{m}_"
        for k in t.ks:
            devs = [float(md[d][k].mean()) for d in done]
            out[f"{prefix}spearman_k{k}_mean"] = float(np.mean(devs))
            for d, v in zip(done, devs):
                out[f"{prefix}spearman_k{k}_{d}"] = v
    out["ceiling_mean"] = float(np.mean([np.mean(v) for v in ceiling.values()]))
    ctx.save_json("hw_latency.json", {
        "metric": t.metric, "devices": done, "devices_planned": list(t.devices), "datasets": list(t.datasets),
        "ks": list(t.ks), "seeds": seeds, "wall_s": round(wall, 1), "baselines": {b: BASELINES[b] for b in t.baselines},
        "families": {f: FAMILIES[f] for f in t.families}, "chosen_family": {d: choices[d]["family"] for d in done},
        "rho": {m: {d: {str(k): v.tolist() for k, v in dd.items()} for d, dd in md.items()} for m, md in per.items()},
        "failed_measurements": failed, "ceiling": ceiling, "choices": _jsonable(choices)})
    return out


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return o


# ---- search_nb201_constrained -----------------------------------------------------------------------------------

CONSTRAINED_BASELINES = {"random": "random search, every candidate measured, only feasible ones queried",
                         "rea": "regularized evolution under the budget: every candidate measured before its "
                                "accuracy query, a rejected (infeasible) child's measurement counted",
                         "filter": "accuracy-only pairwise search, then the best-by-validation cells measured in "
                                   "order (same measurement budget)"}


@dataclass(frozen=True)
class ConstrainedTrain(TrainBlock):
    """``train:`` of ``search_nb201_constrained``."""

    device: str = "edgegpu"  # edgegpu | raspi4 | edgetpu | pixel3 | eyeriss | fpga
    latency_budget_ms: float | None = None  # null: the median latency of the cells the device measured
    queries: int = 50  # accuracy queries
    measurements: int = 10  # latency measurements (design + verification)
    design_k: int = 6
    p_feasible: float = 0.9
    verify: str = "plain"  # plain: best-by-validation order | adaptive: the cost model updated after each measurement
    init: Count = 10
    topk: Count = 10
    encoding: str = "onehot_pruned"
    canonical: bool = True
    cov_scale: float = 3.0
    jitter: float = 1e-3
    cost_family: str = "additive"  # one of BAYES_FAMILIES (the study takes hw_latency's nested choice per device)
    source_var: float = 0.1  # with_sources: prior variance of the sources' coefficients
    finetune_var: float = 0.01  # pretrain_finetune: the isotropic prior variance
    pool: int = 2000
    baselines: tuple[str, ...] = tuple(CONSTRAINED_BASELINES)
    rea_population: Count = 20
    rea_sample_size: Count = 5
    level_gap: float = 0.2  # the level: best feasible test acc - level_gap
    pareto: bool = True
    pareto_queries: int = 100

    def __post_init__(self):
        super().__post_init__()
        if self.device not in HW_DEVICES:
            raise ConfigError(f"train.device={self.device!r}; choose from {', '.join(HW_DEVICES)}")
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise ConfigError(f"train.latency_budget_ms={self.latency_budget_ms}: must be > 0 ms (or null: median)")
        if not 1 <= self.design_k <= self.measurements:
            raise ConfigError(f"train.design_k={self.design_k} must be in 1..train.measurements={self.measurements}")
        if self.cost_family not in BAYES_FAMILIES:  # the search needs the Gaussian prior (design, feasibility)
            raise ConfigError(f"train.cost_family={self.cost_family!r}; choose from {', '.join(BAYES_FAMILIES)}")
        if self.verify not in ("plain", "adaptive"):
            raise ConfigError(f"train.verify={self.verify!r}; choose plain or adaptive")
        if not 0 < self.p_feasible < 1:
            raise ConfigError(f"train.p_feasible={self.p_feasible} must be in (0, 1)")
        unknown = sorted(set(self.baselines) - set(CONSTRAINED_BASELINES))
        if unknown:
            raise ConfigError(f"train.baselines: unknown {unknown}; choose from {', '.join(CONSTRAINED_BASELINES)}")
        from metanas.search.latency_search import ParetoSearch
        from metanas.search.table_search import PredictorSearch

        try:
            PredictorSearch(budget=self.queries, init=self.init, topk=self.topk)
            if self.pareto:
                ParetoSearch(budget=self.pareto_queries, init=self.init, topk=self.topk)
        except ValueError as e:
            raise ConfigError(f"train: {e}") from None


def _first_at(curve: np.ndarray, level: float, cap: int) -> list[float]:
    """Queries until the curve [S, B] first reaches ``level`` (censored at cap + 1)."""
    hit = curve >= level
    return np.where(hit.any(-1), hit.argmax(-1) + 1, cap + 1).astype(float).tolist()


@takes_train(ConstrainedTrain)
def run_constrained(cfg: DictConfig, ctx: RunContext) -> dict[str, float | list[float]]:
    import hydra

    from metanas.benchmarks.nb201 import NB201Benchmark
    from metanas.plots import plot_curves, plot_pareto
    from metanas.predictors.encodings import encode_archs
    from metanas.runners.context import scalars
    from metanas.search import latency_search as CS
    from metanas.search import table_search as S

    t = train_block(ConstrainedTrain, cfg)
    if not cfg.data_dir:
        raise ConfigError("search_nb201_constrained reads HW-NAS-Bench from data_dir; set data_dir=PATH")
    space = hydra.utils.instantiate(cfg.search_space)
    bench = hydra.utils.instantiate(cfg.benchmark)
    if not isinstance(space, NB201Space) or not isinstance(bench, NB201Benchmark):
        raise ConfigError(f"{cfg.name} needs search_space=nb201 and benchmark=nb201")
    predictor = hydra.utils.instantiate(cfg.predictor)
    col = f"{t.device}_latency"
    hw = {ds: load_hw_bench(str(cfg.data_dir), ds) for ds in DATASETS}
    lat = hw[bench.dataset].latency(t.device)  # the true table: measurements and the final check only
    budget = float(np.nanmedian(lat)) if t.latency_budget_ms is None else float(t.latency_budget_ms)
    sources = [d for d in HW_DEVICES if d != t.device]
    stack = source_stack({ds: tab.without(col) for ds, tab in hw.items()}, sources, "latency")
    src = np.concatenate(list(stack.values()), 0)
    x = jnp.asarray(C.cost_features(space))
    prior = C.meta_train_prior(x, jnp.asarray(src), cov_scale=t.cov_scale, jitter=t.jitter)
    if t.cost_family == "with_sources":  # the sources' costs at this input size as extra columns
        x = with_source_columns(x, np.stack([stack[d][DATASETS.index(bench.dataset)] for d in sources]))
    prior = family_prior(t.cost_family, prior, {"with_sources_var": t.source_var,
                                                "pretrain_finetune_var": t.finetune_var}, len(sources))
    val, report = jnp.asarray(bench.table()), bench.report_table()
    feats = encode_archs(space, space.enumerate(), t.encoding)
    excl = ~S.canonical_cells(space) if t.canonical else np.zeros(len(report), bool)
    feasible = hw[bench.dataset].feasible(col, budget)
    best_feasible = float(report[feasible & ~excl].max())
    level = best_feasible - t.level_gap
    # what a perfect validation-queried search answers: the feasible cell best by VALIDATION (its test accuracy is
    # the most any answer chosen by validation can be sure of; reported next to the goal's level)
    oracle_val = float(report[np.argmax(np.where(feasible & ~excl, np.asarray(bench.table()), -np.inf))])
    level_oracle = oracle_val - t.level_gap
    floor = float(report.min())
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(cfg.seed, cfg.seed + cfg.seeds)])
    k_base = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    search = S.PredictorSearch(budget=t.queries, init=t.init, topk=t.topk, encoding=t.encoding)
    cs = CS.ConstrainedSearch(search, measurements=t.measurements, design_k=t.design_k, p_feasible=t.p_feasible,
                              pool=t.pool)
    latj = jnp.asarray(lat, jnp.float32)
    feats, excl_j, infeasible_j = jnp.asarray(feats), jnp.asarray(excl), jnp.asarray(excl | ~feasible)
    # every table is an argument (closed-over arrays would be constant-folded by XLA at compile time)
    ours = jax.jit(jax.vmap(lambda k, v, la, b, pr, xc, f, ex: cs.run(
        k, v, la, b, prior=pr, x_cost=xc, features=f, predictor=predictor, space=space, excluded=ex),
        in_axes=(0,) + (None,) * 7))(keys, val, latj, budget, prior, x, feats, excl_j)
    results, curves = {}, {}

    def record(name, codes, values, answers, measured, how):
        codes, values = np.asarray(codes), np.asarray(values)
        curves[name] = CS.feasible_curve(codes, values, feasible, report, floor)
        ans = np.asarray(answers)
        test = np.where(ans >= 0, report[np.maximum(ans, 0)], floor)
        results[name] = {"answer": ans.astype(int).tolist(), "answer_test": test.tolist(),
                         "answer_val": np.where(ans >= 0, np.asarray(val)[np.maximum(ans, 0)], np.nan).tolist(),
                         "within": (test >= level).astype(float).tolist(),
                         "within_oracle": (test >= level_oracle).astype(float).tolist(),
                         "infeasible": [int(a < 0 or not feasible[a]) for a in ans],
                         "measurements": [float(m) for m in measured], "how": list(how),
                         "queries_to_level": _first_at(curves[name], level, t.queries),
                         "queries_to_oracle_level": _first_at(curves[name], level_oracle, t.queries)}

    design, failed = np.asarray(ours.design), np.asarray(ours.failed)
    rule = CS.verify if t.verify == "plain" else functools.partial(CS.verify_adaptive, prior=prior, x_cost=x)
    ver = [rule(c, v, d, lat, budget, t.measurements - t.design_k - int(f)) for c, v, d, f in
           zip(np.asarray(ours.trace.codes), np.asarray(ours.trace.values), design, failed)]
    record("ours", ours.trace.codes, ours.trace.values, [a for a, _, _ in ver],
           [t.design_k + int(f) + u for (_, u, _), f in zip(ver, failed)], [h for _, _, h in ver])
    for name in t.baselines:
        if name == "random":
            tr = jax.jit(jax.vmap(lambda k, v, ex: S.random_search(k, v, budget=t.queries, excluded=ex),
                                  in_axes=(0, None, None)))(k_base, val, infeasible_j)
            # every canonical cell drawn before the last feasible one was measured
            g = np.asarray(jax.vmap(lambda k: jax.random.gumbel(k, (len(report),)))(k_base))
            last = np.take_along_axis(g, np.asarray(tr.codes), 1).min(1)
            meas = ((g >= last[:, None]) & ~excl[None]).sum(1)
            best = np.argmax(np.asarray(tr.values), 1)
            record(name, tr.codes, tr.values, np.asarray(tr.codes)[np.arange(len(best)), best], meas,
                   ["verified"] * len(best))
        elif name == "rea":
            mt = jax.jit(jax.vmap(lambda k, v, la, b, ex: CS.constrained_regularized_evolution(
                k, v, la, b, space=space, budget=t.queries, population=min(t.rea_population, t.queries),
                sample_size=t.rea_sample_size, excluded=ex), in_axes=(0, None, None, None, None)))(
                k_base, val, latj, budget, excl_j)
            tr = mt.trace
            best = np.argmax(np.asarray(tr.values), 1)
            record(name, tr.codes, tr.values, np.asarray(tr.codes)[np.arange(len(best)), best],
                   np.asarray(mt.measurements), ["verified"] * len(best))
        else:
            tr = jax.jit(jax.vmap(lambda k, v, f, ex: search.run(k, v, f, predictor=predictor, space=space,
                                                                 excluded=ex), in_axes=(0, None, None, None)))(
                k_base, val, feats, excl_j)
            v = [CS.verify(c, vv, np.zeros(0, int), lat, budget, t.measurements)
                 for c, vv in zip(np.asarray(tr.codes), np.asarray(tr.values))]
            record(name, tr.codes, tr.values, [a for a, _, _ in v], [u for _, u, _ in v], [h for _, _, h in v])
    out_json = {"device": t.device, "dataset": bench.dataset, "budget_ms": budget, "best_feasible_test": best_feasible,
                "level": level, "oracle_val_answer_test": oracle_val, "level_oracle": level_oracle,
                "cost_family": t.cost_family, "p_feasible": t.p_feasible, "verify": t.verify, "queries": t.queries,
                "measurements": t.measurements, "design_k": t.design_k,
                "baselines": {b: CONSTRAINED_BASELINES[b] for b in t.baselines}, "constrained": results,
                "seeds": list(range(cfg.seed, cfg.seed + cfg.seeds))}
    out: dict[str, float | list[float]] = {"budget_ms": budget, "best_feasible_test_acc": best_feasible}
    for name, r in results.items():
        prefix = "" if name == "ours" else f"{name}_"
        out[f"{prefix}answer_test_acc"] = scalars(r["answer_test"])
        out[f"{prefix}infeasible_answers"] = float(np.sum(r["infeasible"]))
        out[f"{prefix}queries_to_level"] = scalars(r["queries_to_level"])
        out[f"{prefix}within_level"] = float(np.mean(r["within"]))
        out[f"{prefix}within_oracle_level"] = float(np.mean(r["within_oracle"]))
    plot_curves(curves, best_feasible, level, ctx.path("plots/constrained_curve.png"),
                f"NB201 {bench.dataset}, {t.device} latency <= {budget:.2f} ms: best feasible queried cell")
    if t.pareto:
        ps = CS.ParetoSearch(budget=t.pareto_queries, init=t.init, topk=t.topk)
        tr_p = {"ours": jax.jit(jax.vmap(lambda k, v, la, pr, xc, f, ex: ps.run(
                    k, v, la, prior=pr, x_cost=xc, features=f, predictor=predictor, excluded=ex),
                    in_axes=(0,) + (None,) * 6))(keys, val, latj, prior, x, feats, excl_j),
                "random": jax.jit(jax.vmap(lambda k, v, ex: S.random_search(k, v, budget=t.pareto_queries,
                                                                            excluded=ex), in_axes=(0, None, None)))(
                    k_base, val, excl_j),
                "rea": jax.jit(jax.vmap(lambda k, v, la, ex: CS.mo_regularized_evolution(
                    k, v, la, space=space, budget=t.pareto_queries,
                    population=min(t.rea_population, t.pareto_queries), sample_size=t.rea_sample_size,
                    excluded=ex), in_axes=(0, None, None, None)))(k_base, val, latj, excl_j)}
        ok = ~excl & np.isfinite(lat)
        acc_range = (float(report[ok].min()), float(report[ok].max()))
        ll_range = (float(np.log(lat[ok]).min()), float(np.log(lat[ok]).max()))
        hv_true = CS.hypervolume(report[ok], lat[ok], acc_range, ll_range)
        hv = {m: [CS.hypervolume(report[c], lat[c], acc_range, ll_range) / hv_true for c in np.asarray(tr.codes)]
              for m, tr in tr_p.items()}
        out_json["pareto"] = {"queries": t.pareto_queries, "hypervolume": hv, "true_hypervolume": hv_true}
        for m, v in hv.items():
            out[("" if m == "ours" else f"{m}_") + "hypervolume"] = scalars(v)
        fronts = {m: CS.pareto_front(report[np.asarray(tr.codes)[0]], lat[np.asarray(tr.codes)[0]])
                  for m, tr in tr_p.items()}
        plot_pareto(fronts, CS.pareto_front(report[ok], lat[ok]), ctx.path("plots/pareto.png"),
                    f"NB201 {bench.dataset} on {t.device}: fronts after {t.pareto_queries} queries (seed {cfg.seed})")
    ctx.save_json("constrained.json", out_json)
    return out
