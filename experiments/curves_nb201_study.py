"""NB201 fidelity study of the learning-curve meta-learner (issue 29) -> results/curves_nb201/.

    CURVES_NB201_PER_COST=final python experiments/curves_nb201_study.py run   # freeze-thaw + full-fidelity pairwise
    python experiments/curves_nb201_study.py prior    # the sources' plain order, deterministic (adds to results.json)
    python experiments/curves_nb201_study.py report   # README.md from results.json

CIFAR-10 is the target; the curve model is pre-trained on CIFAR-100 and ImageNet16-120 (``leave_one_task_out``;
the same cells, their 12- and 200-epoch validation errors). Queries return VALIDATION error; the incumbent is the
cell with the best 200-epoch validation value; its 200-epoch TEST accuracy is reported. A 12-epoch value costs 12
epochs, a 200-epoch value a separate 200-epoch run (NB201's 12-epoch numbers come from their own schedule, so no
freeze-thaw discount). Both methods search the 9,445 canonical cells, as search_nb201 does.

Baseline in the same study, same seeds: the full-fidelity pairwise search (``python -m metanas
experiment=search_nb201``, every query a 200-epoch value), its epochs = 200 x queries. Metric: training epochs until
the incumbent's test accuracy is >= 94.2 % (censored at the cap + 1 for every method), median over 50 seeds, paired.
"""

from __future__ import annotations

import argparse
import os
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from metanas.run_store import atomic_write_json, atomic_write_text  # noqa: E402

OUT = REPO / "results" / "curves_nb201"
DATA = REPO.parent / "shared" / "data"
SEEDS = int(os.environ.get("CURVES_NB201_SEEDS", 50))
SEED0 = int(os.environ.get("CURVES_NB201_SEED0", 0))  # design seeds: 100..
TARGET_ACC = 94.2
BUDGET = float(os.environ.get("CURVES_NB201_BUDGET", 8000))  # epochs, freeze-thaw searches
PAIRWISE_QUERIES = 150
PRIOR_STARTS = (1, 3)  # freeze-thaw variants that start as the sources' order (``FreezeThaw.init_prior``)  # full-fidelity pairwise search: up to 150 x 200 = 30,000 epochs


def epochs_to_target(spent, inc_cfg, test_acc, cap):
    """[S] first budget spent at which the incumbent's test accuracy >= TARGET_ACC (cap + 1 when never)."""
    out = []
    for s, c in zip(np.asarray(spent), np.asarray(inc_cfg)):
        ok = (c >= 0) & (test_acc[np.maximum(c, 0)] >= TARGET_ACC) & (s <= cap)
        out.append(float(s[np.argmax(ok)]) if ok.any() else cap + 1)
    return np.asarray(out)


def run_freeze_thaw() -> dict:
    import jax
    import jax.numpy as jnp

    from metanas.benchmarks.curves import leave_one_task_out, load_nb201_fidelities
    from metanas.compilation_cache import configure
    from metanas.runners.curves import CurvesTrain, model_of, pretrain, source_order, source_rows
    from metanas.search.freeze_thaw import FreezeThaw
    from metanas.search.table_search import canonical_cells
    from metanas.search_spaces.nb201 import NB201Space

    configure("auto")
    table = load_nb201_fidelities(DATA)
    canon = canonical_cells(NB201Space())
    table = table._replace(keep=table.keep & canon[None, :])
    src, tgt = leave_one_task_out(table, "cifar10")
    t = CurvesTrain(decisions_per_fit=10, finetune_steps=25, pretrain_steps=3000)
    model = model_of(t)
    x = jnp.asarray(table.x)
    y, cost, keep = jnp.asarray(tgt.valid[0]), jnp.asarray(tgt.cost[0]), jnp.asarray(tgt.keep[0])
    test_acc = 100.0 - tgt.test[0]
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(SEED0, SEED0 + SEEDS)])
    ft = FreezeThaw(budget=BUDGET, decisions=int(BUDGET // 12) + 1, step=1, decisions_per_fit=t.decisions_per_fit,
                    finetune_steps=t.finetune_steps, init_random=0, incumbent="final",
                    per_cost=os.environ.get("CURVES_NB201_PER_COST", "next"))
    out = {}
    t0 = time.time()
    params0 = jax.jit(lambda k: pretrain(k, model, x, source_rows(src), t.pretrain_steps))(jax.random.PRNGKey(7))
    prior = jnp.asarray(source_order(src), jnp.float32)
    runs = {"metanas": (ft, params0), "metanas_scratch": (dataclasses.replace(ft, init_random=10), None),
            **{f"metanas_prior{k}": (dataclasses.replace(ft, init_prior=k), params0) for k in PRIOR_STARTS}}
    only = os.environ.get("CURVES_NB201_METHODS")
    for name, (f, p0) in runs.items():
        if only and name not in only.split(","):
            continue
        t1 = time.time()
        tr = jax.jit(jax.vmap(lambda k, pr: f.run(k, model, p0, x, y, cost, keep, prior=pr),
                              in_axes=(0, None)))(keys, prior)
        tr = jax.block_until_ready(tr)
        e = epochs_to_target(tr.spent, tr.inc_cfg, test_acc, BUDGET)
        picks = np.asarray(tr.pick)
        out[name] = {"epochs": e.tolist(), "seconds": time.time() - t1,
                     "final_test_acc": [float(test_acc[c[-1]]) if c[-1] >= 0 else float("nan")
                                        for c in np.asarray(tr.inc_cfg)],
                     "runs_12": int((picks >= 0).sum()), "cap": BUDGET}
        print(name, "median epochs", np.median(e), f"{time.time() - t1:.0f}s", flush=True)
    out["wall_s"] = time.time() - t0
    return out


def run_pairwise() -> dict:
    """The default experiment (full-fidelity pairwise search) on the same 50 seeds, as a user runs it."""
    runs = OUT / "runs"
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "metanas", "experiment=search_nb201", f"seed={SEED0}", f"seeds={SEEDS}",
                        f"train.budget={PAIRWISE_QUERIES}", "train.baselines=[]", f"results_dir={runs}",
                        f"data_dir={DATA}"], cwd=REPO, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(p.stderr[-3000:])
    summ = sorted(runs.glob("search_nb201/*/summary.json"))[-1]
    s = json.loads(summ.read_text())
    q = np.asarray(s["metrics_per_seed"]["queries_to_target"], np.float64) if "metrics_per_seed" in s else \
        np.asarray(s["metrics"]["queries_to_target"], np.float64)
    cap = 200.0 * PAIRWISE_QUERIES
    e = np.where(q <= PAIRWISE_QUERIES, 200.0 * q, cap + 1)
    return {"epochs": e.tolist(), "queries": q.tolist(), "seconds": time.time() - t0, "cap": cap}


def design() -> None:
    """Design seeds (CURVES_NB201_SEED0=100 CURVES_NB201_SEEDS=10): the freeze-thaw variants named in
    CURVES_NB201_METHODS added to design.json (per_cost from CURVES_NB201_PER_COST), never results.json."""
    res = run_freeze_thaw()
    path = OUT / "design.json"
    d = json.loads(path.read_text()) if path.exists() else {}
    per_cost = os.environ.get("CURVES_NB201_PER_COST", "next")
    for name, v in res.items():
        if isinstance(v, dict):
            d[f"{per_cost}+{name.removeprefix('metanas_')}" if name != "metanas" else per_cost] = v | {
                "seeds": list(range(SEED0, SEED0 + SEEDS))}
    atomic_write_json(path, d)


def run_prior() -> None:
    """The simplest use of the same source knowledge, no model, deterministic: the sources' (CIFAR-100,
    ImageNet16-120) z-score order of their 200-epoch validation values (``search.transfer.zscore_order``), each query a
    200-epoch run of the next cell, the incumbent the best 200-epoch validation value so far. Also how the 14 target
    cells rank by their own 12-epoch validation value (how much a 12-epoch screen could tell, given every cell's)."""
    from metanas.benchmarks.curves import leave_one_task_out, load_nb201_fidelities
    from metanas.runners.curves import source_order
    from metanas.search.table_search import canonical_cells
    from metanas.search_spaces.nb201 import NB201Space

    table = load_nb201_fidelities(DATA)
    table = table._replace(keep=table.keep & canonical_cells(NB201Space())[None, :])
    src, tgt = leave_one_task_out(table, "cifar10")
    keep = tgt.keep[0]
    score = source_order(src)
    order = [int(c) for c in np.argsort(-np.where(keep, score, -np.inf), kind="stable") if keep[c]]
    test_acc, final = 100.0 - tgt.test[0], tgt.valid[0][:, -1]
    inc, epochs = None, BUDGET + 1
    for q, c in enumerate(order[: int(BUDGET // 200)]):
        inc = c if inc is None or final[c] < final[inc] else inc
        if test_acc[inc] >= TARGET_ACC:
            epochs = 200.0 * (q + 1)
            break
    rank12 = np.argsort(np.argsort(np.where(keep, tgt.valid[0][:, 0], np.inf)))
    hits = np.flatnonzero(keep & (test_acc >= TARGET_ACC))
    res = json.loads((OUT / "results.json").read_text())
    res["prior_order"] = {"epochs": [epochs] * len(res["seeds"]), "first_cells_test_acc":
                          [round(float(test_acc[c]), 2) for c in order[:5]],
                          "target_cells_rank_by_12_epoch_valid": sorted(int(r) for r in rank12[hits])}
    atomic_write_json(OUT / "results.json", res)


def run() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    res = run_freeze_thaw()
    res["pairwise_full"] = run_pairwise()
    res["seeds"] = list(range(SEED0, SEED0 + SEEDS))
    res["per_cost"] = os.environ.get("CURVES_NB201_PER_COST", "next")
    atomic_write_json(OUT / "results.json", res)


NAMES = {"metanas_prior1": "freeze-thaw, curve meta-learner, starting as the sources' order (`init_prior=1`)",
         "metanas_prior3": "freeze-thaw, curve meta-learner, the sources' 3 best first (`init_prior=3`)",
         "metanas": "freeze-thaw, curve meta-learner (2 source data sets)",
         "metanas_scratch": "freeze-thaw, curve model without sources (10 random 12-epoch starts)",
         "pairwise_full": "full-fidelity pairwise search (search_nb201, every query 200 epochs)",
         "prior_order": "the sources' z-score order, every query a 200-epoch run (no model; deterministic)"}
DEFAULT = "metanas_prior1"  # chosen on the design seeds 100-109 (design.json)


def report() -> None:
    from metanas.stats import censor, paired_table

    res = json.loads((OUT / "results.json").read_text())
    ours = DEFAULT if DEFAULT in res else "metanas"
    methods = [m for m in NAMES if m in res]
    # every method censored at the freeze-thaw cap (BUDGET): a value past it counts as cap + 1 for all alike
    per = {m: censor(np.asarray(res[m]["epochs"]), int(BUDGET)) for m in methods}
    med = {m: float(np.median(v)) for m, v in per.items()}
    goal = med["pairwise_full"] / 3
    seeds = res["seeds"]
    lines = ["# curves_nb201: NB201 CIFAR-10 with 12- and 200-epoch fidelities (generated from results.json)", "",
             f"Command: `CURVES_NB201_SEED0={seeds[0]} CURVES_NB201_PER_COST={res['per_cost']} python "
             "experiments/curves_nb201_study.py run`, then `... prior` and `... report`. Real NB201 tables; "
             f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]}); CIFAR-10 target, curve model pre-trained on CIFAR-100 "
             "and ImageNet16-120. Validation queried, test reported.", "",
             f"| method | median epochs to a >= {TARGET_ACC} % test cell (censored at {int(BUDGET)}) |", "|---|---|"]
    for m in methods:
        lines.append(f"| {NAMES[m]}{' (**default**)' if m == ours else ''} | {med[m]:.0f} |")
    lines += ["", f"Goal <= 1/3 of the full-fidelity pairwise search's epochs ({goal:.0f}): "
              f"**{'met' if med[ours] <= goal else 'NOT met'}** (default, median {med[ours]:.0f})"
              + (f"; the sources' plain order alone needs {med['prior_order']:.0f} (below)." if "prior_order" in med
                 else "."), "",
              paired_table(per, ours, lower_is_better=True, what="epochs"), "",
              f"Pairwise search uncensored median queries: {np.median(res['pairwise_full']['queries']):.0f}"
              f" (x 200 epochs). Wall: freeze-thaw {res['wall_s']:.0f} s, pairwise "
              f"{res['pairwise_full']['seconds']:.0f} s, loaded shared 2-core CPU.", ""]
    if "prior_order" in res:
        po = res["prior_order"]
        lines += ["**What the learnt part adds over the plain prior: nothing measurable here.** The z-score order of "
                  "the two source data sets' 200-epoch validation values (`python experiments/curves_nb201_study.py "
                  "prior`; no model, the same for every seed) reaches a >= 94.2 % cell with its first 200-epoch run: "
                  f"its first five cells test at {', '.join(f'{a:.2f}' for a in po['first_cells_test_acc'])} %. "
                  "The curve meta-learner pre-trained on the same sources but started from its own zero-shot "
                  f"ranking (`metanas`) needs a median of {med['metanas']:.0f} epochs; started as the sources' order "
                  "(`FreezeThaw.init_prior`: the order's best config run to 200 epochs first, then the model's "
                  "acquisition -- the trust search's rule of issue 31) it needs "
                  + (f"{med['metanas_prior1']:.0f}: the 12-epoch step of the first config plus its 200-epoch run, "
                     "12 epochs more than the order alone." if "metanas_prior1" in med else "(not run).")
                  + " The 12-epoch values are informative too: ranked by its own 12-epoch validation error, the "
                  f"{len(po['target_cells_rank_by_12_epoch_valid'])} target cells sit at ranks "
                  f"{', '.join(map(str, po['target_cells_rank_by_12_epoch_valid']))} of the 9,445 (0 = best) -- "
                  "an oracle view, since it reads every cell's 12-epoch value.", ""]
    if (OUT / "design.json").exists():
        d = json.loads((OUT / "design.json").read_text())
        lines += ["## Design (design seeds 100-109, every variant tried)", "",
                  "| variant | median epochs to 94.2 % (censored at 8000) |", "|---|---|"]
        for k, v in d.items():
            per_cost, _, start = k.partition("+")
            what = "step (12 or 200 epochs)" if per_cost == "next" else "run (to 200 epochs)"
            start = f", starting as the sources' order (`init_prior={start.removeprefix('prior')}`)" if start else ""
            lines.append(f"| EI / cost of the {per_cost} {what}{start} | {np.median(v['epochs']):.0f} |")
        lines += ["", "`per_cost=final` was chosen first (the `next` variant: one run on the seeds 0-49 of the "
                  "first final run, metanas only, then stopped, gave a median of 8001 -- never within 8000 epochs: "
                  "dividing EI by the 12-epoch step's cost kept starting new 12-epoch runs and rarely finished one, "
                  "and only 200-epoch values can become the incumbent). The prior start was designed after that "
                  "first final run (seeds 0-49, `metanas` 4090 epochs, in git history) had been seen, and "
                  f"`init_prior=1` was chosen on the design seeds (1 and 3 tie at the median; the smaller start hands "
                  f"over sooner); this run is on fresh seeds {seeds[0]}..{seeds[-1]}.", ""]
    atomic_write_text(OUT / "README.md", "\n".join(lines))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["run", "design", "prior", "report"])
    a = ap.parse_args()
    {"run": run, "design": design, "prior": run_prior, "report": report}[a.stage]()
