"""Scale-out: joblib launcher, failure isolation, Optuna sweeper, seeds=K in one program, launcher configs."""

import json
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO, run_metanas
from metanas.config import CONF_DIR


def test_joblib_sweep_runs_in_parallel_and_isolates_failures(tmp_path):
    sweep = tmp_path / "sweep"
    p = run_metanas("-m", "hydra/launcher=local_parallel", "experiment=toy_regression", "debug=fast", "optimizer=sgd",
                    "optimizer.learning_rate=0.01,100.0,abc", "train.steps=60", "seed=0",
                    f"hydra.sweep.dir={sweep}", f"meta_dataset={tmp_path}/m.jsonl", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    s = json.loads((sweep / "sweep_summary.json").read_text())
    assert (s["jobs"], s["ok"], s["failed"]) == (3, 1, 2)
    errors = {j["job"]: j["error"] for j in s["results"] if j["status"] != "ok"}
    assert "NonFiniteLossError" in errors["1"] and "at step" in errors["1"]
    assert "'optimizer.learning_rate' = 'abc' has the wrong type" in errors["2"]
    r = subprocess.run([sys.executable, "-m", "metanas.report", str(sweep)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "1 failed run(s)" in r.stdout


def test_optuna_sweeper_runs_trials_and_reports_best(tmp_path):
    sweep = tmp_path / "sweep"
    p = run_metanas("-m", "hydra/sweeper=tpe", "hydra.sweeper.n_trials=3", "experiment=toy_regression", "debug=fast",
                    "objective=test_mse", "optimizer.learning_rate=tag(log, interval(1e-4, 1e-1))",
                    f"hydra.sweep.dir={sweep}", f"meta_dataset={tmp_path}/m.jsonl", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    import yaml

    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [json.loads((sweep / str(i) / "summary.json").read_text())["metrics"]["test_mse"] for i in range(3)]
    assert best["best_value"] == pytest.approx(min(values))


def test_seeds_k_in_one_program_matches_separate_runs(tmp_path):
    common = ["experiment=toy_regression", "debug=fast", "train.steps=30", f"meta_dataset={tmp_path}/m.jsonl"]
    p = run_metanas(*common, "seeds=3", f"results_dir={tmp_path}/vm", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (d,) = (tmp_path / "vm" / "toy_regression").iterdir()
    per_seed = json.loads((d / "summary.json").read_text())["metrics_per_seed"]["test_mse"]
    single = []
    for seed in range(3):
        p = run_metanas(*common, f"seed={seed}", f"results_dir={tmp_path}/s{seed}", cwd=tmp_path)
        assert p.returncode == 0, p.stderr
        (d,) = (tmp_path / f"s{seed}" / "toy_regression").iterdir()
        single.append(json.loads((d / "summary.json").read_text())["metrics"]["test_mse"])
    # vmap reorders float reductions, so equal to float32 rounding, not bitwise
    np.testing.assert_allclose(per_seed, single, rtol=1e-4)
    assert len(set(single)) == 3


@pytest.mark.slow  # ~60 s: starts a local Ray instance (default-suite durations)
def test_ray_launcher_on_a_local_ray_instance(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the `ray` extra is not installed")
    sweep = tmp_path / "sweep"
    p = run_metanas("-m", "hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=2", "experiment=toy_regression",
                    "debug=fast", "seed=0,1", f"hydra.sweep.dir={sweep}", f"meta_dataset={tmp_path}/m.jsonl",
                    cwd=tmp_path, env={"RAY_AUTH_MODE": "disabled"})
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((sweep / "sweep_summary.json").read_text())
    assert (s["jobs"], s["ok"]) == (2, 2)
    r = subprocess.run([sys.executable, "-m", "metanas.report", str(sweep)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "test_mse" in r.stdout


@pytest.mark.parametrize("override", ["hydra/launcher=slurm", "hydra/launcher=local_parallel", "hydra/sweeper=tpe",
                                      "hydra/launcher=ray_local", "hydra/launcher=ray_cluster"])
def test_launcher_and_sweeper_configs_compose(override):
    if "ray" in override:
        pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason="the `ray` extra is not installed")
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[override], return_hydra_config=True)
    if "ray" in override:
        assert cfg.hydra.launcher._target_.endswith("RayLauncher")
        assert cfg.hydra.launcher.ray.init.address == ("auto" if "cluster" in override else None)
    elif "slurm" in override:
        assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.gpus_per_node == 1
    elif "local_parallel" in override:
        assert cfg.hydra.launcher.n_jobs == 2
    else:
        assert cfg.hydra.sweeper._target_.endswith("MetanasSweeper") and cfg.hydra.sweeper.sampler == "tpe"


def test_device_settings_reach_the_environment(tmp_path):
    code = ("import os, sys; from omegaconf import OmegaConf; from metanas.config import Config; "
            "from metanas.experiment import configure_devices; "
            "c = OmegaConf.merge(OmegaConf.structured(Config), {'device': {'preallocate': False, 'mem_fraction': 0.3}}); "
            "configure_devices(c); print(os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'], "
            "os.environ['XLA_PYTHON_CLIENT_MEM_FRACTION'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.split() == ["false", "0.3"], out.stderr


def test_compilation_cache_is_written_and_reused(tmp_path):
    """device.compilation_cache: the first run fills the cache, a rerun loads from it and gives the same result."""
    cache = tmp_path / "xla_cache"
    env = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    args = ("experiment=toy_regression", "debug=fast", f"device.compilation_cache={cache}")
    out = [run_metanas(*args, f"results_dir={tmp_path / f'r{i}'}", cwd=tmp_path, env=env) for i in range(2)]
    assert all(p.returncode == 0 for p in out), out[-1].stderr
    entries = sorted(cache.iterdir())
    assert entries, "no compiled program was cached"
    summaries = [json.loads(next((tmp_path / f"r{i}").rglob("summary.json")).read_text())["metrics"] for i in range(2)]
    assert summaries[0] == summaries[1]
    assert sorted(cache.iterdir()) == entries  # the rerun hit the cache: nothing new compiled
