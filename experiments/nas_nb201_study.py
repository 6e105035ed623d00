"""What the default CPU budgets of the NB201 NAS experiments reach: derived cell, its real NB201 benchmark accuracy
(200-epoch CIFAR-10 / CIFAR-100 / ImageNet16-120 test acc from the NB201 table), supernet val acc and the retrained
cell's test accuracy on the bundled data (20-class Omniglot at 16x16, real data).

    .venv/bin/python experiments/nas_nb201_study.py [darts_nb201 gdas_nb201 ...] [--seed 0] [--extra key=value ...]

Each experiment runs as a user would (``python -m metanas experiment=NAME seed=S``) into ``results/runs``; the table
is rewritten to ``results/nas_nb201/README.md`` after every run (with the wall time and machine load of each run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "results" / "nas_nb201"


def run_one(name: str, seed: int, extra: list[str], results_dir: Path) -> dict:
    t0 = time.time()
    load0 = os.getloadavg()[0]
    p = subprocess.run([sys.executable, "-m", "metanas", f"experiment={name}", f"seed={seed}",
                        f"results_dir={results_dir}", "progress=false", *extra], cwd=REPO, capture_output=True,
                       text=True)
    wall = time.time() - t0
    row = {"experiment": name, "seed": seed, "extra": " ".join(extra), "wall_s": wall,
           "load": f"{load0:.1f} -> {os.getloadavg()[0]:.1f}", "rc": p.returncode}
    if p.returncode != 0:
        row["error"] = (p.stderr.strip().splitlines() or ["?"])[-1][:200]
        return row
    run_dir = max((results_dir / name).iterdir(), key=lambda d: d.stat().st_mtime)
    m = json.loads((run_dir / "summary.json").read_text())["metrics"]
    g = json.loads((run_dir / "genotype.json").read_text())
    return row | {"arch": g["arch"], "run_dir": str(run_dir.relative_to(REPO)), **m}


def write_readme(rows: list[dict]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    lines = ["# Differentiable NAS at the default CPU budgets (NB201 cell space; DARTS CNN space)", "",
             "Made by `.venv/bin/python experiments/nas_nb201_study.py " + " ".join(dict.fromkeys(r["experiment"] for r in rows))
             + "` (one run per experiment, seed 0, default budgets of each config; rows are appended run by run).",
             "Machine: the shared 2-core VM, heavily loaded by other jobs (load average in the table), so wall times",
             "are upper bounds, not benchmarks. Data: REAL 20-class Omniglot classification at 16x16 (15 drawers per",
             "class for search/retrain, 5 for test); NB201 columns: the derived cell's 200-epoch test accuracy (%) in",
             "the real NAS-Bench-201 table (CIFAR-10 / CIFAR-100 / ImageNet16-120), NOT trained here.", "",
             "| experiment | seed | derived cell | NB201 C10 | NB201 C100 | NB201 IN16 | supernet val acc | "
             "retrain test acc (Omniglot-20) | wall (s) | load |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("rc"):
            lines.append(f"| {r['experiment']} | {r['seed']} | FAILED: {r.get('error', '')} | | | | | | "
                         f"{r['wall_s']:.0f} | {r['load']} |")
            continue
        nb = [r.get(f"nb201_{d}_test_acc") for d in ("cifar10", "cifar100", "ImageNet16-120")]
        nb = ["n/a" if v is None else f"{v:.2f}" for v in nb]  # n/a: not an NB201 cell (DARTS CNN genotype)
        lines.append(f"| {r['experiment']} {r['extra']} | {r['seed']} | `{r['arch'].replace('|', chr(92) + '|')}` | "
                     f"{' | '.join(nb)} | {r['supernet_val_acc']:.3f} | {r.get('test_acc', float('nan')):.3f} | "
                     f"{r['wall_s']:.0f} | {r['load']} |")
    from metanas.benchmarks.nb201 import load_tables

    acc = load_tables(None).test_acc
    lines += ["", f"For reference, in the same table the best cell reaches {acc[:, 0].max():.2f} % on CIFAR-10 and the "
              f"median cell {float(sorted(acc[:, 0])[len(acc) // 2]):.2f} %; DARTS-V1 searched on CIFAR-10 in the",
              "NB201 paper (Dong & Yang 2020, Table 5) collapses to an all-skip cell (54.30 %). These runs search on a",
              "different, much smaller task than CIFAR-10, so the NB201 columns say how good the found cell is on CIFAR,",
              "not on Omniglot.", "",
              "The gdas_nb201 and darts_nb201 rows were run with the code of commit 79be759 (rolled `lax.scan` over a",
              "stage's cells); later commits unroll it (XLA:CPU runs convolutions inside a while loop with a slow",
              "fallback instead of its YNNPACK kernels), so those wall times overstate the current cost. The darts2_nb201",
              "and darts_cnn rows ran at nice 19 beside other jobs (one session). darts_cnn searches the",
              "DARTS CNN space, whose genotypes are not NB201 cells (n/a). One seed each: no error bars.", ""]
    (OUT / "README.md").write_text("\n".join(lines))
    (OUT / "rows.json").write_text(json.dumps(rows, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiments", nargs="*", default=["darts_nb201", "gdas_nb201"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", nargs="*", default=[])
    ap.add_argument("--render-only", action="store_true", help="rewrite README.md from rows.json, run nothing")
    a = ap.parse_args()
    rows = json.loads((OUT / "rows.json").read_text()) if (OUT / "rows.json").exists() else []
    if a.render_only:
        write_readme(rows)
        return
    for name in a.experiments:
        rows.append(run_one(name, a.seed, a.extra, REPO / "results" / "runs"))
        write_readme(rows)
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
