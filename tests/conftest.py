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
