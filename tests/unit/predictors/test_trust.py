"""metanas.predictors.trust: a member that ranks the target perfectly gets the weight, a useless one ~0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metanas.predictors.trust import blend, discordance_weights, discordant_pairs, ranking_loss_weights


def _members(y, rng):
    """[perfect (a monotone transform of y), noisy, random, constant]."""
    return np.stack([np.exp(3 * y), y + rng.normal(0, 1.0, y.size), rng.normal(size=y.size), np.zeros(y.size)])


def test_discordant_pairs_counts_misordered_pairs():
    y = jnp.array([0.0, 1.0, 2.0])
    s = jnp.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert discordant_pairs(s, y, jnp.ones(3)).tolist() == [0.0, 3.0, 3.0]
    assert discordant_pairs(s, y, jnp.array([1.0, 0.0, 1.0])).tolist() == [0.0, 1.0, 1.0]


def test_the_perfect_member_gets_the_weight_and_useless_ones_none():
    rng = np.random.default_rng(0)
    y = rng.normal(size=30)
    w = ranking_loss_weights(jax.random.PRNGKey(0), _members(y, rng), y, np.ones(30, bool))
    assert w[0] > 0.99 and w[2] < 0.01 and w[3] == 0.0 and float(w.sum()) == pytest.approx(1.0)
    w = discordance_weights(_members(y, rng), y, np.ones(30, bool))
    assert w[0] == w.max() and w[2] < 0.1 and w[3] == 0.0


def test_only_the_queried_rows_count_and_too_few_give_the_prior():
    rng = np.random.default_rng(1)
    y = rng.normal(size=20)
    s = _members(y, rng)
    s[0, 10:] = -s[0, 10:]  # perfect on the queried rows 0..9 only
    mask = np.arange(20) < 10
    assert ranking_loss_weights(jax.random.PRNGKey(1), s, y, mask)[0] > 0.95
    prior = jnp.array([0.0, 0.0, 1.0, 0.0])
    w = jax.jit(ranking_loss_weights)(jax.random.PRNGKey(1), s, y, np.arange(20) < 1, prior=prior)
    assert w.tolist() == [0.0, 0.0, 1.0, 0.0]
    assert discordance_weights(s, y, np.arange(20) < 1, prior=prior).tolist() == [0.0, 0.0, 1.0, 0.0]


def test_dilution_rule_drops_priors_worse_than_the_target_model():
    rng = np.random.default_rng(2)
    y = rng.normal(size=40)
    target = y + rng.normal(0, 0.3, 40)  # the target's own (out-of-fold) model: good
    s = np.stack([target, rng.normal(size=40), -y])
    w = ranking_loss_weights(jax.random.PRNGKey(2), s, y, np.ones(40, bool), target=0)
    assert w.tolist() == [1.0, 0.0, 0.0]


def test_blend_with_all_weight_on_one_member_is_that_members_order():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(3, 50)) * np.array([[1.0], [100.0], [0.01]])
    order = np.argsort(-np.asarray(blend(s, jnp.array([0.0, 1.0, 0.0]))))
    assert (order == np.argsort(-s[1])).all()


def test_two_target_models_are_judged_side_by_side():
    """Several target members (e.g. a GP and a forest): each is judged on its own scores, the prior worse than the
    good one gets nothing, and beside the bad one alone the prior keeps the votes."""
    rng = np.random.default_rng(4)
    y = rng.normal(size=40)
    good, bad = y + rng.normal(0, 0.3, 40), rng.normal(size=40)
    prior = y + rng.normal(0, 1.0, 40)  # fair prior: worse than the good target model, better than the bad one
    s = np.stack([prior, good, bad])
    both = ranking_loss_weights(jax.random.PRNGKey(2), s, y, np.ones(40, bool), target=(1, 2))
    only_bad = ranking_loss_weights(jax.random.PRNGKey(2), s[[0, 2]], y, np.ones(40, bool), target=1)
    assert float(both[0]) == 0.0 and float(both[1]) == 1.0  # the good model's bar drops the prior
    assert float(only_bad[0]) > 0.95  # beside the bad model alone, the prior keeps (nearly) every vote
