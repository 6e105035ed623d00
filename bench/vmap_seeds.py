"""K seeds as K separate runs vs one `seeds=K` run (jit(vmap(...)) over seeds), through the CLI.

    python bench/vmap_seeds.py [--experiment toy_regression] [--k 8] [extra overrides ...]

Prints one JSON line: wall seconds of K sequential `python -m metanas ... seed=i` runs, of one
`python -m metanas ... seeds=K` run, and the speed-up. Both include process start-up and compilation,
which is what a researcher running K seeds pays.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cli(*overrides: str, tmp: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "metanas", *overrides, f"results_dir={tmp}/runs", f"meta_dataset={tmp}/m.jsonl"],
                   cwd=REPO, check=True, capture_output=True, env=dict(os.environ, CI="1"))
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--experiment", default="toy_regression")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("overrides", nargs="*")
    a = p.parse_args()
    base = [f"experiment={a.experiment}", *a.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        separate = sum(cli(*base, f"seed={i}", tmp=tmp) for i in range(a.k))
        together = cli(*base, f"seeds={a.k}", tmp=tmp)
    print(json.dumps({"workload": "vmap_seeds", "experiment": a.experiment, "overrides": a.overrides, "k": a.k,
                      "separate_runs_s": round(separate, 2), "vmapped_run_s": round(together, 2),
                      "speedup": round(separate / together, 2)}))


if __name__ == "__main__":
    main()
