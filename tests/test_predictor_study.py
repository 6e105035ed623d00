"""experiments/predictor_quality_study.py on another NB201 target (real data; the cheap rows only)."""

import json
import os
import subprocess
import sys

from conftest import DATA_DIR, REPO


def test_quality_study_on_another_target(tmp_path, data_dir):
    out = tmp_path / "in16"
    cmd = [sys.executable, "experiments/predictor_quality_study.py", "--dataset", "ImageNet16-120", "--seeds", "2",
           "--ns", "20", "100", "--only", "ridge", "params", "--out", str(out)]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, METANAS_DATA_DIR=str(DATA_DIR)))
    assert p.returncode == 0, p.stderr[-2000:]
    q = json.loads((out / "quality.json").read_text())
    assert set(q) == {"ridge", "params"} and set(q["ridge"]) == {"20", "100"}  # only the rows and n asked for
    assert len(q["ridge"]["100"]["kendall_tau"]) == 2  # one value per seed
    text = (out / "README.md").read_text()
    assert "NAS-Bench-201 ImageNet16-120" in text and "Held-out-target check" in text
    assert "| predictor | n=20 | n=100 |" in text  # no empty columns for the n not run
    # the README names the command that remakes exactly this table
    assert "--dataset ImageNet16-120 --seeds 2 --ns 20 100 --only ridge params" in text
    # ridge learns the ImageNet16-120 ranking: better with 100 training cells than with 20
    tau = {n: sum(q["ridge"][n]["kendall_tau"]) / 2 for n in ("20", "100")}
    assert tau["100"] > tau["20"] > 0.2


def test_quality_study_rejects_an_unknown_target(tmp_path):
    p = subprocess.run([sys.executable, "experiments/predictor_quality_study.py", "--dataset", "mnist"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "invalid choice: 'mnist'" in p.stderr
