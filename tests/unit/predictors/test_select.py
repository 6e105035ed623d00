"""Model selection on training rows only: masked Kendall tau and CVSelect (synthetic data)."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from metanas.predictors.pointwise import Ridge
from metanas.predictors.select import Blend, Columns, CVSelect, masked_kendall_tau


def test_masked_kendall_tau_matches_scipy_on_the_masked_rows():
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=40), rng.normal(size=40)
    mask = rng.random(40) < 0.5
    want = stats.kendalltau(s[mask], y[mask]).statistic  # no ties: tau-b = tau-a
    np.testing.assert_allclose(masked_kendall_tau(jnp.asarray(s), jnp.asarray(y), jnp.asarray(mask)), want, rtol=1e-5)


def test_cv_select_picks_the_informative_columns_from_training_rows_only(key):
    # SYNTHETIC: y depends on column 0 only; candidate 1 sees only the noise column 1
    x = jax.random.normal(key, (200, 2))
    y = 2.0 + x[:, 0] + 0.1 * jax.random.normal(jax.random.fold_in(key, 1), (200,))
    model = CVSelect((Columns(Ridge(lam=1.0), (True, False)), Columns(Ridge(lam=1.0), (False, True))), folds=3)
    params = jax.jit(model.fit)(key, x, y, 60)
    assert int(params["best"]) == 0 and params["cv_tau"][0] > 0.8 > params["cv_tau"][1]
    np.testing.assert_allclose(model.score(params, x), Columns(Ridge(lam=1.0), (True, False)).score(
        params["members"][0], x), rtol=1e-6)
    # the rows past n never influence the choice or the fit
    y_bad = y.at[60:].set(-x[60:, 1] * 100)
    p_bad = jax.jit(model.fit)(key, x, y_bad, 60)
    np.testing.assert_allclose(p_bad["cv_tau"], params["cv_tau"], rtol=1e-6)
    # vmappable over n like every predictor
    best = jax.jit(jax.vmap(model.fit, in_axes=(None, None, None, 0)))(key, x, y, jnp.asarray([30, 90]))["best"]
    assert best.tolist() == [0, 0]


def test_cv_select_final_models_are_fitted_for_the_choice(key):
    x = jax.random.normal(key, (90, 2))
    y = 2.0 + x[:, 1]  # SYNTHETIC: column 1 informative
    cands = (Columns(Ridge(lam=1.0), (True, False)), Columns(Ridge(lam=1.0), (False, True)))
    final = (Columns(Ridge(lam=1.0), (True, False)), Columns(Ridge(lam=100.0), (False, True)))
    params = CVSelect(cands, folds=3, final=final).fit(key, x, y, 90)
    assert int(params["best"]) == 1
    np.testing.assert_allclose(CVSelect(cands, final=final).score(params, x), final[1].score(params["members"][1], x),
                               rtol=1e-6)


def test_blend_standardises_on_training_rows(key):
    x = jax.random.normal(key, (80, 2))
    y = 2.0 + x[:, 0] + 0.5 * x[:, 1]  # SYNTHETIC
    a, b = Columns(Ridge(lam=1.0), (True, False)), Columns(Ridge(lam=1.0), (False, True))
    model = Blend((a, b), (0.5, 0.5))
    params = model.fit(key, x, y, 60)
    sa, sb = a.score(params["members"][0]["params"], x), b.score(params["members"][1]["params"], x)
    z = lambda s: (s - s[:60].mean()) / s[:60].std()  # noqa: E731  training-row statistics
    np.testing.assert_allclose(model.score(params, x), 0.5 * z(sa) + 0.5 * z(sb), rtol=1e-4, atol=1e-5)
    # scoring a subset gives the same values (no batch-dependent standardisation)
    np.testing.assert_allclose(model.score(params, x[60:]), model.score(params, x)[60:], rtol=1e-5, atol=1e-6)
