"""Host tree baselines (random forest, boosted trees), canonical held-out rows and the host CV blend.

SYNTHETIC data throughout (hand-made tables and small random regressions), except the NB201 group count."""

import jax
import numpy as np
import pytest

from metanas.predictors.evaluate import canonical_groups, canonical_held_out, fit_and_score, quality_table, train_splits
from metanas.predictors.pointwise import Ridge
from metanas.predictors.select import Columns, CVBlend
from metanas.predictors.trees import BoostedTrees, RandomForest, is_jittable

pytest.importorskip("sklearn")


def test_canonical_held_out_drops_every_duplicate_of_a_training_or_held_out_row():
    # hand-made codes: rows 0/3 equal, rows 1/4/6 equal, rows 2, 5, 7 unique
    codes = np.array([[0, 1], [1, 1], [2, 0], [0, 1], [1, 1], [3, 3], [1, 1], [4, 0]])
    g = canonical_groups(codes)
    assert g[0] == g[3] and g[1] == g[4] == g[6] and len(set(g[[0, 1, 2, 5, 7]])) == 5
    # training row 0: its twin 3 is dropped; 1/4/6 are held-out twins of each other: all three dropped
    assert canonical_held_out(np.array([0]), np.array([1, 2, 3, 4, 5, 6, 7]), g).tolist() == [2, 5, 7]
    # training row 4: 1 and 6 are dropped for it (not for being twins); 0 and 3 are twins: dropped
    assert canonical_held_out(np.array([4, 2]), np.array([0, 1, 3, 5, 6, 7]), g).tolist() == [5, 7]
    # no duplicates anywhere: nothing dropped, order kept
    assert canonical_held_out(np.array([0]), np.array([7, 5, 2]), g).tolist() == [7, 5, 2]


def test_nb201_pruned_encodings_leave_9445_distinct_cells():
    from metanas.predictors.encodings import encode_archs
    from metanas.search_spaces.nb201 import NB201Space

    space = NB201Space()
    g = canonical_groups(np.asarray(encode_archs(space, space.enumerate(), "onehot_pruned")))
    assert g.max() + 1 == 9445  # the non-degenerate cells (as in the zero-cost proxy tables)


def _problem(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (70 + 5 * np.tanh(x[:, 0]) + 2 * (x[:, 1] > 0) + 0.1 * rng.normal(size=n)).astype(np.float32)
    return x, y


@pytest.mark.parametrize("model", [RandomForest(trees=30), BoostedTrees()])
def test_tree_models_fit_first_n_rows_and_rank_through_quality_table(model, key):
    assert not is_jittable(model) and is_jittable(Ridge())
    x, y = _problem()
    p = model.fit(key, x, y, 80)
    y_bad = y.copy()
    y_bad[80:] = -y_bad[80:]  # rows past n never reach the fit
    np.testing.assert_allclose(model.score(model.fit(key, x, y_bad, 80), x), model.score(p, x))
    mean, std = model.score_std(p, x)
    assert mean.shape == std.shape == (300,) and np.all(std >= 0)
    # the same splits / keys as the JAX models; canonical rows: duplicate x rows are dropped
    xd = np.concatenate([x, x[:10]])
    yd = np.concatenate([y, y[:10]])
    groups = canonical_groups(xd)
    table = quality_table({"tree": model, "ridge": Ridge()}, key, xd, yd, seeds=[0, 1], n_train=[20, 100],
                          groups=groups)
    assert table["tree"][100]["kendall_tau"].shape == (2,)
    assert table["tree"][100]["kendall_tau"].mean() > 0.6
    perms = train_splits([0, 1], len(yd), 100)
    want = [len(canonical_held_out(perms[s, :100], perms[s, 100:], groups)) for s in range(2)]
    assert table["tree"][100]["n_held_out"].tolist() == want == table["ridge"][100]["n_held_out"].tolist()
    assert max(want) <= len(yd) - 100 - 10  # every duplicated pair loses at least one row
    # host fit_and_score follows the seed keys: deterministic
    s1 = fit_and_score(model, key, xd, yd, perms, [20])
    np.testing.assert_allclose(s1, fit_and_score(model, key, xd, yd, perms, [20]))


def test_cv_blend_chooses_from_training_rows_and_mixes_jax_and_host_bases(key):
    x, y = _problem(200, seed=1)
    good, noise = Columns(Ridge(lam=1.0), (True, False, False)), Columns(Ridge(lam=1.0), (False, False, True))
    model = CVBlend((noise, RandomForest(trees=30), good), combos=((0,), (0, 1), (1, 2), (2,)), folds=3)
    assert not is_jittable(model)
    p = model.fit(key, x, y, 90)
    assert p["cv_tau"].shape == (4,) and p["best"] in (2, 3) and p["cv_tau"][0] < 0.2 < p["cv_tau"][p["best"]]
    assert set(p["members"]) == set(model.combos[p["best"]])
    s = model.score(p, x)
    assert s.shape == (200,)
    # each member standardised on the training rows (as Blend): the blend has mean 0 and sd <= 1 there
    assert abs(s[:90].mean()) < 1e-6 and s[:90].std() <= 1 + 1e-6
    np.testing.assert_allclose(model.score(p, x[:90]), s[:90], rtol=1e-6)  # no batch-dependent scaling
    y_bad = y.copy()
    y_bad[90:] = -x[90:, 2] * 100  # the rows past n never influence the choice
    np.testing.assert_allclose(model.fit(key, x, y_bad, 90)["cv_tau"], p["cv_tau"])
    # through quality_table like any model
    t = quality_table({"cvb": model}, key, x, y, seeds=[0], n_train=[60])
    assert t["cvb"][60]["kendall_tau"][0] > 0.5
    with pytest.raises(ValueError, match="final models"):
        CVBlend((good,), ((0,),), final=(good, good)).fit(jax.random.PRNGKey(1), x, y, 60)
