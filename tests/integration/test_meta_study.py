"""experiments/meta_metanas_study.py reports finished runs (fabricated run directories; no training)."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from conftest import REPO


def fake_run(root, name, acc, alpha_lr, arch_idx):
    d = root / "metanas_omniglot" / name
    (d / ".hydra").mkdir(parents=True)
    m = {"test_acc": acc, "test_acc_ci95": 0.01, "test_acc_pre_adapt": 0.2, "n_test_tasks": 600.0,
         "supernet_test_acc": acc - 0.1, "supernet_test_acc_ci95": 0.03, "n_supernet_test_tasks": 50.0,
         "val_acc": acc + 0.01, "val_acc_ci95": 0.02, "n_val_tasks": 50.0, "search_time_s": 600.0,
         "derived_time_s": 300.0}
    (d / "summary.json").write_text(json.dumps({"status": "ok", "metrics": m, "wall_time_s": 1500.0}))
    (d / "config.yaml").write_text(yaml.safe_dump({
        "train": {"C": 8, "N": 1, "steps": 100, "derived_C": 8, "derived_N": 1, "derived_steps": 150, "meta_batch": 5,
                  "test_tasks": 600},
        "meta": {"inner_steps": 5, "inner_batch": 10, "inner_lr": 0.001, "alpha_lr": alpha_lr, "eval_inner_steps": 50}}))
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["results_dir=x"] + (
        [f"meta.alpha_lr={alpha_lr}"] if alpha_lr == 0 else [])))
    ops = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    (d / "genotype.json").write_text(json.dumps({"arch": f"|{ops[arch_idx]}~0|", "indices": [arch_idx] * 6, "ops": ops,
                                                 "alpha_softmax": [[0.2] * 5] * 6}))
    (d / "metrics.jsonl").write_text(json.dumps({"phase": "search", "step": 50, "loss": 1.25}) + "\n"
                                     + json.dumps({"phase": "search", "step": 50, "val_query_metric": 0.5}) + "\n")
    return d


def test_study_report_from_finished_runs(tmp_path):
    runs = tmp_path / "runs"
    a = fake_run(runs, "a", 0.8123, 0.003, 3)
    b = fake_run(runs, "b", 0.7012, 0.0, 1)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "experiments/meta_metanas_study.py", "--results-dir", str(runs), "--out",
                        str(out), "--search-run", str(a), "--baseline-run", str(b), "--note", "test machine"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    text = (out / "README.md").read_text()
    assert "**81.23 ± 1.00** (600)" in text and "**70.12 ± 1.00** (600)" in text
    assert "`|nor_conv_3x3~0|`" in text and "meta.alpha_lr=0" in text and "test machine" in text
    assert "see results/meta_omniglot/README.md" in text  # no CNN4 runs under this results dir
    assert (out / "alphas.png").stat().st_size > 5_000
    one = subprocess.run([sys.executable, "experiments/meta_metanas_study.py", "--results-dir", str(runs), "--out",
                          str(tmp_path / "one"), "--search-run", str(a), "--skip-baseline"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr[-2000:]
    assert "70.12" not in (tmp_path / "one" / "README.md").read_text()
    (a / "summary.json").unlink()  # a run still testing: reported as not finished, with its logged losses
    part = subprocess.run([sys.executable, "experiments/meta_metanas_study.py", "--results-dir", str(runs), "--out",
                           str(tmp_path / "part"), "--search-run", str(a), "--skip-baseline"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert part.returncode == 0, part.stderr[-2000:]
    text = (tmp_path / "part" / "README.md").read_text()
    assert "not finished" in text and "search step 50: 1.250" in text and "81.23" not in text


def fake_cnn4_run(root, name, stamp, acc, *, n_val_chars=100, n_train_chars=1200, finished=True):
    d = root / name / stamp
    (d / ".hydra").mkdir(parents=True)
    maml = name.startswith("maml")
    (d / "config.yaml").write_text(yaml.safe_dump({
        "train": {"steps": 600 if maml else 1500, "meta_batch": 32 if maml else 5, "channels": 32},
        "meta": {"_target_": "metanas.meta.maml.MAML" if maml else "metanas.meta.reptile.Reptile",
                 "transductive": maml, "inner_steps": 1 if maml else 5, "eval_inner_steps": 10 if maml else 50,
                 "first_order": False},
        "task": {"n_train_chars": n_train_chars, "n_val_chars": n_val_chars, "shots": 1, "train_shots": 0 if maml else 10,
                 "queries": 15, "train_queries": 1 if maml else 0},
        "optimizer": {"learning_rate": 3e-3 if maml else 1.0}}))
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"experiment={name}", "results_dir=x"]))
    (d / "metrics.jsonl").write_text(json.dumps({"phase": "meta_train", "step": 300, "val_query_metric": acc - 0.05})
                                     + "\n")
    if finished:
        m = {"test_acc": acc, "test_acc_ci95": 0.01, "test_acc_pre_adapt": 0.2, "n_test_tasks": 600.0,
             "val_acc": acc + 0.01, "val_acc_ci95": 0.02, "n_val_tasks": 100.0, "train_time_s": 900.0}
        (d / "summary.json").write_text(json.dumps({"status": "ok", "metrics": m, "wall_time_s": 1200.0}))
        (d / "time_v.txt").write_text("\tUser time (seconds): 1500.50\n\tSystem time (seconds): 299.50\n"
                                      "\tMaximum resident set size (kbytes): 4194304\n")
    return d


def test_omniglot_table_from_finished_runs(tmp_path):
    """experiments/meta_omniglot_table.py (no --run): newest finished run of each, split, val acc, CPU time."""
    runs = tmp_path / "runs"
    fake_cnn4_run(runs, "maml_omniglot", "2026-01-01_00-00-00-000000", 0.5)  # older: not the one reported
    fake_cnn4_run(runs, "maml_omniglot", "2026-01-02_00-00-00-000000", 0.9512)
    fake_cnn4_run(runs, "reptile_omniglot", "2026-01-02_00-00-00-000000", 0.8, finished=False)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "experiments/meta_omniglot_table.py", "--runs", str(runs), "--out", str(out),
                        "--note", "test machine"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    text = (out / "README.md").read_text()
    assert "**95.12 ± 1.00** (600)" in text and "96.12 ± 2.00 (100)" in text and "| 20.0 | 30.0 |" in text
    assert "1,100 / 100 / 423" in text and "test machine" in text and "50.00" not in text
    assert "not finished; last val eval 75.0 at step 300" in text
    assert "outer lr 0.003" in text and "train support / query per class 1 / 1" in text


def test_study_reference_rows_read_the_runs_split(tmp_path):
    """The CNN4 reference rows of meta_metanas_study.py label each run's own character split (task.n_*_chars)."""
    runs = tmp_path / "runs"
    a = fake_run(runs, "a", 0.8123, 0.003, 3)
    fake_cnn4_run(runs, "maml_omniglot", "2026-01-02_00-00-00-000000", 0.9512, n_train_chars=1000)
    fake_cnn4_run(runs, "reptile_omniglot", "2026-01-02_00-00-00-000000", 0.8, n_val_chars=0)
    p = subprocess.run([sys.executable, "experiments/meta_metanas_study.py", "--results-dir", str(runs), "--out",
                        str(tmp_path / "out"), "--search-run", str(a), "--skip-baseline"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    text = (tmp_path / "out" / "README.md").read_text()
    assert "900 / 100 / 623 characters" in text and "1,200 train characters, no val split" in text
