import os
import sys
from pathlib import Path

import jax
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("METANAS_DATA_DIR", REPO.parent / "shared" / "data"))

jax.config.update("jax_numpy_rank_promotion", "raise")
# The suite compiles far more than it computes: XLA's cheap compile mode (no backend optimisation, fewer HLO passes)
# runs it ~15-25 % faster with the same semantics, and every comparison in it runs both sides in that mode. It holds
# for this process, the xdist workers and the ``python -m metanas`` runs they start (they inherit the environment);
# METANAS_TEST_XLA_OPTIMIZE=1 runs the suite fully optimised.
if os.environ.get("METANAS_TEST_XLA_OPTIMIZE") != "1":
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    jax.config.update("jax_disable_most_optimizations", True)


def pytest_configure(config):
    """One persistent XLA compilation cache per test session, shared by the xdist workers and the ``python -m
    metanas`` runs they start (they inherit the environment): the many tests that run the same program more than
    once (resume, kill -9, sweeps, K seeds vs K runs, HPO trials) compile it once. A fresh directory per session,
    removed at the end, so a run never reuses programs from an earlier one; ``JAX_COMPILATION_CACHE_DIR`` set by the
    caller wins (``=''`` turns it off)."""
    if hasattr(config, "workerinput") or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return
    import tempfile

    d = tempfile.mkdtemp(prefix="metanas-test-xla-cache-")
    config._metanas_xla_cache = d
    os.environ["JAX_COMPILATION_CACHE_DIR"] = d
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))  # a size limit turns on JAX's file lock
    jax.config.update("jax_compilation_cache_dir", d)
    jax.config.update("jax_compilation_cache_max_size", int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"]))


def pytest_unconfigure(config):
    d = getattr(config, "_metanas_xla_cache", None)
    if d:
        import shutil

        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


@pytest.fixture
def data_dir():
    if not DATA_DIR.exists():
        pytest.skip(f"shared data not found at {DATA_DIR} (set METANAS_DATA_DIR)")
    return DATA_DIR


def run_metanas(*overrides: str, cwd: Path, timeout: float = 600, env: dict | None = None):
    """Run ``python -m metanas`` as a user would; returns the CompletedProcess."""
    import subprocess

    e = dict(os.environ, CI="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "metanas", *overrides], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=e)


def run_fast(tmp_path: Path, *overrides: str, meta: str = "meta.jsonl"):
    """``python -m metanas ... debug=fast`` into ``tmp_path/runs`` with its own meta-dataset; asserts success."""
    p = run_metanas(*overrides, "debug=fast", f"results_dir={tmp_path}/runs", f"meta_dataset={tmp_path}/{meta}",
                    cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def last_summary(tmp_path: Path, name: str):
    """``(summary, run_dir)`` of the newest run of experiment ``name`` under ``tmp_path/runs``; asserts it is ok."""
    import json

    runs = sorted((tmp_path / "runs" / name).glob("*/summary.json"))
    assert runs, f"no run of {name}"
    s = json.loads(runs[-1].read_text())
    assert s["status"] == "ok", s["error"]
    return s, runs[-1].parent


@pytest.fixture(autouse=True, scope="session")
def _train_schemas():
    """Each experiment's ``train`` schema in Hydra's ConfigStore (``schema/<experiment>``), as the app registers
    them before composing: tests that compose ``conf/`` directly need them too."""
    import metanas.schemas  # noqa: F401


def synthetic_cost_devices(x, n_dev: int, seed: int = 0):
    """SYNTHETIC devices [n_dev, N] for the cost models' tests: additive costs of the cell features ``x`` [N, D],
    w_d = base + low-rank device variation, plus 2 % noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = np.abs(rng.normal(0.5, 0.3, x.shape[1]))
    u = rng.normal(0, 0.2, (2, x.shape[1]))
    ys = []
    for _ in range(n_dev):
        w = base + rng.normal(0, 1, 2) @ u
        w[0] = 5.0
        y = np.asarray(x) @ w
        ys.append(np.maximum(y, 0.1) * np.exp(rng.normal(0, 0.02, len(y))))
    return np.stack(ys)
