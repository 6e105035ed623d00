"""curves_taskset: freeze-thaw search with the learning-curve meta-learner vs multi-fidelity baselines on a curve table.

For every target task of the table (``train.targets``, default all): the curve model is pre-trained on the OTHER
tasks' curves (``leave_one_task_out``), then each method searches the target with ``train.budget`` (in the table's
cost unit: TaskSet checkpoints), ``seeds`` seeds from ``seed``:

- ``metanas``: freeze-thaw (``metanas.search.freeze_thaw``) with the pre-trained ``CurveModel`` fine-tuned on the
  target's partial curves; ``metanas_scratch``: the same model without source tasks (fresh init, first config
  random); ``dpl``: the same loop with the DPL power-law ensemble (config-conditioned, target only);
  ``random``: random configs at full budget (metanas);
- library baselines through ``metanas.search.curve_baselines`` (Syne Tune ``synetune_random`` / ``_asha`` /
  ``_hyperband`` / ``_bohb``, Optuna ``optuna_median`` / ``optuna_hyperband``), skipped with a warning when the
  ``curves`` extra is not installed; ``synetune_dyhpo`` (Syne Tune 0.14.2's DyHPO, its own environment: not among
  the default methods) only when named in ``train.methods``, skipped with a warning where Syne Tune has no DyHPO.

Metric: DPL's normalised regret (incumbent - best) / (worst - best) over the task's kept configs, the incumbent being
the best validation value observed so far. Summary: ``<method>_regret`` (mean over tasks and seeds at the full
budget), ``<method>_regret_<pct>`` and ``<method>_rank_<pct>`` (average rank among the methods) at ``fractions`` of
the budget, ``<method>_decision_ms``. ``curves.json``: regret per task x seed on a budget grid (for the study).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import time
from dataclasses import dataclass
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig

from metanas.benchmarks.curves import (CurveDataError, leave_one_task_out, load_taskset, normalised_regret,
                                       regret_bounds)
from metanas.config import COUNT, ConfigError, Count, Fraction, NonNegInt, Positive, TrainBlock, takes_train, train_block
from metanas.predictors.curves import CurveModel, PowerLaw, Rows, data_scale
from metanas.runners.context import RunContext
from metanas.search.freeze_thaw import FreezeThaw, incumbent_at, random_search

log = logging.getLogger(__name__)

MODEL_METHODS = ("metanas", "metanas_scratch", "dpl")
LIBRARY_METHODS = ("synetune_random", "synetune_asha", "synetune_hyperband", "synetune_bohb", "optuna_median",
                   "optuna_hyperband")
DYHPO = "synetune_dyhpo"  # Syne Tune 0.14.2 only (0.16 has no DyHPO; their pins conflict): named, never default
METHODS = MODEL_METHODS + ("random",) + LIBRARY_METHODS + (DYHPO,)
DEFAULT_METHODS = tuple(m for m in METHODS if m != DYHPO)


@dataclass(frozen=True)
class CurvesTrain(TrainBlock):
    """``train:`` of curves_taskset."""

    data: str | None = None  # a folder of TaskSet-shaped JSON files; null: <data_dir>/taskset_dpl
    targets: tuple[str, ...] = ()  # task names (or unique substrings); empty: every task
    methods: tuple[str, ...] = DEFAULT_METHODS
    budget: Annotated[float, COUNT] = 1000.0
    step: int = 1  # checkpoints per freeze-thaw advance
    decisions_per_fit: int = 25  # the curve model is fine-tuned every this many decisions
    finetune_steps: NonNegInt = 25
    pretrain_steps: NonNegInt = 3000
    hidden: Count = 64
    layers: int = 2
    ensemble: int = 5
    lr: Positive = 1e-3
    batch: int = 128
    mix: Fraction = 0.0  # share of source rows in the fine-tuning batches
    init_prior: NonNegInt = 0  # metanas: first run the sources' z-score order's best configs to the end
    # (FreezeThaw.init_prior; 0: start from the model's own zero-shot ranking)
    final_weight: float = 0.3
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)
    grid: int = 40  # budget grid points saved for the plot

    def __post_init__(self):
        super().__post_init__()
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ConfigError(f"train.methods: unknown {bad}; choose among {list(METHODS)}")
        if self.budget <= 0 or self.step < 1 or self.decisions_per_fit < 1 or self.ensemble < 1:
            raise ConfigError("train.budget > 0, train.step >= 1, train.decisions_per_fit >= 1 and train.ensemble >= 1 "
                              f"are required (got {self.budget}, {self.step}, {self.decisions_per_fit}, "
                              f"{self.ensemble})")
        if not all(0 < f <= 1 for f in self.fractions):
            raise ConfigError(f"train.fractions must lie in (0, 1], got {list(self.fractions)}")


def model_of(t: CurvesTrain) -> CurveModel:
    return CurveModel(hidden=t.hidden, layers=t.layers, ensemble=t.ensemble, lr=t.lr, batch=t.batch,
                      final_weight=t.final_weight, mix=t.mix)


def source_rows(src) -> Rows:
    """Every kept source curve as one row (progress = full curve; unkept rows have progress 0 and are never read)."""
    s, n, L = src.valid.shape
    return Rows(jnp.asarray(src.valid.reshape(s * n, L)), jnp.asarray(np.where(src.keep.reshape(-1), L, 0), jnp.int32),
                jnp.tile(jnp.arange(n, dtype=jnp.int32), s))


def source_order(src) -> np.ndarray:
    """[N] the source tasks' plain z-score order of their last-checkpoint values (lower value = better; higher score
    = better; NaN curves count as unknown), the prior of ``FreezeThaw.init_prior``."""
    from metanas.search.transfer import zscore_order

    return zscore_order(-np.where(src.keep, src.valid[:, :, -1], np.nan))


def pretrain(key, model: CurveModel, x, rows: Rows, steps: int) -> dict:
    mu, sd = data_scale(rows.y, rows.prog)
    p0 = model.init(key, x.shape[1], mu, sd)
    return model.train(jax.random.fold_in(key, 1), p0, x, rows, steps)


def _ranks(reg: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Average rank (1 = best) of each method per (task, seed, budget point), ties averaged."""
    from scipy.stats import rankdata

    names = list(reg)
    stack = np.stack([reg[m] for m in names])  # [M, T, S, G]
    r = rankdata(stack, axis=0)
    return {m: r[i] for i, m in enumerate(names)}


def run_table(table, t: CurvesTrain, seeds: list[int], *, progress=None) -> dict:
    """All methods on every target of ``table``: regret [T, S, G] per method on the budget grid, timings."""
    targets = [table.task(n) for n in t.targets] if t.targets else list(range(len(table.tasks)))
    methods = list(t.methods)
    lib_ok = {m: importlib.util.find_spec("syne_tune" if m.startswith("synetune") else "optuna") is not None
              for m in methods if m in LIBRARY_METHODS + (DYHPO,)}
    if DYHPO in lib_ok:
        from metanas.search.curve_baselines import has_dyhpo

        lib_ok[DYHPO] = has_dyhpo()
    if any(m.startswith("optuna") for m in methods):  # Optuna 5's pruners; the sweeper's optuna 2.x is not used
        try:
            import optuna

            lib_ok.update({m: int(optuna.__version__.split(".")[0]) >= 3 for m in methods if m.startswith("optuna")})
        except ImportError:
            pass
    skipped = [m for m, ok in lib_ok.items() if not ok]
    if skipped:
        log.warning("skipping %s: install the curves extra (pip install -e '.[curves]'; %s needs Syne Tune 0.14.2 "
                    "in its own environment: pip install 'syne-tune[gpsearchers]==0.14.2')", skipped, DYHPO)
    methods = [m for m in methods if m not in skipped]
    grid = np.linspace(t.budget / t.grid, t.budget, t.grid)
    grid = np.unique(np.concatenate([grid, np.asarray(t.fractions) * t.budget]))
    model = model_of(t)
    dpl = PowerLaw(hidden=t.hidden, layers=t.layers, ensemble=t.ensemble, lr=t.lr, batch=t.batch)
    L = table.n_checkpoints
    ft_meta = FreezeThaw(budget=t.budget, decisions=int(np.ceil(t.budget)), step=t.step,
                         decisions_per_fit=t.decisions_per_fit, finetune_steps=t.finetune_steps, init_random=0,
                         init_prior=t.init_prior)
    ft_scratch = dataclasses.replace(ft_meta, init_random=1, init_prior=0)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    x = jnp.asarray(table.x)
    # compiled once, the task's arrays as arguments (not constants): one compilation serves every target
    jit_pretrain = jax.jit(lambda k, rows: pretrain(k, model, x, rows, t.pretrain_steps))
    jit_meta = jax.jit(jax.vmap(lambda k, p0, y, c, kp, src, pr: ft_meta.run(k, model, p0, x, y, c, kp,
                                                                             src if t.mix > 0 else None, prior=pr),
                                in_axes=(0, None, None, None, None, None, None)))
    jit_scratch = {name: jax.jit(jax.vmap(lambda k, y, c, kp, mdl=mdl: ft_scratch.run(k, mdl, None, x, y, c, kp),
                                          in_axes=(0, None, None, None)))
                   for name, mdl in (("metanas_scratch", model), ("dpl", dpl))}
    jit_random = jax.jit(jax.vmap(lambda k, y, c, kp: random_search(k, y, c, kp, t.budget),
                                  in_axes=(0, None, None, None)))
    reg = {m: np.zeros((len(targets), len(seeds), len(grid))) for m in methods}
    secs = {m: 0.0 for m in methods}
    decisions = {m: 0 for m in methods}
    for ti, target in enumerate(targets):
        src, tgt = leave_one_task_out(table, target)
        y, cost, keep = (jnp.asarray(tgt.valid[0]), jnp.asarray(tgt.cost[0]), jnp.asarray(tgt.keep[0]))
        best, worst = regret_bounds(tgt.valid[0], tgt.keep[0])
        params0 = None
        for m in methods:
            t0 = time.perf_counter()
            if m in MODEL_METHODS:
                if m == "metanas":
                    rows_src = source_rows(src)
                    if params0 is None:
                        params0 = jit_pretrain(jax.random.PRNGKey(10_000 + target), rows_src)
                    tr = jit_meta(keys, params0, y, cost, keep, rows_src, jnp.asarray(source_order(src), jnp.float32))
                else:
                    tr = jit_scratch[m](keys, y, cost, keep)
                tr = jax.block_until_ready(tr)
                spent, inc = np.asarray(tr.spent), np.asarray(tr.inc)
                decisions[m] += int((np.asarray(tr.pick) >= 0).sum())
            elif m == "random":
                tr = jit_random(keys, y, cost, keep)
                spent, inc = np.asarray(tr.spent), np.asarray(tr.inc)
                decisions[m] += int((np.asarray(tr.pick) >= 0).sum())
            else:
                from metanas.search.curve_baselines import run_library

                outs = [run_library(m, s, table.x, tgt.valid[0], tgt.cost[0], tgt.keep[0], t.budget) for s in seeds]
                inc_g = np.stack([incumbent_at(o["spent"], o["inc"], grid) for o in outs])
                reg[m][ti] = normalised_regret(inc_g, best, worst)
                secs[m] += time.perf_counter() - t0
                decisions[m] += sum(len(o["spent"]) for o in outs)
                continue
            reg[m][ti] = normalised_regret(incumbent_at(spent, inc, grid), best, worst)
            secs[m] += time.perf_counter() - t0
        if progress:
            progress(ti, table.tasks[target], {m: float(reg[m][ti, :, -1].mean()) for m in methods})
    return {"tasks": [table.tasks[i] for i in targets], "seeds": list(seeds), "grid": grid.tolist(),
            "methods": methods, "skipped": skipped, "regret": {m: reg[m].tolist() for m in methods},
            "seconds": secs, "decisions": decisions, "L": L}


def summarise(res: dict, fractions, budget: float) -> dict[str, float]:
    grid = np.asarray(res["grid"])
    reg = {m: np.asarray(res["regret"][m]) for m in res["methods"]}
    ranks = _ranks(reg)
    out: dict[str, float] = {}
    for m in res["methods"]:
        out[f"{m}_regret"] = float(reg[m][..., -1].mean())
        for f in fractions:
            g = int(np.argmin(np.abs(grid - f * budget)))
            pct = int(round(100 * f))
            out[f"{m}_regret_{pct}"] = float(reg[m][..., g].mean())
            out[f"{m}_rank_{pct}"] = float(ranks[m][..., g].mean())
        d = max(res["decisions"][m], 1)
        out[f"{m}_decision_ms"] = 1000.0 * res["seconds"][m] / d
    return out


@takes_train(CurvesTrain)
def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    t = train_block(CurvesTrain, cfg)
    try:
        table = load_taskset(t.data or cfg.data_dir)
        for n in t.targets:
            table.task(n)
    except CurveDataError as e:
        raise ConfigError(f"train: {e}") from None
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))

    def progress(i, name, last):
        ctx.log("task", i, {k: v for k, v in last.items()})
        log.info("task %s: regret at full budget %s", name, {k: round(v, 4) for k, v in last.items()})

    res = run_table(table, t, seeds, progress=progress)
    res["config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(t).items()}
    ctx.save_json("curves.json", res)
    out = summarise(res, t.fractions, t.budget)
    out["metanas_regret"] = out.get("metanas_regret", float("nan"))
    return out
