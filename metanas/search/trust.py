"""Trust search: a search whose model is a weighted ensemble of every piece of prior knowledge and a target model.

Members are score vectors over the target's candidates (higher = better): the sources' mean z-score order, each
source task's own order, the pre-trained meta-learner's zero-shot ranking, zero-cost proxies -- whatever a user has
-- plus one member fitted on the target's queried cells. Every round the members are weighted by how well they rank
the target's queried cells (``metanas.predictors.trust.ranking_loss_weights``: RGPE's bootstrap vote, Feurer et
al. 2018, with its dilution rule; or ``discordance_weights``, TST-R), the blend of their standardised scores ranks
the candidates and the ``topk`` best unqueried are queried. The target member is judged on its out-of-fold
predictions of the queried cells (a GP's closed-form leave-one-out means; a random forest's out-of-bag ones).

The search starts exactly as the ``start`` prior member: its ``init`` best cells are the first queries (with no
prior members, ``init`` cells drawn from the seed's key by ``initial_cells``, the same for every method of a seed:
common random numbers), and hands over to the target member as its out-of-fold ranking beats the priors.

Knobs, all set a priori: ``init`` / ``topk`` (5, as every search of the study), ``n_boot`` (200, RGPE's), the GP's
hyper-parameters (chosen each round by marginal likelihood on a fixed grid), the weighting rule, the hand-over
``level`` (0: none; e.g. 0.95: a member other than ``start`` takes weight only once it ranks the target's queried
cells better than ``start`` in 95 % of the bootstrap resamples -- until then the search IS the start prior's order).

**One search for NAS and HPO.** Cells of a NAS space (NB201, TransNAS, a user's file) and configs of a table with
source tasks (TabRepo) are both candidates. On a table, prior members can be a ``Portfolio``: a member whose pick
depends on what the target has evaluated -- the expected improvement over the evaluated set under its distribution
over the source tasks (uniform: the greedy portfolio continued; k-NN or kernel weights; one source task alone) --
while its trust is judged on its ranking like any other member's. ``mixture=True`` lets the complementary members
act as one expected improvement under their weighted mixture. ``metanas.hpo.trust_portfolio`` runs it on TabRepo
(one query a round, the greedy portfolio as the start, a GP on the standardised ranks as the target member).

``TrustSearch.run`` is a pure, jittable function of its key (vmap it over seeds); ``run_host`` is the same loop on
the host for a target model that is not jittable (the random forest of the plain RGPE baseline); both share
``choose`` (``member_weights`` + ``ensemble_score`` + the next queries).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from metanas.predictors.trust import blend, discordance_weights, earned, gate, ranking_loss_weights

# the GP's hyper-parameter grid (a priori): kernel exp(-d / lengthscale) of the share d of positions in which two
# cells differ (one-hot features), noise variance relative to a unit signal variance; picked by marginal likelihood
LENGTHSCALES = (0.1, 0.2, 0.4, 0.8, 1.6)
NOISES = (0.01, 0.1, 0.3)


class TrustTrace(NamedTuple):
    codes: jax.Array  # int32 [B] queried candidates in query order
    values: jax.Array  # float32 [B] their values (higher is better)
    weights: jax.Array  # float32 [rounds, M + K] member weights of each round (last K: the target models)
    ranking: jax.Array | None = None  # [rounds + 1, N] the ensemble's ranking score in each round and after the last


def normal_scores(values: jax.Array, known: jax.Array) -> jax.Array:
    """Phi^-1((rank - 0.5) / m) of each known entry among the m known entries (ties averaged); 0 elsewhere.

    The target member is fitted on these: monotone, free of the metric's sign, offset and unit."""
    known = known.astype(bool)
    srt = jnp.sort(jnp.where(known, values, jnp.inf))
    less = jnp.searchsorted(srt, values, side="left").astype(jnp.float32)
    equal = jnp.searchsorted(srt, values, side="right").astype(jnp.float32) - less
    m = jnp.maximum(known.sum().astype(jnp.float32), 1.0)
    z = ndtri(jnp.clip((less + (equal + 1.0) / 2.0 - 0.5) / m, 1e-6, 1 - 1e-6))
    return jnp.where(known, z, 0.0)


def prior_members(source_values, extra=None) -> np.ndarray:
    """Members [1 + S (+ E), N] from the sources' values [S, N] (NaN where a source lacks a candidate): row 0 the
    mean z-score order (``zscore_order``, over the sources that hold each cell), rows 1..S each source's z-scored
    values; then the rows of ``extra`` [E, N] (e.g. the meta-learner's zero-shot scores, proxies). Each row is
    z-scored over the candidates it knows and 0 (its mean) where it knows nothing."""
    v = np.asarray(source_values, np.float64)
    z = (v - np.nanmean(v, 1, keepdims=True)) / np.maximum(np.nanstd(v, 1, keepdims=True), 1e-12)
    known = np.isfinite(z)
    mean = np.where(known.any(0), np.nansum(z, 0) / np.maximum(known.sum(0), 1), np.nan)
    rows = [mean[None], z] + ([np.asarray(extra, np.float64).reshape(-1, v.shape[1])] if extra is not None else [])
    m = np.concatenate(rows, 0)
    m = (m - np.nanmean(m, 1, keepdims=True)) / np.maximum(np.nanstd(m, 1, keepdims=True), 1e-12)
    return np.nan_to_num(m, nan=0.0).astype(np.float32)


def initial_cells(key: jax.Array, n_cells: int, k: int) -> jax.Array:
    """The ``k`` random first cells of a seed: the first ``k`` of ``random_order(key)`` (common random numbers)."""
    return random_order(key, n_cells)[:k]


def random_order(key: jax.Array, n_cells: int) -> jax.Array:
    """Random search's query order for a seed; it starts with ``initial_cells`` of the same key."""
    return jax.random.permutation(jax.random.fold_in(key, 0), n_cells).astype(jnp.int32)


def gp_loo(xq: jax.Array, y: jax.Array, mask: jax.Array, x_all: jax.Array, *, lengthscales=LENGTHSCALES,
           noises=NOISES) -> tuple[jax.Array, jax.Array]:
    """GP on the queried rows (``mask``) of ``xq`` [B, D] / ``y`` [B]: (posterior mean [N] on ``x_all``,
    closed-form leave-one-out means [B] of the queried rows). Jittable with fixed-size buffers: unqueried rows are
    decoupled (identity rows of K, y = 0). Hyper-parameters: the grid's best log marginal likelihood."""
    m = mask.astype(jnp.float32)
    width = jnp.maximum(jnp.max(jnp.sum(x_all, 1)), 1.0)  # positions of a one-hot cell encoding

    def dist(a, b):
        return jnp.maximum(jnp.sum(a ** 2, 1)[:, None] + jnp.sum(b ** 2, 1)[None] - 2 * a @ b.T, 0.0) / (2 * width)

    dq = dist(xq, xq)
    da = dist(x_all, xq)
    y = y * m
    mm = m[:, None] * m[None]
    eye = jnp.eye(xq.shape[0])

    def one(ls, noise):
        k = mm * jnp.exp(-dq / ls) + (1.0 - mm) * eye + noise * eye * m[:, None]
        chol = jnp.linalg.cholesky(k)
        alpha = jax.scipy.linalg.cho_solve((chol, True), y)
        lml = -0.5 * y @ alpha - jnp.sum(jnp.log(jnp.diag(chol)))
        kinv_diag = jnp.diag(jax.scipy.linalg.cho_solve((chol, True), eye))
        loo = y - alpha / kinv_diag
        return lml, alpha, loo

    grid = jnp.array([(a, b) for a in lengthscales for b in noises], jnp.float32)
    # lax.map, not vmap: batched LAPACK calls (jaxlib's ParallelBatchMap) deadlocked XLA's 2-thread CPU pool
    lml, alpha, loo = jax.lax.map(lambda g: one(g[0], g[1]), grid)
    best = jnp.argmax(jnp.where(jnp.isfinite(lml), lml, -jnp.inf))
    # the posterior mean on every candidate only for the chosen hyper-parameters (the [N, B] kernel is the cost)
    mu = (jnp.exp(-da / grid[best, 0]) * m[None]) @ alpha[best]
    return mu, loo[best]


class Portfolio(NamedTuple):
    """Members whose acquisition depends on what the target has evaluated: a portfolio over source tasks with a
    known table (TabRepo's configs x tasks). Member ``i`` with ``complementary[i]`` picks by the expected improvement
    over the evaluated set under its distribution ``mix[i]`` over the source tasks, ``mix[i] @ max(0, best_t -
    regret[t, c])`` -- for a uniform ``mix`` exactly the greedy portfolio (Feurer et al. 2022) continued from the
    evaluated set; a member without the flag picks by its own score (its row of ``members``). Its trust is judged on
    its row of ``members`` either way (a ranking of the candidates, e.g. minus its weighted mean per-task rank)."""

    regret: jax.Array  # [T, N] the source tasks' normalised regrets (0 = a task's best, 1 = its worst)
    mix: jax.Array  # [M, T] each member's distribution over the source tasks (any row for a non-complementary one)
    complementary: jax.Array  # [M] bool


def _no_portfolio(m: int, n: int) -> Portfolio:
    return Portfolio(jnp.zeros((0, n)), jnp.zeros((m, 0)), jnp.zeros(m, bool))


def acquisitions(members: jax.Array, portfolio: Portfolio, best: jax.Array) -> jax.Array:
    """[M, N] each prior member's acquisition given the source tasks' best regrets so far ``best`` [T] (module doc of
    ``Portfolio``): its expected improvement for a complementary member, its score otherwise."""
    gain = jnp.maximum(best[:, None] - portfolio.regret, 0.0)  # [T, N]
    return jnp.where(portfolio.complementary[:, None], portfolio.mix @ gain, members)


def member_weights(key: jax.Array, members: jax.Array, target_oof: jax.Array, codes: jax.Array, y: jax.Array,
                   mask: jax.Array, *, weighting: str = "rgpe", n_boot: int = 200, start: int = 0,
                   level: float = 0.0) -> jax.Array:
    """[M + K] the weights of the prior members ``members`` [M, N] and the K target members (``target_oof`` [K, B]:
    their out-of-fold scores of the queried rows ``codes`` [B] where ``mask``), judged on the queried values ``y``
    (only orders matter); the ``start`` member's one-hot while no pair can be judged. ``level`` > 0: the
    hand-over rule (``earned``); ``level`` = inf: the ``start`` member throughout (no trust at all)."""
    rows = jnp.concatenate([members[:, codes], target_oof], 0)
    prior = jax.nn.one_hot(start, rows.shape[0])
    targets = tuple(range(members.shape[0], rows.shape[0])) or None
    if weighting == "rgpe":
        w = ranking_loss_weights(key, rows, y, mask, n_boot=n_boot, target=targets, prior=prior)
    else:
        w = discordance_weights(rows, y, mask, prior=prior)
    if level == float("inf"):
        return prior
    if level > 0:  # hand-over: only members that beat the start member on the target's queries take weight
        ok = earned(jax.random.fold_in(key, 1), rows, y, mask, start, level=level, n_boot=n_boot)
        w = gate(w, ok, start)
    return w


def ensemble_score(acq: jax.Array, target_mu: jax.Array, w: jax.Array, portfolio: Portfolio, best: jax.Array,
                   mixture: bool = False) -> jax.Array:
    """[N] the blend of the prior members' acquisitions ``acq`` [M, N] and the target members' scores [K, N] by the
    weights ``w`` [M + K]. ``mixture``: the complementary members enter as ONE expected improvement, under the
    weighted mixture of their task distributions (their total weight), instead of a blend of theirs."""
    every = jnp.concatenate([acq, target_mu], 0)
    if not mixture:
        return blend(every, w)
    m = acq.shape[0]
    wc = jnp.where(portfolio.complementary, w[:m], 0.0)
    mixed = (wc / jnp.maximum(wc.sum(), 1e-12)) @ portfolio.mix  # [T]
    gain = jnp.maximum(best[:, None] - portfolio.regret, 0.0)
    rows = jnp.concatenate([(mixed @ gain)[None], every], 0)
    return blend(rows, jnp.concatenate([wc.sum()[None], jnp.where(portfolio.complementary, 0.0, w[:m]), w[m:]]))


def choose(key: jax.Array, members: jax.Array, target_mu: jax.Array, target_oof: jax.Array, codes: jax.Array,
           y: jax.Array, mask: jax.Array, queried: jax.Array, k: int, *, weighting: str = "rgpe", n_boot: int = 200,
           start: int = 0, level: float = 0.0, portfolio: Portfolio | None = None, best: jax.Array | None = None,
           mixture: bool = False) -> tuple[jax.Array, jax.Array]:
    """(next ``k`` candidates [k], weights [M + K]) of one round: ``member_weights``, then the ``k`` best unqueried
    candidates of ``ensemble_score``.

    ``members`` [M, N] prior scores, ``target_mu`` [N] or [K, N] the target member(s)' scores (several target
    models, e.g. a GP and a random forest, are members side by side; K = 0: none), ``target_oof`` [B] or [K, B]
    their out-of-fold scores of the queried rows ``codes`` [B] (``mask``), ``y`` [B] the queried values.
    ``portfolio`` / ``best``: complementary members and the source tasks' best regrets over the queried set."""
    target_mu, target_oof = jnp.atleast_2d(target_mu), jnp.atleast_2d(target_oof)
    portfolio = _no_portfolio(*members.shape) if portfolio is None else portfolio
    best = jnp.ones(portfolio.regret.shape[0]) if best is None else best
    w = member_weights(key, members, target_oof, codes, y, mask, weighting=weighting, n_boot=n_boot, start=start,
                       level=level)
    score = ensemble_score(acquisitions(members, portfolio, best), target_mu, w, portfolio, best, mixture)
    _, new = jax.lax.top_k(jnp.where(queried, -jnp.inf, score), k)
    return new.astype(jnp.int32), w


_choose = jax.jit(choose, static_argnames=("k", "weighting", "n_boot", "start", "level", "mixture"))


@dataclass(frozen=True)
class TrustSearch:
    """See the module docstring. ``members`` may have zero rows (no prior: random first cells, target model only)."""

    budget: int = 50
    init: int = 5
    topk: int = 5
    n_boot: int = 200
    weighting: Literal["rgpe", "tstr"] = "rgpe"
    start: int = 0  # the prior member whose best candidates are queried first (0: the mean z-score order)
    level: float = 0.0  # hand-over: a member takes weight once it beats ``start`` in this share of resamples
    mixture: bool = False  # complementary members enter as one EI under their weighted mixture (``ensemble_score``)
    ranking: bool = False  # also return the ensemble's ranking of every candidate each round (``TrustTrace.ranking``)

    def __post_init__(self):
        if self.budget < self.init or (self.budget - self.init) % self.topk or self.init < 1:
            raise ValueError(f"TrustSearch needs init >= 1 and budget - init a multiple of topk, got "
                             f"budget={self.budget}, init={self.init}, topk={self.topk}")

    @property
    def rounds(self) -> int:
        return (self.budget - self.init) // self.topk

    def first(self, key: jax.Array, members: jax.Array, n_cells: int, portfolio: Portfolio | None = None
              ) -> jax.Array:
        """The ``init`` first queries: the best of the ``start`` member's acquisition before any evaluation (its own
        order; a complementary member's greedy first pick), random (``initial_cells``) with no prior member."""
        if members.shape[0] == 0:
            return initial_cells(key, n_cells, self.init)
        row = members[self.start]
        if portfolio is not None:
            row = acquisitions(members, portfolio, jnp.ones(portfolio.regret.shape[0]))[self.start]
        return jax.lax.top_k(row, self.init)[1].astype(jnp.int32)

    def run(self, key: jax.Array, x: jax.Array, members: jax.Array, target_values: jax.Array, *,
            portfolio: Portfolio | None = None, fit: Callable | None | str = "gp") -> TrustTrace:
        """One search (jittable). ``x`` [N, D] candidate features, ``members`` [M, N], ``target_values`` [N] (read
        only at queried candidates). ``fit``: the target member(s), ``fit(xq [B, D], y [B], mask [B]) -> (mu [N] or
        [K, N], oof [B] or [K, B])`` jittable with fixed-size buffers; ``"gp"`` (default): ``gp_loo`` on ``x``;
        ``None``: no target member (the priors alone)."""
        if isinstance(fit, str):
            if fit != "gp":
                raise ValueError(f"fit={fit!r}: pass 'gp', None or a jittable fit function")
            fit = lambda xq, y, mask: gp_loo(xq, y, mask, x)  # noqa: E731
        return self._loop(key, x, members, target_values, fit, jax.lax.scan, portfolio)

    def run_host(self, key: jax.Array, x, members, target_values, fit: Callable, *,
                 portfolio: Portfolio | None = None) -> TrustTrace:
        """The same loop on the host with a non-jittable target model ``fit(xq [n, D], y [n], x [N, D]) ->
        (mu [N] or [K, N], oof [n] or [K, n])`` (fitted on the queried rows only; K target models side by side)."""
        x = np.asarray(x, np.float32)

        def host_fit(xq, y, mask):
            n = int(np.asarray(mask).sum())
            mu, oof = fit(np.asarray(xq)[:n], np.asarray(y)[:n], x)
            mu, oof = np.atleast_2d(mu), np.atleast_2d(oof)
            full = np.zeros((oof.shape[0], xq.shape[0]), np.float32)
            full[:, :n] = oof
            return jnp.asarray(mu, jnp.float32), jnp.asarray(full)

        def scan(f, carry, xs):
            outs = []
            for i in range(xs[0].shape[0]):
                carry, o = f(carry, (xs[0][i], xs[1][i]))
                outs.append(o)
            return carry, jax.tree.map(lambda *a: jnp.stack(a), *outs)

        return self._loop(key, jnp.asarray(x), jnp.asarray(members), jnp.asarray(target_values), host_fit, scan,
                          portfolio)

    def _loop(self, key, x, members, target_values, fit, scan, portfolio) -> TrustTrace:
        n_cells = x.shape[0]
        members = jnp.asarray(members, jnp.float32).reshape(-1, n_cells)
        if portfolio is None:
            portfolio = _no_portfolio(*members.shape)
        portfolio = Portfolio(jnp.asarray(portfolio.regret, jnp.float32), jnp.asarray(portfolio.mix, jnp.float32),
                              jnp.asarray(portfolio.complementary, bool))
        if fit is None:
            fit = lambda xq, y, mask: (jnp.zeros((0, n_cells)), jnp.zeros((0, self.budget)))  # noqa: E731
        k_init, k_rounds = jax.random.split(key)
        codes0 = self.first(k_init, members, n_cells, portfolio)
        codes = jnp.zeros(self.budget, jnp.int32).at[: self.init].set(codes0)
        values = jnp.zeros(self.budget, jnp.float32).at[: self.init].set(target_values[codes0])
        queried = jnp.zeros(n_cells, bool).at[codes0].set(True)
        best = portfolio.regret[:, codes0].min(1, initial=1.0)  # [T] each source task's best regret so far
        options = dict(weighting=self.weighting, n_boot=self.n_boot, start=self.start, level=self.level)

        def fitted(codes, values, n):
            mask = jnp.arange(self.budget) < n
            y = normal_scores(values, mask)
            mu, oof = fit(x[codes], y, mask)
            return mask, y, jnp.atleast_2d(mu), jnp.atleast_2d(oof)

        def ranking(mu, w):
            return blend(jnp.concatenate([members, mu], 0), w) if self.ranking else jnp.zeros(0)

        def round_(state, xs):
            codes, values, queried, best = state
            r, k = xs
            n = self.init + r * self.topk
            mask, y, mu, oof = fitted(codes, values, n)
            new, w = _choose(k, members, mu, oof, codes, y, mask, queried, self.topk, portfolio=portfolio, best=best,
                             mixture=self.mixture, **options)
            codes = jax.lax.dynamic_update_slice(codes, new, (n,))
            values = jax.lax.dynamic_update_slice(values, target_values[new], (n,))
            best = jnp.minimum(best, portfolio.regret[:, new].min(1, initial=1.0))
            return (codes, values, queried.at[new].set(True), best), (w, ranking(mu, w))

        (codes, values, _, _), (weights, ranks) = scan(
            round_, (codes, values, queried, best), (jnp.arange(self.rounds), jax.random.split(k_rounds, self.rounds)))
        if not self.ranking:
            return TrustTrace(codes, values, weights)
        # the ranking after every query: the last round's fit and weights on all ``budget`` queried candidates
        mask, y, mu, oof = fitted(codes, values, self.budget)
        w = member_weights(jax.random.fold_in(k_rounds, self.rounds), members, oof, codes, y, mask, **options)
        return TrustTrace(codes, values, weights, jnp.concatenate([ranks, ranking(mu, w)[None]], 0))


_gp_loo = jax.jit(gp_loo)


def gp_fit(xq, y, x_all):
    """The GP target member (``gp_loo``) as a host ``fit`` for ``run_host``: (posterior mean [N], LOO means [n])."""
    n = len(y)
    mu, loo = _gp_loo(jnp.asarray(xq, jnp.float32), jnp.asarray(y, jnp.float32), jnp.ones(n, bool),
                      jnp.asarray(x_all, jnp.float32))
    return np.asarray(mu), np.asarray(loo)


def target_fit(model: str, key_seed: int, trees: int = 100) -> Callable:
    """The host ``fit`` of the target member(s) named ``model``: ``gp``, ``forest`` or ``gp+forest`` (both, side by
    side as two members, each judged on its own out-of-fold predictions)."""
    parts = model.split("+")
    if not parts or any(p not in ("gp", "forest") for p in parts):
        raise ValueError(f"target model {model!r}: join gp and/or forest with '+'")
    fits = [gp_fit if p == "gp" else forest_fit(key_seed, trees) for p in parts]

    def fit(xq, y, x_all):
        out = [f(xq, y, x_all) for f in fits]
        return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])

    return fit


def forest_fit(key_seed: int, trees: int = 100) -> Callable:
    """The plain RGPE baseline's target member: a scikit-learn random forest (library defaults, ``trees`` trees)
    whose out-of-bag predictions are its out-of-fold scores (rows without one get the mean of y)."""
    from sklearn.ensemble import RandomForestRegressor
    import warnings

    def fit(xq, y, x_all):
        rf = RandomForestRegressor(n_estimators=trees, oob_score=True, random_state=key_seed, n_jobs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rf.fit(xq, y)
        oof = np.asarray(rf.oob_prediction_, np.float64)
        oof = np.where(np.isfinite(oof), oof, float(np.mean(y)))
        return rf.predict(np.asarray(x_all, np.float64)), oof

    return fit


def prior_local_search(archs, values, prior, init: int, budget: int) -> np.ndarray:
    """Zero-shot order, then local search (host, deterministic). Query the ``init`` best cells of ``prior`` [N] (the
    same first cells as the trust search), then from the best queried cell (the incumbent) query its unqueried
    one-position neighbours (candidates that differ from it in exactly one position of the cell tuple), best by
    ``prior`` first, moving to a neighbour as soon as it beats the incumbent; when the incumbent has no unqueried
    neighbour left, restart from the best unqueried cell of ``prior``. Returns the query order [budget]."""
    archs, values, prior = np.asarray(archs), np.asarray(values, np.float64), np.asarray(prior, np.float64)
    order = np.argsort(-prior, kind="stable")
    codes = [int(c) for c in order[:init]]
    queried = np.zeros(len(values), bool)
    queried[codes] = True
    inc = max(codes, key=lambda c: values[c])
    while len(codes) < min(budget, len(values)):
        nb = np.flatnonzero(((archs != archs[inc]).sum(1) == 1) & ~queried)
        if nb.size:
            c = int(nb[np.argmax(prior[nb])])
            if values[c] > values[inc]:
                inc = c
        else:
            c = int(order[~queried[order]][0])
            inc = c
        codes.append(c)
        queried[c] = True
    return np.asarray(codes, np.int32)
