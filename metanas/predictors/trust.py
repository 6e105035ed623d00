"""How much to trust each member of an ensemble, judged by how well it ranks the target's queried points.

The members are every piece of knowledge a search has about a new task: each source task's model or order, the
sources' mean order, a portfolio, a zero-cost proxy, and the model fitted on the target itself. Their scores on the
target's *queried* points are compared with the target's observed values; a member that orders them well earns
weight, whatever its scale (only orders are compared).

- ``ranking_loss_weights``: RGPE (Feurer, Letham & Bakshy, 2018). For each bootstrap resample of the queried points,
  every member's ranking loss is its number of discordant pairs; the member with the smallest loss gets that
  resample's vote (ties share it); a member's weight is its share of the votes. With ``target`` given (the index of
  the member fitted on the target, whose scores must then be out-of-fold predictions), a prior member whose median
  loss is above the 95th percentile of the target member's losses gets no weight (RGPE's weight dilution rule).
- ``discordance_weights``: TST-R (Wistuba, Schilling & Schmidt-Thieme, 2016): Epanechnikov kernel of each member's
  share of discordant pairs, normalised.

- ``earned``: the hand-over rule. A member other than the reference (the prior the search starts as) may take
  weight only once it ranks the queried points better than the reference in at least a share ``level`` of the
  bootstrap resamples (a one-sided bootstrap test); until then the search stays exactly the reference's order.

All are pure, jittable and vmappable: the queried points are the rows where ``mask`` is true, so a search can keep
fixed-size buffers and grow ``mask`` round by round. With fewer than two queried points no pair can be judged:
the weights are then ``prior`` (default uniform).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def discordant_pairs(scores: jax.Array, y: jax.Array, weight: jax.Array) -> jax.Array:
    """[M] weighted number of pairs (i, j) with y_i < y_j ranked the other way (score_i >= score_j) by each member.

    ``scores`` [M, n], ``y`` [n], ``weight`` [n] (multiplicity of each row; 0 leaves a row out). A member that ties
    two points of different value is charged the pair: a constant member does not rank anything."""
    less = (y[:, None] < y[None, :]).astype(jnp.float32)  # [n, n] i below j
    wrong = (scores[:, :, None] >= scores[:, None, :]).astype(jnp.float32)  # [M, n, n]
    return jnp.einsum("ij,mij,i,j->m", less, wrong, weight, weight)


def _uniform_or(prior: jax.Array | None, m: int) -> jax.Array:
    if prior is None:
        return jnp.full((m,), 1.0 / m)
    prior = jnp.asarray(prior, jnp.float32)
    return prior / jnp.maximum(prior.sum(), 1e-12)


def ranking_loss_weights(key: jax.Array, member_scores: jax.Array, y: jax.Array, mask: jax.Array, *,
                         n_boot: int = 200, target: int | tuple[int, ...] | None = None,
                         prior: jax.Array | None = None) -> jax.Array:
    """RGPE weights [M] (sum 1) of the members ``member_scores`` [M, n] on the queried rows ``mask`` [n] of ``y``.

    ``target``: the index (or indices) of the member(s) fitted on the target; with several, a prior member is
    diluted when its median loss is above the 95th percentile of the losses of any target member (the
    best-ranking target model sets the bar)."""
    scores = jnp.asarray(member_scores, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    mask = jnp.asarray(mask, bool)
    m, n = scores.shape
    count = mask.sum()
    # each resample draws ``count`` rows with replacement among the queried ones
    losses = bootstrap_losses(key, scores, y, mask, n_boot)  # [B, M]
    best = (losses <= losses.min(1, keepdims=True)).astype(jnp.float32)
    votes = (best / best.sum(1, keepdims=True)).mean(0)
    if target is not None:
        idx = jnp.atleast_1d(jnp.asarray(target))
        keep = jnp.median(losses, 0) <= jnp.min(jnp.percentile(losses[:, idx], 95, axis=0))
        votes = jnp.where(keep.at[idx].set(True), votes, 0.0)
        votes = votes / jnp.maximum(votes.sum(), 1e-12)
    return jnp.where(count >= 2, votes, _uniform_or(prior, m))


def bootstrap_losses(key: jax.Array, member_scores: jax.Array, y: jax.Array, mask: jax.Array, n_boot: int = 200
                     ) -> jax.Array:
    """[n_boot, M] discordant pairs of each member in ``n_boot`` bootstrap resamples of the queried rows."""
    scores = jnp.asarray(member_scores, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    mask = jnp.asarray(mask, bool)
    n = scores.shape[1]
    slot = jnp.arange(n) < mask.sum()
    draws = jax.random.categorical(key, jnp.where(mask, 0.0, -jnp.inf), shape=(n_boot, n))
    mult = jax.vmap(lambda d: jnp.zeros(n).at[d].add(slot.astype(jnp.float32)))(draws)
    return jax.vmap(lambda w: discordant_pairs(scores, y, w))(mult)


def earned(key: jax.Array, member_scores: jax.Array, y: jax.Array, mask: jax.Array, reference: int, *,
           level: float, n_boot: int = 200) -> jax.Array:
    """[M] bool: the members that beat member ``reference`` (fewer discordant pairs) in at least a share ``level``
    of ``n_boot`` bootstrap resamples of the queried rows; the reference always. ``level`` 0: every member."""
    losses = bootstrap_losses(key, member_scores, y, mask, n_boot)
    share = (losses < losses[:, reference:reference + 1]).astype(jnp.float32).mean(0)
    return (share >= level).at[reference].set(True)


def gate(weights: jax.Array, ok: jax.Array, reference: int) -> jax.Array:
    """``weights`` [M] kept only on the members ``ok`` [M], renormalised; all on ``reference`` when none is left."""
    w = jnp.where(ok, weights, 0.0)
    return jnp.where(w.sum() > 0, w / jnp.maximum(w.sum(), 1e-12), jax.nn.one_hot(reference, w.shape[0]))


def discordance_weights(member_scores: jax.Array, y: jax.Array, mask: jax.Array, *, bandwidth: float = 0.5,
                        prior: jax.Array | None = None) -> jax.Array:
    """TST-R weights [M] (sum 1): 0.75 (1 - (d / bandwidth)^2) for a member with a share d of discordant pairs among
    the queried rows (0 beyond the bandwidth); ``prior`` (default uniform) when no member is within it."""
    scores = jnp.asarray(member_scores, jnp.float32)
    w = jnp.asarray(mask, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    pairs = jnp.sum((y[:, None] < y[None, :]) * w[:, None] * w[None, :])
    d = discordant_pairs(scores, y, w) / jnp.maximum(pairs, 1.0)
    k = jnp.where(d < bandwidth, 0.75 * (1.0 - (d / bandwidth) ** 2), 0.0)
    ok = (pairs > 0) & (k.sum() > 0)
    return jnp.where(ok, k / jnp.maximum(k.sum(), 1e-12), _uniform_or(prior, scores.shape[0]))


def standardise(scores: jax.Array) -> jax.Array:
    """Each member's scores [M, N] centred and scaled over the N candidates (a member's scale means nothing)."""
    s = jnp.asarray(scores, jnp.float32)
    return (s - s.mean(-1, keepdims=True)) / jnp.maximum(s.std(-1, keepdims=True), 1e-12)


def blend(member_scores: jax.Array, weights: jax.Array) -> jax.Array:
    """The ensemble's ranking score [N]: the ``weights``-weighted sum of the members' standardised scores [M, N]."""
    return jnp.asarray(weights, jnp.float32) @ standardise(member_scores)
