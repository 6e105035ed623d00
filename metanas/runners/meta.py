"""Meta-initialization experiments: MAML / FOMAML / ANIL / Meta-SGD / Reptile on sinusoids or few-shot images.

``run(cfg, ctx)`` builds the algorithm (``cfg.meta``), the task family (``cfg.task``), the outer optimizer
(``cfg.optimizer``) and the model (``train.model``), jits ``meta_train_step`` once and drives it with
``train_loop`` (resume, NaN guard, metrics). Model selection data: the in-training evaluation
(``val_query_metric``, every ``train.eval_every`` steps on ``train.eval_tasks`` tasks) and the final ``val_*``
metrics (``train.eval_tasks`` tasks, e.g. ``val_acc`` for HPO) read the meta-validation split (``eval_split``:
Omniglot's 100 held-out meta-train characters, miniImageNet's val.csv, fresh sinusoid seeds). The meta-test split
is read only once, at the end: ``train.test_tasks`` tasks (mean ± 95% CI, 1.96 * std / sqrt(n)), the family's
official test runs where it has them (Omniglot 20-way 1-shot: the 20 runs of Lake et al.), and for 1-D regression
families the paper-style plot of the fits (``sinusoid_fits.png``, Finn et al. 2017, Fig. 2). The runner reads
everything about the task family through ``metanas.data.tasks.TaskFamily``. With ``task.n_val_chars=0`` there is
no validation split and the in-training evaluation falls back to the test split (logged).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from typing import Literal

import hydra
import jax
import numpy as np
import optax
from omegaconf import DictConfig

from metanas.config import Count, Counts, NonNegInt, TrainBlock, takes_train, train_block
from metanas.data.tasks import TaskFamily
from metanas.meta.base import LOSSES, AbstractMetaAlgorithm, Task
from metanas.runners.context import RunContext, train_loop, require_one_seed

log = logging.getLogger("metanas")


@dataclass(frozen=True)
class MetaLoop(TrainBlock):
    """The ``train:`` keys of every meta-learning runner (this one and ``metanas``)."""

    steps: Count = 1000  # outer steps
    meta_batch: Count = 4  # tasks per outer step
    eval_every: NonNegInt = 0  # in-training evaluation every N steps on the validation split; 0: none
    eval_tasks: Count = 100  # tasks of that evaluation and of the final val_* metrics
    test_tasks: Count = 600  # meta-test tasks at the end (mean ± 95% CI)
    test_batch: Count = 25  # tasks per evaluation chunk (memory)
    anneal_outer: bool = False  # anneal the outer step size linearly to 0 (Reptile)


@dataclass(frozen=True)
class MetaTrain(MetaLoop):
    """``train:`` of the meta-initialization experiments (``maml_*``, ``fomaml_*``, ``anil_*``, ...)."""

    model: Literal["mlp", "cnn4"] = "mlp"
    hidden: Counts = (40, 40)  # mlp
    channels: Count = 64  # cnn4
    conv_impl: str = "patches"  # cnn4's convolution (metanas.models.cnn4)


def build_model(t: MetaTrain, family: TaskFamily) -> tuple:
    """(init_fn(key) -> params, apply_fn(params, x)) from ``train.model`` ("mlp" | "cnn4"), sized by the family's
    input shape and number of outputs."""
    from metanas.models.cnn4 import CNN4
    from metanas.nn.modules import MLP
    from metanas.nn.boundary import pure

    if t.model == "mlp":
        sizes = (int(np.prod(family.input_shape)), *[int(h) for h in t.hidden], family.num_outputs)
        return pure(lambda rngs: MLP(sizes, rngs=rngs))
    if t.model == "cnn4":
        hw, _, in_ch = family.input_shape
        return pure(lambda rngs: CNN4(family.num_outputs, channels=int(t.channels), in_channels=in_ch, hw=hw,
                                      impl=t.conv_impl, rngs=rngs))
    raise AssertionError(t.model)  # Literal-checked by train_block


def make_sampler(cfg: DictConfig, family: TaskFamily):
    """``sample(split, seed, step, meta_batch, train) -> Task`` of host numpy arrays."""
    sampler = family.build(cfg.data_dir)

    def sample(split, seed, step, meta_batch, train):
        return Task(*sampler.sample(split, seed, step, meta_batch, train=train))

    return sample


def eval_split(family: TaskFamily) -> str:
    """The split used for model selection during and after meta-training: ``val`` where the family has one."""
    if family.has_val_split:
        return "val"
    log.warning("task.n_val_chars=0: no validation split, the in-training evaluation reads the meta-TEST split")
    return "test"


def record_task_family(ctx: RunContext, cfg: DictConfig, sample, *, classification: bool) -> None:
    """Meta-features of the task family, from the support + query sets of a few meta-training tasks."""
    task = sample("train", cfg.seed, 0, 4, True)
    x = np.concatenate([np.asarray(task.support_x), np.asarray(task.query_x)], 1)
    y = np.concatenate([np.asarray(task.support_y), np.asarray(task.query_y)], 1)
    name = str(cfg.task._target_).rsplit(".", 1)[-1]
    ctx.record_dataset(name, x.reshape(-1, *x.shape[2:]), y.reshape(len(x) * x.shape[1], -1)[:, 0],
                       classification=classification)


def outer_optimizer(cfg: DictConfig, t: MetaLoop, steps: int) -> optax.GradientTransformation:
    tx = hydra.utils.instantiate(cfg.optimizer)
    if t.anneal_outer:  # Reptile: outer step size annealed linearly to 0 (Nichol et al. 2018, App. A)
        tx = optax.chain(tx, optax.scale_by_schedule(optax.linear_schedule(1.0, 0.0, int(steps))))
    return tx


def ci95(x: np.ndarray) -> float:
    return float(1.96 * np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")


def meta_train(ctx: RunContext, phase: str, cfg: DictConfig, t: MetaLoop, algo: AbstractMetaAlgorithm, params,
               apply_fn, loss, sample, k_train: jax.Array, k_eval: jax.Array, *, steps: int, split: str = "val"):
    """Meta-train ``params`` for ``steps`` outer steps (one jitted ``meta_train_step``, resumable ``train_loop``).

    Returns ``(state, last metrics, wall time s)``; evaluates ``train.eval_tasks`` tasks of ``split`` (the
    meta-validation split, see ``eval_split``) every ``train.eval_every`` steps (``val_query_metric``).
    """
    tx = outer_optimizer(cfg, t, steps)
    state = algo.init_state(params, tx)
    meta_step = jax.jit(functools.partial(algo.meta_train_step, apply_fn=apply_fn, loss=loss, tx=tx),
                        donate_argnums=(0,))

    def step_fn(state, step):
        tasks = sample("train", cfg.seed, step, t.meta_batch, True)
        return meta_step(state, tasks, jax.random.fold_in(k_train, step))

    def eval_fn(state, step):
        r = meta_test(cfg, t, algo, state.params, apply_fn, loss, sample, k_eval, t.eval_tasks, 7919 * step,
                      split=split)
        return {"val_query_metric": float(r["query_metric"].mean())}

    t0 = time.perf_counter()
    state, last = train_loop(ctx, phase, state, step_fn, steps, eval_fn=eval_fn,
                             eval_every=t.eval_every or None)
    return state, last, time.perf_counter() - t0


def meta_test(cfg: DictConfig, t: MetaLoop, algo: AbstractMetaAlgorithm, meta_params, apply_fn, loss, sample,
              key: jax.Array, n_tasks: int, seed_offset: int, *, split: str) -> dict[str, np.ndarray]:
    """``algo.evaluate`` on ``n_tasks`` tasks of ``split`` in chunks of ``train.test_batch``; per-task arrays."""
    evaluate = _jitted_evaluate(algo, apply_fn, loss)
    chunk, chunks = t.test_batch, []
    for i in range(0, n_tasks, chunk):
        tasks = sample(split, cfg.seed + seed_offset, i, min(chunk, n_tasks - i), False)
        chunks.append(jax.tree.map(np.asarray, evaluate(meta_params, tasks, jax.random.fold_in(key, i))))
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


@functools.lru_cache(maxsize=8)
def _jitted_evaluate(algo, apply_fn, loss):
    return jax.jit(functools.partial(algo.evaluate, apply_fn=apply_fn, loss=loss))


def summarize_test(r: dict[str, np.ndarray], metric: str, prefix: str = "test") -> dict[str, float]:
    """Mean ± 95% CI of the per-task query metric, pre-adaptation metric and support losses."""
    return {f"{prefix}_{metric}": float(r["query_metric"].mean()), f"{prefix}_{metric}_ci95": ci95(r["query_metric"]),
            f"{prefix}_{metric}_pre_adapt": float(r["pre_query_metric"].mean()),
            f"{prefix}_support_loss_before": float(r["support_loss_before"].mean()),
            f"{prefix}_support_loss_after": float(r["support_loss_after"].mean()),
            f"n_{prefix}_tasks": float(len(r["query_metric"]))}


@takes_train(MetaTrain)
def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    require_one_seed(cfg)  # no vmap over seeds here: seeds>1 is one line, not a mislabelled run
    t = train_block(MetaTrain, cfg)
    algo: AbstractMetaAlgorithm = hydra.utils.instantiate(cfg.meta)
    family: TaskFamily = hydra.utils.instantiate(cfg.task)
    loss = LOSSES[family.loss]
    init_fn, apply_fn = build_model(t, family)
    sample = make_sampler(cfg, family)
    record_task_family(ctx, cfg, sample, classification=family.classification)
    split = eval_split(family)
    k_init, k_train, k_eval = jax.random.split(ctx.key, 3)
    state, last, train_time = meta_train(ctx, "meta_train", cfg, t, algo, init_fn(k_init), apply_fn, loss, sample,
                                         k_train, k_eval, steps=t.steps, split=split)
    metric = family.metric
    out = final_val(cfg, t, algo, state.params, apply_fn, loss, sample, k_eval, split, metric)
    r = meta_test(cfg, t, algo, state.params, apply_fn, loss, sample, k_eval, t.test_tasks, 104_729, split="test")
    out |= summarize_test(r, metric) | {"train_loss": float(last.get("loss", np.nan)), "train_time_s": train_time}
    ctx.log("meta_test", t.steps, out)
    if family.has_official_test_runs:
        out |= official_runs(cfg, family, algo, state.params, apply_fn, loss, k_eval)
    rng = np.random.default_rng([cfg.seed, 424242])
    curves = family.curves(rng, 3)
    if curves is not None:  # 1-D regression: the paper-style plot of the fits
        from metanas.plots import plot_fits

        plot_fits(ctx.path(f"{curves.name}_fits.png"), algo, state.params, apply_fn, loss, curves, rng)
    ctx.meta_record |= {"meta_algorithm": type(algo).__name__, "task_family": type(family).__name__}
    return out


def final_val(cfg, t: MetaLoop, algo, params, apply_fn, loss, sample, key, split: str, metric: str) -> dict[str, float]:
    """``val_<metric>`` (± CI) on ``train.eval_tasks`` meta-validation tasks, for model selection (HPO); {} without
    a validation split or with ``train.eval_tasks=0``."""
    if split != "val" or t.eval_tasks <= 0:
        return {}
    r = meta_test(cfg, t, algo, params, apply_fn, loss, sample, key, t.eval_tasks, 15_485_863, split="val")
    return summarize_test(r, metric, prefix="val")


def official_runs(cfg, family: TaskFamily, algo, params, apply_fn, loss, key) -> dict[str, float]:
    """Accuracy on the family's official test runs (Omniglot: the 20 20-way 1-shot runs of Lake et al. 2015)."""
    tasks = Task(*family.official_test_runs(cfg.data_dir))
    r = jax.jit(functools.partial(algo.evaluate, apply_fn=apply_fn, loss=loss))(params, tasks, key)
    acc = np.asarray(r["query_metric"])
    return {"official_20way_acc": float(acc.mean()), "official_20way_acc_ci95": ci95(acc)}
