"""Curve meta-learner and DPL power law (metanas.predictors.curves)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metanas.predictors.curves import CurveModel, PowerLaw, Rows, data_scale, fit_power_law


def test_power_law_fit_recovers_a_b_c_on_a_synthetic_curve():
    L = 51  # SYNTHETIC curve y = a + b t^-c on DPL's budget grid t = (l + 1) / L
    t = (jnp.arange(L) + 1.0) / L
    a, b, c = 0.3, 0.05, 0.8
    y = a + b * t ** (-c)
    fit = jax.jit(fit_power_law)
    np.testing.assert_allclose(np.asarray(fit(t, y)), [a, b, c], rtol=1e-3)
    y_nan = y.at[10].set(jnp.nan)  # a NaN point is masked, not a crash
    np.testing.assert_allclose(np.asarray(fit(t, y_nan)), [a, b, c], rtol=1e-3)
    half = jnp.arange(L) < 20  # the first 20 points of a partial curve determine the rest
    np.testing.assert_allclose(np.asarray(jax.jit(fit_power_law)(t, y, half)), [a, b, c], rtol=1e-2)


@pytest.mark.slow
def test_power_law_ensemble_recovers_the_curve_of_one_config():
    L = 51  # SYNTHETIC: one config; the ensemble's (a, b, c) must reproduce its curve
    t = (jnp.arange(L) + 1.0) / L
    y = (0.3 + 0.05 * t ** (-0.8))[None, :]
    rows = Rows(y, jnp.array([L]), jnp.array([0]))
    x = jnp.full((1, 3), 0.5)
    m = PowerLaw(hidden=8, ensemble=2, lr=3e-3)

    @jax.jit
    def fit(k):
        mu, sd = data_scale(rows.y, rows.prog)
        p = m.train(k, m.init(k, 3, mu, sd), x, rows, 1500)
        pred = m.predict(p, x.repeat(L, 0), y.repeat(L, 0), jnp.zeros(L, jnp.int32), jnp.arange(L)).mean(0)
        return pred, jax.vmap(lambda pp: PowerLaw.abc(pp, x))(p)

    pred, (fa, fb, fc) = fit(jax.random.key(1))
    np.testing.assert_allclose(pred, y[0], rtol=0.02)
    np.testing.assert_allclose([np.mean(fa), np.mean(fb), np.mean(fc)], [0.3, 0.05, 0.8], rtol=0.25)


def test_nan_curves_never_crash_a_fit():
    rng = np.random.default_rng(0)
    y = rng.uniform(0.3, 0.7, (8, 10)).astype(np.float32)
    y[2, 4:] = np.nan  # a diverged run
    y[5, :] = np.nan
    rows = Rows(jnp.asarray(y), jnp.array([10, 10, 10, 3, 0, 10, 1, 10]), jnp.arange(8))
    x = jnp.asarray(rng.uniform(size=(8, 4)), jnp.float32)
    for m in (CurveModel(hidden=8, ensemble=2), PowerLaw(hidden=8, ensemble=2)):
        @jax.jit
        def fit(rows, m=m):
            mu, sd = data_scale(rows.y, rows.prog)
            p = m.train(jax.random.key(0), m.init(jax.random.key(1), 4, mu, sd), x, rows, 20)
            return p, m.final(p, x, rows.y, rows.prog)

        p, (mean, std) = fit(rows)
        assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree_util.tree_leaves(p))
        assert np.isfinite(np.asarray(mean)).all() and np.isfinite(np.asarray(std)).all()


def test_curve_model_reads_only_the_observed_prefix():
    rng = np.random.default_rng(1)
    y = jnp.asarray(rng.uniform(0.3, 0.7, (5, 12)), jnp.float32)
    m = CurveModel(hidden=8, ensemble=2)
    p = m.init(jax.random.key(0), 3, 0.5, 0.1)
    x = jnp.asarray(rng.uniform(size=(5, 3)), jnp.float32)
    n = jnp.array([0, 1, 4, 7, 12])
    poisoned = jnp.where(jnp.arange(12)[None, :] >= n[:, None], 1e6, y)  # entries past the prefix changed
    final = jax.jit(m.final)
    np.testing.assert_array_equal(np.asarray(final(p, x, y, n)[0]), np.asarray(final(p, x, poisoned, n)[0]))
    pb = jax.jit(m.prob_better)(p, x[:2], y[:2], n[:2], x[2:4], y[2:4], n[2:4])
    assert ((pb >= 0) & (pb <= 1)).all()
