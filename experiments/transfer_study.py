"""Transfer study: leave-one-task-out search with a pre-trained pairwise meta-learner -> results/transfer/.

    python experiments/transfer_study.py transnas [--design] [--data-dir ../shared/data] [--file my_tasks.json]
    python experiments/transfer_study.py trust           # issue 31: design candidates, nested choice, final run
    python experiments/transfer_study.py macro           # the default, unchanged, on TransNAS-Bench-101 macro
    python experiments/transfer_study.py report          # tables + plots from the saved JSON

All logic is in ``metanas.search.transfer`` (``transnas_study``); this script only configures, saves, reports.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "results" / "transfer"

# fixed a priori (not tuned on TransNAS): see results/transfer/README.md
PREDICTOR = dict(hidden=64, layers=2, embed=16, steps=120, lr=3e-3, weight_decay=0.1, batch=128, rank_weight=30.0,
                 temperature=0.05, ensemble=1, linear_skip=True)
SEARCH = dict(budget=50, init=5, topk=5, pretrain_steps=500, finetune_steps=60, scale=0.1)
# the candidates the nested (sources-only) selection chooses among, per held-out target
# 0-2: the first study's candidates; 3-6 (added in the second study): ensembles with the sources' z-score order,
# constant (prior_halflife 0) or fading with the number of target queries (half-life in queries)
CONFIGS = [dict(mix=0.5, similarity_temp=0.0), dict(mix=0.5, similarity_temp=0.1), dict(mix=0.1, similarity_temp=0.1),
           dict(mix=0.1, similarity_temp=0.1, prior_weight=1.0, prior_halflife=0.0),
           dict(mix=0.5, similarity_temp=0.1, prior_weight=1.0, prior_halflife=0.0),
           dict(mix=0.1, similarity_temp=0.1, prior_weight=1.0, prior_halflife=15.0),
           dict(mix=0.1, similarity_temp=0.1, prior_weight=2.0, prior_halflife=15.0),
           # 7-8 (added in the third study): the first init queries from the z-score order, then the model
           dict(mix=0.1, similarity_temp=0.1, zscore_init=True),
           dict(mix=0.1, similarity_temp=0.1, prior_weight=1.0, prior_halflife=15.0, zscore_init=True)]


# the paired study's methods (one run, same seeds, same first cells; see metanas.search.transfer.paired_study).
# OURS is the default of transfer_transnas; the others are baselines or the variants tried (all reported).
METHODS = {
    "trust_tstr": dict(kind="trust", members="orders+pairwise", weighting="tstr"),
    "trust": dict(kind="trust", members="orders+pairwise", weighting="rgpe"),
    "trust_mean": dict(kind="trust", members="mean+pairwise", weighting="rgpe"),
    "trust_mean_tstr": dict(kind="trust", members="mean+pairwise", weighting="tstr"),
    "trust_orders": dict(kind="trust", members="orders", weighting="rgpe"),
    "trust_orders_tstr": dict(kind="trust", members="orders", weighting="tstr"),
    "trust_proxies_tstr": dict(kind="trust", members="orders+pairwise+proxies", weighting="tstr"),
    "trust_tstr_h95": dict(kind="trust", members="orders+pairwise", weighting="tstr", level=0.95),
    "trust_h95": dict(kind="trust", members="orders+pairwise", weighting="rgpe", level=0.95),
    "rgpe_rf": dict(kind="trust_rf", members="orders", weighting="rgpe"),
    "rgpe_rf_pw": dict(kind="trust_rf", members="orders+pairwise", weighting="rgpe"),
    "tstr_rf_pw": dict(kind="trust_rf", members="orders+pairwise", weighting="tstr"),
    "rgpe_rf_pw_h95": dict(kind="trust_rf", members="orders+pairwise", weighting="rgpe", level=0.95),
    "rgpe_gprf_pw": dict(kind="trust_rf", members="orders+pairwise", weighting="rgpe", target="gp+forest"),
    "tstr_gprf_pw": dict(kind="trust_rf", members="orders+pairwise", weighting="tstr", target="gp+forest"),
    "zero_shot": dict(kind="zero_shot"),
    "zero_shot_ls": dict(kind="zero_shot_ls"),
    "scratch": dict(kind="scratch"),
    "random": dict(kind="random"),
}
OURS = "trust_tstr"  # chosen on the design seeds 0..19 (results/transfer/intro.md), before the final run
LABEL = {"trust_tstr": "TST-R discordance weights, no hand-over; members: the sources' mean z-score order, each source's "
                       "order, the pre-trained meta-learner's zero-shot ranking, the target GP (out-of-fold: LOO)",
         "trust": "RGPE with the same members (bootstrap ranking-loss votes, dilution rule)",
         "trust_mean": "RGPE; members: mean z-score order, meta-learner, target GP",
         "trust_mean_tstr": "TST-R; members: mean z-score order, meta-learner, target GP",
         "trust_orders": "RGPE without the meta-learner member (orders + target GP)",
         "trust_orders_tstr": "TST-R without the meta-learner member (orders + target GP)",
         "trust_proxies_tstr": "TST-R; orders + meta-learner + the target's zero-cost proxies + target GP",
         "trust_tstr_h95": "TST-R, same members, hand-over level 0.95 (a member other than the mean z-score order "
                           "takes weight only once it ranks the target's queries better than that order in 95 % "
                           "of 200 bootstrap resamples)",
         "trust_h95": "RGPE, same members, hand-over level 0.95",
         "ours": "the trust search variant chosen for this held-out task by nested leave-one-task-out "
                 "on the design seeds (the candidate with the fewest mean queries on the OTHER tasks)",
         "rgpe_rf": "plain RGPE: orders + random forest (out-of-bag trust), the issue's baseline",
         "rgpe_rf_pw": "RGPE; orders + meta-learner + random forest (out-of-bag trust)",
         "tstr_rf_pw": "TST-R; orders + meta-learner + random forest (out-of-bag trust)",
         "rgpe_rf_pw_h95": "RGPE; orders + meta-learner + random forest, hand-over level 0.95",
         "rgpe_gprf_pw": "RGPE; orders + meta-learner + two target members side by side (GP and random forest)",
         "tstr_gprf_pw": "TST-R; orders + meta-learner + two target members side by side (GP and random forest)",
         "zero_shot": "zero-shot mean z-score order of the sources (capped)",
         "zero_shot_ls": "zero-shot order, then local search (one-position neighbours)",
         "scratch": "from scratch (target GP only, random first cells)",
         "random": "random search (same first cells as from scratch)"}
DESIGN_SEEDS = list(range(0, 20))
FINAL_SEEDS = list(range(1000, 1050))


def _paired_study(seeds, data, methods: dict, t0: float, **kw) -> dict:
    """``search.transfer.paired_study`` at the study's fixed settings (budget 50, init 5, 5 a round, top-1 % cells,
    the a-priori meta-learner), logging with the seconds since ``t0``; ``kw``: targets, cache_dir, seed_chunk, ..."""
    from metanas.predictors.pairwise import Pairwise
    from metanas.search.transfer import paired_study

    return paired_study(seeds, data, methods=methods, budget=50, init=5, topk=5, hit_frac=0.01,
                        predictor=Pairwise(**PREDICTOR), pretrain_steps=SEARCH["pretrain_steps"],
                        log=lambda m: print(f"[{time.time() - t0:.0f}s] {m}", flush=True), **kw)


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPUs (shared)"


def run_transnas(args) -> None:
    from metanas.benchmarks.transnas import default_path, load_transnas

    path = args.file or default_path(args.data_dir)
    data = load_transnas(path, lower_is_better=args.lower_is_better)
    seeds = DESIGN_SEEDS if args.design else FINAL_SEEDS
    seeds = seeds[: args.seeds] if args.seeds else seeds
    methods = {k: v for k, v in METHODS.items() if not args.methods or k in args.methods}
    t0 = time.time()
    OUT.mkdir(parents=True, exist_ok=True)
    name = ("transnas_design" if args.design else "transnas") + (f".{args.part}" if args.part else "") + ".json"
    partial = OUT / (name + ".partial")
    targets = [data.tasks.index(t) for t in args.targets] if args.targets else None
    res = _paired_study(seeds, data, methods, t0, targets=targets,
                        on_target=lambda r: partial.write_text(json.dumps(r)))
    partial.unlink(missing_ok=True)
    res.update(predictor=PREDICTOR, file=str(path), design=bool(args.design), ours=OURS, wall_s=time.time() - t0,
               machine=_machine(),
               command=" ".join(["python"] + sys.argv))
    (OUT / name).write_text(json.dumps(res, indent=1))
    print(f"wrote {OUT / name} in {time.time() - t0:.0f} s")


def merge_transnas(design: bool) -> None:
    """transnas[_design].json from its parts transnas[_design].PART.json (methods run in separate processes on the
    same seeds; the parts are kept)."""
    stem = "transnas_design" if design else "transnas"
    for p in OUT.glob(f"{stem}.*.unfinished.json"):  # from an earlier merge
        p.unlink()
    parts = sorted(OUT.glob(f"{stem}.*.json"))
    for p in sorted(OUT.glob(f"{stem}.*.json.partial")):  # a part still running (or stopped): its finished targets
        if p.with_suffix("") not in parts:
            r = json.loads(p.read_text())
            r.update(command=f"(unfinished part {p.name}: targets {list(r['targets'])})", wall_s=0.0)
            done = p.with_name(p.name.replace(".json.partial", ".unfinished.json"))
            done.write_text(json.dumps(r))
            parts.append(done)
    if not parts:
        raise SystemExit(f"no {stem}.PART.json in {OUT}")
    out = json.loads(parts[0].read_text())
    out["commands"] = [out.pop("command")]
    for p in parts[1:]:
        r = json.loads(p.read_text())
        if r["seeds"] != out["seeds"] or r["tasks"] != out["tasks"]:
            raise SystemExit(f"{p.name}: other seeds or tasks than {parts[0].name}")
        out["methods"].update(r["methods"])
        out["commands"].append(r["command"])
        out["wall_s"] += r["wall_s"]
        for t, x in r["targets"].items():
            for k in ("queries", "codes", "weights"):
                out["targets"].setdefault(t, {k: x[k] for k in ("n_cells", "n_hit")}).setdefault(k, {}).update(
                    x.get(k, {}))
    order = [m for m in METHODS if m in out["methods"]]
    out["methods"] = {m: out["methods"][m] for m in order}
    out["command"] = " ; ".join(out["commands"])
    out["ours"] = OURS
    (OUT / f"{stem}.json").write_text(json.dumps(out, indent=1))
    print(f"merged {[p.name for p in parts]} -> {stem}.json")


def _per_seed_mean(r, method) -> np.ndarray:
    return np.mean([r["targets"][t]["queries"][method] for t in r["tasks"]], 0)


def report_transnas(name: str = "transnas.json") -> str:
    from metanas.stats import paired_table

    r = json.loads((OUT / name).read_text())
    ours = r["ours"] if r.get("ours") in r["methods"] or r.get("ours") == "ours" else OURS
    budget, tasks = r["budget"], r["tasks"]
    every = list(r["methods"])
    methods = [m for m in every if all(m in r["targets"].get(t, {}).get("queries", {}) for t in tasks)]
    unfinished = [m for m in every if m not in methods]
    lines = [f"{len(tasks)} held-out tasks x {len(r['seeds'])} seeds ({r['seeds'][0]}..{r['seeds'][-1]}"
             f"{', design seeds' if r['design'] else ', fresh final seeds'}); queries to one of the target's top-1 % "
             f"cells among its own cells, never within {budget} = {budget + 1} for every method (orders included). "
             "Methods:", ""]
    lines += [f"- `{m}`: {LABEL.get(m, r['methods'][m])}" for m in methods]
    if name == "trust_final.json":
        planned = [a for arm in TRUST_FINAL_ARMS for a in arm.split("+")]
        missing = [a for a in planned if a not in every]
        if missing:
            lines.append("- **not run** (the machine's time ran out; the study is resumable: rerun `trust`): "
                         + ", ".join(f"`{m}` ({LABEL.get(m, '')})" for m in missing))
    if "nested_choice" in r:
        lines.append("- `ours` per held-out task (nested choice on the design seeds): "
                     + ", ".join(f"{t}: `{c}`" for t, c in r["nested_choice"].items()))
    for m in unfinished:
        done = [t for t in tasks if m in r["targets"].get(t, {}).get("queries", {})]
        lines.append(f"- `{m}`: {LABEL.get(m, r['methods'][m])} -- **unfinished in this run**: only "
                     f"{', '.join(done) or 'no task'} (in the per-task tables; left out of the mean over tasks)")
    det = [m for m in methods if all(len(set(r["targets"][t]["queries"][m])) == 1 for t in tasks)]
    if det:
        lines += ["", f"Deterministic here (the same result on every seed and task: no random element reaches "
                      f"them): {', '.join(f'`{m}`' for m in det)}. Between two of these the per-seed pairs are "
                      f"{len(r['seeds'])} copies of one difference, so their Wilcoxon p and CI say nothing beyond "
                      f"the sign of that one difference per task; for such a method the final seeds are not fresh "
                      f"evidence either: its design-seed figures on the same tasks are the same numbers."]
    lines += ["", "**Mean over the tasks** (per seed, the mean over the tasks of the censored queries; paired over seeds):",
              "", paired_table({m: _per_seed_mean(r, m) for m in methods}, ours, what="queries")]
    lines += ["Per-task mean (censored) queries:", "",
              "| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for t in tasks:
        q = r["targets"][t]["queries"]
        lines.append(f"| {t} | " + " | ".join(f"{np.mean(q[m]):.1f}" for m in methods) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{np.mean(_per_seed_mean(r, m)):.2f}**" for m in methods) + " |")
    for arm in [ours] + ([DEFAULT] if DEFAULT in methods and DEFAULT != ours else []):
        lines += ["", f"Goals (`{arm}`): " + "; ".join(_goals(r, arm, methods, unfinished)) + "."]
    lines.append("")
    for t in tasks:
        q = {m: v for m, v in r["targets"][t]["queries"].items() if m in every}
        lines += [f"**{t}** ({r['targets'][t]['n_cells']} cells, {r['targets'][t]['n_hit']} top cells)", "",
                  paired_table(q, ours, what="queries")]
        for arm in [ours] + ([DEFAULT] if DEFAULT in every and DEFAULT != ours else []):
            w = r["targets"][t].get("weights", {}).get(arm)
            spec = METHODS[r["nested_choice"][t]] if arm == "ours" and "nested_choice" in r else METHODS.get(arm)
            if w and spec:
                names = _target_names(spec)
                at = [i for i in (0, 4, len(w) - 1) if i < len(w)]
                lines.append(f"`{arm}`: mean weight of its target member(s) ({' and '.join(names)}) after "
                             + " / ".join(str(5 + 5 * i) for i in at) + " queries: "
                             + " / ".join("+".join(f"{v:.2f}" for v in w[i][-len(names):]) for i in at) + ".\n")
    return "\n".join(lines)


def _target_names(spec: dict) -> list[str]:
    """The target members of a method spec, in the order of the last columns of its weights."""
    if spec.get("kind") == "trust_rf":
        return ["GP" if p == "gp" else "forest" for p in spec.get("target", "forest").split("+")]
    return ["GP"]


def _goals(r: dict, ours: str, methods: list, unfinished: list) -> list[str]:
    """Issue 31's TransNAS goals for the arm ``ours`` of a paired study ``r``."""
    from metanas.stats import fmt, fmt_p, paired

    tasks = r["tasks"]
    goals = []
    if "zero_shot" in methods:
        worse = [t for t in tasks if (p := paired(r["targets"][t]["queries"][ours], r["targets"][t]["queries"]
                                                  ["zero_shot"])).p < 0.05 and p.losses > p.wins]
        pm = paired(_per_seed_mean(r, ours), _per_seed_mean(r, "zero_shot"))
        goals.append(f"not significantly worse than the capped zero-shot order on every task (Wilcoxon p < 0.05): "
                     f"{'MET' if not worse else 'NOT met (' + ', '.join(worse) + ')'}; better on the mean over "
                     f"tasks: {'MET' if pm.wins > pm.losses and pm.p < 0.05 else 'NOT met'} "
                     f"({np.mean(_per_seed_mean(r, ours)):.2f} vs {np.mean(_per_seed_mean(r, 'zero_shot')):.2f}, "
                     f"w/t/l {pm.wins}/{pm.ties}/{pm.losses}, p {fmt_p(pm.p)})")
    goals.append(f"mean over the tasks <= 10: {'MET' if np.mean(_per_seed_mean(r, ours)) <= 10 else 'NOT met'} "
                 f"({np.mean(_per_seed_mean(r, ours)):.2f})")
    if "scratch" in methods:
        ok = [t for t in tasks if (p := paired(r["targets"][t]["queries"][ours], r["targets"][t]["queries"]
                                               ["scratch"])).p < 0.05 and p.wins > p.losses]
        goals.append(f"significantly better than from scratch on every task: "
                     f"{'MET' if len(ok) == len(tasks) else 'NOT met'} ({len(ok)}/{len(tasks)})")
    for m in ("scratch", "rgpe_rf"):
        if m in unfinished:
            done = [t for t in tasks if m in r["targets"].get(t, {}).get("queries", {})]
            goals.append(f"against `{m}` on every task: NOT shown (it finished on {len(done)}/{len(tasks)} tasks)")
    if "rgpe_rf" in methods:
        pm = paired(_per_seed_mean(r, ours), _per_seed_mean(r, "rgpe_rf"))
        goals.append(f"the learnt version beats the plain RGPE version (mean over tasks, paired over seeds): "
                     f"{'yes' if pm.wins > pm.losses and pm.p < 0.05 else 'NO'} ({fmt(pm.median_a)} vs "
                     f"{fmt(pm.median_b)} median per-seed mean, w/t/l {pm.wins}/{pm.ties}/{pm.losses}, "
                     f"p {fmt_p(pm.p)})")
    return goals


# --- the trust study (issue 31): nested leave-one-task-out choice among CANDIDATES, then one final paired run ---
# Round 1 (declared before its design runs): TST-R without hand-over, TST-R and RGPE with the hand-over level 0.95
# (GP target member; same members). Its final run (seeds 3000..3049) is kept in trust_final_seeds3000.json: it left
# out the plain RGPE + random forest baseline, which then did better on 3 of 7 tasks in its partial log.
# Round 2 adds the random-forest target member (alone or beside the GP; RGPE / TST-R; hand-over 0.95) to the
# candidates, on the same design seeds; its final run uses fresh seeds 4000..4049 (never used for any choice).
CANDIDATES = ["trust_tstr", "trust_tstr_h95", "trust_h95", "rgpe_rf", "rgpe_rf_pw", "tstr_rf_pw", "rgpe_rf_pw_h95",
              "rgpe_gprf_pw", "tstr_gprf_pw"]
TRUST_DESIGN_SEEDS = list(range(0, 10))
TRUST_FINAL_SEEDS = list(range(4000, 4050))
# the final run's arms, every one on the same seeds and first cells, run arm by arm over the tasks in this order
# (so that a cut leaves whole arms): the cheap orders and random in one unit, then ours (nested choice), the
# default of transfer_transnas (DEFAULT: the lowest design mean over all 7 tasks, so not task-fresh here), the plain
# RGPE + random forest (the baseline), from scratch, and RGPE with the same members and the GP
DEFAULT = "tstr_gprf_pw"
TRUST_FINAL_ARMS = ["zero_shot+zero_shot_ls+random", "ours", DEFAULT, "rgpe_rf", "scratch", "trust"]
TRUST_DIR = OUT / "trust"


def nested_choice(design: dict, candidates=CANDIDATES) -> dict:
    """{held-out task: candidate}: for each task, the candidate with the fewest mean (censored) queries over the
    OTHER tasks' design seeds (ties: the earlier candidate). The held-out task's own design runs are not read."""
    tasks = design["tasks"]
    out = {}
    for t in tasks:
        others = [u for u in tasks if u != t]
        score = {c: float(np.mean([design["targets"][u]["queries"][c] for u in others])) for c in candidates}
        out[t] = min(candidates, key=lambda c: (score[c], candidates.index(c)))
    return out


def collect(stage: str, tasks, arms) -> dict:
    """The stage's unit files TRUST_DIR/STAGE/TASK.ARM.json merged into one study dict (finished units only)."""
    out = None
    for t in tasks:
        for a in arms:
            f = TRUST_DIR / stage / f"{t}.{a}.json"
            if not f.exists():
                continue
            r = json.loads(f.read_text())
            if out is None:
                out = {k: r[k] for k in ("tasks", "seeds", "budget", "init", "topk", "hit_frac")}
                out.update(methods={}, targets={}, wall_s=0.0, commands=[])
            out["methods"].update(r["methods"])
            out["wall_s"] += r["wall_s"]
            out["commands"].append(r["command"])
            x = r["targets"][t]
            d = out["targets"].setdefault(t, {"n_cells": x["n_cells"], "n_hit": x["n_hit"], "queries": {},
                                              "codes": {}, "weights": {}})
            for k in ("queries", "codes", "weights"):
                d[k].update(x.get(k, {}))
    return out


def run_unit(args) -> None:
    """One (stage, task, arm) of the trust study -> TRUST_DIR/STAGE/TASK.ARM.json (written only when finished)."""
    from metanas.benchmarks.transnas import default_path, load_transnas

    data = load_transnas(default_path(args.data_dir))
    (task,), (arm,) = args.targets, args.methods
    stage = "design" if args.design else "final"
    seeds = TRUST_DESIGN_SEEDS if args.design else TRUST_FINAL_SEEDS
    methods, extra = {a: METHODS[a] for a in arm.split("+") if a != "ours"}, {}
    if arm == "ours":
        design = collect("design", list(data.tasks), CANDIDATES)
        if design is None or any(c not in design["targets"].get(u, {}).get("queries", {})
                                 for u in data.tasks for c in CANDIDATES):
            raise SystemExit("ours: the design stage is unfinished (every candidate on every task is needed)")
        choice = nested_choice(design)
        methods, extra = {"ours": METHODS[choice[task]]}, dict(nested_choice=choice, chosen=choice[task])
    t0 = time.time()
    res = _paired_study(seeds, data, methods, t0, targets=[data.tasks.index(task)], cache_dir=TRUST_DIR / "cache",
                        seed_chunk=10)
    res.update(extra, wall_s=time.time() - t0, command=" ".join(["python"] + sys.argv))
    f = TRUST_DIR / stage / f"{task}.{arm}.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.with_suffix(".tmp").write_text(json.dumps(res))
    f.with_suffix(".tmp").rename(f)


# --- the default on a space it was never designed on: TransNAS-Bench-101 MACRO (issue 31: "other spaces and tasks
# that you have never seen will be used to judge this work"). No choice of any kind is made on macro: the default
# (chosen on micro), the round-1 default, the plain RGPE baseline and the simple baselines, fresh seeds.
FRESH_SPACE_SEEDS = list(range(5000, 5050))
FRESH_SPACE_METHODS = ["zero_shot", "zero_shot_ls", "random", DEFAULT, "rgpe_rf", "trust_tstr", "scratch"]


def run_fresh_space(args) -> None:
    """results/transfer/trust_macro.json: FRESH_SPACE_METHODS on every task of the macro file (or ``--file``)."""
    from metanas.benchmarks.transnas import load_transnas

    path = Path(args.file) if args.file else Path(args.data_dir) / "nas_bench_suite_zero" / "zc_transbench101_macro.json"
    data = load_transnas(path, lower_is_better=args.lower_is_better)
    seeds = FRESH_SPACE_SEEDS[: args.seeds] if args.seeds else FRESH_SPACE_SEEDS
    out = OUT / "trust_macro.json"
    partial = out.with_suffix(".partial.json")
    t0 = time.time()
    res = _paired_study(seeds, data, {m: METHODS[m] for m in FRESH_SPACE_METHODS}, t0,
                        cache_dir=TRUST_DIR / "cache_macro", seed_chunk=10,
                        on_target=lambda r: partial.write_text(json.dumps(r)))
    res.update(ours=DEFAULT, design=False, file=str(path), wall_s=time.time() - t0, machine=_machine(),
               command=" ".join(["python"] + sys.argv))
    out.write_text(json.dumps(res, indent=1))
    partial.unlink(missing_ok=True)
    print(f"wrote {out} in {time.time() - t0:.0f} s")


def _cpu_ticks(pid: int) -> int:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        return -1


def run_trust_study(args) -> None:
    """Design stage (every candidate, every task, design seeds), then the final stage (TRUST_FINAL_ARMS, fresh
    seeds), one unit per subprocess; finished units are skipped (resumable). A unit whose process uses no CPU for
    ``--stall-s`` seconds is killed and rerun (a safety net: batched Cholesky calls deadlocked XLA's CPU thread
    pool, see ``metanas.search.transfer._seeds_run``; the units are deterministic functions of their seeds, so a
    rerun is the same computation)."""
    import subprocess

    from metanas.benchmarks.transnas import default_path, load_transnas

    tasks = list(load_transnas(default_path(args.data_dir)).tasks)
    units = [("design", t, c) for t in tasks for c in CANDIDATES]
    units += [("final", t, a) for a in TRUST_FINAL_ARMS for t in tasks]
    deadline = time.time() + args.hours * 3600 if args.hours else None
    for stage, t, a in units:
        f = TRUST_DIR / stage / f"{t}.{a}.json"
        if f.exists():
            continue
        if deadline and time.time() > deadline:
            print(f"time is up: {stage} {t} {a} and later units not run", flush=True)
            break
        cmd = [sys.executable, __file__, "unit", "--targets", t, "--methods", a, "--data-dir", args.data_dir]
        cmd += ["--design"] if stage == "design" else []
        for attempt in range(args.retries + 1):
            t0 = time.time()
            proc = subprocess.Popen(cmd)
            last, last_t = -1, time.time()
            while proc.poll() is None:
                time.sleep(5)
                ticks = _cpu_ticks(proc.pid)
                if ticks != last:
                    last, last_t = ticks, time.time()
                elif time.time() - last_t > args.stall_s:
                    proc.kill()
                    proc.wait()
                    print(f"{stage} {t} {a}: no CPU for {args.stall_s} s (stalled), killed; attempt {attempt + 1}",
                          flush=True)
                    break
            if proc.returncode == 0:
                print(f"{stage} {t} {a}: done in {time.time() - t0:.0f} s", flush=True)
                break
            if proc.returncode not in (-9,):
                raise SystemExit(f"{stage} {t} {a}: failed with exit code {proc.returncode}")
    write_trust_json()


def write_trust_json() -> None:
    """results/transfer/trust_design.json and trust_final.json from the finished units."""
    from metanas.benchmarks.transnas import default_path

    for stage, arms in (("design", CANDIDATES), ("final", TRUST_FINAL_ARMS)):
        tasks = sorted({p.name.split(".")[0] for p in (TRUST_DIR / stage).glob("*.json")}) if (
            TRUST_DIR / stage).exists() else []
        r = collect(stage, tasks, arms)
        if r is None:
            continue
        order = json.loads(next((TRUST_DIR / stage).glob("*.json")).read_text())["tasks"]
        r["tasks"] = [t for t in order if t in r["targets"]]
        r["design"] = stage == "design"
        r["ours"] = "ours"
        r["default"] = DEFAULT if stage == "final" and DEFAULT in r["methods"] else None
        if stage == "final":
            ours = [json.loads(p.read_text()) for p in sorted((TRUST_DIR / stage).glob("*.ours.json"))]
            if ours:
                r["nested_choice"] = ours[0]["nested_choice"]
        r["command"] = "python experiments/transfer_study.py trust  (one `unit` subprocess per task x arm)"
        r["file"] = str(default_path(Path("..") / "shared" / "data"))  # the shared copy the units read
        (OUT / f"trust_{stage}.json").write_text(json.dumps(r, indent=1))


def report_trust_design() -> str:
    """The design stage: every candidate's mean queries per task (design seeds) and the nested choices."""
    r = json.loads((OUT / "trust_design.json").read_text())
    tasks = r["tasks"]
    cands = [c for c in CANDIDATES if all(c in r["targets"][t]["queries"] for t in tasks)]
    lines = [f"Candidates (`CANDIDATES`: members, target model, weighting, hand-over level; round 1, the first "
             f"three, declared before its design runs; round 2, the random-forest ones, added after round 1's "
             f"final run), each on every task "
             f"x design seeds {r['seeds'][0]}..{r['seeds'][-1]}; mean (censored) queries to a top-1 % cell:", "",
             "| candidate | " + " | ".join(tasks) + " | mean |", "|---|" + "---|" * (len(tasks) + 1)]
    for c in cands:
        q = [np.mean(r["targets"][t]["queries"][c]) for t in tasks]
        lines.append(f"| `{c}`: {LABEL.get(c, '')} | " + " | ".join(f"{v:.1f}" for v in q) + f" | {np.mean(q):.2f} |")
    if len(cands) == len(CANDIDATES) and len(tasks) == 7:
        ch = nested_choice(r)
        lines += ["", "Nested leave-one-task-out choice (for each held-out task, the candidate with the fewest mean "
                      "queries on the OTHER six tasks' design runs; `experiments/transfer_study.py:nested_choice`): "
                  + ", ".join(f"{t}: `{c}`" for t, c in ch.items()) + "."]
    return "\n".join(lines)


def run_tabrepo(args) -> None:
    from metanas.benchmarks.tabrepo import load_tabrepo, normalized_regret
    from metanas.hpo.portfolio import WARM_START_CANDIDATES, leave_tasks_out

    tr = load_tabrepo(args.tabrepo_dir or args.data_dir)
    # raw meta-features: leave_tasks_out standardises them with the training folds' statistics only
    k = args.knn_k if len(args.knn_k) > 1 else args.knn_k[0]
    res = leave_tasks_out(tr.task_features_raw, normalized_regret(tr.error), folds=5, shuffles=2, k=k,
                          size=8, seed=args.seed, candidates=WARM_START_CANDIDATES)
    res.update(n_tasks=len(tr.task_names), n_configs=len(tr.config_names), command=" ".join(["python"] + sys.argv))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tabrepo.json").write_text(json.dumps(res, indent=1))
    print(report_tabrepo())


def report_tabrepo() -> str:
    r = json.loads((OUT / "tabrepo.json").read_text())
    lab = {"greedy": "greedy portfolio (Feurer et al. 2022)", "best_on_average": "best-on-average portfolio",
           "knn": f"k-NN: greedy portfolio of the k nearest tasks (k in {r['k']} chosen per fold on its training "
                  f"tasks: {r['k_chosen']})",
           "kernel": "**meta-learned (default): kernel-weighted greedy portfolio + kernel-weighted ranking**, "
                     "candidate chosen per fold on its training tasks"}
    lines = [f"TabRepo, {r['n_tasks']} tasks x {r['n_configs']} LightGBM configs, {r['folds']} folds x "
             f"{r['shuffles']} shuffles ({r['n_task_evals']} held-out task evaluations):", "",
             "| warm start | regret @1 | @4 | @8 | Kendall tau of its ranking |", "|---|---|---|---|---|"]
    for m in ("greedy", "best_on_average", "knn", "kernel"):
        if m not in r["mean_regret"]:
            continue
        c = r["mean_regret"][m]
        tau = r["mean_tau"].get(m)
        lines.append(f"| {lab[m]} | {c[0]:.4f} | {c[3]:.4f} | {c[7]:.4f} | "
                     f"{'—' if tau is None else f'{tau:.3f}'} |")
    if "average_rank" in r["mean_tau"]:
        lines.append(f"| (task-agnostic ranking by mean per-task rank, for reference) | | | | "
                     f"{r['mean_tau']['average_rank']:.3f} |")
    if "per_candidate" in r:
        g, kr = r["mean_regret"]["greedy"], r["mean_regret"]["kernel"]
        wins = [f"@{n}: {'MET' if kr[n - 1] < g[n - 1] else 'NOT met'} ({kr[n - 1]:.4f} vs {g[n - 1]:.4f})"
                for n in (1, 4, 8)]
        t_ok = r["mean_tau"]["kernel"] > r["mean_tau"]["best_on_average"]
        lines += ["", "Goal, meta-learned below the greedy portfolio " + "; ".join(wins) + f"; tau above "
                  f"best-on-average: {'MET' if t_ok else 'NOT met'} ({r['mean_tau']['kernel']:.3f} vs "
                  f"{r['mean_tau']['best_on_average']:.3f}).", "",
                  "Every candidate of the kernel warm start on the same held-out tasks (reported for transparency; "
                  "the default picks one per fold by leave-one-out on the fold's TRAINING tasks only, chosen "
                  f"(portfolio, ranking) candidate indices per fold: {[tuple(c) for c in r['kernel_chosen']]}):", "",
                  "| # | bandwidth | meta-features | ranking target | regret @1 | @4 | @8 | tau |",
                  "|---|---|---|---|---|---|---|---|"]
        for i, (c, p) in enumerate(zip(r["candidates"], r["per_candidate"])):
            m = p["mean_regret"]
            cols = "all 13" if c["columns"] is None else "size-like " + str(tuple(c["columns"]))
            lines.append(f"| {i} | {c['bandwidth']:g} | {cols} | {c['target']} | {m[0]:.4f} | {m[3]:.4f} | "
                         f"{m[7]:.4f} | {p['mean_tau']:.3f} |")
    return "\n".join(lines)


NB201_SEARCH = dict(budget=20, init=5, topk=5, pretrain_steps=500, finetune_steps=60, mix=0.5, similarity_temp=0.0,
                   scale=0.1)


def run_nb201(args) -> None:
    import jax

    from metanas.search.transfer import TransferSearch, fixed_config_study
    from metanas.predictors.pairwise import Pairwise
    from metanas.runners.transfer import nb201_tables

    t0 = time.time()
    x, values, report, names = nb201_tables(args.nb201_metric, args.data_dir, "onehot_pruned")
    res = fixed_config_study(jax.random.PRNGKey(args.seed), x, values, report, search=TransferSearch(**NB201_SEARCH),
                             predictor=Pairwise(**PREDICTOR), seeds=args.seeds or 20, top=16,
                             log=lambda m: print(f"[{time.time() - t0:.0f}s] {m}", flush=True))
    res.update(tasks=names, metric=args.nb201_metric, search=NB201_SEARCH, predictor=PREDICTOR, seeds=args.seeds or 20,
               wall_s=time.time() - t0, command=" ".join(["python"] + sys.argv))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "nb201.json").write_text(json.dumps(res, indent=1))
    print(report_nb201())


def report_nb201() -> str:
    r = json.loads((OUT / "nb201.json").read_text())
    b = r["search"]["budget"]
    cap = lambda q: f"{q:g}" if q <= b else f">{b}"  # noqa: E731
    lines = [f"NB201, queried metric `{r['metric']}`, reported: 200-epoch test accuracy of the best cell by the "
             f"queried metric after {b} queries (median of {r['seeds']} seeds):", "",
             "| held-out | transfer: queries to top-16 | from scratch | random | zero-shot z-score order | "
             "transfer test acc | scratch | random | best-by-validation cell's test acc |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t, name in enumerate(r["tasks"]):
        x = r["targets"][str(t)]
        m = lambda k: float(np.median(x[k]))  # noqa: E731
        lines.append(f"| {name} | {cap(m('transfer'))} | {cap(m('scratch'))} | {cap(m('random'))} | "
                     f"{x['zero_shot_zscore']} | {m('transfer_report'):.2f} | {m('scratch_report'):.2f} | "
                     f"{m('random_report'):.2f} | {x['optimum_report']:.2f} |")
    return "\n".join(lines)


def write_readme() -> Path:
    """results/transfer/README.md from the saved JSONs (sections whose JSON is missing say so)."""
    parts = [(OUT / "intro.md").read_text() if (OUT / "intro.md").exists() else "# Transfer across tasks\n"]
    for title, name, fn in (("## TransNAS-Bench-101 micro: trust search, nested choice, paired final run",
                             "trust_final.json", lambda: report_transnas("trust_final.json")),
                            ("### Syne Tune's transfer baselines on the same seeds (`transfer_library_study.py`)",
                             "library.json", lambda: (OUT / "library.md").read_text().split("\n", 2)[2]),
                            ("### Design stage of the trust study (design seeds)", "trust_design.json",
                             report_trust_design),
                            ("## TransNAS-Bench-101 MACRO: the default on a space no choice was made on",
                             "trust_macro.json", lambda: report_transnas("trust_macro.json")),
                            ("## TransNAS-Bench-101 micro: the earlier paired run (variant chosen on the same tasks)",
                             "transnas.json", report_transnas),
                            ("## NB201 (sanity check)", "nb201.json", report_nb201),
                            ("## TabRepo: warm start vs portfolios", "tabrepo.json", report_tabrepo)):
        parts.append(title + "\n")
        if (OUT / name).exists():
            r = json.loads((OUT / name).read_text())
            parts.append(f"Command: `{r.get('command', '')}`" + (f"; wall {r['wall_s']:.0f} s" if "wall_s" in r else "")
                         + (f"; machine: {r['machine']}" if "machine" in r else "") + "\n")
            parts.append(fn() + "\n")
        else:
            parts.append(f"(not run: {name} missing)\n")
    path = OUT / "README.md"
    path.write_text("\n".join(parts))
    return path


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["transnas", "merge", "tabrepo", "nb201", "report", "trust", "unit", "macro"])
    p.add_argument("--stall-s", type=float, default=120.0, help="trust: rerun a unit idle (no CPU) this long")
    p.add_argument("--retries", type=int, default=3)
    p.add_argument("--hours", type=float, default=None, help="trust: start no unit after this many hours")
    p.add_argument("--part", default=None, help="transnas: write transnas[_design].PART.json (then `merge`)")
    p.add_argument("--nb201-metric", default="valid_acc", help="queried NB201 metric (a validation metric)")
    p.add_argument("--tabrepo-dir", default=None, help="your own TabRepo-layout folder")
    p.add_argument("--knn-k", type=int, nargs="+", default=[4, 8, 16, 32, 1000],
                   help="candidate k of the k-NN warm start, chosen per fold on its training tasks (1000: all)")
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--file", default=None, help="your own TransNAS-format JSON instead of the shared one")
    p.add_argument("--seeds", type=int, default=None, help="transnas: first K of the seeds; nb201: the number")
    p.add_argument("--design", action="store_true", help="transnas: the design seeds 0..19 (final: 1000..1049)")
    p.add_argument("--methods", nargs="*", default=None, help="transnas: a subset of METHODS")
    p.add_argument("--targets", nargs="*", default=None, help="transnas: a subset of the held-out tasks")
    p.add_argument("--lower-is-better", nargs="*", default=[], help="tasks of --file whose metric is lower-is-better")
    p.add_argument("--nested-seeds", type=int, default=2)
    p.add_argument("--nested-budget", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.what == "transnas":
        run_transnas(args)
    elif args.what == "macro":
        run_fresh_space(args)
    elif args.what == "trust":
        run_trust_study(args)
    elif args.what == "unit":
        run_unit(args)
    elif args.what == "merge":
        merge_transnas(args.design)
    elif args.what == "tabrepo":
        run_tabrepo(args)
    elif args.what == "nb201":
        run_nb201(args)
    else:
        print(write_readme().read_text())


if __name__ == "__main__":
    main()
