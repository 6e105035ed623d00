"""Train ONE given NB201 cell on a small real Omniglot problem: the trial runner that makes architecture keys
searchable by the HPO experiments (``runner=metanas.runners.cell.run`` on top of ``experiment=collect``).

The cell is the config mapping ``train.cell = {e0: op, ..., e5: op}`` (NB201 edges in ``NB201Space`` string
order, ops from ``search_space.ops``), so each edge is one categorical key (``train.cell.e3``) of a declared
search space, next to ordinary hyperparameters (``train.lr``, ``train.steps``). Data, network and training are
``collect``'s (``omniglot_problem``, ``make_trainer``: real Omniglot characters, the NB201 skeleton with a fixed
one-hot op mix, full-batch Adam for ``train.steps`` steps); the ``20 - train_drawers`` held-out drawers of each
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
    train = cell_trainer(tuple(space.ops), int(space.num_edges), int(t.C), int(t.N), int(t.classes), int(t.stages),
                         int(t.steps), len(yv))
    keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.seeds)
    out = train(keys, jnp.asarray(arch), jnp.float32(t.lr), x, y, np.concatenate([xv, xt]), np.concatenate([yv, yt]))
    res = {k: [float(v) for v in np.asarray(a)] for k, a in out.items()}  # per seed; the app averages
    ctx.meta_record |= {"arch": space.to_string(arch)}
    return res


@functools.lru_cache(maxsize=8)
def cell_trainer(ops: tuple, num_edges: int, C: int, N: int, classes: int, stages: int, steps: int, n_val: int):
    """jit(vmap over seed keys) of ``make_cell_trainer``, cached: in-process trials (the HPO default) with the same
    shapes and step count reuse one compiled program (the cell and the learning rate are arguments)."""
    from metanas.search_spaces.nb201 import NB201Space
    from metanas.supernet import make_supernet

    space = NB201Space(ops=list(ops), num_edges=num_edges)
    net = make_supernet(space, C=C, N=N, num_classes=classes, stages=stages)
    return jax.jit(jax.vmap(make_cell_trainer(net, space.num_ops, steps, n_val),
                            in_axes=(0, None, None, None, None, None, None)))


def make_cell_trainer(net, num_ops: int, steps: int, n_val: int):
    """Pure ``train(key, arch, lr, x, y, xe, ye) -> {train_loss, train_acc, val_acc, test_acc}``: ``collect``'s
    full-batch Adam training (``lr`` traced); the first ``n_val`` rows of ``xe`` are validation, the rest test."""
    import optax

    tx = optax.scale_by_adam()

    def loss_fn(w, mix, x, y):
        logits, _ = net.apply_mix(w, mix, {}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    def train(key, arch, lr, x, y, xe, ye):
        mix = jax.nn.one_hot(arch, num_ops, dtype=jnp.float32)
        w, _, _ = net.init(key, x[:2])
        opt = tx.init(w)

        def step(carry, _):
            w, opt = carry
            g = jax.grad(lambda w: loss_fn(w, mix, x, y)[0])(w)
            upd, opt = tx.update(g, opt, w)
            return (optax.apply_updates(w, jax.tree.map(lambda u: -lr * u, upd)), opt), None

        (w, _), _ = jax.lax.scan(step, (w, opt), None, length=steps)
        train_loss, logits = loss_fn(w, mix, x, y)
        hit = jnp.argmax(net.apply_mix(w, mix, {}, xe)[0], -1) == ye
        return {"train_loss": train_loss, "train_acc": jnp.mean(jnp.argmax(logits, -1) == y),
                "val_acc": jnp.mean(hit[:n_val]),
                "test_acc": jnp.mean(hit[n_val:])}

    return train
