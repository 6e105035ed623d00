"""Differentiable NAS experiments (darts_nb201, darts2_nb201, gdas_nb201, darts_cnn): search, derive, retrain.

1. Search: the supernet of ``cfg.search_space`` trained with ``cfg.search`` (DARTS 1st/2nd order or GDAS) on a
   train/val split of the training data (``train.val_fraction``); one jitted step per host step; alpha softmax is
   written to ``alphas.jsonl`` every epoch and plotted to ``alphas.png``.
2. Derive the discrete architecture (``genotype.json``); NB201 cells are looked up in the real NB201 table.
3. Retrain the derived network from scratch on the full training set (random crop + flip, optional cutout and
   drop-path) with SGD-momentum and a cosine learning rate, and report its test accuracy.

``run`` calls the three phases ``search``, ``derive_architecture`` and ``retrain`` in turn. Data parallelism: with
``train.data_parallel`` and more than one local device, batches are sharded along a ``batch`` mesh axis and the state
is replicated (``metanas.sharding``); XLA inserts the gradient all-reduce.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NamedTuple

import hydra
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.special
from omegaconf import DictConfig

from metanas.benchmarks import reference_metrics
from metanas.config import Count, NonNeg, NonNegInt, Positive, Range, TrainBlock, takes_train, train_block
from metanas.data import augment, load_image_dataset
from metanas.run_store import atomic_write_text
from metanas.sharding import data_parallel_shardings, put
from metanas.runners.context import RunContext, train_loop, require_one_seed
from metanas.search.darts import accuracy, cross_entropy
from metanas.supernet import derive, make_derived, make_supernet

log = logging.getLogger("metanas")


@dataclass(frozen=True)
class NASTrain(TrainBlock):
    """``train:`` of the differentiable NAS experiments (``darts_nb201``, ``darts2_nb201``, ``gdas_nb201``,
    ``darts_cnn``)."""

    dataset: Literal["omniglot", "cifar10", "cifar100"] = "omniglot"
    data_root: str | None = None  # your copy of the data (CIFAR: required); omniglot: <data_dir>/omniglot
    num_classes: Count = 20  # omniglot: the first N characters
    image_size: Count = 16
    train_per_class: Count = 15  # omniglot: drawers per character for training, the rest test
    # of the training data, for the architecture step
    val_fraction: Annotated[float, Range(0, 1, lo_open=True, hi_open=True)] = 0.5
    C: Count = 8
    N: Count = 2  # cells per stage (paper: C=16, N=5)
    stages: Count | None = None  # None: the search space's default
    batch_size: Count = 64
    search_steps: Count = 300
    search_eval_every: NonNegInt = 30  # alpha snapshot + supernet val accuracy
    augment_search: bool = False
    crop_pad: NonNegInt = 2
    flip: bool = False  # off: Omniglot characters are not mirror-symmetric
    cutout: NonNegInt = 0  # retraining only
    drop_path_prob: Annotated[float, Range(0, 1, hi_open=True)] = 0.0  # retraining only
    eval_batch: Count = 100
    data_parallel: bool = True  # shard batches over all local devices when there are several
    retrain_C: Count = 8
    retrain_N: Count = 2
    retrain_steps: Count = 300  # 0: no retraining
    retrain_lr: Positive = 0.05
    retrain_weight_decay: NonNeg = 5e-4
    # BN of the retrained network: false = the batch's statistics in training and test alike (the committed
    # results/nas_nb201 figures; test batches of eval_batch); true = running statistics, updated in training and used
    # at test (the papers' retraining code, track_running_stats=True)
    retrain_running_stats: bool = False


class RetrainState(NamedTuple):
    weights: Any  # derived network weights
    opt: optax.OptState  # the retrain optimizer's state
    step: jax.Array  # int32 []
    batch_stats: Any  # BN running statistics ({} without train.retrain_running_stats)


# ---- helpers -----------------------------------------------------------------------------------------------------
def evaluate(apply_fn, weights, x: np.ndarray, y: np.ndarray, batch: int) -> float:
    """Accuracy of ``apply_fn(weights, x) -> logits`` over all of ``x`` (full batches, then the remainder)."""
    correct = 0
    for i in range(0, len(x), batch):
        logits = apply_fn(weights, jnp.asarray(x[i:i + batch]))
        correct += int(np.sum(np.argmax(np.asarray(logits), -1) == y[i:i + batch]))
    return correct / max(len(x), 1)


def alpha_rows(space, alphas) -> dict[str, float]:
    """Softmax of alpha per edge as flat ``{"<cell>e<i>/<op>": p}``."""
    out = {}
    items = alphas.items() if isinstance(alphas, dict) else [("", alphas)]
    for name, a in items:
        p = scipy.special.softmax(np.asarray(a, np.float64), axis=-1)
        for e in range(p.shape[0]):
            for k, op in enumerate(space.ops):
                out[f"{name}e{e}/{op}"] = float(p[e, k])
    return out


# ---- the experiment: search, derive, retrain ----------------------------------------------------------------------
@takes_train(NASTrain)
def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    require_one_seed(cfg)  # no vmap over seeds here: seeds>1 is one line, not a mislabelled run
    t = train_block(NASTrain, cfg)
    space = hydra.utils.instantiate(cfg.search_space)
    algo = hydra.utils.instantiate(cfg.search)
    ds = load_image_dataset(t.dataset, data_dir=cfg.data_dir, root=t.data_root, num_classes=t.num_classes,
                            image_size=t.image_size, train_per_class=t.train_per_class)
    log.info("data %s: train %s, test %s", ds.name, ds.x_train.shape, ds.x_test.shape)
    ctx.record_dataset(ds.name, ds.x_train, ds.y_train)
    shardings = data_parallel_shardings(t.data_parallel)
    k_init, k_search, k_retrain = jax.random.split(ctx.key, 3)
    alphas, result = search(ctx, cfg, t, space, algo, ds, shardings, k_init, k_search)
    arch, derived = derive_architecture(ctx, cfg, space, alphas)
    result |= derived
    if t.retrain_steps > 0:
        result |= retrain(ctx, cfg, t, space, arch, ds, shardings, k_retrain)
    return result


def search(ctx: RunContext, cfg: DictConfig, t: NASTrain, space, algo, ds, shardings, k_init: jax.Array,
           k_search: jax.Array) -> tuple[Any, dict[str, float]]:
    """1. Train the supernet with ``algo`` on a train/val split of the training data (phase ``search``); alpha
    snapshots go to ``alphas.jsonl`` / ``alphas.png``. Returns the final alphas and the search metrics."""
    bsh, rep = shardings
    perm = np.random.default_rng([cfg.seed, 7]).permutation(len(ds.x_train))
    n_val = int(round(len(perm) * t.val_fraction))
    tr_idx, va_idx = perm[n_val:], perm[:n_val]
    net = make_supernet(space, C=t.C, N=t.N, num_classes=ds.num_classes, stages=t.stages)
    T, B = t.search_steps, t.batch_size
    state = algo.init(*net.init(k_init, jnp.asarray(ds.x_train[:2])), total_steps=T)
    if rep is not None:
        state = jax.device_put(state, rep)
    search_step = jax.jit(functools.partial(algo.step, net=net, total_steps=T), donate_argnums=(0,))

    def batch_of(idx, rng):
        i = rng.choice(idx, B, replace=len(idx) < B)
        x = augment(ds.x_train[i], rng, crop_pad=t.crop_pad, flip=t.flip) if t.augment_search else ds.x_train[i]
        return put(x, bsh), put(ds.y_train[i], bsh)

    def step_fn(state, step):
        rng = np.random.default_rng([cfg.seed, 1, step])
        return search_step(state, batch_of(tr_idx, rng), batch_of(va_idx, rng), jax.random.fold_in(k_search, step))

    eval_apply = jax.jit(lambda w, a, x: net.apply(w, a, {}, x, False)[0])
    alpha_file = ctx.path("alphas.jsonl")
    history = {}
    if alpha_file.exists():
        history = {r["step"]: r for r in map(json.loads, alpha_file.read_text().splitlines())}

    def search_eval(state, step):
        history[step] = {"step": step, **alpha_rows(space, state.alphas)}
        atomic_write_text(alpha_file, "".join(json.dumps(history[s]) + "\n" for s in sorted(history)))
        acc = evaluate(lambda w, x: eval_apply(w, state.alphas, x), state.weights, ds.x_train[va_idx],
                       ds.y_train[va_idx], t.eval_batch)
        return {"supernet_val_acc": acc}

    steps_per_epoch = max(t.search_eval_every, 1)
    state, last = train_loop(ctx, "search", state, step_fn, T, eval_fn=search_eval, eval_every=steps_per_epoch)
    if history:
        from metanas.plots import plot_alphas

        plot_alphas(ctx.path("alphas.png"), [history[s] for s in sorted(history)], space)
    return state.alphas, {"search_train_loss": last.get("loss", float("nan")),
                          "supernet_val_acc": last.get("supernet_val_acc", float("nan"))}


def derive_architecture(ctx: RunContext, cfg: DictConfig, space, alphas) -> tuple[np.ndarray, dict[str, float]]:
    """2. The discrete architecture of ``alphas`` (``genotype.json``, with what the space adds in ``describe``: the
    DARTS genotype lists; NB201 cells' table accuracies, reported, never used to choose). Returns the architecture
    and those accuracies."""
    arch = derive(space, jax.device_get(alphas))
    extra, bench = reference_metrics(space, arch, cfg.data_dir)  # a reference table's accuracies (reported only)
    extra = space.describe(arch) | extra  # the space's own fields
    genotype: dict[str, Any] = {"arch": space.to_string(arch), "indices": arch.tolist(), "ops": list(space.ops),
                                **extra}
    ctx.save_json("genotype.json", genotype)
    ctx.meta_record |= {"arch": genotype["arch"], "search_space": type(space).__name__,
                        "encoding": np.asarray(space.encode(arch)).tolist()}
    log.info("derived: %s", genotype["arch"])
    return arch, bench


def retrain(ctx: RunContext, cfg: DictConfig, t: NASTrain, space, arch, ds, shardings,
            k_retrain: jax.Array) -> dict[str, float]:
    """3. Retrain the derived network from scratch on the full training set (phase ``retrain``): the ``optimizer`` group
    (the NAS experiments: SGD, Nesterov momentum 0.9) on a cosine schedule from ``train.retrain_lr``, weight decay,
    gradients clipped at norm 5, random crop + flip (+ cutout, drop-path); test accuracy every quarter. BN: the batch's
    statistics, or running statistics with ``train.retrain_running_stats``."""
    bsh, rep = shardings
    R, B = t.retrain_steps, t.batch_size
    dnet = make_derived(space, arch, C=t.retrain_C, N=t.retrain_N, num_classes=ds.num_classes,
                        drop_path_prob=t.drop_path_prob, stages=t.stages, running_stats=t.retrain_running_stats)
    w0, _, bs0 = dnet.init(k_retrain, jnp.asarray(ds.x_train[:2]))
    sched = optax.cosine_decay_schedule(t.retrain_lr, R)
    tx = optax.chain(optax.clip_by_global_norm(5.0), optax.add_decayed_weights(t.retrain_weight_decay),
                     hydra.utils.instantiate(cfg.optimizer, learning_rate=sched))  # the optimizer group (DARTS: SGD)
    rstate = RetrainState(w0, tx.init(w0), jnp.zeros((), jnp.int32), bs0)
    if rep is not None:
        rstate = jax.device_put(rstate, rep)

    def retrain_update(s: RetrainState, x, y, key):
        def loss_fn(w):
            logits, bs = dnet.apply(w, {}, s.batch_stats, x, True, key=key)
            return cross_entropy(logits, y), (accuracy(logits, y), bs)

        (loss, (acc, bs)), g = jax.value_and_grad(loss_fn, has_aux=True)(s.weights)
        upd, opt = tx.update(g, s.opt, s.weights)
        return (RetrainState(optax.apply_updates(s.weights, upd), opt, s.step + 1, bs),
                {"loss": loss, "train_acc": acc})

    retrain_step = jax.jit(retrain_update, donate_argnums=(0,))
    all_idx = np.arange(len(ds.x_train))

    def rstep_fn(s, step):
        rng = np.random.default_rng([cfg.seed, 2, step])
        i = rng.choice(all_idx, B, replace=len(all_idx) < B)
        x = augment(ds.x_train[i], rng, crop_pad=t.crop_pad, flip=t.flip, cutout=t.cutout)
        return retrain_step(s, put(x, bsh), put(ds.y_train[i], bsh), jax.random.fold_in(k_retrain, step))

    test_apply = jax.jit(lambda w, bs, x: dnet.apply(w, {}, bs, x, False)[0])
    _, rlast = train_loop(ctx, "retrain", rstate, rstep_fn, R, eval_every=max(R // 4, 1),
                          eval_fn=lambda s, step: {"test_acc": evaluate(
                              lambda w, x: test_apply(w, s.batch_stats, x), s.weights, ds.x_test, ds.y_test,
                              t.eval_batch)})
    return {"retrain_loss": rlast["loss"], "test_acc": rlast["test_acc"]}
