"""hw_latency and search_nb201_constrained end to end under debug=fast (real HW-NAS-Bench tables); hardware and cost
in the run store's records; bad input is one line."""

import json

import numpy as np
import pytest

from conftest import REPO, last_summary, run_fast, run_metanas
from metanas.run_store import read_jsonl


def test_hw_latency_fast(tmp_path, data_dir):
    run_fast(tmp_path, "experiment=hw_latency", f"data_dir={data_dir}")
    s, run_dir = last_summary(tmp_path, "hw_latency")
    m = s["metrics"]
    assert -1 <= m["spearman_k5_mean"] <= 1 and m["spearman_k5_fpga"] == m["spearman_k5_mean"]
    for b in ("flops", "params", "source_mean", "nearest_source", "ridge_sources", "rf_target", "mlp_target",
              "finetune_no_meta", "ours_random_cells"):
        assert f"{b}_spearman_k5_fpga" in m
    d = json.loads((run_dir / "hw_latency.json").read_text())
    assert len(d["rho"]["ours"]["fpga"]["5"][0]) == 2  # [input size][seed]
    assert d["choices"]["fpga"]["cov_scale"] == 3.0
    fam = d["chosen_family"]["fpga"]  # chosen on the sources; "ours" is that family's result
    assert set(d["choices"]["fpga"]["family_scores"]) == set(d["families"]) and fam in d["families"]
    assert d["rho"]["ours"]["fpga"]["5"] == d["rho"][f"family_{fam}"]["fpga"]["5"]
    assert (run_dir / "plots" / "pred_vs_true.png").exists()
    rec = read_jsonl(tmp_path / "meta.jsonl")[-1]
    hw = rec["hardware_info"]  # what the run trained on and used
    assert hw["backend"] == "cpu" and hw["cpu_count"] >= 1 and hw["peak_host_memory_mb"] > 0
    assert rec["wall_time_s"] > 0


@pytest.mark.slow  # another cost family of the same experiment (test_hw_latency_fast runs the default)
def test_hw_latency_fast_with_the_maml_mlp_family(tmp_path, data_dir):
    run_fast(tmp_path, "experiment=hw_latency", f"data_dir={data_dir}", "train.families=[additive,maml_mlp]",
             "train.maml_meta_steps=5", "train.baselines=[flops]")
    s, run_dir = last_summary(tmp_path, "hw_latency")
    m = s["metrics"]
    d = json.loads((run_dir / "hw_latency.json").read_text())
    scores = d["choices"]["fpga"]["family_scores"]  # both scored by leave-one-source-out, the better one chosen
    assert set(scores) == {"additive", "maml_mlp"} and all(-1 <= v <= 1 for v in scores.values())
    assert d["chosen_family"]["fpga"] == max(scores, key=scores.get)
    assert d["choices"]["fpga"]["maml_mlp_inner_lr"] == 0.1
    rho = np.asarray(d["rho"]["family_maml_mlp"]["fpga"]["5"])  # [input size][seed]
    assert rho.shape == (1, 2) and np.all(np.abs(rho) <= 1)
    assert m["family_maml_mlp_spearman_k5_fpga"] == pytest.approx(float(rho.mean()))


@pytest.mark.parametrize("extra", [pytest.param((), marks=pytest.mark.slow),  # every baseline and the Pareto mode
                                   ("train.baselines=[random,rea]", "train.pareto=false")])
def test_search_nb201_constrained_fast_answers_meet_the_budget_on_the_true_table(tmp_path, data_dir, extra):
    from metanas.benchmarks.hardware import load_hw_bench
    from metanas.benchmarks.nb201 import NB201Benchmark

    run_fast(tmp_path, "experiment=search_nb201_constrained", f"data_dir={data_dir}", "seeds=2", "train.device=fpga",
             "train.latency_budget_ms=3.0", *extra)
    s, run_dir = last_summary(tmp_path, "search_nb201_constrained")
    d = json.loads((run_dir / "constrained.json").read_text())
    lat = load_hw_bench(str(data_dir), "cifar10").latency("fpga")
    report = NB201Benchmark().report_table()
    assert d["budget_ms"] == 3.0
    if "rea" in d["constrained"]:  # every candidate measured, rejected ones counted
        assert all(m >= d["queries"] for m in d["constrained"]["rea"]["measurements"])
    for name, r in d["constrained"].items():
        if name != "filter":  # accuracy-only search + filter may run out of measurements: counted, never hidden
            assert sum(r["infeasible"]) == 0, name
        for a, acc, bad in zip(r["answer"], r["answer_test"], r["infeasible"]):
            assert bad == (a < 0)
            if a >= 0:
                assert lat[a] <= 3.0  # checked against the true table
                assert acc == pytest.approx(float(report[a]))
    assert s["metrics"]["infeasible_answers"] == 0
    if extra:
        return
    hv = d["pareto"]["hypervolume"]
    assert set(hv) == {"ours", "random", "rea"} and all(0 < v <= 1 for x in hv.values() for v in x)
    assert (run_dir / "plots" / "pareto.png").exists() and (run_dir / "plots" / "constrained_curve.png").exists()


@pytest.mark.parametrize("override, what", [("train.device=tpu9", "train.device"),
                                            ("train.design_k=20", "train.design_k")])
def test_constrained_bad_input_is_one_line(tmp_path, override, what):
    p = run_metanas("experiment=search_nb201_constrained", "debug=fast", override, f"results_dir={tmp_path}/runs",
                    "meta_dataset=null", cwd=REPO)
    assert p.returncode == 2 and what in p.stderr
    assert not (tmp_path / "runs").exists()


def test_meta_dataset_reads_any_named_metric(tmp_path):
    from metanas.predictors.meta_dataset import read_meta_dataset

    rows = [{"dataset": "d", "split": "s", "encoding": [float(i), 1.0], "metrics": {"val_acc": 0.5 + i / 10,
                                                                                   "edgegpu_latency": 3.0 + i},
             "wall_time_s": 10.0 + i, "hardware_info": {"peak_host_memory_mb": 100.0 + i}} for i in range(3)]
    path = tmp_path / "md.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for metric, want in (("val_acc", [0.5, 0.6, 0.7]), ("edgegpu_latency", [3, 4, 5]), ("wall_time_s", [10, 11, 12]),
                         ("hardware_info.peak_host_memory_mb", [100, 101, 102])):
        np.testing.assert_allclose(read_meta_dataset(path, metric).y, want, rtol=1e-6)
    with pytest.raises(ValueError, match="energy"):
        read_meta_dataset(path, "energy")


@pytest.mark.slow  # another cost family of the same experiment (test_hw_latency_fast runs the default)
def test_hw_latency_fast_with_the_ensemble_family(tmp_path, data_dir):
    run_fast(tmp_path, "experiment=hw_latency", f"data_dir={data_dir}",
             "train.families=[additive,with_sources,ensemble]", "train.baselines=[flops]")
    s, run_dir = last_summary(tmp_path, "hw_latency")
    m = s["metrics"]
    d = json.loads((run_dir / "hw_latency.json").read_text())
    ch = d["choices"]["fpga"]  # every family scored by leave-one-source-out, the best one chosen
    scores = ch["family_scores"]
    assert set(scores) == {"additive", "with_sources", "ensemble"} and all(-1 <= v <= 1 for v in scores.values())
    assert d["chosen_family"]["fpga"] == max(scores, key=scores.get)
    assert ch["ensemble_var"] == 0.1 and set(ch["family_grid"]["ensemble"]) == {"0.1"}  # debug=fast's grid
    rho = np.asarray(d["rho"]["family_ensemble"]["fpga"]["5"])  # [input size][seed]
    assert rho.shape == (1, 2) and np.all(np.abs(rho) <= 1)
    assert m["family_ensemble_spearman_k5_fpga"] == pytest.approx(float(rho.mean()))
