"""Study: search efficiency on REAL NAS-Bench-201 under the published protocol (query the 200-epoch validation
accuracy, report the 200-epoch test accuracy of the cell with the best validation accuracy found so far).

The pairwise-guided search (the default experiment ``search_nb201``) against random search, regularized evolution,
local search and BANANAS, all in ONE run per data set (same seeds, budget and query tables), for CIFAR-10,
CIFAR-100 and ImageNet16-120. Reported: best-found test accuracy at q = 20 / 50 / 100 / 150 (median [25 %, 75 %]
over seeds) and the number of queries until the best-found cell's test accuracy reaches a target (CIFAR-10: 94.2 %;
the others: the test accuracy of their 15th-best cell, the same quantile as 94.2 % on CIFAR-10).

    .venv/bin/python experiments/search_efficiency_study.py [--seeds 50] [--budget 150] [--datasets ...]

Each data set is ``python -m metanas experiment=search_nb201 seeds=S train.budget=B benchmark.dataset=D`` (one jit(vmap)
program over the seeds per round); this script turns its curves.json / summary.json into README.md and plots.
Extra arguments are passed on as overrides. ``--replot`` rebuilds README.md from the saved runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
METHODS = {"predictor": "pairwise meta-learner (metanas)", "bananas": "BANANAS", "ls": "local search",
           "rea": "regularized evolution", "random": "random search"}
CHECKPOINTS = (20, 50, 100, 150)


def target_for(dataset: str) -> float:
    """94.2 % on CIFAR-10 (the issue's target); elsewhere the test accuracy of the 15th-best cell (same quantile)."""
    from metanas.benchmarks.nb201 import NB201Benchmark

    if dataset == "cifar10":
        return 94.2
    return float(np.floor(np.sort(NB201Benchmark(dataset=dataset).report_table())[-15] * 100) / 100)


def run_dataset(dataset: str, args, overrides: list[str], out: Path) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="search_study_"))
    target = target_for(dataset)
    cmd = [sys.executable, "-m", "metanas", "experiment=search_nb201", f"seeds={args.seeds}",
           f"train.budget={args.budget}", f"benchmark.dataset={dataset}", f"train.target={target}",
           f"results_dir={tmp}", "meta_dataset=null", "progress=false", *overrides]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    wall = time.perf_counter() - t0
    run_dir = next((tmp / "search_nb201").glob("*"))
    d = out / dataset
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "plots" / "search_curve.png", d / "search_curve.png")
    for f in ("curves.json", "summary.json", "config.yaml"):
        shutil.copy(run_dir / f, d / f)
    meta = {"dataset": dataset, "target": target, "wall_s": round(wall, 1), "command": " ".join(cmd[1:4] + cmd[4:9]),
            "load_avg": os.getloadavg()}
    (d / "run.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return meta


def table_lines(d: Path, budget: int) -> tuple[list[str], dict]:
    curves = json.loads((d / "curves.json").read_text())
    summary = json.loads((d / "summary.json").read_text())
    meta = json.loads((d / "run.json").read_text())
    per_seed = summary["metrics_per_seed"] or {k: [v] for k, v in summary["metrics"].items()}
    target = meta["target"]
    qs = [q for q in CHECKPOINTS if q <= budget]
    lines = [f"| method | " + " | ".join(f"q={q}" for q in qs) + f" | queries to {target:g} % (median [25, 75]) |",
             "|---" * (len(qs) + 2) + "|"]
    medians = {}
    for m, name in METHODS.items():
        if m not in curves:
            continue
        c = curves[m]
        cells = [f"{c['median'][q - 1]:.2f} [{c['q25'][q - 1]:.2f}, {c['q75'][q - 1]:.2f}]" for q in qs]
        qt = np.asarray(per_seed[("" if m == "predictor" else f"{m}_") + "queries_to_target"], float)
        p = np.percentile(qt, [25, 50, 75])
        never = int((qt > budget).sum())
        medians[m] = float(p[1])
        med = f"{p[1]:.0f}" if p[1] <= budget else "never"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {med} [{p[0]:.0f}, {p[2]:.0f}]"
                     + (f", {never} of {len(qt)} seeds never" if never else "") + " |")
    return lines, {"target": target, "medians": medians, "optimum": curves["optimum"], "meta": meta,
                   "queried": curves["queried_metric"], "n": len(next(iter(per_seed.values())))}


def write_readme(out: Path, args, overrides: list[str]) -> str:
    lines = ["# Search efficiency on NAS-Bench-201 (real data, validation-queried)", "",
             "Protocol (NB201 paper, NATS-Bench, NASLib): every query returns the 200-epoch **validation** accuracy "
             "(seed mean; CIFAR-10: the `cifar10-valid` run trained on 25k images; CIFAR-100 / ImageNet16-120: the "
             "x-valid half of their test set); a search's result after q queries is the 200-epoch **test** accuracy "
             "of the queried cell with the best validation accuracy. All methods run in one program per data set "
             "with the same seeds, budget and query tables. A value above the budget means the seed never reached the "
             "target.", "",
             "How the meta-learner's search was designed: its settings (predictor, features, init, top-k per round) "
             "were chosen on CIFAR-10 with a validation-only criterion (queries until a top-16 cell *by validation* "
             "is found) on design seeds 1000-1019, never on these seeds or on test accuracy, and frozen for all three "
             "data sets. The baselines use their papers' / NASLib's settings (`conf/experiment/search_nb201.yaml`).", "",
             f"Command: `.venv/bin/python experiments/search_efficiency_study.py --seeds {args.seeds} --budget "
             f"{args.budget}" + (" " + " ".join(overrides) if overrides else "") + "`", ""]
    goal = {}
    for ds in args.datasets:
        d = out / ds
        if not (d / "curves.json").exists():
            continue
        tl, info = table_lines(d, args.budget)
        goal[ds] = info
        m = info["meta"]
        from metanas.benchmarks.nb201 import NB201Benchmark

        bench = NB201Benchmark(dataset=ds)
        ceiling = float(bench.report_table()[int(np.argmax(bench.table()))])
        lines += [f"## {ds}", "", f"{info['n']} seeds, budget {args.budget}, queried `{info['queried']}`, optimum "
                  f"(best test accuracy in the space) {info['optimum']:.2f} %, test accuracy of the best cell by "
                  f"validation (what a search that finds it reports) {ceiling:.2f} %, target {info['target']:g} %. "
                  f"Wall time {m['wall_s']:.0f} s for all five methods (2-core CPU VM, load average "
                  f"{m['load_avg'][0]:.1f} at the end).", "", f"![{ds}]({ds}/search_curve.png)", "", *tl, ""]
        if ceiling < info["target"]:
            lines += [f"Here the best cell by validation has a test accuracy ({ceiling:.2f} %) below the target: a search "
                      "that finds the validation optimum stops short of the target for good, so the queries-to-target "
                      "column rewards *not* finding it. Read the q columns, where the curves fall back to "
                      f"{ceiling:.2f} % once the validation optimum is found.", ""]
    if "cifar10" in goal:
        med = goal["cifar10"]["medians"]
        ours = med["predictor"]
        others = {k: v for k, v in med.items() if k != "predictor"}
        fewer = all(ours < v for v in others.values())
        lines += ["## Goals (CIFAR-10)", "",
                  f"- Median queries to a cell with test accuracy >= 94.2 %: **{ours:.0f}** (goal <= 30: "
                  f"**{'met' if ours <= 30 else 'NOT met'}**).",
                  f"- Fewer than every baseline in the same run ({', '.join(f'{METHODS[k]} {v:.0f}' for k, v in others.items())}): "
                  f"**{'yes' if fewer else 'no'}**.", ""]
    text = "\n".join(lines)
    (out / "README.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--budget", type=int, default=150)
    ap.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--out", default="results/search_nb201")
    ap.add_argument("--replot", action="store_true", help="only rebuild README.md from <out>/<dataset>/")
    args, overrides = ap.parse_known_args()
    out = REPO / args.out
    if not args.replot:
        for ds in args.datasets:
            print(f"== {ds}", flush=True)
            run_dataset(ds, args, overrides, out)
    print(write_readme(out, args, overrides))


if __name__ == "__main__":
    main()
