"""experiment=hpo_pruned under debug=fast: live trials trained in segments, train.pruner=metalearner stops some,
a pruned trial is recorded with status pruned and its partial curve (read back from its metrics.jsonl), and a
resumed search neither retrains nor loses finished or pruned trials. Real Omniglot, tiny."""

import json
from pathlib import Path

import pytest

from conftest import REPO, last_summary, run_fast, run_metanas
from metanas.run_store import read_jsonl


def test_hpo_pruned_fast_records_pruned_trials_and_resumes_without_rerunning_them(tmp_path):
    run_fast(tmp_path, "experiment=hpo_pruned", "train.pruning.threshold=0.5")
    s, run_dir = last_summary(tmp_path, "hpo_pruned")
    m = s["metrics"]
    recs = read_jsonl(run_dir / "trials.jsonl")
    assert m["n_trials"] == 5 == len(recs) and m["n_failed"] == 0
    pruned = [r for r in recs if r["status"] == "pruned"]
    assert pruned and m["n_pruned"] == len(pruned)
    for r in recs:  # every trial's curve is its own metrics.jsonl (seed mean of val_acc per checkpoint of 2 steps)
        rows = [x for x in read_jsonl(Path(r["run_dir"]) / "metrics.jsonl") if x["phase"] == "curve"]
        assert r["curve"] == [x["val_acc"] for x in rows] and [x["step"] for x in rows] == [2, 4, 6][:len(rows)]
        if r["status"] == "pruned":  # partial curve, stopped after >= min_checkpoints (1), no final metric
            assert 1 <= len(r["curve"]) < 3 and r["steps_trained"] == 2 * len(r["curve"])
            assert float(r["loss"]) == float("inf")  # never an incumbent (stored as "inf": JSON has no inf)
            assert "val_acc" not in json.loads((Path(r["run_dir"]) / "summary.json").read_text())["metrics"]
        else:
            assert len(r["curve"]) == 3 and r["loss"] == -r["curve"][-1] and r["steps_trained"] == 6
    assert m["steps_trained"] == sum(r["steps_trained"] for r in recs) < 30
    assert m["best_loss"] == min(float(r["loss"]) for r in recs)

    # an interrupted search: the last two trials and the summary gone; the kept (finished and pruned) ones stay
    keep = recs[:3]
    assert any(r["status"] == "pruned" for r in keep)
    (run_dir / "trials.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
    (run_dir / "summary.json").unlink()
    stamps = {r["run_dir"]: (Path(r["run_dir"]) / "summary.json").stat().st_mtime_ns for r in keep}
    p = run_metanas(f"resume={run_dir}", cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    again = read_jsonl(run_dir / "trials.jsonl")
    assert again[:3] == keep and len(again) == 5  # kept records as they were, the two lost ones trained again
    assert {d: (Path(d) / "summary.json").stat().st_mtime_ns for d in stamps} == stamps  # nothing retrained
    s2 = json.loads((run_dir / "summary.json").read_text())
    assert s2["status"] == "ok" and s2["metrics"]["n_trials"] == 5


@pytest.mark.slow
def test_pruning_study_script_at_tiny_size_and_resume(tmp_path, data_dir):
    """experiments/hpo_pruned_study.py --tiny: every method on the same configurations, README from the JSON, and a
    second call with one more method adds it without rerunning the others."""
    import subprocess
    import sys

    def study(methods):
        p = subprocess.run([sys.executable, str(REPO / "experiments/hpo_pruned_study.py"), "--tiny", "--out",
                            str(tmp_path), "--data-dir", str(data_dir), "--methods", methods],
                           capture_output=True, text=True, cwd=REPO, timeout=900)
        assert p.returncode == 0, p.stderr[-2000:]
        return json.loads((tmp_path / "results.json").read_text())

    res = study("none,metalearner,median")
    configs = {m: [r["config"] for r in res["runs"][f"{m}/0"]] for m in ("none", "metalearner", "median")}
    assert configs["none"] == configs["metalearner"] == configs["median"]  # same configurations for every method
    first = res["runs"]["none/0"]
    res = study("none,metalearner,median,hyperband")
    assert res["runs"]["none/0"] == first and "hyperband/0" in res["runs"]
    readme = (tmp_path / "README.md").read_text()
    assert "| hyperband |" in readme and "Paired against no pruning" in readme
