"""Curve tables: DPL's filter, user folders, leave-one-task-out (metanas.benchmarks.curves)."""

import json

import numpy as np
import pytest

from metanas.benchmarks.curves import (CurveDataError, dpl_keep, leave_one_task_out, load_taskset, normalised_regret,
                                       regret_bounds)


def _write_tasks(d, n_tasks=3, n=12, L=6, seed=0, nan_row=None):
    rng = np.random.default_rng(seed)
    hps = [{"learning_rate": float(10 ** rng.uniform(-5, 0)), "beta1": float(rng.uniform()),
            "l2": float(10 ** rng.uniform(-6, -1))} for _ in range(n)]
    for t in range(n_tasks):
        recs = []
        for i in range(n):
            drop = 0.3 * rng.uniform() if i % 3 == 0 else 0.0  # most configs never learn, as in TaskSet
            curve = (0.7 + 0.01 * rng.normal(size=L) - drop * (1 - np.exp(-np.arange(L) / 2))).tolist()
            if nan_row is not None and i == nan_row:
                curve[3] = float("nan")
            recs.append({"hp": hps[i], "valid": {"loss": curve}, "test": {"loss": curve}})
        (d / f"task{t}.json").write_text(json.dumps(recs))
    return hps


def test_dpl_filter_drops_nan_and_diverging_curves():
    v = np.full((20, 5), 0.5) + np.linspace(0, 0.1, 20)[:, None]
    v[3, 2] = np.nan  # diverged
    v[7] = 5.0  # diverging: above every checkpoint's 95 % quantile
    keep = dpl_keep(v)
    assert not keep[3] and not keep[7] and keep.sum() == 18


def test_user_folder_reads_like_taskset(tmp_path):
    _write_tasks(tmp_path, nan_row=2)
    tab = load_taskset(tmp_path)
    assert tab.valid.shape == (3, 12, 6) and tab.x.shape == (12, 3)
    assert tab.x.min() >= 0 and tab.x.max() <= 1
    assert not tab.keep[:, 2].any()  # the NaN curve is filtered in every task
    assert tab.keep.sum(1).min() > 0
    best, worst = regret_bounds(tab.valid[0], tab.keep[0])
    assert normalised_regret(best, best, worst) == 0 and normalised_regret(np.inf, best, worst) == 1


def test_user_folder_with_different_configs_is_refused(tmp_path):
    _write_tasks(tmp_path)
    recs = json.loads((tmp_path / "task1.json").read_text())
    recs[0]["hp"]["beta1"] = 0.123456
    (tmp_path / "task1.json").write_text(json.dumps(recs))
    with pytest.raises(CurveDataError, match="configs differ"):
        load_taskset(tmp_path)
    with pytest.raises(CurveDataError, match="no curve files"):
        load_taskset(tmp_path / "nothing")


def test_leave_one_task_out_never_returns_the_target_among_sources(tmp_path):
    _write_tasks(tmp_path, n_tasks=4)
    tab = load_taskset(tmp_path)
    src, tgt = leave_one_task_out(tab, "task2")
    assert tgt.tasks == ("task2",) and "task2" not in src.tasks and len(src.tasks) == 3
    np.testing.assert_array_equal(tgt.valid[0], tab.valid[2])
    with pytest.raises(CurveDataError, match="leave-one-task-out"):
        leave_one_task_out(tab, "task2", sources=["task0", "task2"])
