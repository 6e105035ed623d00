"""search_nb201 (the default experiment), predictor_nb201 and collect end to end through the CLI under debug=fast:
budgets, no repeated queries, resume from a per-round checkpoint, meta-dataset records, clear errors."""

import json
import shutil

import numpy as np
import pytest

from conftest import REPO, last_summary as _last_run, run_fast as _run, run_metanas
from metanas.benchmarks.nb201 import NB201Benchmark
from metanas.predictors.meta_dataset import read_meta_dataset
from metanas.run_store import read_jsonl


def test_search_nb201_fast_budget_no_repeats(tmp_path):
    p = _run(tmp_path, "experiment=search_nb201", "seeds=2")
    s, run_dir = _last_run(tmp_path, "search_nb201")
    q = json.loads((run_dir / "queried.json").read_text())
    table, report = NB201Benchmark().table(), NB201Benchmark().report_table()
    for codes, values in zip(q["codes"], q["values"]):
        assert len(codes) == 12 and len(set(codes)) == 12  # budget respected, never the same cell twice
        np.testing.assert_allclose(values, table[codes], rtol=1e-6)  # every value is a real table lookup
    m = s["metrics_per_seed"]
    # the meta-learner from scratch and with prior knowledge (pre-trained on the other two data sets), and the four
    # baselines, same seeds
    for prefix in ("", "prior_", "random_", "rea_", "ls_", "bananas_"):
        for name in ("best_test_acc", "regret", "queries_to_target"):
            assert len(m[prefix + name]) == 2
        assert all(50 < v <= report.max() + 1e-4 for v in m[prefix + "best_test_acc"])
    cfg = (run_dir / "config.yaml").read_text()
    assert "metric: valid_acc" in cfg  # the queried metric is recorded
    assert json.loads((run_dir / "curves.json").read_text())["queried_metric"] == "valid_acc"
    best = [max(report[c] for c, v in zip(codes, values) if v == max(values)) for codes, values in zip(q["codes"], q["values"])]
    np.testing.assert_allclose(m["best_test_acc"], best, rtol=1e-6)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["queries"] for r in rows if r["phase"] == "search"] == [8, 12]  # init 4 + 2 rounds of 4
    assert len([r for r in rows if r["phase"] == "curve"]) == 12
    assert (run_dir / "plots" / "search_curve.png").exists()
    # the paired table (metanas.stats) is saved as report.md and printed at the end of the run
    report = (run_dir / "report.md").read_text()
    assert "| metanas vs |" in report and "| metanas + prior vs |" in report and "| BANANAS |" in report
    assert "wins / ties / losses" in p.stdout and "| metanas vs |" in p.stdout
    # common random numbers: within a seed every baseline starts from the search's 4 initial cells (the prior arm
    # from its pre-trained model's best cells); the seeds differ
    first = np.asarray(q["codes"])[:, :4]
    assert set(q["other_arms"]) == {"prior", "random", "rea", "ls", "bananas"} and (first[0] != first[1]).any()
    for name in ("random", "rea", "ls", "bananas"):
        np.testing.assert_array_equal(np.asarray(q["other_arms"][name])[:, :4], first, err_msg=name)
    qt = json.loads((run_dir / "curves.json").read_text())["queries_to_target"]
    np.testing.assert_array_equal(qt["metanas"], np.minimum(m["queries_to_target"], 13))  # censored at budget + 1
    rec = [r for r in read_jsonl(tmp_path / "meta.jsonl") if r["experiment"] == "search_nb201"][-1]
    assert rec["metrics"]["best_test_acc"] == pytest.approx(s["metrics"]["best_test_acc"]) and rec["wall_time_s"] > 0
    assert len(rec["nb201"]["best_arch_encoding"]) == 30


# slow: resume equals an uninterrupted run in the default suite too (test_app's kill -9, test_reliability)
@pytest.mark.slow
def test_search_nb201_resume_from_a_mid_search_checkpoint(tmp_path):
    """Resume from the round-1 checkpoint: round 2 is recomputed and gives exactly the same queries."""
    _run(tmp_path, "experiment=search_nb201")
    _, run_dir = _last_run(tmp_path, "search_nb201")
    q = json.loads((run_dir / "queried.json").read_text())
    shutil.rmtree(run_dir / "checkpoints" / "search" / "2")
    p = run_metanas(f"resume={run_dir}", cwd=REPO)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads((run_dir / "queried.json").read_text()) == q
    rows2 = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["queries"] for r in rows2 if r["phase"] == "search"] == [8, 12]
    assert len([r for r in rows2 if r["phase"] == "curve"]) == 12


def test_search_nb201_bad_budget_is_one_line(tmp_path):
    p = run_metanas("experiment=search_nb201", "debug=fast", "train.budget=13", f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=REPO)
    assert p.returncode == 2  # refused when the train: block is built, before the run directory
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("metanas: error:")]
    assert len(err) == 1 and "budget - init to be a multiple of topk" in err[0]
    assert not (tmp_path / "runs").exists()


def test_predictor_nb201_fast(tmp_path):
    _run(tmp_path, "experiment=predictor_nb201")
    s, run_dir = _last_run(tmp_path, "predictor_nb201")
    q = json.loads((run_dir / "quality.json").read_text())
    assert set(q["table"]) == {"ridge", "mlp", "pairwise"} and q["n_train"] == [10, 20]
    for per_n in q["table"].values():
        for d in per_n.values():
            assert len(d["kendall_tau"]) == 2 and all(-1 <= v <= 1 for v in d["kendall_tau"])
    # ridge on 20 cells already ranks the 15,605 held-out cells far better than chance
    assert s["metrics"]["ridge_tau_n20"] > 0.2
    assert (run_dir / "plots" / "kendall_tau.png").stat().st_size > 0


def test_search_and_quality_figures_from_metanas_plots(tmp_path):
    """The two NB201 figures are drawn by metanas.plots (SYNTHETIC curves and quality table)."""
    from metanas.plots import plot_curves, plot_quality

    rng = np.random.default_rng(0)
    curves = {"predictor": np.maximum.accumulate(rng.uniform(85, 94, (3, 12)), axis=1)}
    plot_curves(curves, 94.37, 94.2, tmp_path / "a" / "curve.png", "synthetic")
    table = {"ridge": {10: {"kendall_tau": [0.1, 0.2]}, 20: {"kendall_tau": [0.3, 0.35]}}}
    plot_quality(table, "kendall_tau", tmp_path / "b" / "tau.png", "synthetic")
    assert all((tmp_path / f).read_bytes()[:4] == b"\x89PNG" for f in ("a/curve.png", "b/tau.png"))


def test_collect_fast_writes_records_predictor_reads_them(tmp_path, data_dir):
    _run(tmp_path, "experiment=collect", f"data_dir={data_dir}")
    s, run_dir = _last_run(tmp_path, "collect")
    md = read_meta_dataset(tmp_path / "meta.jsonl", "val_acc", experiment="collect:arch")
    assert len(md.y) == 8 and md.x.shape == (8, 18) and md.groups == [("omniglot-5c-7px-d0", "val-seed0")]
    assert all(0 < v <= 1 for v in md.y) and all(r["wall_time_s"] > 0 for r in md.records)
    assert len({r["arch"] for r in md.records}) == 8
    assert {r["settings"]["optimizer"] for r in md.records} == {"adam"}  # the optimizer group's default
    per_run = [r for r in read_jsonl(tmp_path / "meta.jsonl") if r["experiment"] == "collect"]
    assert len(per_run) == 1 and per_run[0]["metrics"]["n_records"] == 8
    _run(tmp_path, "experiment=predictor_nb201", "train.source=meta_dataset", "train.n_train=[3]",
         "train.encoding=onehot")
    s, run = _last_run(tmp_path, "predictor_nb201")
    assert s["status"] == "ok"
    q = json.loads((run / "quality.json").read_text())
    taus = q["table"]["ridge"]["3"]["kendall_tau"]  # one per seed
    assert len(taus) == len(q["seeds"]) and q["n_train"] == [3]
    # the debug=fast runs are near chance (most val_acc are 0.2): tau is undefined (NaN, written "nan") only when a
    # seed's 5 held-out records all tie; otherwise it is a real tau
    assert all(t == "nan" or -1 <= t <= 1 for t in taus) and any(t != "nan" for t in taus)


def test_collect_missing_data_names_the_file(tmp_path):
    p = run_metanas("experiment=collect", "debug=fast", f"data_dir={tmp_path}/nowhere", f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=REPO)
    assert p.returncode != 0
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("metanas: error:")]
    assert len(err) == 1 and "images_background.npz" in err[0]


def test_search_train_defaults_are_the_published_baselines():
    """REA at NB201's R-EA settings; BANANAS as published (5 MLPs, 10 x 20, MAPE, lr 0.01, path, ITS, mutation)."""
    from omegaconf import OmegaConf

    from metanas.experiment import compose_config
    from metanas.runners.predictor import SearchTrain

    t = SearchTrain()
    assert (t.rea_population, t.rea_sample_size) == (10, 3)
    # as composed: the yaml's train: block merged into SearchTrain's defaults
    cfg = OmegaConf.to_container(compose_config(["experiment=search_nb201"]).train)
    b = cfg["bananas"]
    assert (b["encoding"], b["acquisition"], b["thompson"]) == ("path", "mutation", True)
    assert {k: b["predictor"][k] for k in ("ensemble", "layers", "hidden", "lr", "loss")} == {
        "ensemble": 5, "layers": 10, "hidden": 20, "lr": 0.01, "loss": "mape"}
    assert (cfg["rea_population"], cfg["rea_sample_size"]) == (10, 3)


def test_search_train_builds_predictor_search_from_its_shared_fields():
    """search_nb201's train: block shares PredictorSearch's field names and defaults; one helper builds the search
    (and BANANAS' with its own acquisition), and an impossible budget is refused when the block is built."""
    import dataclasses

    from metanas.config import ConfigError
    from metanas.search.table_search import PredictorSearch
    from metanas.runners.predictor import BananasBaseline, SearchTrain, predictor_search

    shared = {f.name for f in dataclasses.fields(SearchTrain)} & {f.name for f in dataclasses.fields(PredictorSearch)}
    assert shared == {"budget", "init", "topk", "acquisition", "beta", "encoding", "evo_population",
                      "evo_generations", "rl_steps", "rl_batch"}
    assert all(getattr(SearchTrain(), n) == getattr(PredictorSearch(), n) for n in shared)
    t = SearchTrain(budget=30, init=6, topk=8, acquisition="evolution", beta=0.5, encoding="onehot",
                    evo_population=9, evo_generations=3, rl_steps=4, rl_batch=5, baselines=("random",))
    assert predictor_search(t) == PredictorSearch(budget=30, init=6, topk=8, acquisition="evolution", beta=0.5,
                                                  encoding="onehot", evo_population=9, evo_generations=3,
                                                  rl_steps=4, rl_batch=5)
    b = predictor_search(BananasBaseline(mutate_parents=3), budget=30, init=6, topk=8)
    assert (b.acquisition, b.thompson, b.encoding, b.mutate_parents, b.budget, b.beta) == ("mutation", True, "path",
                                                                                          3, 30, 0.0)
    with pytest.raises(ConfigError, match="budget - init to be a multiple of topk"):
        SearchTrain(budget=31, init=6, topk=8)
