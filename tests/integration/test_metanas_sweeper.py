"""hydra/sweeper=metanas on a plain Hydra app (no metanas in it), as a user runs it: discovered from the installed
metanas in a directory outside the checkout, trials in batches through the launcher, a killed sweep resumed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

APP = '''
import json, os, time
import hydra

@hydra.main(version_base=None, config_path=None)
def main(cfg) -> float:
    with open(os.environ["CALLS"], "a") as f:
        f.write(json.dumps({"x": cfg.x, "c": cfg.c}) + "\\n")
    time.sleep(float(os.environ.get("SLEEP", "0")))
    return (cfg.x - 0.3) ** 2 + (0.5 if cfg.c == "b" else 0.0)

if __name__ == "__main__":
    main()
'''


def _sweep(tmp_path, *args, sleep=0.0, popen=False):
    (tmp_path / "app.py").write_text(APP)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # metanas as installed, not from the checkout
    env.update(CALLS=str(tmp_path / "calls.jsonl"), SLEEP=str(sleep))
    cmd = [sys.executable, "app.py", "-m", "hydra/sweeper=metanas", "+x=0.5", "+c=a", "x=interval(0, 1)",
           "c=choice(a, b)", f"hydra.sweep.dir={tmp_path / 'sweep'}", *args]
    if popen:
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def _rows(tmp_path):
    return [json.loads(line) for line in (tmp_path / "sweep" / "metanas_trials.jsonl").read_text().splitlines()]


def test_plugin_is_discovered_and_sweeps_a_plain_hydra_app_in_batches(tmp_path):
    p = _sweep(tmp_path, "hydra.sweeper.sampler=random", "hydra.sweeper.n_trials=5", "hydra.sweeper.n_jobs=2")
    assert p.returncode == 0, p.stderr[-3000:]
    ok = [r for r in _rows(tmp_path) if r["status"] == "ok"]
    assert sorted(r["job"] for r in ok) == [0, 1, 2, 3, 4]
    assert p.stdout.count("Launching 2 jobs") == 2 and p.stdout.count("Launching 1 jobs") == 1  # batches of n_jobs
    for r in ok:
        assert 0 <= r["params"]["x"] <= 1 and r["params"]["c"] in ("a", "b")
        assert r["value"] == pytest.approx((r["params"]["x"] - 0.3) ** 2 + (0.5 if r["params"]["c"] == "b" else 0))
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["best_value"] == min(r["value"] for r in ok) and best["n_trials"] == 5


def test_bad_sweeper_settings_are_one_line(tmp_path):
    p = _sweep(tmp_path, "hydra.sweeper.direction=[minimize,maximize]")
    assert p.returncode != 0 and "the metanas sweeper optimises one objective" in p.stderr
    p = _sweep(tmp_path, "hydra.sweeper.sampler=cmaes")
    assert p.returncode != 0 and "hydra.sweeper.sampler='cmaes'; expected one of metalearner, tpe, gp, random" in p.stderr


def test_a_killed_sweep_resumes_without_repeating_finished_trials(tmp_path):
    args = ("hydra.sweeper.sampler=tpe", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=1")
    proc = _sweep(tmp_path, *args, sleep=1.0, popen=True)
    store = tmp_path / "sweep" / "metanas_trials.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if store.exists() and sum(r["status"] == "ok" for r in _rows(tmp_path)) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {r["job"]: r for r in _rows(tmp_path)}
    finished = {j for j, r in first.items() if r["status"] == "ok"}
    assert 2 <= len(finished) < 6, first
    calls_before = (tmp_path / "calls.jsonl").read_text().splitlines()
    p = _sweep(tmp_path, *args)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming" in p.stdout
    rows = _rows(tmp_path)
    last = {}
    for r in rows:
        last[r["job"]] = r
    ok = [r for r in last.values() if r["status"] == "ok"]
    assert len(ok) == 6 and sorted(last) == list(range(len(last)))
    for j in finished:  # finished trials: never launched again, their rows untouched
        assert [r for r in rows if r["job"] == j][-1] == first[j]
        assert sum(r["job"] == j and r["status"] == "running" for r in rows) == 1
    calls_after = (tmp_path / "calls.jsonl").read_text().splitlines()
    assert len(calls_after) - len(calls_before) == 6 - len(finished)


@pytest.mark.slow  # compiles the meta-learner's programs (~1-2 min on 2 shared cores)
def test_metalearner_sweep_with_the_first_sweeps_history(tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    p = _sweep(first, "hydra.sweeper.sampler=random", "hydra.sweeper.n_trials=12")
    assert p.returncode == 0, p.stderr[-3000:]
    p = _sweep(tmp_path, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_candidates=512", "hydra.sweeper.min_points=3",
               f"hydra.sweeper.history=[{first / 'sweep'}]")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "history {'" in p.stdout and "trust weights" in p.stdout
    ok = [r for r in _rows(tmp_path) if r["status"] == "ok"]
    assert len(ok) == 4


def test_space_from_the_override_grammar_and_history_from_sweeps_and_run_stores(tmp_path):
    from hydra_plugins.metanas_sweeper.metanas_sweeper import SweeperConfigError, history_records, parse_space

    space, fixed = parse_space(["lr=tag(log, interval(1e-4, 1e-1))", "n=range(1, 5)", "act=choice(relu, gelu)",
                                "w=interval(0, 10)", "depth=3"])
    p = {q.name: q for q in space.params}
    assert (p["lr"].type, p["lr"].log, p["lr"].low) == ("float", True, 1e-4)
    assert (p["n"].type, p["n"].low, p["n"].high) == ("int", 1, 4)  # range's stop is exclusive
    assert p["act"].choices == ("relu", "gelu") and p["w"].type == "float" and fixed == ["depth=3"]  # interval: real
    with pytest.raises(SweeperConfigError, match="found no search space"):
        parse_space(["depth=3"])
    sweep = tmp_path / "multirun" / "2026-01-01" / "a"
    sweep.mkdir(parents=True)
    (sweep / "metanas_trials.jsonl").write_text(
        json.dumps({"job": 0, "params": {"lr": 0.01, "n": 2, "act": "relu", "w": 3}, "value": None, "status": "running"})
        + "\n" + json.dumps({"job": 0, "params": {"lr": 0.01, "n": 2, "act": "relu", "w": 3}, "value": 0.5,
                             "status": "ok"}) + "\n")
    store = tmp_path / "meta_dataset.jsonl"
    store.write_text(json.dumps({"experiment": "e", "dataset": "d", "config": {"lr": 0.02, "n": 3, "act": "gelu", "w": 1,
                                                                             "other": 1}, "metrics": {"val": 0.7}})
                     + "\n" + json.dumps({"experiment": "e", "dataset": "d", "config": {"lr": 0.02},
                                          "metrics": {"val": 0.1}}) + "\n")
    h = history_records([str(tmp_path / "multirun"), str(store)], space, "val")
    assert list(h.values())[0][0].value == 0.5 and len(h) == 2  # the last row of a job wins
    (rec,) = h[f"{store}:e|d"]
    assert rec.params == {"lr": 0.02, "n": 3, "act": "gelu", "w": 1} and rec.value == 0.7
    with pytest.raises(SweeperConfigError, match="history_metric"):
        history_records([str(store)], space, None)
    with pytest.raises(SweeperConfigError, match="does not exist"):
        history_records([str(tmp_path / "nope")], space, "val")


def test_gp_without_torch_is_refused_before_any_trial(monkeypatch):
    import importlib.util

    from hydra_plugins.metanas_sweeper.metanas_sweeper import SweeperConfigError, make_proposer, parse_space

    space, _ = parse_space(["lr=tag(log, interval(1e-4, 1e-1))"])
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find(name, *a))
    with pytest.raises(SweeperConfigError, match="needs torch"):
        make_proposer("gp", space, maximize=True)
    make_proposer("tpe", space, maximize=True)  # the others need no torch


@pytest.mark.slow  # real training + the meta-learner's programs (~2-3 min on 2 shared cores)
def test_live_sweeper_study_at_tiny_size_writes_per_run_files_and_resumes(tmp_path, data_dir):
    """experiments/sweeper_live_study.py --tiny: the live Omniglot cell task through make_proposer; warm reads the
    task-A sweep as history; a rerun reads the finished runs back instead of training again."""
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "experiments/sweeper_live_study.py"
    cmd = [sys.executable, str(script), "--tiny", "--out", str(tmp_path), "--data-dir", str(data_dir),
           "--methods", "metanas_warm,tpe,random"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["summary"]["median"]) == {"metanas_warm", "tpe", "random"} and res["complete"]
    for log in res["trials"].values():
        assert len(log) == 4 and all(0 <= t["val_acc"] <= 1 and 0 <= t["test_acc"] <= 1 for t in log)
    assert "metanas_warm vs tpe: trials to random's final best" in (tmp_path / "README.md").read_text()
    runs = sorted((tmp_path / "runs").glob("*.json"))
    assert len(runs) == 4  # the task-A history sweep + 3 methods
    mtimes = {r: r.stat().st_mtime for r in runs}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert {r: r.stat().st_mtime for r in runs} == mtimes
    assert json.loads((tmp_path / "results.json").read_text())["trials"] == res["trials"]
    bad = subprocess.run([sys.executable, str(script), "--methods", "bogus"], capture_output=True, text=True)
    assert bad.returncode != 0 and "--methods from" in bad.stderr
