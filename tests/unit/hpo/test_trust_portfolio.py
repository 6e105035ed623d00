"""The trust-weighted warm start's members and study driver (metanas.hpo.trust_portfolio) on SYNTHETIC tables."""

import importlib.util
import json

import numpy as np
import pytest

from metanas.hpo.portfolio import WARM_START_CANDIDATES, WarmStartCandidate, rank_matrix
from metanas.hpo.trust_portfolio import PRIOR_NAMES, SETTINGS, build_members, trust_leave_tasks_out


def test_members_are_the_priors_and_one_per_training_task():
    rng = np.random.default_rng(0)
    feats, regret = np.array([[0.0], [0.1], [5.0], [5.1], [4.9]]), rng.random((5, 7))
    m, names = build_members(feats, regret, np.array([0.05]), k=2,
                             kernel=(WarmStartCandidate(0.5), WarmStartCandidate(0.5, None, "rank")))
    assert names[:4] == list(PRIOR_NAMES) and len(names) == 4 + 5 and m.rank.shape == (9, 7)
    np.testing.assert_allclose(m.mix[0], 0.2)  # greedy: uniform over the training tasks
    np.testing.assert_allclose(m.mix[1], [0.5, 0.5, 0, 0, 0])  # k-NN: the 2 nearest by meta-features
    assert m.mix[2, :2].sum() > 0.99  # kernel: the near tasks
    np.testing.assert_allclose(m.mix[4:], np.eye(5))
    np.testing.assert_allclose(m.rank[4:], -rank_matrix(regret), atol=1e-6)  # each task's own order
    np.testing.assert_allclose(m.rank[0], -rank_matrix(regret).mean(0), atol=1e-6)
    assert not m.complementary[3] and m.complementary[[0, 1, 2, 4]].all()  # mean-rank: its own static order


@pytest.mark.slow
def test_leave_tasks_out_with_nested_choice_and_report(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    err = rng.random((10, 12))
    regret = (err - err.min(1, keepdims=True)) / np.ptp(err, 1, keepdims=True)
    out = trust_leave_tasks_out(rng.normal(size=(10, 13)), regret, -err, rng.normal(size=(12, 2)), folds=2,
                                shuffles=1, k=(2, 100), budget=3, random_draws=4, settings=SETTINGS[:2],
                                cache_dir=tmp_path / "folds")
    assert len(out["rows"]) == 10 and len(out["folds_info"]) == 2
    for row in out["rows"]:
        np.testing.assert_allclose(row["setting_curves"][0], row["curves"]["greedy"])  # prior alone = greedy
        assert row["curves"]["trust"] == row["setting_curves"][out["folds_info"][row["fold"]]["chosen"]]
        assert row["setting_curves"][1][:2] == row["curves"]["greedy"][:2]  # first two picks: the prior's
    again = trust_leave_tasks_out(rng.normal(size=(10, 13)), regret, -err, rng.normal(size=(12, 2)), folds=2,
                                  shuffles=1, budget=3, settings=SETTINGS[:2], cache_dir=tmp_path / "folds")
    assert again["rows"] == json.loads(json.dumps(out["rows"]))  # read back from the fold cache
    # the study's README is generated from such a result
    spec = importlib.util.spec_from_file_location("study", "experiments/transfer_tabrepo_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    r = json.loads(json.dumps(dict(out, n_tasks=10, n_configs=12, command="test", wall_s=1.0, machine="test")))
    text = study.report(r)
    assert "| regret @1 (mean over tasks)" in text and "wins / ties / losses" in text
    assert "greedy portfolio" in text and text.count("NOT met") + text.count("MET") >= 5


def test_synetune_adapter_proposes_table_configs():
    """Syne Tune's ZeroShotTransfer through the study's tabular adapter (skipped where syne-tune is not installed):
    distinct table indices, the first the config of best mean rank over the training tasks."""
    pytest.importorskip("syne_tune")
    spec = importlib.util.spec_from_file_location("study", "experiments/transfer_tabrepo_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    rng = np.random.default_rng(3)
    err = rng.random((6, 9))
    hps = [{"lr": float(i), "leaves": int(i % 3), "trees": bool(i % 2)} for i in range(9)]
    order = study.synetune_orders(err, hps, np.arange(1, 6), 4)
    assert len(set(order)) == 4 and order[0] == int(np.argmin(rank_matrix(err[1:6]).mean(0)))
