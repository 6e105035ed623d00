"""collect: train many small NB201-cell networks on a real data set and append one meta-dataset record per
architecture, so ``predictor_nb201 train.source=meta_dataset`` can learn from the framework's own history.

Data: a small Omniglot classification problem (REAL images, Lake et al. 2015): ``classes`` characters drawn
from the background set with ``data_seed``, 20 drawers each, ``train_drawers`` for training and the rest for
validation, images area-pooled to ``image_size``. Architectures: ``n_archs`` distinct random NB201 cells.

Network: the NB201 skeleton ``metanas.supernet.CellNetwork`` (``stages`` stages of ``N`` cells) evaluated with a fixed one-hot op mix per edge, which is exactly
the discrete cell (the other ops are multiplied by 0) and keeps every architecture the same shape, so a chunk of
``chunk`` architectures x ``seeds`` trains as ONE ``jax.jit(jax.vmap(...))`` program (about ``num_ops`` x the FLOPs
of a derived network: the price of vmapping over architectures). Full-batch updates of the ``optimizer`` group
(Adam by default) for ``steps`` steps.

Resume: one checkpoint per chunk (``train_loop`` phase ``collect``); records already in the meta-dataset for this
run directory are not appended twice. Record (the schema of ``metanas.predictors.meta_dataset``)::

    {"experiment": "collect:arch", "dataset": "omniglot-20c-14px-d0", "split": "val-seed0", "encoding": [...30 floats],
     "arch": "|nor_conv_3x3~0|+...", "metrics": {"val_acc": .., "train_acc": .., "train_loss": ..},
     "settings": {...}, "metafeatures": {...}, "wall_time_s": .., "run_dir": .., "index": i}
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import hydra
import jax
import jax.numpy as jnp
import numpy as np
import optax
from omegaconf import DictConfig

from metanas.config import ConfigError, Count, NonNegInt, Positive, TrainBlock, takes_train, train_block
from metanas.predictors.encodings import encode_archs
from metanas.run_store import append_jsonl, read_jsonl
from metanas.runners.context import RunContext, hardware_info, train_loop
from metanas.search_spaces.nb201 import NB201Space

RECORD_EXPERIMENT = "collect:arch"  # the per-architecture records (the app adds one per-run "collect" record too)


@dataclass(frozen=True)
class CollectTrain(TrainBlock):
    """``train:`` of ``collect``."""

    n_archs: Count = 32  # distinct random NB201 cells
    chunk: Count = 16  # architectures per jitted program (n_archs must be a multiple)
    encoding: str = "onehot_pruned"  # the records' architecture encoding (metanas.predictors.encodings)
    classes: Count = 10  # Omniglot characters
    train_drawers: Count = 15  # of 20 drawers per character; the rest validation
    image_size: Count = 7  # a divisor of 28
    data_seed: NonNegInt = 0
    C: Count = 4
    N: Count = 1
    stages: Count = 1  # NB201 skeleton stages (3 as in NB201, ~10x slower here; 1: no reductions)
    steps: Count = 30  # full-batch Adam steps per architecture
    lr: Positive = 0.003

    def __post_init__(self):
        super().__post_init__()
        if self.n_archs % self.chunk:
            raise ConfigError(f"train.n_archs={self.n_archs} must be a multiple of train.chunk={self.chunk}")
        if 28 % self.image_size:
            raise ConfigError(f"train.image_size={self.image_size} must divide 28 (area pooling), e.g. 7, 14 or 28")
        if not 0 < self.train_drawers < 20:
            raise ConfigError(f"train.train_drawers={self.train_drawers}; need 1..19 of Omniglot's 20 drawers")


def omniglot_problem(data_dir: str, classes: int, train_drawers: int, image_size: int, data_seed: int):
    """(x_train, y_train, x_val, y_val): NHWC float32 ink in [0, 1], labels 0..classes-1 (real Omniglot).

    28x28 images are area-pooled to ``image_size`` (a divisor of 28) and zero-padded (no ink) to a multiple of 4,
    which the NB201 skeleton's two stride-2 reductions need."""
    from metanas.data.omniglot import load_omniglot_npz

    ink = load_omniglot_npz(Path(data_dir) / "omniglot", 28, cache_dir=str(Path("~/.cache/metanas").expanduser()))
    if 28 % image_size:
        raise ConfigError(f"train.image_size={image_size} must divide 28 (area pooling), e.g. 7, 14 or 28")
    if not 1 <= train_drawers < 20:
        raise ConfigError(f"train.train_drawers={train_drawers} must be in 1..19 (20 drawers per character)")
    chars = np.random.default_rng(data_seed).choice(964, classes, replace=False)  # background set
    f = 28 // image_size
    x = ink[chars].astype(np.float32).reshape(classes, 20, image_size, f, image_size, f).mean((3, 5)) / 255.0
    drawers = np.random.default_rng([data_seed, 1]).permutation(20)
    tr, va = drawers[:train_drawers], drawers[train_drawers:]
    lab = np.arange(classes, dtype=np.int32)

    pad = -image_size % 4
    x = np.pad(x, ((0, 0), (0, 0), (pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2)))
    side = image_size + pad

    def take(d):
        return x[:, d].reshape(-1, side, side, 1), np.repeat(lab, len(d))

    return (*take(tr), *take(va))


def make_trainer(net, num_ops: int, steps: int, tx: optax.GradientTransformation):
    """Pure ``train(key, arch, x, y, xv, yv) -> metrics`` for one architecture (vmap it over archs and seeds), ``steps``
    full-batch updates of ``tx``."""

    def loss_fn(w, mix, x, y):
        logits, _ = net.apply_mix(w, mix, {}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits

    def train(key, arch, x, y, xv, yv):
        mix = jax.nn.one_hot(arch, num_ops, dtype=jnp.float32)
        w, _, _ = net.init(key, x[:2])
        opt = tx.init(w)

        def step(carry, _):
            w, opt = carry
            (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(w, mix, x, y)
            upd, opt = tx.update(g, opt, w)
            return (optax.apply_updates(w, upd), opt), loss

        (w, _), losses = jax.lax.scan(step, (w, opt), None, length=steps)
        train_loss, logits = loss_fn(w, mix, x, y)
        val_logits, _ = net.apply_mix(w, mix, {}, xv)
        return {"train_loss": train_loss, "train_acc": jnp.mean(jnp.argmax(logits, -1) == y),
                "val_acc": jnp.mean(jnp.argmax(val_logits, -1) == yv), "first_loss": losses[0]}

    return train


def _done_indices(path: str | None, run_dir: str) -> set[int]:
    if not path or not Path(path).exists():
        return set()
    return {int(r["index"]) for r in read_jsonl(path) if r.get("experiment") == RECORD_EXPERIMENT and r.get("run_dir") == run_dir}


@takes_train(CollectTrain)
def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    from metanas.supernet import make_supernet

    t = train_block(CollectTrain, cfg)
    space = hydra.utils.instantiate(cfg.search_space)
    if not isinstance(space, NB201Space):
        raise ConfigError(f"collect needs search_space=nb201, got {type(space).__name__}")
    if t.n_archs > space.size():
        raise ConfigError(f"train.n_archs={t.n_archs} > {space.size()} cells in the space")
    x, y, xv, yv = omniglot_problem(cfg.data_dir, t.classes, t.train_drawers, t.image_size, t.data_seed)
    codes = np.random.default_rng([cfg.seed, 3]).permutation(space.size())[: t.n_archs]
    archs = space.enumerate()[codes]
    enc = np.asarray(encode_archs(space, archs, t.encoding))
    net = make_supernet(space, C=t.C, N=t.N, num_classes=t.classes, stages=t.stages)
    tx = hydra.utils.instantiate(cfg.optimizer, learning_rate=t.lr)  # the optimizer group (default: Adam)
    train = make_trainer(net, space.num_ops, t.steps, tx)
    seeds = np.arange(cfg.seed, cfg.seed + cfg.seeds)
    # [seeds, chunk] grid: vmap over seeds of vmap over archs
    train_chunk = jax.jit(jax.vmap(jax.vmap(train, in_axes=(0, 0, None, None, None, None)),
                                   in_axes=(0, None, None, None, None, None)))
    t0 = time.perf_counter()  # compile once up front, so wall_time_s is training time only
    train_chunk = train_chunk.lower(jnp.zeros((len(seeds), t.chunk, 2), jnp.uint32),
                                    jnp.zeros((t.chunk, space.num_edges), jnp.int32), x, y, xv, yv).compile()
    compile_s = time.perf_counter() - t0
    dataset = f"omniglot-{t.classes}c-{t.image_size}px-d{t.data_seed}"
    ctx.record_dataset(dataset, x, y)
    optimizer = str(cfg.optimizer._target_).rsplit(".", 1)[-1]  # "adam" for optax.adam (the records' meta-data)
    settings = {"C": t.C, "N": t.N, "stages": t.stages, "steps": t.steps, "lr": t.lr, "optimizer": optimizer,
                "image_size": t.image_size,
                "classes": t.classes, "train_drawers": t.train_drawers, "hardware": jax.devices()[0].platform}
    metafeatures = {"n_classes": float(t.classes), "n_train": float(len(y)), "n_val": float(len(yv)),
                    "image_size": float(t.image_size), "mean_ink": float(x.mean())}
    meta_path = cfg.meta_dataset
    done = _done_indices(meta_path, str(ctx.run_dir)) if ctx.resumed else set()
    n_chunks = t.n_archs // t.chunk

    def step_fn(state, step):
        lo, hi = (step - 1) * t.chunk, step * t.chunk
        keys = jnp.stack([jax.vmap(lambda c: jax.random.fold_in(jax.random.PRNGKey(int(s)), c))(jnp.asarray(codes[lo:hi]))
                          for s in seeds])
        t0 = time.perf_counter()
        m = jax.tree.map(np.asarray, train_chunk(keys, jnp.asarray(archs[lo:hi]), x, y, xv, yv))
        wall = (time.perf_counter() - t0) / (len(seeds) * t.chunk)
        hw = hardware_info()  # after the chunk: its peak memory includes this chunk's training
        for si, s in enumerate(seeds):
            for a in range(lo, hi):
                index = int(si * t.n_archs + a)
                rec = {"experiment": RECORD_EXPERIMENT, "dataset": dataset, "split": f"val-seed{int(s)}",
                       "encoding": enc[a].tolist(), "arch": space.to_string(archs[a]), "arch_code": int(codes[a]),
                       "metrics": {k: float(v[si, a - lo]) for k, v in m.items() if k != "first_loss"},
                       "settings": settings, "metafeatures": metafeatures, "wall_time_s": round(wall, 4),
                       "hardware_info": hw,
                       "run_dir": str(ctx.run_dir), "index": index}
                if meta_path and index not in done:
                    append_jsonl(meta_path, rec)
                append_jsonl(ctx.path("records.jsonl"), rec)
        return {"chunks": state["chunks"] + 1}, {"val_acc_mean": float(m["val_acc"].mean()), "val_acc_max": float(m["val_acc"].max()),
                           "train_loss_mean": float(m["train_loss"].mean()), "archs_done": hi}

    if ctx.resumed:  # records.jsonl rows of chunks after the checkpoint are rewritten by the resumed chunks
        _, start = ctx.restore("collect", {"chunks": jnp.zeros((), jnp.int32)})
        recs = [r for r in read_jsonl(ctx.path("records.jsonl"))] if ctx.path("records.jsonl").exists() else []
        keep = [r for r in recs if r["index"] % t.n_archs < start * t.chunk]
        ctx.path("records.jsonl").unlink(missing_ok=True)
        for r in keep:
            append_jsonl(ctx.path("records.jsonl"), r)
    state, last = train_loop(ctx, "collect", {"chunks": jnp.zeros((), jnp.int32)}, step_fn, n_chunks, log_every=1,
                             checkpoint_every=1, loss_key="train_loss_mean")
    recs = read_jsonl(ctx.path("records.jsonl"))
    val = np.array([r["metrics"]["val_acc"] for r in recs])
    ctx.meta_record |= {"metafeatures": metafeatures, "settings": settings, "data": dataset}
    return {"n_records": float(len(recs)), "val_acc_mean": float(val.mean()), "val_acc_max": float(val.max()),
            "val_acc_min": float(val.min()), "compile_s": compile_s}
