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
PAIRWISE_QUERIES = 150  # full-fidelity pairwise search: up to 150 x 200 = 30,000 epochs


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
    from metanas.runners.curves import CurvesTrain, model_of, pretrain, source_rows
    from metanas.search.freeze_thaw import FreezeThaw
    from metanas.search.guided import canonical_cells
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
    runs = {"metanas": (ft, params0), "metanas_scratch": (dataclasses.replace(ft, init_random=10), None)}
    only = os.environ.get("CURVES_NB201_METHODS")
    for name, (f, p0) in runs.items():
        if only and name not in only.split(","):
            continue
        t1 = time.time()
        tr = jax.jit(jax.vmap(lambda k: f.run(k, model, p0, x, y, cost, keep)))(keys)
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
    p = subprocess.run([sys.executable, "-m", "metanas", "experiment=search_nb201", f"seeds={SEEDS}",
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


def run_prior() -> None:
    """The simplest use of the same source knowledge, no model, deterministic: the sources' (CIFAR-100,
    ImageNet16-120) z-score order of their 200-epoch validation values (``search.transfer.zscore_order``), each query a
    200-epoch run of the next cell, the incumbent the best 200-epoch validation value so far. Also how the 14 target
    cells rank by their own 12-epoch validation value (how much a 12-epoch screen could tell, given every cell's)."""
    from metanas.benchmarks.curves import leave_one_task_out, load_nb201_fidelities
    from metanas.search.guided import canonical_cells
    from metanas.search.transfer import zscore_order
    from metanas.search_spaces.nb201 import NB201Space

    table = load_nb201_fidelities(DATA)
    table = table._replace(keep=table.keep & canonical_cells(NB201Space())[None, :])
    src, tgt = leave_one_task_out(table, "cifar10")
    keep = tgt.keep[0]
    score = zscore_order(-np.where(src.keep, src.valid[:, :, -1], np.nan))  # errors -> higher is better
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


def report() -> None:
    from metanas.stats import censor, paired_table

    res = json.loads((OUT / "results.json").read_text())
    cap = max(res["pairwise_full"]["cap"], res["metanas"]["cap"])
    ours = np.asarray(res["metanas"]["epochs"])
    # every method censored at the freeze-thaw cap (BUDGET): a value past it counts as cap + 1 for all alike
    methods = ("metanas", "metanas_scratch", "pairwise_full") + (("prior_order",) if "prior_order" in res else ())
    per = {m: censor(np.asarray(res[m]["epochs"]), int(BUDGET)) for m in methods}
    med = {m: float(np.median(v)) for m, v in per.items()}
    goal = med["pairwise_full"] / 3
    lines = ["# curves_nb201: NB201 CIFAR-10 with 12- and 200-epoch fidelities (generated from results.json)", "",
             "Command: `CURVES_NB201_PER_COST=final python experiments/curves_nb201_study.py run`, then `... report`. Real NB201 tables; "
             f"{len(res['seeds'])} seeds; CIFAR-10 target, curve model pre-trained on CIFAR-100 and ImageNet16-120. "
             "Validation queried, test reported.", "",
             f"| method | median epochs to a >= {TARGET_ACC} % test cell (censored at {int(BUDGET)}) |", "|---|---|"]
    names = {"metanas": "freeze-thaw, curve meta-learner (2 source data sets)",
             "metanas_scratch": "freeze-thaw, curve model without sources (10 random 12-epoch starts)",
             "pairwise_full": "full-fidelity pairwise search (search_nb201, every query 200 epochs)",
             "prior_order": "the sources' z-score order, every query a 200-epoch run (no model; deterministic)"}
    for m in per:
        lines.append(f"| {names[m]} | {med[m]:.0f} |")
    lines += ["", f"Goal <= 1/3 of the full-fidelity pairwise search's epochs ({goal:.0f}): "
              f"**{'met' if med['metanas'] <= goal else 'NOT met'}** (median {med['metanas']:.0f}).", "",
              paired_table(per, "metanas", lower_is_better=True, what="epochs"), "",
              f"Pairwise search uncensored median queries: {np.median(res['pairwise_full']['queries']):.0f}"
              f" (x 200 epochs). Wall: freeze-thaw {res['wall_s']:.0f} s, pairwise "
              f"{res['pairwise_full']['seconds']:.0f} s, loaded shared 2-core CPU.", ""]
    if "prior_order" in res:
        po = res["prior_order"]
        lines += ["**The learnt method loses to its own prior here.** The plain z-score order of the two source data "
                  "sets' 200-epoch validation values (`python experiments/curves_nb201_study.py prior`; no model, the "
                  "same for every seed) reaches a >= 94.2 % cell with its first 200-epoch run: its first five cells "
                  f"test at {', '.join(f'{a:.2f}' for a in po['first_cells_test_acc'])} %. The curve meta-learner, "
                  "pre-trained on the same sources, needs a median of "
                  f"{med['metanas']:.0f} epochs: its zero-shot ranking and EI-per-cost acquisition do not start where "
                  "the sources' order does (issue 31's lesson: start as the best prior, hand over on evidence; not "
                  "yet done for freeze-thaw). The 12-epoch values themselves are informative: ranked by its own "
                  f"12-epoch validation error, the {len(po['target_cells_rank_by_12_epoch_valid'])} target cells sit "
                  f"at ranks {', '.join(map(str, po['target_cells_rank_by_12_epoch_valid']))} of the 9,445 (0 = "
                  "best) -- an oracle view, since it reads every cell's 12-epoch value.", ""]
    if (OUT / "design.json").exists():
        d = json.loads((OUT / "design.json").read_text())
        lines += ["## Design (metanas only, design seeds 100-109, every variant tried)", "",
                  "| acquisition cost | median epochs to 94.2 % (censored at 8000) |", "|---|---|"]
        for k, v in d.items():
            lines.append(f"| EI / cost of the {k} {'step (12 or 200 epochs)' if k == 'next' else 'run (to 200 epochs)'}"
                         f" | {np.median(v['epochs']):.0f} |")
        lines += ["", f"This run uses `per_cost={res['per_cost']}` (set through CURVES_NB201_PER_COST; the committed "
                  "run predates the script recording it, so the key was added to results.json by hand). Before the design runs, one run of the "
                  "`next` variant on the final seeds 0-49 (metanas only, then stopped) gave a median of 8001 "
                  "(never within 8000 epochs): dividing EI by the 12-epoch step's cost kept starting new 12-epoch "
                  "runs and rarely finished one, and only 200-epoch values can become the incumbent.", ""]
    atomic_write_text(OUT / "README.md", "\n".join(lines))
    del cap, ours


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["run", "prior", "report"])
    a = ap.parse_args()
    {"run": run, "prior": run_prior, "report": report}[a.stage]()
