"""HPO experiments end to end through the CLI under debug=fast: run store, meta-dataset records, resume,
warm start from the run store, clear errors."""

import json
from pathlib import Path

import pytest

from conftest import REPO, last_summary as _summary, run_fast as _run, run_metanas
from metanas.run_store import read_jsonl


def test_hpo_random_fast_every_trial_is_a_run(tmp_path):
    _run(tmp_path, "experiment=hpo_random")
    s, run_dir = _summary(tmp_path, "hpo_random")
    assert s["metrics"]["n_trials"] == 3 and s["metrics"]["n_failed"] == 0
    trials = json.loads((run_dir / "trials.json").read_text())
    losses = []
    for t in trials:  # each trial is a complete run in the store whose metric is the trial's loss
        ts = json.loads((Path(t["run_dir"]) / "summary.json").read_text())
        assert ts["status"] == "ok" and ts["experiment"] == "toy_regression"
        assert ts["metrics"]["test_mse"] == pytest.approx(t["loss"])
        losses.append(t["loss"])
    assert s["metrics"]["best_loss"] == pytest.approx(min(losses))
    rec = [r for r in read_jsonl(tmp_path / "meta.jsonl") if r["experiment"] == "hpo_random"][-1]
    assert rec["hpo"]["best_config"] == json.loads((run_dir / "best_config.json").read_text())["config"]
    assert rec["metafeatures"]["NumberOfInstances"] == 512 and "Landmark1NN" in rec["metafeatures"]
    assert sum(r["experiment"] == "toy_regression" for r in read_jsonl(tmp_path / "meta.jsonl")) == 3

    # resume: the finished trials are replayed from trials.jsonl, nothing is trained again
    before = sorted(run_dir.glob("trials/*/*"))
    p = run_metanas(f"resume={run_dir}", cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    assert sorted(run_dir.glob("trials/*/*")) == before
    assert json.loads((run_dir / "summary.json").read_text())["metrics"]["best_loss"] == s["metrics"]["best_loss"]


def test_hpo_hyperband_fast_uses_the_fidelity_knob(tmp_path):
    _run(tmp_path, "experiment=hpo_hyperband", f"data_dir={tmp_path}/data")
    s, run_dir = _summary(tmp_path, "hpo_hyperband")
    trials = json.loads((run_dir / "trials.json").read_text())
    # eta=2, fidelities 2 -> 4: bracket s=1 runs 2 configs at 2 steps and promotes 1; bracket s=0 runs 2 at 4
    assert [(t["bracket"], t["fidelity"]) for t in trials] == [(1, 2.0), (1, 2.0), (1, 4.0), (0, 4.0), (0, 4.0)]
    for t in trials:  # the knob reached the trained run: train.steps == fidelity
        cfg = (Path(t["run_dir"]) / "config.yaml").read_text()
        assert f"steps: {int(t['fidelity'])}\n" in cfg
        assert f"data_dir: {tmp_path}/data\n" in cfg  # trials inherit the search's data_dir
    promoted = trials[2]["config"]
    assert promoted == min(trials[:2], key=lambda t: t["loss"])["config"]
    assert s["metrics"]["best_fidelity"] == 4.0


def test_hpo_warmstart_fast_and_warm_start_from_the_run_store(tmp_path):
    _run(tmp_path, "experiment=hpo_warmstart", "train.objective.task=146818")
    s, run_dir = _summary(tmp_path, "hpo_warmstart")
    m = s["metrics"]
    for strategy in ("random", "random+knn", "sh", "bo+meta"):
        assert 0.0 <= m[f"{strategy}_regret_at_8"] <= 1.0
    curves = json.loads((run_dir / "curves.json").read_text())
    assert all(b <= a + 1e-12 for a, b in zip(curves["random"], curves["random"][1:]))  # incumbent only improves
    first = read_jsonl(tmp_path / "meta.jsonl")[-1]
    assert first["metafeatures"]["NumberOfClasses"] == 2 and first["hpo"]["task"] == "146818"
    # a second task warm-starts from the first run's record in the meta-dataset
    _run(tmp_path, "experiment=hpo_warmstart", "train.objective.task=168757", "train.warm_start.source=run_store",
         "train.warm_start.k=1")
    second = read_jsonl(tmp_path / "meta.jsonl")[-1]
    assert second["hpo"]["warm_start_configs"] == [first["hpo"]["best_config"]]
    assert second["hpo"]["warm_start_source"].startswith("run store (1 past tasks)")


def test_live_search_warm_starts_from_an_earlier_search_in_the_run_store(tmp_path):
    _run(tmp_path, "experiment=hpo_random")
    first = read_jsonl(tmp_path / "meta.jsonl")[-1]["hpo"]
    _run(tmp_path, "experiment=hpo_random", "train.task_name=toy_b", "train.warm_start.k=1")
    s, run_dir = _summary(tmp_path, "hpo_random")
    trials = json.loads((run_dir / "trials.json").read_text())
    assert trials[0]["config"] == first["best_config"]  # the nearest past task's incumbent goes first
    keys = [json.dumps(t["config"], sort_keys=True) for t in trials]
    assert len(set(keys)) == len(keys)  # and is not drawn again by the fallback sampler
    assert read_jsonl(tmp_path / "meta.jsonl")[-1]["hpo"]["warm_start_configs"] == [first["best_config"]]


def test_hpo_bad_task_is_a_one_line_error(tmp_path):
    p = run_metanas("experiment=hpo_warmstart", "debug=fast", "train.objective.task=nope",
                    f"results_dir={tmp_path}/runs", f"meta_dataset={tmp_path}/meta.jsonl", cwd=REPO)
    assert p.returncode != 0
    line = [ln for ln in p.stderr.splitlines() if ln.startswith("metanas: error:")]
    assert line and "is not a TabRepo task id" in line[0]


def test_hpo_sh_omniglot_fast(tmp_path):
    _run(tmp_path, "experiment=hpo_sh_omniglot")
    s, run_dir = _summary(tmp_path, "hpo_sh_omniglot")
    trials = json.loads((run_dir / "trials.json").read_text())
    assert [t["fidelity"] for t in trials] == [1.0, 1.0, 2.0]
    assert all(-1.0 <= t["loss"] <= 0.0 for t in trials)  # loss = -accuracy
    rec = read_jsonl(tmp_path / "meta.jsonl")[-1]
    assert rec["metafeatures"]["NumberOfClasses"] == 50 and rec["metafeatures"]["NumberOfFeatures"] == 196


def test_the_objective_says_which_study_runs(monkeypatch):
    """The HPO runner asks the objective (``live``), not its class: live objectives run trials, recorded ones the
    TabRepo comparison, and an objective that does not say is one ConfigError line."""
    import metanas.runners.hpo as H
    from metanas.config import ConfigError
    from metanas.experiment import compose_config
    from metanas.runners.objectives import ExperimentObjective, TabRepoTask

    assert ExperimentObjective.live is True and TabRepoTask.live is False
    seen = []
    monkeypatch.setattr(H, "run_live", lambda cfg, t, ctx, method, objective: seen.append(("live", objective)) or {})
    monkeypatch.setattr(H, "run_tabrepo", lambda cfg, t, ctx, m, objective: seen.append(("recorded", objective)) or {})
    for name in ("hpo_random", "hpo_warmstart"):
        H.run(compose_config([f"experiment={name}"]), None)
    assert [(w, type(o)) for w, o in seen] == [("live", ExperimentObjective), ("recorded", TabRepoTask)]
    monkeypatch.delattr(TabRepoTask, "live")
    with pytest.raises(ConfigError, match="^train.objective: TabRepoTask has no boolean class attribute 'live'"):
        H.run(compose_config(["experiment=hpo_warmstart"]), None)
