"""bench/gpu/run.sh (the GPU benchmark kit) in its CPU dry run at tiny sizes, so the kit cannot rot without a GPU;
bench/compare.py's argument checks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KIT = REPO / "bench" / "gpu" / "run.sh"


def run_kit(tmp_path, *args, timeout=600):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path / "out"))
    env.pop("PEER_PYTHON", None)
    return subprocess.run(["bash", str(KIT), *args], capture_output=True, text=True, env=env, timeout=timeout)


def check_output(p, tmp_path, labels):
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.strip().splitlines()
    table, last = [ln for ln in lines if ln.startswith("|")], json.loads(lines[-1])
    assert table[0].startswith("| workload | peer (PyTorch) | metanas (JAX)") and len(table) == 2 + len(labels)
    assert last["workload"] == "compare" and last["dry_run"] == "true" and last["device"].startswith("cpu")
    for label in labels:
        assert label in last["results"] and last["results"][label]["metanas"] > 0, label
    out = tmp_path / "out"
    assert (out / "table.md").read_text().splitlines() == table
    assert json.loads((out / "result.json").read_text()) == last
    assert [json.loads(ln)["workload"] for ln in (out / "raw.jsonl").read_text().splitlines()]  # raw results kept


def test_gpu_kit_dry_run_on_cpu(tmp_path):
    p = run_kit(tmp_path, "--dry-run")
    check_output(p, tmp_path, ["W5 DARTS-space candidates ranked (streamed top-k), candidates/s"])


@pytest.mark.slow
def test_gpu_kit_dry_run_all_workloads(tmp_path):
    p = run_kit(tmp_path, "--dry-run", "--only", "w5,w2,w4,w3,w1")
    labels = ["W5 DARTS-space candidates ranked (streamed top-k), candidates/s",
              "W2 MAML 1st order, s/meta-iter", "W4 predictor inference, pairs/s", "W3 Reptile, s/meta-iter",
              "W1 DARTS 1st-order step, s"]
    assert p.returncode == 0, p.stderr[-3000:]
    last = json.loads(p.stdout.strip().splitlines()[-1])
    for label in labels:
        assert last["results"][label]["metanas"] > 0, label


def test_gpu_kit_and_compare_reject_bad_arguments(tmp_path):
    p = run_kit(tmp_path, "--fast")
    assert p.returncode == 2 and "unknown argument '--fast'" in p.stderr
    p = subprocess.run([sys.executable, str(REPO / "bench" / "compare.py"), "--args", "w9=1"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0 and "--args 'w9=1': expected NAME=ARGS" in p.stderr


def test_compare_runs_an_earlier_checkout_in_the_same_rounds(tmp_path):
    """--before DIR: the earlier checkout's bench script runs between the peer and ours; the table gains its ratio."""
    p = subprocess.run([sys.executable, str(REPO / "bench" / "compare.py"), "--only", "w5", "--rounds", "1",
                        "--before", str(REPO), "--log", str(tmp_path / "raw.jsonl"),
                        "--args", "w5=--candidates 20000 --chunk 4096 --no-ceiling --dense-candidates 0"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    line = json.loads(p.stdout.strip().splitlines()[-1])
    assert line["matmul_ceiling_gflops"] is None  # --no-ceiling: none measured, none printed
    res = line["results"]
    row = res["W5 DARTS-space candidates ranked (streamed top-k), candidates/s"]
    assert row["before"] > 0 and row["metanas"] > 0 and row["after_vs_before"] > 0
    assert [json.loads(ln)["who"] for ln in (tmp_path / "raw.jsonl").read_text().splitlines()] == ["before", "metanas"]
    p = subprocess.run([sys.executable, str(REPO / "bench" / "compare.py"), "--before", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "holds no metanas/ package" in p.stderr
