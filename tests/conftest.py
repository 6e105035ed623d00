import os
import sys
from pathlib import Path

import jax
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("METANAS_DATA_DIR", REPO.parent / "shared" / "data"))

jax.config.update("jax_numpy_rank_promotion", "raise")


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
