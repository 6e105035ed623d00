"""Library baselines on a curve table (metanas.search.curve_baselines); SYNTHETIC curves. Needs the curves extra."""

import numpy as np
import pytest

from metanas.search.curve_baselines import curve_trace, nearest_kept, run_library


def _table(n=30, L=9, seed=0):
    rng = np.random.default_rng(seed)
    drop = rng.uniform(0, 0.4, n)
    y = 0.7 - drop[:, None] * (1 - np.exp(-np.arange(L)[None, :] / 3))
    keep = np.ones(n, bool)
    keep[4] = False
    return rng.uniform(size=(n, 3)).astype(np.float32), y, np.ones((n, L)), keep


def test_nearest_kept_and_trace():
    x, y, cost, keep = _table()
    near = nearest_kept(x, keep)
    assert near(x[7]) == 7 and near(x[4]) != 4  # an unkept config maps to its nearest kept neighbour
    s, inc, arg = curve_trace([1, 2, 3], [0.5, np.nan, 0.4], [2, 2, 5])
    assert inc.tolist() == [0.5, 0.5, 0.4] and arg.tolist() == [2, 2, 5]


@pytest.mark.parametrize("name", ["optuna_median", "optuna_hyperband"])
def test_optuna_pruners_spend_the_budget(name):
    optuna = pytest.importorskip("optuna")
    if int(optuna.__version__.split(".")[0]) < 3:
        pytest.skip("needs Optuna >= 3 (the curves extra)")
    x, y, cost, keep = _table()
    r = run_library(name, 0, x, y, cost, keep, 40.0)
    assert r["spent"][-1] == 40.0 and np.all(np.diff(r["inc"]) <= 0)
    assert r["inc"][-1] == y[r["inc_cfg"][-1]].min() or r["inc"][-1] in y[r["inc_cfg"][-1]]


@pytest.mark.parametrize("name", ["synetune_random", "synetune_asha", "synetune_hyperband", "synetune_bohb"])
def test_synetune_schedulers_spend_the_budget(name):
    pytest.importorskip("syne_tune", minversion="0.16")  # the curves extra's API (0.14.2 is DyHPO's own venv)
    x, y, cost, keep = _table()
    r = run_library(name, 0, x, y, cost, keep, 40.0)
    assert 39.0 <= r["spent"][-1] <= 40.0 and np.all(np.diff(r["inc"]) <= 0)
    assert keep[np.unique(r["inc_cfg"][r["inc_cfg"] >= 0])].all()  # only kept configs are ever answered


def test_synetune_dyhpo_spends_the_budget():
    """Syne Tune 0.14.2's DyHPO (no DyHPO in 0.16: skipped there) through the same adapter, SYNTHETIC curves."""
    from metanas.search.curve_baselines import has_dyhpo

    if not has_dyhpo():
        pytest.skip("needs Syne Tune 0.14.2 with DyHPO (pip install 'syne-tune[gpsearchers]==0.14.2', own venv)")
    pytest.importorskip("autograd")  # DyHPO's GP surrogate (the gpsearchers extra)
    x, y, cost, keep = _table()
    r = run_library("synetune_dyhpo", 0, x, y, cost, keep, 40.0)
    assert 39.0 <= r["spent"][-1] <= 40.0 and np.all(np.diff(r["spent"]) > 0) and np.all(np.diff(r["inc"]) <= 0)
    assert keep[np.unique(r["inc_cfg"][r["inc_cfg"] >= 0])].all()  # only kept configs are ever answered
    assert r["inc"][-1] in y[r["inc_cfg"][-1]]  # the incumbent is a value of its config's curve


def test_dyhpo_is_named_never_default():
    from metanas.runners.curves import DEFAULT_METHODS, DYHPO, METHODS, CurvesTrain

    assert DYHPO in METHODS and DYHPO not in DEFAULT_METHODS and CurvesTrain().methods == DEFAULT_METHODS
    CurvesTrain(methods=(DYHPO,))  # a valid method when named
