"""TaskSet study of the learning-curve meta-learner (issue 29) -> results/curves_taskset/.

    python experiments/curves_taskset_study.py design   # variants on design seeds 100.. (never the final seeds)
    python experiments/curves_taskset_study.py final    # every method, 12 held-out tasks x 10 seeds (0..9)
    python experiments/curves_taskset_study.py report   # results/curves_taskset/README.md + regret.png from the JSONs
    python experiments/curves_taskset_study.py dyhpo --seeds K   # + Syne Tune 0.14.2's DyHPO on seeds 0..K-1, run in
        # its own environment (below), merged into results.json beside the final run, every other figure kept as is;
        # --merge-only: merge what a stopped run cached (the tasks that have all K seeds)

Each target task is held out in turn; the curve model is pre-trained on the other 11 tasks (``leave_one_task_out``).
Protocol of DPL (Kadra et al. 2023) on TaskSet: validation loss, DPL's NaN / divergence filter, budget 1000
checkpoints, normalised regret (incumbent - best) / (worst - best) over the kept configs, incumbent = best value
observed so far. The runner's ``run_table`` does the work (the same code as ``python -m metanas
experiment=curves_taskset``); this script caches one JSON per (stage, task) so that it resumes, and writes the README
from the JSONs. Library baselines need the ``curves`` extra (Syne Tune 0.16, Optuna 5). DyHPO is in Syne Tune 0.14.2
only, whose pins (numpy < 1.27) cannot share the curves extra's environment; its stage runs in its own venv::

    python3.11 -m venv .venv-dyhpo
    .venv-dyhpo/bin/pip install -e . "syne-tune[gpsearchers]==0.14.2" pandas huggingface_hub scikit-learn
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv-dyhpo/bin/python experiments/curves_taskset_study.py dyhpo

It reads the same table through the same ``CurveBlackbox`` adapter (``metanas.search.curve_baselines``), caches one
JSON per seed and task under ``dyhpo/seed<s>/`` (committed: the raw runs) and adds a ``dyhpo`` block to results.json:
its regret on the seeds it ran and, on those seeds, every method's rank among all of them. After a new ``final`` run,
run ``dyhpo`` again (it re-merges from its cache).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from metanas.benchmarks.curves import load_taskset  # noqa: E402
from metanas.config import default_data_dir  # noqa: E402
from metanas.run_store import atomic_write_json, atomic_write_text  # noqa: E402
from metanas.runners.curves import DYHPO, MODEL_METHODS, CurvesTrain, run_table, summarise  # noqa: E402

OUT = REPO / "results" / "curves_taskset"
DATA = Path(default_data_dir())  # $METANAS_DATA_DIR, else ../shared/data
DESIGN_SEEDS = [100, 101, 102]
DESIGN_TASKS = ["LSTM128_bs64", "GRU64_avg", "VRNN128_tanh"]  # three of the 12; choices read on these seeds only
FINAL_SEEDS = list(range(10))
BASE = CurvesTrain()
VARIANTS = {  # every variant tried, design seeds only
    "base": {},
    "ft50": {"finetune_steps": 50},
}


def _cfg_json(t: CurvesTrain) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(t).items()}


def run_stage(stage: str, t: CurvesTrain, seeds: list[int], tasks: list[str], table) -> dict:
    d = OUT / stage
    d.mkdir(parents=True, exist_ok=True)
    per = {}
    for name in tasks:
        f = d / f"{table.tasks[table.task(name)]}.json"
        if f.exists():
            per[name] = json.loads(f.read_text())
            continue
        t0 = time.time()
        res = run_table(table, dataclasses.replace(t, targets=(name,)), seeds)
        res["wall_s"] = time.time() - t0
        res["config"] = _cfg_json(t)
        atomic_write_json(f, res)
        per[name] = res
        print(f"[{stage}] {name}: {time.time() - t0:.0f}s", {m: round(float(np.mean(np.asarray(v)[..., -1])), 4)
                                                             for m, v in res["regret"].items()}, flush=True)
    return merge(list(per.values()))


def merge(parts: list[dict]) -> dict:
    methods = [m for m in parts[0]["methods"] if all(m in p["methods"] for p in parts)]
    out = {"tasks": [p["tasks"][0] for p in parts], "seeds": parts[0]["seeds"], "grid": parts[0]["grid"],
           "methods": methods, "regret": {m: [p["regret"][m][0] for p in parts] for m in methods},
           "seconds": {m: sum(p["seconds"][m] for p in parts) for m in methods},
           "decisions": {m: sum(p["decisions"][m] for p in parts) for m in methods},
           "wall_s": sum(p.get("wall_s", 0.0) for p in parts), "skipped": parts[0].get("skipped", [])}
    return out


def design(table) -> None:
    rows = {}
    for name, over in VARIANTS.items():
        t = dataclasses.replace(BASE, methods=("metanas",), **over)
        res = run_stage(f"design/{name}", t, DESIGN_SEEDS, DESIGN_TASKS, table)
        rows[name] = {"over": over, **summarise(res, t.fractions, t.budget)}
    atomic_write_json(OUT / "design.json", rows)


def final(table, variant: str) -> None:
    over = VARIANTS[variant]
    t = dataclasses.replace(BASE, **over)
    res = run_stage("final", t, FINAL_SEEDS, list(table.tasks), table)
    res["variant"] = variant
    res["config"] = _cfg_json(t)
    res["machine"] = f"{platform.machine()} {platform.processor() or ''} (shared 2-core CPU, other jobs running)"
    res["summary"] = summarise(res, t.fractions, t.budget)
    atomic_write_json(OUT / "results.json", res)


def dyhpo(table, n_seeds: int, merge_only: bool = False) -> None:
    """Syne Tune 0.14.2's DyHPO on every task, seeds 0..n_seeds-1: a ``dyhpo`` block added to results.json.

    Seed by seed over the tasks in the table's order, one JSON per (seed, task); ``merge_only`` runs nothing and merges
    what is cached (a run stopped early): the tasks that have every one of the seeds, in the table's order.
    """
    import syne_tune

    res = json.loads((OUT / "results.json").read_text())
    seeds = FINAL_SEEDS[:n_seeds]
    t = dataclasses.replace(BASE, **VARIANTS[res["variant"]], methods=(DYHPO,))
    if not merge_only:
        for s in seeds:
            run_stage(f"dyhpo/seed{s}", t, [s], list(res["tasks"]), table)
    path = {(s, n): OUT / f"dyhpo/seed{s}" / f"{n}.json" for s in seeds for n in res["tasks"]}
    tasks = [n for n in res["tasks"] if all(path[s, n].exists() for s in seeds)]
    if not tasks:
        raise SystemExit(f"no task has all of seeds {seeds} cached under {OUT / 'dyhpo'}")
    cells = [[json.loads(path[s, n].read_text()) for s in seeds] for n in tasks]  # [T][S]
    if any(DYHPO not in c["methods"] for row in cells for c in row):
        raise SystemExit(f"{DYHPO} was skipped: this Python's Syne Tune ({syne_tune.__version__}) has no DyHPO")
    assert all(c["grid"] == res["grid"] for row in cells for c in row)
    regret = [[c["regret"][DYHPO][0][0] for c in row] for row in cells]  # [T, S, G]
    total = {k: sum(c[k][DYHPO] for row in cells for c in row) for k in ("seconds", "decisions")}
    # every method on DyHPO's tasks x seeds (the stored figures of the others stay as they are): regret, rank among all
    ti, si = [res["tasks"].index(n) for n in tasks], [res["seeds"].index(s) for s in seeds]
    both = {"methods": res["methods"] + [DYHPO], "grid": res["grid"],
            "regret": {**{m: np.asarray(res["regret"][m])[ti][:, si] for m in res["methods"]}, DYHPO: regret},
            "seconds": {**res["seconds"], DYHPO: total["seconds"]},
            "decisions": {**res["decisions"], DYHPO: total["decisions"]}}
    res["dyhpo"] = {"method": DYHPO, "tasks": tasks, "seeds": seeds, "regret": regret, **total,
                    "wall_s": sum(c.get("wall_s", 0.0) for row in cells for c in row), "config": _cfg_json(t),
                    "syne_tune": syne_tune.__version__, "python": platform.python_version(),
                    "command": " ".join(["python", *sys.argv]),
                    "machine": f"{platform.machine()} (shared 2-core CPU, other jobs running)",
                    "summary": summarise(both, t.fractions, t.budget)}
    atomic_write_json(OUT / "results.json", res)


LABELS = {"metanas": "metanas (curve meta-learner, 11 source tasks)", "metanas_scratch": "metanas, no source tasks",
          "dpl": "DPL power law (metanas fit)", "random": "random search, full budget (metanas)",
          "synetune_random": "Syne Tune RandomSearch", "synetune_asha": "Syne Tune ASHA",
          "synetune_hyperband": "Syne Tune Hyperband (ASHA, all brackets)", "synetune_bohb": "Syne Tune BOHB",
          "optuna_median": "Optuna MedianPruner", "optuna_hyperband": "Optuna HyperbandPruner",
          DYHPO: "Syne Tune DyHPO (0.14.2)"}


def report() -> None:
    from metanas.plots import plot_budget_regret
    from metanas.stats import paired_table

    res = json.loads((OUT / "results.json").read_text())
    s = res["summary"]
    methods = res["methods"]
    grid = np.asarray(res["grid"])
    reg = {m: np.asarray(res["regret"][m]) for m in methods}  # [T, S, G]
    lines = ["# curves_taskset: learning curves as meta-data on TaskSet (generated from results.json)", ""]
    lines += [f"Command: `python experiments/curves_taskset_study.py final` (the runner of `python -m metanas "
              f"experiment=curves_taskset seeds=10`), then `... report`. {len(res['tasks'])} held-out tasks x "
              f"{len(res['seeds'])} seeds ({res['seeds'][0]}..{res['seeds'][-1]}), budget {BASE.budget:g} "
              f"checkpoints; variant `{res['variant']}` chosen on design seeds {DESIGN_SEEDS} of tasks "
              f"{DESIGN_TASKS} (see below). Real data (TaskSet, DPL's export). Wall time "
              f"{res['wall_s'] / 60:.1f} min on {res['machine']}.", ""]
    dy = res.get("dyhpo")
    if dy:
        dseeds, dtasks = dy["seeds"], dy.get("tasks", res["tasks"])
        dpart = len(dseeds) < len(res["seeds"]) or len(dtasks) < len(res["tasks"])
        dlab = (f"seeds {dseeds[0]}..{dseeds[-1]}" if len(dseeds) > 1 else f"seed {dseeds[0]}") + (
            f" on {len(dtasks)} of the {len(res['tasks'])} tasks" if len(dtasks) < len(res["tasks"]) else "")
        ti, si = [res["tasks"].index(n) for n in dtasks], [res["seeds"].index(x) for x in dseeds]
        lines += [f"DyHPO was run afterwards with Syne Tune {dy['syne_tune']} (0.16 ships none) in its own venv "
                  f"(Python {dy['python']}; `python3.11 -m venv .venv-dyhpo && .venv-dyhpo/bin/pip install "
                  f"-e . \"syne-tune[gpsearchers]==0.14.2\" pandas huggingface_hub scikit-learn`): `OMP_NUM_THREADS=1 "
                  f"OPENBLAS_NUM_THREADS=1 nice -n 10 .venv-dyhpo/bin/{dy['command'].replace(' --merge-only', '')}` "
                  "(a "
                  "stopped run resumes from its per-(seed, task) files; `--merge-only` merges them), "
                  + (f"**{dlab} only** (a partial run: what the shared machine finished in the time there was, "
                     "tasks in the table's order, not chosen)" if dpart else f"the same {len(res['tasks'])} tasks "
                     f"and {dlab}")
                  + f", the same budget, table adapter and one worker; wall time {dy['wall_s'] / 60:.1f} min. The "
                  f"other methods' figures are those of the final run, unchanged.", ""]
    lines += ["## Normalised regret (mean over tasks x seeds) and average rank", "",
              "| method | regret @25 % | @50 % | @100 % | rank @25 % | @50 % | @100 % | ms / decision |",
              "|---|---|---|---|---|---|---|---|"]
    rows = [(s[f"{m}_regret"], m, s, "", "") for m in methods]
    if dy:
        dm, ds = dy["method"], dy["summary"]
        rows.append((ds[f"{dm}_regret"], dm, ds, f", {dlab}" if dpart else "", "*"))
    for _, m, sm, note, star in sorted(rows, key=lambda r: r[0]):
        lines.append(f"| {LABELS.get(m, m)}{note} | {sm[f'{m}_regret_25']:.4f} | {sm[f'{m}_regret_50']:.4f} | "
                     f"{sm[f'{m}_regret_100']:.4f} | {sm[f'{m}_rank_25']:.2f}{star} | {sm[f'{m}_rank_50']:.2f}{star} | "
                     f"{sm[f'{m}_rank_100']:.2f}{star} | {sm[f'{m}_decision_ms']:.2f} |")
    lines += ["", "ms / decision: wall time of the method over all tasks / decisions (model methods: jit-compiled "
              "searches vmapped over the 10 seeds, compilation included; library methods: one row per checkpoint "
              "observed), measured on the loaded shared machine: indicative only.", ""]
    if dy:
        allm = methods + [dm]
        lines += [f"\\* DyHPO's figures are on {dlab}, its rank among all {len(allm)} methods there (the others' "
                  f"ranks above are among the {len(methods)} methods of the final run, before DyHPO). Every method on "
                  f"DyHPO's runs ({dlab}), rank among all {len(allm)}:", "",
                  "| method | regret @25 % | @50 % | @100 % | rank @25 % | @50 % | @100 % |",
                  "|---|---|---|---|---|---|---|"]
        for m in sorted(allm, key=lambda m: ds[f"{m}_regret"]):
            lines.append(f"| {LABELS.get(m, m)} | {ds[f'{m}_regret_25']:.4f} | {ds[f'{m}_regret_50']:.4f} | "
                         f"{ds[f'{m}_regret_100']:.4f} | {ds[f'{m}_rank_25']:.2f} | {ds[f'{m}_rank_50']:.2f} | "
                         f"{ds[f'{m}_rank_100']:.2f} |")
        lines.append("")
    hb = s.get("synetune_hyperband_regret")
    if hb is not None:
        lines.append(f"Goal: metanas regret <= half of Hyperband's: {s['metanas_regret']:.4f} vs "
                     f"{hb:.4f} / 2 = {hb / 2:.4f}: **{'met' if s['metanas_regret'] <= hb / 2 else 'NOT met'}**.")
    best50 = min(methods, key=lambda m: s[f"{m}_rank_50"])
    best100 = min(methods, key=lambda m: s[f"{m}_rank_100"])
    lines += [f"Best average rank at 50 %: {best50}; at 100 %: {best100}.", ""]
    lines += ["## Paired comparison at the full budget (per task x seed, regret)", ""]
    per = {m: reg[m][..., -1].reshape(-1) for m in methods}
    table = paired_table(per, "metanas", lower_is_better=True, what="regret")
    if dy:
        dreg = np.asarray(dy["regret"])  # [T_dyhpo, S_dyhpo, G]
        drow = paired_table({"metanas": reg["metanas"][ti][:, si, -1].reshape(-1), dm: dreg[..., -1].reshape(-1)},
                            "metanas", lower_is_better=True, what="regret").rstrip("\n").split("\n")[-1]
        table = table.rstrip("\n") + "\n" + drow + "\n"
        if dpart:
            nt, ns = dreg.shape[:2]
            table += (f"\nThe `{dm}` row pairs on {dlab} only ({nt} tasks x {ns} seed{'s' * (ns > 1)} = {nt * ns} "
                      "pairs; metanas's median there is its median on those runs).\n")
    lines += [table, ""]
    cols = methods + [dm] if dy else methods
    lines += ["## Per task (mean regret at the full budget over seeds"
              + (f"; {dm}: over {dlab}" if dy and dpart else "") + ")", "",
              "| task | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for i, task in enumerate(res["tasks"]):
        lines.append(f"| {task.replace('FixedTextRNNClassification_imdb_', '')} | "
                     + " | ".join(f"{reg[m][i, :, -1].mean():.3f}" for m in methods)
                     + ((f" | {dreg[ti.index(i), :, -1].mean():.3f}" if i in ti else " | -") if dy else "") + " |")
    if (OUT / "design.json").exists():
        d = json.loads((OUT / "design.json").read_text())
        lines += ["", "## Design variants (metanas only; design seeds, 3 tasks; every variant tried)", "",
                  "| variant | overrides | regret @25 % | @50 % | @100 % |", "|---|---|---|---|---|"]
        for name, r in d.items():
            lines.append(f"| {name} | `{r['over']}` | {r['metanas_regret_25']:.4f} | {r['metanas_regret_50']:.4f} | "
                         f"{r['metanas_regret_100']:.4f} |")
    if res.get("skipped"):
        lines += ["", f"Skipped (library not installed): {res['skipped']}"]
    lines += ["", "Notes (read before quoting):", "",
              (f"- DyHPO: Syne Tune 0.16 ships none; it ran with Syne Tune {dy['syne_tune']} (`syne_tune.optimizer."
               "legacy_baselines.DyHPO`, library defaults: MOBSTER's GP surrogate, not the paper's deep kernel; "
               "linearly spaced rungs 1, 3, 5, ...; promotion by the SH rule with probability 0.25; `opt_skip_period` "
               "3) in its own venv, command above, through the same `CurveBlackbox` and simulator backend "
               "(pause-and-resume with checkpointing: a resumed trial pays only for its new checkpoints). Its ms / "
               "decision was measured in its own later run (one process, one thread) on the same loaded machine."
               if dy else
               "- Not run: DyHPO (Syne Tune 0.16 ships none; no other installed library has it).")
              + " Not run: DPL's curve CNN (the power law here is conditioned on the config only, so `dpl` is a "
              "simplified DPL and below the paper's).",
              "- `metanas_scratch` and `dpl` start from an untrained model: their first decision is a random config "
              "and the model is first fitted at the start of the second round, so decisions 2-25 (2.5 % of the "
              "budget) follow an untrained model.",
              "- A third design variant (`mix` = 0.3 source rows in fine-tuning) was run but was a no-op: the runner "
              "did not pass the source rows to the search then (fixed since); its numbers equalled `base` and it "
              "was not re-run.",
              "- Syne Tune runs with the same seed were not bit-identical across two invocations in a smoke test "
              "(scheduler-internal randomness); every method ran once per seed here.",
              "- Library baselines see the table through a Syne Tune `Blackbox` / Optuna objective that maps a "
              "sampled point of [0, 1]^8 to the nearest kept config (DPL's features), so their samplers and "
              "models work in the continuous space they were built for.",
              "- Wall time is the sum over the per-task runs on a shared, loaded 2-core machine (load average "
              "10-20); it is not a clean speed measurement.", "",
              *([f"- The plot has no DyHPO curve: it ran on {len(dtasks)} of the {len(res['tasks'])} tasks, and its "
                 "mean over those would not compare with the others' over all of them."]
                if dy and len(dtasks) < len(res["tasks"]) else []), "",
              "![budget vs regret](regret.png)", ""]
    atomic_write_text(OUT / "README.md", "\n".join(lines))
    curves = {LABELS.get(m, m): reg[m].mean(0) for m in methods}
    if dy and len(dtasks) == len(res["tasks"]):  # a mean over fewer tasks would not be comparable: not drawn
        curves[LABELS[dm] + (f", {dlab}" if dpart else "")] = dreg.mean(0)
    plot_budget_regret(OUT / "regret.png", grid, curves,
                       "TaskSet, 12 held-out tasks: normalised regret (mean over tasks; band: 25-75 % over seeds)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["design", "final", "report", "dyhpo"])
    ap.add_argument("--variant", default="base", choices=list(VARIANTS))
    ap.add_argument("--seeds", type=int, default=len(FINAL_SEEDS), help="dyhpo: run seeds 0..K-1 of the final seeds")
    ap.add_argument("--merge-only", action="store_true", help="dyhpo: run nothing, merge the cached (seed, task) runs")
    a = ap.parse_args()
    if a.stage == "report":
        report()
        return
    from metanas.compilation_cache import configure

    configure("auto")  # the per-task runs compile the same programs: later tasks load them from the cache
    table = load_taskset(DATA)
    if a.stage == "dyhpo":
        dyhpo(table, a.seeds, a.merge_only)
    else:
        design(table) if a.stage == "design" else final(table, a.variant)


if __name__ == "__main__":
    main()
