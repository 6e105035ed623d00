"""Trust-weighted search over a finite table of candidates with known source tasks (TabRepo configs, NB201 or
TransNAS cells, any user table of the same shape): start exactly as the best prior, hand over as evidence grows.

The knowledge about a new (target) task is a set of **members**, each a ranking of the ``C`` candidates and a
rule for choosing the next one:

- *prior members* (``PriorMembers``): each is a distribution ``mix`` [T] over the source tasks (a source task on
  its own is a one-hot row; the greedy portfolio is uniform; a k-NN or kernel warm start weights the tasks near the
  target by meta-features) with a ranking score ``rank`` [C] (higher = better; e.g. minus the weighted mean per-task
  rank) and either a *complementary* acquisition -- the expected improvement over the configs already evaluated,
  ``mix @ max(0, best_t - regret[t, c])``, which is exactly the weighted greedy portfolio (Feurer et al. 2022)
  continued from the evaluated set -- or a *static* one (its own order, e.g. the mean-rank order);
- the *target member*: a GP on the candidates' features fitted on the target's evaluations so far (its trust row
  holds leave-one-out predictions of the evaluated points, so it is judged out of fold).

After ``k`` target evaluations the members' weights are ``metanas.predictors.trust.ranking_loss_weights`` (RGPE,
Feurer, Letham & Bakshy 2018) on the evaluated points; with fewer than two the weights are the ``prior`` one-hot,
so the first picks are the prior member's own (with the greedy portfolio as prior: its first two configs). The next
candidate is the best unevaluated one of ``blend(acquisitions, weights)`` (``acquisition="blend"``), or, with
``acquisition="mixture"``, of the expected improvement under the trust-weighted *mixture* of the complementary
members' task distributions (blended with the static and target members by their total weights). The returned
``rank_score`` [budget + 1, C] is the ensemble's ranking of all candidates after 0..budget evaluations.

Pure and jittable; ``jit(vmap(...))`` over held-out tasks, ``lax.scan`` over the evaluations.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from metanas.predictors.trust import blend, ranking_loss_weights


class PriorMembers(NamedTuple):
    rank: jax.Array  # [P, C] ranking score of each prior member (higher = better), what its trust is judged on
    mix: jax.Array  # [P, T] distribution over the source tasks (rows sum to 1; any row for a static member)
    static: jax.Array  # [P, C] acquisition of a static member (higher = first); ignored for complementary ones
    complementary: jax.Array  # [P] bool: acquisition = expected improvement under ``mix`` given the evaluated set


class TrustTrace(NamedTuple):
    picks: jax.Array  # [budget] int: the candidates in the order evaluated
    weights: jax.Array  # [budget, M] the weights that chose each pick (M = P + 1, the target member last)
    rank_score: jax.Array  # [budget + 1, C] the ensemble's ranking after 0..budget evaluations


class TrustSettings(NamedTuple):
    use_target: bool = True  # include the GP fitted on the target's evaluations as a member
    acquisition: str = "blend"  # "blend" | "mixture" | "prior" (no trust: the prior member throughout)
    n_boot: int = 200
    lengthscale: float = 1.0  # the target GP's RBF lengthscale on standardised candidate features
    noise: float = 0.1  # its noise variance (targets: standardised ranks of the evaluated values)


def _target_gp(feats: jax.Array, picked: jax.Array, y: jax.Array, valid: jax.Array, lengthscale: float,
               noise: float) -> tuple[jax.Array, jax.Array]:
    """(GP mean [C] on every candidate, leave-one-out mean [B] of the evaluated slots) from the valid slots."""
    xq = feats[picked]  # [B, F]
    ranks = jnp.sum(valid[None, :] & (y[None, :] < y[:, None]), 1).astype(jnp.float32)
    cnt = jnp.maximum(valid.sum(), 1)
    mu = jnp.sum(jnp.where(valid, ranks, 0.0)) / cnt
    sd = jnp.sqrt(jnp.sum(jnp.where(valid, (ranks - mu) ** 2, 0.0)) / cnt)
    z = jnp.where(valid, (ranks - mu) / jnp.maximum(sd, 1e-6), 0.0)

    def k(a, b):
        return jnp.exp(-0.5 * jnp.sum((a[:, None] - b[None]) ** 2, -1) / lengthscale ** 2)

    vm = valid.astype(jnp.float32)
    kqq = k(xq, xq) * vm[:, None] * vm[None, :] + jnp.diag(jnp.where(valid, noise, 1.0))
    inv = jnp.linalg.inv(kqq)
    alpha = inv @ z
    mean = k(feats, xq) @ (alpha * vm)
    loo = z - alpha / jnp.diag(inv)
    return mean, loo


def trust_search(key: jax.Array, members: PriorMembers, regret: jax.Array, target_values: jax.Array,
                 feats: jax.Array, prior: jax.Array, budget: int, settings: TrustSettings = TrustSettings()
                 ) -> TrustTrace:
    """Evaluate ``budget`` candidates of the target (``target_values`` [C]: what a query returns, higher = better;
    only the evaluated entries are ever read) with the trust-weighted ensemble (module doc).

    ``regret`` [T, C]: the source tasks' normalised regrets (0 = a task's best, 1 = its worst); ``feats`` [C, F]:
    standardised candidate features for the target GP; ``prior`` [P + 1]: the weights before two evaluations
    (one-hot on the prior member; the target member's entry is its last)."""
    members = PriorMembers(*(jnp.asarray(x) for x in members))
    p, c = members.rank.shape
    regret = jnp.asarray(regret, jnp.float32)
    target_values = jnp.asarray(target_values, jnp.float32)
    feats = jnp.asarray(feats, jnp.float32)
    prior = jnp.asarray(prior, jnp.float32)
    comp = jnp.asarray(members.complementary, bool)

    def acquisitions(best, mean):
        gain = jnp.maximum(best[:, None] - regret, 0.0)  # [T, C]
        acq = jnp.where(comp[:, None], members.mix @ gain, members.static)
        return acq, jnp.concatenate([acq, mean[None]], 0)

    def step(carry, k):
        picked, best, evaluated = carry
        valid = jnp.arange(budget) < k
        y = jnp.where(valid, target_values[picked], 0.0)
        mean, loo = _target_gp(feats, picked, y, valid, settings.lengthscale, settings.noise)
        trust_rows = jnp.concatenate([members.rank[:, picked], loo[None]], 0)  # [M, B]
        if settings.use_target:
            w = ranking_loss_weights(jax.random.fold_in(key, k), trust_rows, y, valid, n_boot=settings.n_boot,
                                     target=p, prior=prior)
        else:
            w = ranking_loss_weights(jax.random.fold_in(key, k), trust_rows[:p], y, valid, n_boot=settings.n_boot,
                                     prior=prior[:p] / jnp.maximum(prior[:p].sum(), 1e-12))
            w = jnp.concatenate([w, jnp.zeros(1)])
        if settings.acquisition == "prior":
            w = prior
        acq_p, acq = acquisitions(best, mean)
        if settings.acquisition == "mixture":
            wc = jnp.where(comp, w[:p], 0.0)
            mixed = (wc / jnp.maximum(wc.sum(), 1e-12)) @ members.mix  # [T]
            gain = jnp.maximum(best[:, None] - regret, 0.0)
            rows = jnp.concatenate([(mixed @ gain)[None], acq], 0)
            score = blend(rows, jnp.concatenate([wc.sum()[None], jnp.where(comp, 0.0, w[:p]), w[p:]]))
        else:
            score = blend(acq, w)
        nxt = jnp.argmax(jnp.where(evaluated, -jnp.inf, score))
        rank_score = blend(jnp.concatenate([members.rank, mean[None]], 0), w)
        picked = picked.at[k].set(nxt)
        return (picked, jnp.minimum(best, regret[:, nxt]), evaluated.at[nxt].set(True)), (nxt, w, rank_score)

    init = (jnp.zeros(budget, jnp.int32), jnp.ones(regret.shape[0], jnp.float32), jnp.zeros(c, bool))
    (picked, best, evaluated), (picks, weights, ranks) = jax.lax.scan(step, init, jnp.arange(budget))
    # the ranking after all ``budget`` evaluations
    valid = jnp.ones(budget, bool)
    y = target_values[picked]
    mean, loo = _target_gp(feats, picked, y, valid, settings.lengthscale, settings.noise)
    rows = jnp.concatenate([members.rank[:, picked], loo[None]], 0)
    if settings.use_target:
        w = ranking_loss_weights(jax.random.fold_in(key, budget), rows, y, valid, n_boot=settings.n_boot,
                                 target=p, prior=prior)
    else:
        w = jnp.concatenate([ranking_loss_weights(jax.random.fold_in(key, budget), rows[:p], y, valid,
                                                  n_boot=settings.n_boot), jnp.zeros(1)])
    if settings.acquisition == "prior":
        w = prior
    last = blend(jnp.concatenate([members.rank, mean[None]], 0), w)
    return TrustTrace(picks, weights, jnp.concatenate([ranks, last[None]], 0))
