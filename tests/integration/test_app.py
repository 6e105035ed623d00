"""The spine: config composition, clean errors, run store, resume after kill -9, NaN guard, report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf

from conftest import REPO, run_metanas
from metanas.config import CONF_DIR
from metanas.config import ConfigError, import_target, schema_of, validate
from metanas.run_store import MetricWriter, atomic_write_json, read_jsonl, JsonlError

GROUPS = ["optimizer", "search_space", "search", "meta", "predictor", "task", "benchmark"]


def _options(group):
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_group_option_composes_and_instantiates(group, option, tmp_path):
    cfg = _compose([f"{group}={option}"])
    required = [k for k in (cfg[group] or {}) if OmegaConf.is_missing(cfg[group], k)]
    if required:  # e.g. the path of a user's data set: named in a one-line error until it is set
        with pytest.raises(ConfigError, match=f"'{group}.{required[0]}' is required"):
            validate(cfg)
        cfg = _compose([f"{group}={option}"] + [f"{group}.{k}={tmp_path}" for k in required])
    validate(cfg)
    node = cfg[group]
    if node is not None and "_target_" in node:
        target = get_object(node._target_)
        obj = instantiate(node)
        if isinstance(target, type):
            assert type(obj) is target
        else:  # a factory such as optax.adam: what it builds, not a config node
            assert not OmegaConf.is_config(obj) and type(obj) is type(target(**{k: v for k, v in node.items()
                                                                                if k != "_target_"}))


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes_with_and_without_debug_fast(experiment):
    cfg = _compose([f"experiment={experiment}"])
    validate(cfg)
    assert cfg.name == experiment, "an experiment's name must equal its file name (results/runs/<name>/)"
    train_type = import_target(cfg.runner).train_type  # train is typed by its runner's dataclass (ConfigStore)
    assert OmegaConf.get_type(cfg.train) is schema_of(train_type), (
        f"conf/experiment/{experiment}.yaml: list '/schema@train: {experiment}' in its defaults")
    assert (Path(CONF_DIR) / "debug" / "fast" / f"{experiment}.yaml").exists(), (
        f"experiment {experiment} has no debug=fast sizes: add conf/debug/fast/{experiment}.yaml")
    validate(_compose([f"experiment={experiment}", "debug=fast"]))


def test_debug_fast_sizes_lose_to_the_command_line_and_follow_a_swapped_predictor():
    """debug=fast merges conf/debug/fast/<experiment>.yaml after the experiment; keys on the command line win, and a
    predictor swapped on the command line gets its own fast sizes (conf/debug/fast/predictor/<choice>.yaml) or none."""
    cfg = _compose(["experiment=search_nb201", "debug=fast", "train.budget=20", "predictor.steps=7"])
    assert (cfg.train.budget, cfg.train.init, cfg.predictor.steps, cfg.predictor.hidden, cfg.seeds) == (20, 4, 7, 8, 2)
    rf = _compose(["experiment=search_nb201", "debug=fast", "predictor=random_forest"])
    validate(rf)
    assert set(rf.predictor) == {"_target_", "trees"} and rf.predictor.trees == 300 and rf.train.budget == 12
    mlp = _compose(["experiment=search_nb201", "debug=fast", "predictor=mlp"])
    validate(mlp)
    assert (mlp.predictor.steps, mlp.predictor.hidden, mlp.predictor.ensemble) == (10, 8, 2)
    assert "embed" not in mlp.predictor  # pairwise's fast key, not mlp's


@pytest.mark.parametrize("override,expected", [
    ("search_space=nope", "Available options in 'search_space'"),
    ("train.stepz=3", "unknown key 'train.stepz'; valid keys there: steps"),
    ("seed=abc", "could not be converted to Integer"),
    ("optimizer.learning_rate=abc", "'optimizer.learning_rate' = 'abc' has the wrong type"),
    ("optimizer.lr=0.1", "valid keys there: _target_, learning_rate"),
    ("experiment=nope", "Available options in 'experiment'"),
    ("resume=/nonexistent/run", "no config.yaml there"),
])
def test_bad_override_is_one_clean_line_and_writes_nothing(tmp_path, override, expected):
    p = run_metanas("experiment=toy_regression", override, f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metanas: error:"), p.stderr
    assert expected in lines[0]
    assert list(tmp_path.iterdir()) == [], "a failed start must leave nothing behind"


def test_unknown_component_key_is_rejected():
    cfg = _compose(["experiment=toy_regression", "+optimizer.momentum=0.9"])
    with pytest.raises(ConfigError, match="unknown key 'optimizer.momentum'.*valid keys: learning_rate"):
        validate(cfg)


def _run_dir(root: Path, name="toy_regression") -> Path:
    (d,) = list((root / name).iterdir())
    return d


def test_default_experiment_is_the_predictor_guided_search(tmp_path):
    """README's first command runs `python -m metanas`: the meta-learner loop on real NB201 data."""
    p = run_metanas("debug=fast", f"results_dir={tmp_path}/runs", f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    s = json.loads((_run_dir(tmp_path / "runs", "search_nb201") / "summary.json").read_text())
    assert s["status"] == "ok" and 0 < s["metrics"]["best_test_acc"] <= 94.37 + 1e-6


@pytest.mark.parametrize("experiment,override,says", [
    # found by the train block, before the run directory exists
    ("search_nb201", "train.budget=13", "PredictorSearch needs budget - init to be a multiple of topk"),
    # found by the runner once it has read the data file
    ("transfer_transnas", "train.target=no_such_task", "train.target='no_such_task' is not a task"),
])
def test_config_error_leaves_no_record(tmp_path, experiment, override, says):
    p = run_metanas(f"experiment={experiment}", "debug=fast", override, f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 2 and last.startswith("metanas: error:") and says in last, p.stderr[-2000:]
    assert not list((tmp_path / "runs").rglob("*.json")) and not (tmp_path / "meta.jsonl").exists()


def test_resume_keeps_the_original_command_and_takes_dotted_overrides(tmp_path):
    common = (f"results_dir={tmp_path}/runs", f"meta_dataset={tmp_path}/meta.jsonl")
    assert run_metanas("experiment=toy_regression", "debug=fast", *common, cwd=tmp_path).returncode == 0
    d = _run_dir(tmp_path / "runs")
    p = run_metanas(f"resume={d}", "train.noise=0.25", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "experiment=toy_regression" in (d / ".hydra" / "overrides.yaml").read_text()
    (again,) = d.glob(".hydra-resumed-*")
    assert f"resume={d}" in (again / "overrides.yaml").read_text()
    assert "noise: 0.25" in (d / "config.yaml").read_text()
    p = run_metanas(f"resume={d}", "train.nois=0.25", cwd=tmp_path)
    assert p.returncode == 2 and "resume override 'train.nois' is not a key" in p.stderr.strip().splitlines()[-1]


def test_run_writes_the_run_store(tmp_path):
    p = run_metanas("experiment=toy_regression", "debug=fast", f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    d = _run_dir(tmp_path / "runs")
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "ok" and s["seed"] == 0 and s["jax_version"] and s["device"].startswith("cpu")
    assert set(s["metrics"]) == {"loss", "test_mse"} and s["wall_time_s"] > 0
    rows = MetricWriter(d).rows()
    assert [r["step"] for r in rows] == list(range(1, 7))  # debug=fast: 6 steps, logged every step
    assert (d / "config.yaml").exists() and (d / "plots" / "train.png").stat().st_size > 1000
    (record,) = read_jsonl(tmp_path / "meta.jsonl")
    assert record["metrics"] == s["metrics"] and record["config"]["train.steps"] == 6
    assert record["metafeatures"]["NumberOfInstances"] == 512 and "NumberOfClasses" not in record["metafeatures"]
    assert json.loads((d / "metafeatures.json").read_text())["sinusoid_synthetic"] == record["metafeatures"]


def test_nan_guard_stops_naming_the_step_and_keeps_last_checkpoint(tmp_path):
    p = run_metanas("experiment=toy_regression", "debug=fast", "train.steps=200", "optimizer=sgd", "optimizer.learning_rate=100.0",
                    "checkpoint_every=1", f"results_dir={tmp_path}/runs", f"meta_dataset={tmp_path}/meta.jsonl",
                    cwd=tmp_path)
    assert p.returncode == 1
    assert "NonFiniteLossError: loss became" in p.stderr and "at step" in p.stderr
    step = int(p.stderr.split("at step ")[1].split()[0])
    d = _run_dir(tmp_path / "runs")
    s = json.loads((d / "summary.json").read_text())
    assert s["status"] == "failed" and f"at step {step}" in s["error"]
    kept = sorted(int(c.name) for c in (d / "checkpoints" / "train").iterdir() if c.name.isdigit())
    assert kept and kept[-1] == step - 1, "the last good checkpoint is the step before the non-finite loss"
    assert not (tmp_path / "meta.jsonl").exists(), "a failed run adds no record to the meta-dataset"


def test_kill_9_then_resume_equals_uninterrupted_run(tmp_path):
    common = ["experiment=toy_regression", "train.steps=4000", "checkpoint_every=250", "log_every=50",
              f"meta_dataset={tmp_path}/meta.jsonl"]
    full = run_metanas(*common, f"results_dir={tmp_path}/full", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    ref = json.loads((_run_dir(tmp_path / "full") / "summary.json").read_text())

    env = dict(os.environ, CI="1")
    proc = subprocess.Popen([sys.executable, "-m", "metanas", *common, f"results_dir={tmp_path}/killed"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    ckpts = None
    while time.time() < deadline:
        runs = list((tmp_path / "killed" / "toy_regression").glob("*/checkpoints/train"))
        if runs and any(c.name.isdigit() and int(c.name) >= 500 for c in runs[0].iterdir()):
            ckpts = runs[0]
            break
        time.sleep(0.02)
    assert ckpts is not None, "the run never wrote a checkpoint"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    d = ckpts.parent.parent
    assert not (d / "summary.json").exists(), "the kill came too late to test resume"

    resumed = run_metanas(f"resume={d}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    s = json.loads((d / "summary.json").read_text())
    assert s["resumed"] is True
    assert s["metrics"] == ref["metrics"], "bitwise identical final metrics on CPU"
    assert MetricWriter(d).rows() == MetricWriter(_run_dir(tmp_path / "full")).rows()


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"ok": 1})

    class Boom:
        def tolist(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_json(target, {"bad": Boom()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"], "no temporary file is left behind"


def test_truncated_jsonl_names_file_and_line(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"phase": "a", "step": 1}\n{"phase": "a", "st')
    with pytest.raises(JsonlError, match=r"m.jsonl:2: not valid JSON"):
        read_jsonl(f)
    f.write_text('{"phase": "a"}\n')
    with pytest.raises(JsonlError, match=r"m.jsonl:1: missing key\(s\) \['step'\]"):
        read_jsonl(f, required=("phase", "step"))


def test_multirun_report_aggregates_two_seeds(tmp_path):
    p = run_metanas("-m", "experiment=toy_regression", "debug=fast", "seed=0,1", f"hydra.sweep.dir={tmp_path}/sweep",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    r = subprocess.run([sys.executable, "-m", "metanas.report", str(tmp_path / "sweep")], capture_output=True,
                       text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    losses = [json.loads((tmp_path / "sweep" / str(i) / "summary.json").read_text())["metrics"]["loss"] for i in (0, 1)]
    mean = sum(losses) / 2
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("| debug=fast experiment=toy_regression"))
    assert row.split("|")[2].strip() == "2" and f"{mean:.4g} ±" in row
    assert (tmp_path / "sweep" / "report.md").exists() and (tmp_path / "sweep" / "report.png").exists()


def test_report_on_empty_dir_is_a_clean_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "metanas.report", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and r.stderr.startswith("metanas.report: error: no summary.json")


# slow: the host-predictor rounds equal the jitted ones in tests/unit/search/test_table_search.py
@pytest.mark.slow
@pytest.mark.parametrize("predictor", ["random_forest", "pairwise_rf"])
def test_default_search_runs_with_a_host_predictor(tmp_path, predictor):
    """predictor=random_forest (a host model, not jittable) drives the same search loop, also under debug=fast; the
    prior arm (pre-training on other data sets) needs the pairwise meta-learner, so it is switched off here, and
    leaving it on is one config line naming the switch."""
    bad = run_metanas(f"predictor={predictor}", "debug=fast", f"results_dir={tmp_path}/bad", cwd=tmp_path)
    assert bad.returncode == 2 and "train.prior_sources=[]" in bad.stderr
    assert not [f for f in (tmp_path / "bad").rglob("*") if f.is_file()]  # no run directory left behind
    p = run_metanas(f"predictor={predictor}", "debug=fast", "train.baselines=[random]", "train.prior_sources=[]",
                    f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    run = _run_dir(tmp_path / "runs", "search_nb201")
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "ok" and 0 < s["metrics"]["best_test_acc"] <= 94.37 + 1e-6
    queried = json.loads((run / "queried.json").read_text())["codes"][0]
    assert len(set(queried)) == len(queried) == 12  # debug=fast budget, no cell twice
