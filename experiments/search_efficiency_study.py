"""Study (c): search efficiency on REAL NAS-Bench-201 CIFAR-10: best-found test accuracy vs queries (<= 200),
median and quartiles over 20 seeds, predictor-guided search (the default experiment search_nb201) vs random search
and regularized evolution on the same budget and seeds.

    .venv/bin/python experiments/search_efficiency_study.py [--seeds 20] [--budget 200] [--out results/search_nb201]

It runs ``python -m metanas experiment=search_nb201 seeds=20 train.budget=200`` (one jit(vmap) program over the
seeds per round) and turns its curves.json / summary.json into README.md + png. Extra args are passed as overrides.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--out", default="results/search_nb201")
    args, overrides = ap.parse_known_args()
    tmp = Path(tempfile.mkdtemp(prefix="search_study_"))
    cmd = [sys.executable, "-m", "metanas", "experiment=search_nb201", f"seeds={args.seeds}",
           f"train.budget={args.budget}", f"results_dir={tmp}", "meta_dataset=null", "progress=false", *overrides]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    wall = time.perf_counter() - t0
    run_dir = next((tmp / "search_nb201").glob("*"))
    curves = json.loads((run_dir / "curves.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    per_seed = summary["metrics_per_seed"] or {k: [v] for k, v in summary["metrics"].items()}
    out = REPO / args.out
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "plots" / "search_curve.png", out / "search_curve.png")
    shutil.copy(run_dir / "curves.json", out / "curves.json")
    shutil.copy(run_dir / "summary.json", out / "summary.json")
    target, optimum = curves["target"], curves["optimum"]
    methods = [m for m in ("predictor", "random", "rea") if m in curves]
    names = {"predictor": "pairwise predictor (exhaustive top-10 / round)", "random": "random search",
             "rea": "regularized evolution"}
    checkpoints = [q for q in (20, 50, 100, 150, 200) if q <= args.budget]
    lines = ["# Search efficiency on NAS-Bench-201 CIFAR-10 (real data)", "",
             f"Best-found architecture's 200-epoch CIFAR-10 test accuracy (%) after q queries, median [25%, 75%] over "
             f"{args.seeds} seeds; optimum {optimum:.2f}. Queries return the 200-epoch test accuracy from the table "
             "(the tabular-benchmark protocol of the issue; no validation/test split).", "",
             f"Command: `.venv/bin/python experiments/search_efficiency_study.py` (= `python -m metanas "
             f"experiment=search_nb201 seeds={args.seeds} train.budget={args.budget}`"
             + (" " + " ".join(overrides) if overrides else "") + ")  ",
             f"Machine: loaded shared 2-core CPU VM; wall time {wall:.0f} s for all three methods and all seeds.", "",
             "![curve](search_curve.png)", "",
             "| method | " + " | ".join(f"q={q}" for q in checkpoints) + f" | queries to {target:g}% (median [25,75]) |",
             "|---" * (len(checkpoints) + 2) + "|"]
    for m in methods:
        c = curves[m]
        cells = [f"{c['median'][q - 1]:.2f} [{c['q25'][q - 1]:.2f}, {c['q75'][q - 1]:.2f}]" for q in checkpoints]
        prefix = "" if m == "predictor" else f"{m}_"
        qt = np.asarray(per_seed[f"{prefix}queries_to_target"], float)
        qs = np.percentile(qt, [25, 50, 75])
        never = int((qt > args.budget).sum())
        lines.append(f"| {names[m]} | " + " | ".join(cells) +
                     f" | {qs[1]:.0f} [{qs[0]:.0f}, {qs[2]:.0f}]" + (f", {never} seed(s) never" if never else "") + " |")
    med_pred = float(np.median(np.asarray(per_seed["queries_to_target"], float)))
    lines += ["", f"Goal: >= {target:g}% at the median in <= 100 queries: predictor median queries-to-target "
              f"{med_pred:.0f} -> **{'met' if med_pred <= 100 else 'NOT met'}**. (A value of budget + 1 means the seed "
              "never reached the target.)", ""]
    (out / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
