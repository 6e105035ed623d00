"""Few-shot cost (latency / energy) prediction on an unseen device: a Gaussian prior over an additive cost model,
meta-trained on other devices, adapted in closed form to k measurements on the new device.

Model. A network's latency is close to a sum of per-layer times, and every NB201 network repeats one cell, so the
latency of cell a on a device is close to additive in the cell's ops:

    c(a) / median_cost  ≈  phi(a) . w_device,     phi(a) = [1, one-hot(a) (30), one-hot of the pruned cell (30)]

(the pruned one-hot carries which edges are dead). Fitted on all 15,625 cells this family reaches Spearman 0.96-1.00
on the HW-NAS-Bench devices (the ceiling the study reports). Costs are divided by the device's median, so ``w`` is
in units of "fraction of a typical cell's cost" and comparable across devices.

Meta-training (``meta_train_prior``): fit ``w_s`` on each source table (every cell the source measured; never the
target's table), and take the Gaussian N(mean_s w_s, cov_scale * cov_s w_s + jitter * I) as the prior over a new
device's weights (hierarchical Bayes / empirical Bayes: the closed-form counterpart of MAML's learnt initialisation,
with the learnt covariance in place of a learnt step size). Adaptation (``BayesLinearCost.fit``): the Gaussian
posterior given the k measurements (exact; no inner loop). Which k cells (``design``): greedy Bayesian D-optimal
design under the prior: measure the cell whose predicted cost is most uncertain, update, repeat; a cell whose
measurement fails (not measured: NaN) is skipped and counted. The prior's two hyperparameters are chosen by
leave-one-source-out on the sources (``select_prior``), never on the held-out device.

Interface as every predictor: ``fit(key, x, y, n) -> params`` on the first ``n`` rows, ``score(params, x)`` (cost
in the target's own units), ``score_std``. Pure JAX: jit / vmap over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metanas.predictors.encodings import encode_archs

INTERCEPT_VAR = 10.0  # prior variance of the intercept (flat on the scale of median-normalised costs, ~1)
NOISE_FLOOR = 1e-3  # observation variance floor (std ~3 % of the median cost): keeps the [n, n] solves conditioned in
# float32 when the sources fit the additive model almost exactly (FPGA: residual variance ~1e-6)
PRIOR_GRID = ((1.0, 1e-3), (3.0, 1e-3), (10.0, 1e-3), (3.0, 1e-4), (3.0, 1e-2))  # (cov_scale, jitter)


def cost_features(space) -> np.ndarray:
    """float32 [N, 61]: [1, one-hot (30), one-hot of the pruned cell (30)] of every cell of ``space``."""
    archs = space.enumerate()
    oh = np.asarray(encode_archs(space, archs, "onehot"), np.float32)
    ohp = np.asarray(encode_archs(space, archs, "onehot_pruned"), np.float32)
    return np.concatenate([np.ones((len(oh), 1), np.float32), oh, ohp], 1)


class CostPrior(NamedTuple):
    mean: jax.Array  # [D] prior mean of the weights (intercept first)
    cov: jax.Array  # [D, D] prior covariance
    noise: jax.Array  # () observation noise variance (median-normalised units)


def _masked_median(y: jax.Array, m: jax.Array) -> jax.Array:
    return jnp.nanmedian(jnp.where(m, y, jnp.nan))


def fit_weights(x: jax.Array, y: jax.Array, ridge: float = 1e-2) -> tuple[jax.Array, jax.Array]:
    """(w [D], residual variance) of median-normalised ``y`` [N] (NaN = not measured, left out) on ``x``."""
    m = jnp.isfinite(y)
    yn = jnp.where(m, y / _masked_median(y, m), 0.0)
    xm = x * m[:, None]
    pen = ridge * jnp.eye(x.shape[1]).at[0, 0].set(0.0)
    w = jnp.linalg.solve(xm.T @ xm + pen, xm.T @ yn)
    r = (yn - x @ w) * m
    return w, (r @ r) / jnp.maximum(m.sum(), 1.0)


@jax.jit
def source_fits(x: jax.Array, tables: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(w [T, D], residual variance [T]) of each source table [T, N] (NaN = not measured)."""
    return jax.lax.map(lambda y: fit_weights(x, y), tables)  # mapped: no batched LAPACK call (_over_keys)


def prior_from_fits(w: jax.Array, res: jax.Array, *, cov_scale: float = 3.0, jitter: float = 1e-3) -> CostPrior:
    """N(mean of the sources' w, cov_scale * their covariance + jitter * I); flat intercept."""
    mean = w.mean(0)
    d = w - mean[None, :]
    cov = cov_scale * (d.T @ d) / max(w.shape[0] - 1, 1) + jitter * jnp.eye(w.shape[1])
    cov = cov.at[0, :].set(0.0).at[:, 0].set(0.0).at[0, 0].set(INTERCEPT_VAR)
    return CostPrior(mean, cov, jnp.maximum(res.mean(), NOISE_FLOOR))


def meta_train_prior(x: jax.Array, tables: jax.Array, *, cov_scale: float = 3.0, jitter: float = 1e-3) -> CostPrior:
    """Prior from the source ``tables`` [T, N] (one row per source device and input size; NaN = not measured)."""
    return prior_from_fits(*source_fits(x, tables), cov_scale=cov_scale, jitter=jitter)


def isotropic_prior(prior: CostPrior, var: float) -> CostPrior:
    """The same mean with ``var * I``: pre-training on the sources without the meta-learnt covariance."""
    cov = var * jnp.eye(prior.mean.shape[0])
    return CostPrior(prior.mean, cov.at[0, 0].set(INTERCEPT_VAR), prior.noise)


def source_features(src: np.ndarray) -> np.ndarray:
    """float32 [N, M]: each source table of ``src`` [M, N] (every cell measured: impute first) divided by its median,
    minus 1: the columns the ``with_sources`` family adds to ``cost_features`` (the sources' costs as features of the
    target's, HELP's "device described by other devices")."""
    src = np.asarray(src, np.float64)
    return (src / np.median(src, 1, keepdims=True) - 1.0).T.astype(np.float32)


def with_sources(prior: CostPrior, m: int, var: float) -> CostPrior:
    """The prior over [w, beta] of the per-op model plus a regression on ``m`` source-device columns
    (``source_features``): w as in ``prior`` (meta-learnt), beta ~ N(0, var * I) independent of w. ``var = 0`` is the
    per-op model alone; the design rule and the closed-form posterior work on the augmented features unchanged."""
    d = prior.mean.shape[0]
    mean = jnp.concatenate([prior.mean, jnp.zeros(m)])
    cov = jnp.zeros((d + m, d + m)).at[:d, :d].set(prior.cov).at[d:, d:].set(max(var, 1e-8) * jnp.eye(m))
    return CostPrior(mean, cov, prior.noise)


def posterior(prior: CostPrior, x: jax.Array, y: jax.Array, m: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Posterior (mean [D], cov [D, D]) of the weights given median-normalised ``y`` on the rows where ``m``.

    Whitened and solved by an SVD (w = mean + L z, L L^T = prior cov, z ~ N(0, I)): the normal equations' matrix has a
    condition number near 1e8 here, beyond float32; the SVD of the whitened rows only needs its square root."""
    chol = jnp.linalg.cholesky(prior.cov)
    sd = jnp.sqrt(prior.noise)
    xm = x * m[:, None]
    a = (xm @ chol) / sd  # [n, D]
    b = (jnp.where(m, y, 0.0) - xm @ prior.mean) / sd
    u, sv, vt = jnp.linalg.svd(a, full_matrices=False)
    z = vt.T @ ((sv / (sv**2 + 1.0)) * (u.T @ b))
    shrink = vt.T @ ((sv**2 / (sv**2 + 1.0))[:, None] * vt)  # I - posterior cov of z
    cov_z = jnp.eye(x.shape[1]) - shrink
    return prior.mean + chol @ z, chol @ cov_z @ chol.T


@dataclass(frozen=True, eq=False)
class BayesLinearCost:
    """Bayesian linear cost model under a meta-learnt ``prior`` (see the module docstring)."""

    prior: CostPrior

    def fit(self, key: jax.Array, x: jax.Array, y: jax.Array, n) -> dict:
        del key
        m = jnp.arange(x.shape[0]) < n
        scale = _masked_median(y, m)
        w, cov = posterior(self.prior, x, y / scale, m)
        return {"w": w, "cov": cov, "scale": scale}

    def score_std(self, params: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Predicted cost and its predictive std (weights and noise), in the target's units."""
        mu = x @ params["w"]
        var = jnp.einsum("nd,de,ne->n", x, params["cov"], x) + self.prior.noise
        return mu * params["scale"], jnp.sqrt(var) * params["scale"]

    def score(self, params: dict, x: jax.Array) -> jax.Array:
        return self.score_std(params, x)[0]


def design(key: jax.Array, prior: CostPrior, x: jax.Array, available: jax.Array, k: int, *, pool: int = 2000,
           max_tries: int | None = None) -> tuple[jax.Array, jax.Array]:
    """(codes [k], failed): ``k`` cells to measure, chosen greedily by largest predictive variance under the prior
    updated with the cells chosen so far, among a random pool of ``pool`` cells (the seed). A chosen cell whose
    measurement fails (``available`` False: the device returns no value) is skipped and counted in ``failed``; it
    does not update the posterior. Codes past the number found (only if every try failed) are -1."""
    n = x.shape[0]
    pool = min(pool, n)
    max_tries = max_tries or 2 * k + 5
    cand = jax.random.permutation(key, n)[:pool]  # the candidates: a random pool (the seed's share)
    xp, avp = x[cand], available[cand]

    def step(carry, _):
        cov, tried, codes, count, failed = carry
        var = jnp.einsum("nd,de,ne->n", xp, cov, xp)
        i = jnp.argmax(jnp.where(tried, -jnp.inf, var))
        ok = avp[i] & (count < k)
        f = xp[i]
        cf = cov @ f
        cov = jnp.where(ok, cov - jnp.outer(cf, cf) / (prior.noise + f @ cf), cov)
        codes = jnp.where(ok, codes.at[jnp.minimum(count, k - 1)].set(cand[i].astype(jnp.int32)), codes)
        failed = failed + (~avp[i] & (count < k)).astype(jnp.int32)
        return (cov, tried.at[i].set(True), codes, count + ok.astype(jnp.int32), failed), None

    init = (prior.cov, jnp.zeros(pool, bool), jnp.full(k, -1, jnp.int32), jnp.int32(0), jnp.int32(0))
    (_, _, codes, _, failed), _ = jax.lax.scan(step, init, None, length=max_tries)
    return codes, failed


def random_cells(key: jax.Array, available: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """(codes [k], failed): k random cells in a random order, drawing again where a measurement fails; ``failed``
    counts the failed draws before the k-th success."""
    g = jax.random.gumbel(key, available.shape)
    top, codes = jax.lax.top_k(jnp.where(available, g, -jnp.inf), k)
    return codes.astype(jnp.int32), jnp.sum(~available & (g > top[-1])).astype(jnp.int32)


def spearman(pred: jax.Array, true_rank: jax.Array, m: jax.Array) -> jax.Array:
    """Spearman rho of ``pred`` [N] against precomputed average ranks ``true_rank`` [N] over the cells ``m``."""
    big = jnp.where(m, pred, jnp.inf)
    r = jnp.argsort(jnp.argsort(big)).astype(jnp.float32)
    cnt = m.sum()
    rm = jnp.where(m, r - (cnt - 1) / 2, 0.0)
    t = jnp.where(m, true_rank - jnp.sum(jnp.where(m, true_rank, 0)) / cnt, 0.0)
    return (rm @ t) / jnp.sqrt((rm @ rm) * (t @ t))


def select_prior(x: jax.Array, source_tables: dict[str, jax.Array], true_ranks: dict[str, jax.Array], *, k: int,
                 keys: jax.Array, grid=None, pool: int = 2000) -> dict:
    """Leave-one-source-out choice of (cov_scale, jitter): each source device in turn is the pseudo-target (its
    tables at every input size), the prior is meta-trained on the other sources, ``design`` picks ``k`` cells per
    key, and the mean Spearman over pseudo-targets and keys decides. ``source_tables``: device -> [I, N] (one row
    per input size); ``true_ranks`` the same shape, average ranks of each row. Returns the chosen values and the
    score of every grid point."""
    grid = PRIOR_GRID if grid is None else grid
    devs = list(source_tables)
    fits = {d: source_fits(x, source_tables[d]) for d in devs}  # each source fitted once
    scores = {}
    for cov_scale, jitter in grid:
        per = []
        for d in devs:
            w = jnp.concatenate([fits[o][0] for o in devs if o != d], 0)
            res = jnp.concatenate([fits[o][1] for o in devs if o != d], 0)
            prior = prior_from_fits(w, res, cov_scale=cov_scale, jitter=jitter)
            for i in range(source_tables[d].shape[0]):
                per.append(float(few_shot_spearman(prior, x, source_tables[d][i], true_ranks[d][i], keys, k=k,
                                                   pool=pool).mean()))
        scores[(cov_scale, jitter)] = float(np.mean(per))
    best = max(scores, key=scores.get)
    return {"cov_scale": best[0], "jitter": best[1],
            "grid": {f"cov_scale={a:g},jitter={b:g}": v for (a, b), v in scores.items()}}


def few_shot_spearman(prior: CostPrior, x, y, true_rank, keys, *, k: int, pool: int = 2000,
                      chooser: str = "design") -> jax.Array:
    """[S] Spearman over the measured cells of the model adapted to ``k`` cells chosen per key."""
    return _few_shot_fn(k, pool, chooser)(prior, x, y, true_rank, keys)[0]


_CACHE: dict = {}


def _over_keys(one, n_fixed: int):
    """jit of ``one(*fixed, key)`` mapped over the keys with ``lax.map``, not ``vmap``: vmapped, the posterior's
    Cholesky / SVD become batched LAPACK calls, which jaxlib runs through ParallelBatchMap on the XLA CPU pool that
    calls them; on the shared 2-core VM that deadlocked (the seed-300 hw_latency run: every thread waiting, no CPU,
    the pattern of the TransNAS study)."""
    def mapped(*args):
        fixed, keys = args[:n_fixed], args[n_fixed]
        return jax.lax.map(lambda key: one(*fixed, key), keys)

    return jax.jit(mapped)


def _few_shot_fn(k: int, pool: int, chooser: str):
    """jit(map over keys) of choose -> measure -> adapt -> (Spearman, predictions, codes, failed)."""
    sig = (k, pool, chooser)
    if sig not in _CACHE:
        def one(prior, x, y, true_rank, key):
            avail = jnp.isfinite(y)
            if chooser == "design":
                codes, failed = design(key, prior, x, avail, k, pool=pool)
            else:
                codes, failed = random_cells(key, avail, k)
            model = BayesLinearCost(prior)
            params = model.fit(key, x[codes], y[codes], k)
            pred = model.score(params, x)
            return spearman(pred, true_rank, avail), pred, codes, failed

        _CACHE[sig] = _over_keys(one, 4)
    return _CACHE[sig]


def few_shot_run(prior: CostPrior, x, y, true_rank, keys, *, k: int, pool: int = 2000, chooser: str = "design"):
    """(spearman [S], predictions [S, N], codes [S, k], failed [S]) for S keys."""
    return _few_shot_fn(k, pool, chooser)(prior, x, y, true_rank, keys)


# ---- the ensemble family: additive + with_sources, adapted to the same cells ------------------------------------

def standardise(p: jax.Array) -> jax.Array:
    """z-score of predictions ``p`` [N] over every cell (a rank-preserving map onto a common scale)."""
    return (p - p.mean()) / (p.std() + 1e-12)


def ensemble_predict(prior_a: CostPrior, x_a: jax.Array, prior_b: CostPrior, x_b: jax.Array, y: jax.Array,
                     codes: jax.Array, k) -> jax.Array:
    """[N] the mean of the standardised predictions of two Bayesian linear models (``prior_a`` on ``x_a``,
    ``prior_b`` on ``x_b``), both adapted to the same measured cells ``codes`` (the first ``k``): y is read only
    at ``codes``. Averaging two nearly equally good, differently biased predictors (the per-op model and the per-op
    model plus the sources' costs) reduces the variance of either, without choosing between them."""
    ma, mb = BayesLinearCost(prior_a), BayesLinearCost(prior_b)
    yk = y[codes]
    pa = ma.score(ma.fit(None, x_a[codes], yk, k), x_a)
    pb = mb.score(mb.fit(None, x_b[codes], yk, k), x_b)
    return 0.5 * (standardise(pa) + standardise(pb))


def ensemble_run(prior_a: CostPrior, x_a, prior_b: CostPrior, x_b, y, true_rank, keys, *, k: int,
                 pool: int = 2000):
    """(spearman [S], predictions [S, N], codes [S, k], failed [S]) of the ensemble for S keys: the k cells are
    chosen by ``design`` under ``prior_a`` on ``x_a`` (the additive family's D-optimal design), then both models
    are adapted to them and their standardised predictions averaged (``ensemble_predict``)."""
    return _ensemble_fn(k, pool)(prior_a, x_a, prior_b, x_b, y, true_rank, keys)


def _ensemble_fn(k: int, pool: int):
    sig = ("ensemble", k, pool)
    if sig not in _CACHE:
        def one(prior_a, x_a, prior_b, x_b, y, true_rank, key):
            avail = jnp.isfinite(y)
            codes, failed = design(key, prior_a, x_a, avail, k, pool=pool)
            pred = ensemble_predict(prior_a, x_a, prior_b, x_b, y, codes, k)
            return spearman(pred, true_rank, avail), pred, codes, failed

        _CACHE[sig] = _over_keys(one, 6)
    return _CACHE[sig]
