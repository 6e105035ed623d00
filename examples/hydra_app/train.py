"""A plain Hydra + flax training script (it knows nothing of metanas): an MLP on scikit-learn's digits (real 8x8
handwritten digits, 1,797 images, shipped with scikit-learn), trained with optax; returns the validation error,
which is what a Hydra sweeper minimises. The test error is logged for the chosen configuration only."""

import logging

import hydra
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class MLP(nnx.Module):
    def __init__(self, hidden: int, layers: int, dropout: float, rngs: nnx.Rngs):
        dims = [64] + [hidden] * layers
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(dims[-1], 10, rngs=rngs)

    def __call__(self, x):
        for layer in self.layers:
            x = self.drop(jax.nn.relu(layer(x)))
        return self.out(x)


def load(seed: int):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order].astype(np.int32)
    return (x[:1000], y[:1000]), (x[1000:1400], y[1000:1400]), (x[1400:], y[1400:])


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    (xtr, ytr), (xva, yva), (xte, yte) = load(cfg.data_seed)
    model = MLP(cfg.hidden, cfg.layers, cfg.dropout, nnx.Rngs(cfg.seed))
    opt = nnx.Optimizer(model, optax.adamw(cfg.lr, weight_decay=cfg.weight_decay), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        def loss(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

        value, grads = nnx.value_and_grad(loss)(model)
        opt.update(model, grads)
        return value

    @nnx.jit
    def error(model, x, y):
        return (model(x).argmax(-1) != y).mean()

    rng = np.random.default_rng(cfg.seed)
    for _ in range(cfg.steps):
        idx = rng.integers(0, len(ytr), cfg.batch_size)
        step(model, opt, jnp.asarray(xtr[idx]), jnp.asarray(ytr[idx]))
    model.eval()
    val, test = float(error(model, xva, yva)), float(error(model, xte, yte))
    log.info("val_error=%.4f test_error=%.4f", val, test)
    return val


if __name__ == "__main__":
    main()
