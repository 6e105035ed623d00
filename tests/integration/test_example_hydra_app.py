"""examples/hydra_app/README.md's three sweeps run as written (bash block, in order, from a copy of the example
folder), at a small size: 3 trials each instead of 20 and 50 training steps instead of 300."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hydra_app"


def _block() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", (EXAMPLE / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "examples/hydra_app/README.md should hold one bash block (the three sweeps)"
    return blocks[0]


@pytest.mark.slow  # three sweeps of real training (~1-2 min on 2 shared cores)
def test_the_examples_three_sweeps_run_from_the_readme(tmp_path):
    pytest.importorskip("sklearn")
    block = _block()
    assert block.count("python train.py -m hydra/sweeper=metanas") == 3 and "n_trials=20" in block
    small = block.replace("n_trials=20", "n_trials=3").replace("python train.py", f"{sys.executable} train.py")
    small = re.sub(r'^(SPACE=".*")$', r'\1\nSPACE="$SPACE steps=50"', small, count=1, flags=re.M)
    assert "steps=50" in small
    app = tmp_path / "hydra_app"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns("multirun", "outputs", "__pycache__"))
    p = subprocess.run(["bash", "-euo", "pipefail", "-c", small], cwd=app, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    for name in ("tpe", "cold", "warm"):
        rows = [json.loads(line) for line in (app / "multirun" / name / "metanas_trials.jsonl").read_text().splitlines()]
        assert sum(r["status"] == "ok" for r in rows) == 3, (name, rows)
        assert (app / "multirun" / name / "optimization_results.yaml").exists()
    assert "history {'multirun/tpe': 3}" in p.stdout + p.stderr
