"""Constrained search: the answer meets the budget on the TRUE table; hypervolume."""

import numpy as np

from metanas.search.latency_search import feasible_curve, hypervolume, pareto_front, verify


def test_verify_returns_only_cells_that_meet_the_budget_on_the_true_table():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = 50
        lat = rng.random(n) * 10
        lat[rng.random(n) < 0.2] = np.nan  # not measured: never feasible
        codes = rng.choice(n, 12, replace=False)
        values = rng.random(12)
        design = rng.choice(n, 3, replace=False)
        budget = float(rng.random() * 10)
        ans, used, how = verify(codes, values, design, lat, budget, int(rng.integers(0, 5)))
        if ans >= 0:
            assert np.isfinite(lat[ans]) and lat[ans] <= budget
        else:
            assert how == "infeasible"
            assert not any(np.isfinite(lat[c]) and lat[c] <= budget for c in design)
    # the best-by-validation feasible queried cell wins when measurements suffice
    lat = np.array([1.0, 9.0, 2.0, 3.0])
    ans, used, how = verify(np.array([1, 2, 3]), np.array([0.9, 0.8, 0.7]), np.array([0]), lat, 2.5, 5)
    assert (ans, used, how) == (2, 2, "verified")
    ans, used, how = verify(np.array([1, 2, 3]), np.array([0.9, 0.8, 0.7]), np.array([0]), lat, 2.5, 1)
    assert (ans, how) == (0, "fallback")  # out of measurements: a measured design cell that meets the budget


def test_feasible_curve_and_hypervolume():
    feasible = np.array([True, False, True, True])
    report = np.array([90.0, 99.0, 91.0, 92.0])
    c = feasible_curve(np.array([[1, 0, 2, 3]]), np.array([[0.99, 0.5, 0.6, 0.4]]), feasible, report, 10.0)
    np.testing.assert_allclose(c, [[10.0, 90.0, 91.0, 91.0]])  # the infeasible best-by-validation cell never counts
    acc, lat = np.array([0.5, 1.0, 0.2]), np.array([1.0, np.e, np.e])
    # log latency scaled on [0, 1]: points (lat 0, acc .5), (lat 1, acc 1) -> area 0.5
    assert abs(hypervolume(acc, lat, (0.0, 1.0), (0.0, 1.0)) - 0.5) < 1e-12
    np.testing.assert_allclose(pareto_front(acc, lat), [[1.0, 0.5], [np.e, 1.0]])


def test_constrained_rea_queries_only_feasible_cells_and_counts_every_measurement():
    import jax
    import jax.numpy as jnp

    from metanas.search.latency_search import constrained_regularized_evolution
    from metanas.search_spaces.nb201 import NB201Space

    space = NB201Space()
    n = 15625
    rng = np.random.default_rng(0)
    val = jnp.asarray(rng.random(n), jnp.float32)
    lat = rng.random(n).astype(np.float32)
    lat[rng.random(n) < 0.1] = np.nan  # not measured: never feasible
    run = jax.jit(lambda k, b: constrained_regularized_evolution(k, val, jnp.asarray(lat), b, space=space, budget=30,
                                                                 population=8, sample_size=3))
    mt = run(jax.random.PRNGKey(0), 0.3)
    codes = np.asarray(mt.trace.codes)
    assert len(set(codes.tolist())) == 30 and np.all(lat[codes] <= 0.3)  # only feasible cells queried, never twice
    assert int(mt.measurements) > 30  # ~70 % of candidates miss the budget: their measurements are counted
    mt = run(jax.random.PRNGKey(0), 2.0)  # every measured cell feasible: failed cells (NaN) are the only rejections
    assert int(mt.measurements) >= 30 and np.all(np.isfinite(lat[np.asarray(mt.trace.codes)]))
