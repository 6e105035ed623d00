"""experiments/predictor_quality_study.py on another NB201 target (real data; the cheap rows only)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import DATA_DIR, REPO


def test_quality_study_on_another_target(tmp_path, data_dir):
    pytest.importorskip("sklearn")
    out = tmp_path / "in16"
    cmd = [sys.executable, "experiments/predictor_quality_study.py", "--dataset", "ImageNet16-120", "--seeds", "2",
           "--ns", "20", "100", "--only", "ridge", "params", "rf", "--out", str(out)]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, METANAS_DATA_DIR=str(DATA_DIR)))
    assert p.returncode == 0, p.stderr[-2000:]
    q = json.loads((out / "quality.json").read_text())
    assert set(q) == {"ridge", "params", "rf"} and set(q["ridge"]) == {"20", "100"}  # only the rows and n asked for
    assert len(q["ridge"]["100"]["kendall_tau"]) == 2  # one value per seed
    # canonical held-out cells only: at most the 9,445 distinct pruned cells less the training cells' groups
    held = q["ridge"]["100"]["n_held_out"]
    assert all(9100 < h <= 9445 - 100 for h in held) and held == q["rf"]["100"]["n_held_out"]
    text = (out / "README.md").read_text()
    assert "NAS-Bench-201 ImageNet16-120" in text and "Held-out-target check" in text
    assert "target: validation accuracy" in text and "canonical held-out cells" in text
    assert "| predictor | n=20 | n=100 |" in text  # no empty columns for the n not run
    # the README names the command that remakes exactly this table
    assert "--dataset ImageNet16-120 --seeds 2 --ns 20 100 --only ridge params rf" in text
    # validation target (default): the same fitted models also ranked against the test accuracy
    qt = json.loads((out / "quality_vs_test.json").read_text())
    assert set(qt) == set(q) and "Kendall tau against the test accuracy" in text
    # ridge and the forest learn the ImageNet16-120 ranking: better with 100 training cells than with 20
    for row in ("ridge", "rf"):
        tau = {n: sum(q[row][n]["kendall_tau"]) / 2 for n in ("20", "100")}
        assert tau["100"] > tau["20"] > 0.2


def test_quality_study_rejects_an_unknown_target(tmp_path):
    p = subprocess.run([sys.executable, "experiments/predictor_quality_study.py", "--dataset", "mnist"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "invalid choice: 'mnist'" in p.stderr
