"""Train ONE given NB201 cell on a small real Omniglot problem: the trial runner that makes architecture keys
searchable by the HPO experiments (``runner=metanas.runners.cell.run`` on top of ``experiment=collect``).

The cell is the config mapping ``train.cell = {e0: op, ..., e5: op}`` (NB201 edges in ``NB201Space`` string
order, ops from ``search_space.ops``), so each edge is one categorical key (``train.cell.e3``) of a declared
search space, next to ordinary hyperparameters (``train.lr``, ``train.steps``). Data, network and training are
``collect``'s (``omniglot_problem``, ``make_trainer``: real Omniglot characters, the NB201 skeleton with a fixed
one-hot op mix, full-batch updates of the ``optimizer`` group (Adam by default) at ``train.lr`` for ``train.steps``
steps; with ``train.eval_every > 0`` in segments of that many steps, the curve logged after each, where a live
search's pruner may stop the run: ``metanas.runners.pruning``); the ``20 - train_drawers`` held-out drawers of each
character are split into validation (the first ``val_drawers``) and test (the rest), so a search selects on
``val_acc`` and reports ``test_acc`` of its choice once.

The run's meta-dataset record (written by the app) carries the flattened config (``train.cell.e0``...), the
metrics and the data set's meta-features, which is what ``train.sampler=metalearner`` learns from.
"""

from __future__ import annotations

import functools

import hydra
import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from metanas.config import ConfigError
from metanas.runners.context import RunContext


def cell_arch(space, cell) -> np.ndarray:
    """int32 [E] op indices of ``cell`` ({e0: op, ...}); one-line errors name the bad edge or op."""
    cell = OmegaConf.to_container(cell, resolve=True) if OmegaConf.is_config(cell) else dict(cell or {})
    want = [f"e{i}" for i in range(space.num_edges)]
    if sorted(cell) != sorted(want):
        raise ConfigError(f"train.cell needs exactly the edges {want} (an op each), got {sorted(cell)}")
    bad = {k: v for k, v in cell.items() if v not in space.ops}
    if bad:
        raise ConfigError(f"train.cell: {bad} not among search_space.ops {list(space.ops)}")
    return np.array([space.ops.index(cell[k]) for k in want], np.int32)


ADAM = (("_target_", "optax.adam"),)  # conf/optimizer/adam.yaml (optax's Adam defaults), its learning rate aside


def optimizer_key(optimizer) -> tuple:
    """The ``optimizer`` group (a config mapping; None: ``ADAM``) as the hashable argument the cached trainers take:
    ``_target_`` and its arguments, sorted, without ``learning_rate``: a cell trains at ``train.lr`` (as ``collect``
    does), passed traced, so one compiled program serves every learning rate of a search."""
    if optimizer is None:
        return ADAM
    d = OmegaConf.to_container(optimizer, resolve=True) if OmegaConf.is_config(optimizer) else dict(optimizer)
    d.pop("learning_rate", None)
    bad = {k: v for k, v in d.items() if isinstance(v, (dict, list))}
    if bad:
        raise ConfigError(f"optimizer: the cell runner takes scalar optimizer arguments only, got {bad}")
    return tuple(sorted(d.items()))


def _optimizer(optimizer, lr):
    """The optimizer ``optimizer`` (``optimizer_key``'s form or a mapping) at learning rate ``lr`` (traced), built
    as ``collect`` builds its own: ``hydra.utils.instantiate`` of the group with ``learning_rate``."""
    return hydra.utils.instantiate(dict(optimizer), learning_rate=lr)


def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    from metanas.runners.collect import omniglot_problem
    from metanas.search_spaces.nb201 import NB201Space

    t = cfg.train
    space = hydra.utils.instantiate(cfg.search_space)
    if not isinstance(space, NB201Space):
        raise ConfigError(f"metanas.runners.cell.run needs search_space=nb201, got {type(space).__name__}")
    arch = cell_arch(space, t.get("cell"))
    val_drawers = int(t.get("val_drawers", 3))
    held = 20 - int(t.train_drawers)
    if not 1 <= val_drawers < held:
        raise ConfigError(f"train.val_drawers={val_drawers} must be in 1..{held - 1} (held-out drawers: {held})")
    x, y, xh, yh = omniglot_problem(cfg.data_dir, t.classes, t.train_drawers, t.image_size, t.data_seed)
    drawer = np.arange(len(yh)) % held  # rows are class-major, drawers inner
    is_val = drawer < val_drawers
    xv, yv, xt, yt = xh[is_val], yh[is_val], xh[~is_val], yh[~is_val]
    ctx.record_dataset(f"omniglot-{t.classes}c-{t.image_size}px-d{t.data_seed}", x, y, split=f"val{val_drawers}")
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds)
    xe, ye = np.concatenate([xv, xt]), np.concatenate([yv, yt])
    every = int(t.get("eval_every", 0) or 0)
    opt = optimizer_key(cfg.get("optimizer"))
    ctx.meta_record |= {"arch": space.to_string(arch)}
    if every > 0:
        return _run_segments(ctx, space, t, every, keys, jnp.asarray(arch), x, y, xe, ye, len(yv), opt)
    train = cell_trainer(tuple(space.ops), int(space.num_edges), int(t.C), int(t.N), int(t.classes), int(t.stages),
                         int(t.steps), len(yv), optimizer=opt)
    out = train(keys, jnp.asarray(arch), jnp.float32(t.lr), x, y, xe, ye)
    return {k: [float(v) for v in np.asarray(a)] for k, a in out.items()}  # per seed; the app averages


def _run_segments(ctx: RunContext, space, t, every: int, keys, arch, x, y, xe, ye, n_val: int,
                  opt: tuple) -> dict:
    """``train.eval_every`` > 0: train in segments of ``every`` steps, log the seed-mean metrics after each
    (``metrics.jsonl`` phase ``curve``, step = training steps done) and ask ``metanas.runners.pruning.checkpoint``
    whether to go on. A stopped run returns ``pruned: 1`` and ``steps_trained`` with its last validation accuracy as
    ``val_acc_at_stop``, and no ``val_acc`` / ``test_acc`` (it did not reach the asked budget)."""
    from metanas.runners.pruning import checkpoint

    steps = int(t.steps)
    if steps % every:
        raise ConfigError(f"train.eval_every={every} must divide train.steps={steps} (checkpoints on one grid)")
    init, advance = cell_segments(tuple(space.ops), int(space.num_edges), int(t.C), int(t.N), int(t.classes),
                                  int(t.stages), every, n_val, optimizer=opt)
    lr = jnp.float32(t.lr)
    state = init(keys, arch, lr, x)
    n = steps // every
    for k in range(1, n + 1):
        state, out = advance(state, arch, lr, x, y, xe, ye)
        mean = {m: float(np.mean(np.asarray(v))) for m, v in out.items()}
        ctx.log("curve", k * every, {m: v for m, v in mean.items() if m != "test_acc"})
        if checkpoint(k, n, mean["val_acc"]):
            return {"pruned": 1.0, "steps_trained": float(k * every), "val_acc_at_stop": mean["val_acc"]}
    res = {m: [float(v) for v in np.asarray(a)] for m, a in out.items()}  # per seed; the app averages
    return res | {"pruned": 0.0, "steps_trained": float(steps)}


@functools.lru_cache(maxsize=8)
def cell_trainer(ops: tuple, num_edges: int, C: int, N: int, classes: int, stages: int, steps: int, n_val: int, *,
                 optimizer: tuple = ADAM):
    """jit(vmap over seed keys) of ``make_cell_trainer``, cached: in-process trials (the HPO default) with the same
    shapes, step count and ``optimizer`` (``optimizer_key``'s form) reuse one compiled program (the cell and the
    learning rate are arguments)."""
    from metanas.search_spaces.nb201 import NB201Space
    from metanas.supernet import make_supernet

    space = NB201Space(ops=list(ops), num_edges=num_edges)
    net = make_supernet(space, C=C, N=N, num_classes=classes, stages=stages)
    return jax.jit(jax.vmap(make_cell_trainer(net, space.num_ops, steps, n_val, optimizer),
                            in_axes=(0, None, None, None, None, None, None)))


@functools.lru_cache(maxsize=8)
def cell_segments(ops: tuple, num_edges: int, C: int, N: int, classes: int, stages: int, seg_steps: int, n_val: int,
                  *, optimizer: tuple = ADAM):
    """(init, advance), each jit(vmap over seed keys), of ``make_cell_segments``: the same training as
    ``cell_trainer`` cut into segments of ``seg_steps`` steps, so a run can be looked at (and stopped) between them."""
    from metanas.search_spaces.nb201 import NB201Space
    from metanas.supernet import make_supernet

    space = NB201Space(ops=list(ops), num_edges=num_edges)
    net = make_supernet(space, C=C, N=N, num_classes=classes, stages=stages)
    init, advance = make_cell_segments(net, space.num_ops, seg_steps, n_val, optimizer)
    return (jax.jit(jax.vmap(init, in_axes=(0, None, None, None))),
            jax.jit(jax.vmap(advance, in_axes=(0, None, None, None, None, None, None))))


def make_cell_segments(net, num_ops: int, seg_steps: int, n_val: int, optimizer=ADAM):
    """Pure ``init(key, arch, lr, x) -> state`` and ``advance(state, arch, lr, x, y, xe, ye) -> (state, metrics)``:
    ``make_cell_trainer``'s full-batch updates in segments of ``seg_steps`` steps, with the metrics after each."""
    _, step_fn, evaluate = _cell_fns(net, num_ops, optimizer, n_val)

    def init(key, arch, lr, x):
        w, _, _ = net.init(key, x[:2])
        return w, _optimizer(optimizer, lr).init(w)

    def advance(state, arch, lr, x, y, xe, ye):
        mix = jax.nn.one_hot(arch, num_ops, dtype=jnp.float32)
        state, _ = jax.lax.scan(lambda c, _: (step_fn(c, mix, lr, x, y), None), state, None, length=seg_steps)
        return state, evaluate(state[0], mix, x, y, xe, ye)

    return init, advance


def _cell_fns(net, num_ops: int, optimizer, n_val: int):
    import optax

    def loss_fn(w, mix, x, y):
        logits, _ = net.apply_mix(w, mix, {}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    def step_fn(carry, mix, lr, x, y):
        w, opt = carry
        g = jax.grad(lambda w: loss_fn(w, mix, x, y)[0])(w)
        upd, opt = _optimizer(optimizer, lr).update(g, opt, w)
        return optax.apply_updates(w, upd), opt

    def evaluate(w, mix, x, y, xe, ye):
        train_loss, logits = loss_fn(w, mix, x, y)
        hit = jnp.argmax(net.apply_mix(w, mix, {}, xe)[0], -1) == ye
        return {"train_loss": train_loss, "train_acc": jnp.mean(jnp.argmax(logits, -1) == y),
                "val_acc": jnp.mean(hit[:n_val]), "test_acc": jnp.mean(hit[n_val:])}

    return loss_fn, step_fn, evaluate


def make_cell_trainer(net, num_ops: int, steps: int, n_val: int, optimizer=ADAM):
    """Pure ``train(key, arch, lr, x, y, xe, ye) -> {train_loss, train_acc, val_acc, test_acc}``: ``collect``'s
    full-batch training with ``optimizer`` (a mapping or ``optimizer_key``'s form; default Adam) at ``lr`` (traced);
    the first ``n_val`` rows of ``xe`` are validation, the rest test."""
    _, step_fn, evaluate = _cell_fns(net, num_ops, optimizer, n_val)

    def train(key, arch, lr, x, y, xe, ye):
        mix = jax.nn.one_hot(arch, num_ops, dtype=jnp.float32)
        w, _, _ = net.init(key, x[:2])
        state = (w, _optimizer(optimizer, lr).init(w))
        (w, _), _ = jax.lax.scan(lambda c, _: (step_fn(c, mix, lr, x, y), None), state, None, length=steps)
        return evaluate(w, mix, x, y, xe, ye)

    return train
