"""Overhead per suggested trial of the metanas sweeper's samplers: metanas (cold and warm) vs Optuna 5's TPE and GP,
on the TabRepo LightGBM space of experiments/sweeper_tabrepo_study.py (5 parameters), one trial per batch.

    python bench/sweeper_overhead.py [--trials 30]

Each method runs `--trials` trials of the same TabRepo task (seed 0) through the sweeper's ``make_proposer``; the time
of every ``propose`` call is recorded. The first model-based proposal of metanas compiles its programs; the table
reports the median over the model-based proposals after that one (metanas: trials > min_points + 1; TPE / GP:
trials > 10, their start-up) and its ratio to GP's and TPE's median in the same run (on a shared machine a ratio
says more than seconds). The compiled programs are kept in JAX's persistent compilation cache
(``configure('auto')``), so a second process loads them instead of compiling. Prints one markdown table and a JSON
line.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--task", type=int, default=0)
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared/data"))
    a = ap.parse_args(argv)
    from hydra_plugins.metanas_sweeper.metanas_sweeper import make_proposer
    from metanas.benchmarks.tabrepo import load_tabrepo
    from metanas.compilation_cache import configure
    from metanas.hpo.proposer import Record
    from sweeper_tabrepo_study import Table, make_space, run

    configure("auto")
    tab = load_tabrepo(a.data_dir)
    table, space = Table(tab), make_space(tab)
    hist = {"related": [Record(c, e, "ok") for c, e, _ in run("random", table, space, a.task + 1, 1000, 30)]}
    rows = {}
    for name, kind, history, skip in (("metanas cold", "metalearner", None, 4), ("metanas warm", "metalearner", hist, 4),
                                      ("TPE", "tpe", None, 10), ("GP", "gp", None, 10)):
        propose = make_proposer(kind, space, False, seed=0, history=history)
        records, times = [], []
        for i in range(a.trials):
            t0 = time.perf_counter()
            (config,) = propose(1, records, i)
            times.append(time.perf_counter() - t0)
            records.append(Record(config, table(a.task, config)[0], "ok"))
        steady = times[skip:]
        rows[name] = {"first_s": times[0], "compile_round_s": max(times[:skip + 1]), "median_s": float(np.median(steady)),
                      "p90_s": float(np.percentile(steady, 90)), "n": len(steady)}
    gp, tpe = rows["GP"]["median_s"], rows["TPE"]["median_s"]
    print("| sampler | median s / trial (steady) | / GP's | / TPE's | p90 | slowest of the first rounds (compile) |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: |")
    for k, r in rows.items():
        r["ratio_gp"], r["ratio_tpe"] = r["median_s"] / gp, r["median_s"] / tpe
        print(f"| {k} | {r['median_s']:.3f} | {r['ratio_gp']:.2f} | {r['ratio_tpe']:.1f} | {r['p90_s']:.3f} | "
              f"{r['compile_round_s']:.1f} |")
    print(json.dumps({"bench": "sweeper_overhead", "load_avg": os.getloadavg()[0], "rows": rows}))


if __name__ == "__main__":
    main()
