"""experiments/hpo_live_omniglot.py reports a search that selected on val_acc (hand-made run store, SYNTHETIC
accuracies where validation and test disagree)."""

import importlib.util
import json

import pytest
import yaml

from conftest import REPO


def _script():
    spec = importlib.util.spec_from_file_location("hpo_live_omniglot", REPO / "experiments" / "hpo_live_omniglot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# (rung, config id, steps, val_acc, test_acc): config 1 is best by validation, config 2 best by test
TRIALS = [(0, 0, 1, 0.40, 0.45), (0, 1, 1, 0.55, 0.50), (0, 2, 1, 0.50, 0.60),
          (1, 1, 3, 0.62, 0.58), (1, 2, 3, 0.60, 0.71)]
CONFIGS = [(1e-3, 0.1), (2e-3, 0.2), (3e-3, 0.3)]


def _fake_run(root, metric="val_acc"):
    run = root / "search"
    run.mkdir()
    trials = []
    for i, (rung, c, steps, val, test) in enumerate(TRIALS):
        tdir = root / f"trial{i}"
        tdir.mkdir()
        lr, inner = CONFIGS[c]
        (tdir / "config.yaml").write_text(yaml.safe_dump({"train": {"steps": steps},
                                                          "optimizer": {"learning_rate": lr},
                                                          "meta": {"inner_lr": inner}}))
        m = {"val_acc": val, "val_acc_ci95": 0.02, "val_acc_pre_adapt": 0.2, "n_val_tasks": 50.0,
             "test_acc": test, "test_acc_ci95": 0.03, "n_test_tasks": 50.0, "train_time_s": 5.0}
        (tdir / "summary.json").write_text(json.dumps({"metrics": m, "wall_time_s": 9.0}))
        trials.append({"index": i, "rung": rung, "fidelity": steps, "run_dir": str(tdir),
                       "config": {"optimizer.learning_rate": lr, "meta.inner_lr": inner}, "loss": -val})
    (run / "trials.json").write_text(json.dumps(trials))
    (run / "summary.json").write_text(json.dumps({"status": "ok", "wall_time_s": 50.0, "git_commit": "abc"}))
    cfg = {"meta_dataset": None, "train": {
        "objective": {"experiment": "fomaml_omniglot", "metric": metric, "overrides": ["train.channels=16"],
                      "fidelity_key": "train.steps"},
        "method": {"n_configs": 3, "eta": 2, "min_fidelity": 1, "max_fidelity": 3},
        "space": [{"name": "optimizer.learning_rate"}, {"name": "meta.inner_lr"}]}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run


def test_report_selects_on_validation_and_shows_the_incumbents_test_accuracy_once(tmp_path):
    mod = _script()
    run = _fake_run(tmp_path)
    rows = mod.trial_rows(run)
    assert mod.incumbent(rows)["index"] == 3  # best val_acc at the full fidelity, not trial 4 (best test_acc)
    assert all("best by validation" in line and "NOT" not in line for line in mod.promotion_checks(rows))
    mod.main(["--run-dir", str(run), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "README.md").read_text()
    assert "**58.0 +- 3.0%**" in text and "trial 3" in text  # the incumbent's test accuracy, reported once
    for other in ("71.0", "45.0", "60.0 +- 3.0", "50.0 +- 3.0"):  # no other trial's test accuracy
        assert other not in text
    assert "| 62.0 +- 2.0 |" in text and "val acc" in text  # the table shows validation accuracies


def test_report_refuses_a_search_selected_on_test_accuracy(tmp_path):
    run = _fake_run(tmp_path, metric="test_acc")
    with pytest.raises(SystemExit, match="objective is 'test_acc'.*val_acc"):
        _script().main(["--run-dir", str(run), "--out", str(tmp_path / "out")])
