"""Every meta-learning experiment runs end to end through the CLI under debug=fast.

The Omniglot ones compile CNN4 / supernet meta-steps: ~20 s each on a quiet 2-core machine (MetaNAS longer), the
largest share of the default run's time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, run_metanas

SYNTHETIC = ["maml_sinusoid"]
# FOMAML, ANIL and Meta-SGD are MAML configurations of the same runner (their gradients: tests/unit/meta/
# test_meta.py); their Omniglot runs are in the slow tier, MAML's and Reptile's (another outer loop) in the default
MAML_CONFIGS = ("fomaml_omniglot", "anil_omniglot", "metasgd_omniglot")
OMNIGLOT = ["maml_omniglot", "reptile_omniglot", *(pytest.param(n, marks=pytest.mark.slow) for n in MAML_CONFIGS)]


def _run(name: str, tmp_path: Path, *extra: str, timeout: float = 600) -> dict:
    r = run_metanas(f"experiment={name}", "debug=fast", f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", *extra, cwd=REPO, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    summaries = list((tmp_path / "runs" / name).glob("*/summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert summary["status"] == "ok"
    return summary


def test_maml_sinusoid_fast(tmp_path):
    summary = _run("maml_sinusoid", tmp_path)
    assert (Path(summary["run_dir"]) / "sinusoid_fits.png").stat().st_size > 10_000
    assert summary["metrics"]["n_test_tasks"] == 20


@pytest.mark.parametrize("name", OMNIGLOT)
def test_omniglot_experiments_fast(name, tmp_path, data_dir):
    summary = _run(name, tmp_path, f"data_dir={data_dir}")
    m = summary["metrics"]
    assert 0.0 <= m["test_acc"] <= 1.0 and m["n_test_tasks"] == 6
    assert 0.0 <= m["val_acc"] <= 1.0 and m["n_val_tasks"] == 3  # meta-validation split, train.eval_tasks tasks
    assert m["test_support_loss_after"] < m["test_support_loss_before"]


def test_metanas_omniglot_fast(tmp_path, data_dir):
    summary = _run("metanas_omniglot", tmp_path, f"data_dir={data_dir}", timeout=1800)
    m = summary["metrics"]
    assert 0.0 <= m["test_acc"] <= 1.0 and m["n_test_tasks"] == 4 and m["n_supernet_test_tasks"] == 2
    assert 0.0 <= m["val_acc"] <= 1.0 and m["n_val_tasks"] == 2
    genotype = json.loads((Path(summary["run_dir"]) / "genotype.json").read_text())
    assert len(genotype["indices"]) == 6 and genotype["arch"].startswith("|")
    assert len(genotype["alpha_softmax"]) == 6


def test_missing_omniglot_is_a_one_line_error(tmp_path):
    r = run_metanas("experiment=maml_omniglot", "debug=fast", f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", f"data_dir={tmp_path}/nowhere", cwd=REPO)
    assert r.returncode != 0
    assert "images_background.npz" in r.stderr.strip().splitlines()[-1]
