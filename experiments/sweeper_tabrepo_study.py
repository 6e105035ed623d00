"""The metanas sweeper's samplers on TabRepo tasks: metanas cold / warm vs Optuna 5's TPE, GP and random search,
paired seeds, equal trials -> results/sweeper_tabrepo/.

    python experiments/sweeper_tabrepo_study.py                    # 4 target tasks x 10 seeds x 30 trials
    python experiments/sweeper_tabrepo_study.py --tiny --out /tmp/x  # a smoke run
    python experiments/sweeper_tabrepo_study.py --replot           # README + tables again from results.json

Every proposal comes from ``hydra_plugins.metanas_sweeper.metanas_sweeper.make_proposer``, the function the Hydra
sweeper (``hydra/sweeper=metanas``) calls for each batch: ``metalearner`` (``metanas.hpo.proposer``, library
defaults), and Optuna's ``TPESampler``, ``GPSampler`` and ``RandomSampler`` (Optuna >= 5, library defaults; GP
needs torch), all seeded with the run's seed. Only the Hydra launcher is left out (the objective is a table look-up).

Objective (recorded, real): a TabRepo task's LightGBM error. The search space is the 5 LightGBM hyperparameters of
TabRepo's configurations (learning_rate log, num_leaves int log, feature_fraction, min_data_in_leaf int log,
extra_trees), over the ranges the 104 recorded configurations span; a proposed configuration is evaluated as the
recorded configuration nearest to it (standardised TabRepo config features), the same rule for every method.
TabRepo records one error per (task, config) (the test error in the task's metric), so selection and report use the
same number; the figures are normalised regret (0 = the best of the 104 configurations on that task, 1 = worst).

Warm start: each target task's history is ONE earlier sweep of a related task: a 30-trial random-search sweep (seed
s) of the task nearest to it by TabRepo's task meta-features; metanas_warm reads it as ``hydra.sweeper.history``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hydra_plugins.metanas_sweeper.metanas_sweeper import make_proposer  # noqa: E402
from metanas.benchmarks.tabrepo import encode_config, load_tabrepo, normalized_regret  # noqa: E402
from metanas.hpo.proposer import Record  # noqa: E402
from metanas.hpo.space import HyperparameterSpace, Hyperparameter  # noqa: E402

METHODS = ("metanas_cold", "metanas_warm", "tpe", "gp", "random")
DESIGN = ("task indices 5, 27, 45, 63 (target tasks) with seeds 500-501, 15 trials: replay 0/3/5, radius 0/0.1/0.2/0.3, "
          "refit_steps None/100 compared on trials to random's final best")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "results/sweeper_tabrepo"))
    p.add_argument("--data-dir", default=str(REPO.parent / "shared/data"))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=100, help="seeds first..first+seeds-1 (fresh, never tuned on)")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--tasks", type=int, default=4, help="target tasks: every len/TASKS-th TabRepo task")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--tiny", action="store_true", help="1 task, 2 seeds, 6 trials")
    p.add_argument("--replot", action="store_true")
    p.add_argument("command", nargs="?", default="run", choices=("run", "ceiling"),
                   help="run: the study (default); ceiling: what the one earlier sweep could give at best, from the "
                        "recorded table and results.json (no new sweep), written to results.json['ceiling'] + README")
    return p.parse_args(argv)


def make_space(tab) -> HyperparameterSpace:
    hp = tab.hyperparameters
    r = {k: (min(h[k] for h in hp), max(h[k] for h in hp)) for k in ("learning_rate", "num_leaves",
                                                                      "feature_fraction", "min_data_in_leaf")}
    return HyperparameterSpace((
        Hyperparameter("learning_rate", "float", low=r["learning_rate"][0], high=r["learning_rate"][1], log=True),
        Hyperparameter("num_leaves", "int", low=r["num_leaves"][0], high=r["num_leaves"][1], log=True),
        Hyperparameter("feature_fraction", "float", low=r["feature_fraction"][0], high=r["feature_fraction"][1]),
        Hyperparameter("min_data_in_leaf", "int", low=r["min_data_in_leaf"][0], high=r["min_data_in_leaf"][1],
                       log=True),
        Hyperparameter("extra_trees", "categorical", choices=(False, True))))


class Table:
    """evaluate(task, config) -> (error, normalised regret) of the nearest recorded configuration."""

    def __init__(self, tab):
        self.tab = tab
        f = np.stack([encode_config(h) for h in tab.hyperparameters]).astype(np.float64)
        self.mu, self.sd = f.mean(0), f.std(0) + 1e-12
        self.feats = (f - self.mu) / self.sd
        self.regret = normalized_regret(tab.error)

    def nearest(self, config) -> int:
        q = (encode_config({**config, "extra_trees": config["extra_trees"] in (True, "True", "true")}) - self.mu) \
            / self.sd
        return int(np.argmin(((self.feats - q) ** 2).sum(1)))

    def __call__(self, t: int, config) -> tuple[float, float]:
        c = self.nearest(config)
        return float(self.tab.error[t, c]), float(self.regret[t, c])


def run(method, table, space, t, seed, trials, history=None):
    """[(config, error, regret)] of one sweep (sequential, one trial per batch)."""
    kind = {"metanas_cold": "metalearner", "metanas_warm": "metalearner"}.get(method, method)
    propose = make_proposer(kind, space, False, seed=seed, history=history if method == "metanas_warm" else None)
    records, log = [], []
    for i in range(trials):
        (config,) = propose(1, records, i)
        err, reg = table(t, config)
        records.append(Record(config, err, "ok"))
        log.append((config, err, reg))
    return log


def trials_to(curve, target):
    hit = np.nonzero(np.asarray(curve) <= target + 1e-12)[0]
    return int(hit[0]) + 1 if len(hit) else math.inf


def summarise(runs, methods, trials):
    from metanas.stats import censor, paired

    keys = sorted({(t, s) for (_, t, s) in runs})
    final = {m: np.array([min(r for *_, r in runs[(m, t, s)]) for t, s in keys]) for m in methods}
    rand_best = {k: final["random"][i] for i, k in enumerate(keys)} if "random" in methods else None
    ttr = {}
    if rand_best:
        for m in methods:
            ttr[m] = censor(np.array([trials_to(np.minimum.accumulate([r for *_, r in runs[(m, t, s)]]),
                                                rand_best[(t, s)]) for t, s in keys], np.float64), trials)
    tests = {}
    for ours in ("metanas_cold", "metanas_warm"):
        if ours not in methods:
            continue
        for other in methods:
            if other.startswith("metanas"):
                continue
            pr = paired(final[ours], final[other], lower_is_better=True)
            tests[f"{ours} vs {other}: final regret"] = pr._asdict()
            if rand_best:
                pt = paired(ttr[ours], ttr[other], lower_is_better=True)
                tests[f"{ours} vs {other}: trials to random's final best"] = pt._asdict()
    return {"pairs": [list(k) for k in keys],
            "final_regret": {m: v.tolist() for m, v in final.items()},
            "median_final_regret": {m: float(np.median(v)) for m, v in final.items()},
            "trials_to_random_best": {m: v.tolist() for m, v in ttr.items()},
            "median_trials_to_random_best": {m: float(np.median(v)) for m, v in ttr.items()},
            "tests": tests}


def ceiling(res, tab) -> dict:
    """How much ANY use of each run's one earlier sweep could help, from the recorded table and results.json (no new
    sweep). Per (task, seed) run, with the study's own rules: the history is regenerated exactly as ``main`` made it
    (``run("random", ..., related task, seed + 1000, 30)``, checked against metanas_warm's replayed trials), a
    configuration counts as the nearest of the 104 recorded ones (``Table.nearest``), the bar is random search's
    final best normalised regret on the target (``trials_to``), trials are censored at ``trials + 1``.

    - relatedness: Spearman / Kendall between the history task's and the target task's recorded errors over the 104
      configurations, and over the distinct recorded configurations the history sweep measured;
    - ORACLE (uses the target's values; not a method): the history's configurations replayed in the best order
      chosen knowing the target -- 1 trial if the history holds a configuration at or below the bar, else never;
    - history-order replay (no target values; what warm-start replay can do): the history's distinct recorded
      configurations replayed best first by the HISTORY's errors, and the landed ``replay_list`` order (distinct
      raw configurations, ``Proposer.replay`` = 3 of them replayed by metanas_warm): trials to the bar."""
    from scipy.stats import kendalltau, spearmanr

    from metanas.hpo.proposer import Proposer, replay_list
    from metanas.hpo.warmstart import nearest_tasks
    from metanas.stats import censor

    a, s = res["args"], res["summary"]
    budget = a["trials"]
    table, space = Table(tab), make_space(tab)
    name = {n: i for i, n in enumerate(tab.task_names)}
    related = dict(zip(res["task_names"], res["related_names"]))
    n_replay = Proposer.replay
    runs = []
    for t, seed in s["pairs"]:
        tname = tab.task_names[t]
        rel = name[related[tname]]
        assert int(nearest_tasks(tab.task_features[t], tab.task_features, 2)[1]) == rel, "related task changed"
        bar = min(r["regret"] for r in res["trials"][f"random/{tname}/{seed}"])
        hist = run("random", table, space, rel, seed + 1000, 30)
        idx = [table.nearest(c) for c, _, _ in hist]
        distinct = sorted(set(idx), key=lambda c: (tab.error[rel, c], idx.index(c)))  # history's order, best first
        reg = table.regret[t]
        hit = lambda c: bool(reg[c] <= bar + 1e-12)  # noqa: E731  (trials_to's rule)
        first = lambda order: next((i + 1 for i, c in enumerate(order) if hit(c)), math.inf)  # noqa: E731
        rl = [table.nearest(c) for c in replay_list(space, {"h": [Record(c, e, "ok") for c, e, _ in hist]}, False,
                                                    len(hist))]
        warm = res["trials"].get(f"metanas_warm/{tname}/{seed}")
        check = None if warm is None else [table.nearest(x["config"]) for x in warm[:n_replay]] == rl[:n_replay]
        runs.append({
            "task": tname, "related": related[tname], "seed": seed, "bar": bar,
            "qualifying_of_104": int(sum(hit(c) for c in range(len(reg)))),
            "spearman_104": float(spearmanr(tab.error[rel], tab.error[t])[0]),
            "kendall_104": float(kendalltau(tab.error[rel], tab.error[t])[0]),
            "history_distinct": len(distinct),
            "spearman_history": float(spearmanr(tab.error[rel, distinct], tab.error[t, distinct])[0]),
            "kendall_history": float(kendalltau(tab.error[rel, distinct], tab.error[t, distinct])[0]),
            "history_best_regret_on_target": float(reg[distinct[0]]),
            "history_min_regret_on_target": float(min(reg[c] for c in distinct)),
            "history_qualifying": int(sum(hit(c) for c in distinct)),
            "oracle_trials": 1.0 if any(map(hit, distinct)) else float(budget + 1),
            "history_order_trials": float(censor([first(distinct)], budget)[0]),
            "replay_list_trials": float(censor([first(rl)], budget)[0]),
            "replay_hit_within": bool(first(rl) <= n_replay),
            "replay_matches_warm_trials": check})
    med = lambda k: float(np.median([r[k] for r in runs]))  # noqa: E731
    tpe = s["median_trials_to_random_best"].get("tpe")
    return {"runs": runs, "replay": n_replay, "censor": budget + 1, "tpe_median_trials": tpe,
            "goal_bar_trials": None if tpe is None else tpe / 4,
            "median": {k: med(k) for k in ("oracle_trials", "history_order_trials", "replay_list_trials",
                                           "history_best_regret_on_target", "qualifying_of_104")},
            "by_task": {tn: {"related": related[tn],
                             **{k: next(r[k] for r in runs if r["task"] == tn)
                                for k in ("spearman_104", "kendall_104")},
                             **{f"median_{k}": float(np.median([r[k] for r in runs if r["task"] == tn]))
                                for k in ("spearman_history", "kendall_history")},
                             **_others(tab, name[tn], name[related[tn]])}
                        for tn in res["task_names"]},
            "runs_history_holds_bar": int(sum(r["history_qualifying"] > 0 for r in runs)),
            "runs_replay_hits": int(sum(r["replay_hit_within"] for r in runs)),
            "runs_history_order_at_1": int(sum(r["history_order_trials"] == 1 for r in runs)),
            "history_check": [r["replay_matches_warm_trials"] for r in runs]}


def _others(tab, t: int, rel: int) -> dict:
    """The target's Spearman with every other TabRepo task over the 104 configurations: their median, the largest
    (an ORACLE choice of the history task, made knowing the target) and the related task's rank among them."""
    from scipy.stats import spearmanr

    rho = np.array([spearmanr(tab.error[o], tab.error[t])[0] for o in range(len(tab.task_names)) if o != t])
    mine = spearmanr(tab.error[rel], tab.error[t])[0]
    return {"other_tasks": len(rho), "median_spearman_other_tasks": float(np.median(rho)),
            "max_spearman_other_tasks": float(rho.max()), "related_rank": int((rho > mine).sum()) + 1}


def readme(res) -> str:
    s = res["summary"]
    a = res["args"]
    lines = ["# The metanas sweeper on TabRepo: metanas cold / warm vs Optuna 5's TPE, GP and random search", "",
             "`experiments/sweeper_tabrepo_study.py` -> this folder (`results.json` holds every trial). Generated from "
             "`results.json`; do not edit by hand.", "",
             f"    python experiments/sweeper_tabrepo_study.py   # {res['wall_s']:.0f} s wall, {res['machine']}", "",
             f"**Setting.** {len(set(t for t, _ in s['pairs']))} TabRepo target tasks ({', '.join(res['task_names'])})"
             f" x {a['seeds']} seeds ({a['first_seed']}..{a['first_seed'] + a['seeds'] - 1}) = {len(s['pairs'])} "
             f"paired runs per method, {a['trials']} trials each, one trial per batch. Every proposal comes from the "
             "sweeper's `make_proposer` (library defaults; Optuna " + res["versions"]["optuna"] + "). A configuration "
             "is evaluated as the nearest of TabRepo's 104 recorded LightGBM configurations (real recorded errors; "
             "TabRepo has no separate validation error, so the searched and the reported error are the same). "
             "metanas_warm's history: one 30-trial random sweep of the task nearest by meta-features "
             f"({', '.join(res['related_names'])}).", "",
             "| method | median final normalised regret | median trials to random's final best (censored at "
             f"{a['trials'] + 1}) |", "| --- | ---: | ---: |"]
    for m in s["final_regret"]:
        lines.append(f"| {m} | {s['median_final_regret'][m]:.4f} | "
                     f"{s['median_trials_to_random_best'].get(m, math.nan):g} |")
    lines += ["", "Paired tests (wins / ties / losses of the metanas method; two-sided Wilcoxon signed-rank p; bootstrap "
              "95 % CI of the median paired difference, metanas minus the other):", "",
              "| comparison | n | wins / ties / losses | median (metanas / other) | p | CI |",
              "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, t in s["tests"].items():
        lines.append(f"| {name} | {t['n']} | {t['wins']} / {t['ties']} / {t['losses']} | {t['median_a']:.4g} / "
                     f"{t['median_b']:.4g} | {t['p']:.3g} | [{t['ci_low']:.4g}, {t['ci_high']:.4g}] |")
    med = s["median_trials_to_random_best"]
    if "metanas_warm" in med and "tpe" in med:
        lines += ["", "Goal \"with one earlier sweep of a related task as history, reach random search's final best in "
                  "<= 1/4 of TPE's trials (median)\": metanas_warm / TPE = "
                  f"{med['metanas_warm']:g} / {med['tpe']:g} = {med['metanas_warm'] / med['tpe']:.2f}."]
    ps = [t["p"] for t in s["tests"].values()]
    lines += ["", f"Versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}.", "",
              "## Caveats", "",
              f"- {len(s['pairs'])} pairs, {a['trials']} trials per run; the smallest p-value is {min(ps):.3g}.",
              "- The objective is piecewise constant (every proposal is evaluated as the nearest of 104 recorded "
              "configurations), so distinct proposals can re-measure one recorded configuration. The warm path's "
              "replay / radius / refit_steps defaults were chosen on other TabRepo target tasks and seeds "
              f"({res.get('design', 'see the CHANGELOG')}) before this run.",
              *_replayed(res),
              "- TPE and GP propose at random during their first 10 trials (Optuna's n_startup_trials)" + _shared(res)
              + ".", *_ceiling_lines(res), ""]
    return "\n".join(lines)


def _ceiling_lines(res) -> list[str]:
    """The "Ceiling" section (``python experiments/sweeper_tabrepo_study.py ceiling``), when results.json has it."""
    c = res.get("ceiling")
    if not c:
        return []
    m, n = c["median"], len(c["runs"])
    pairs = "; ".join(f"{t} from {b['related']}: Spearman {b['spearman_104']:.2f} / Kendall {b['kendall_104']:.2f} "
                      f"(over the history's distinct configurations, median of the 5 runs: "
                      f"{b['median_spearman_history']:.2f} / {b['median_kendall_history']:.2f}); rank "
                      f"{b['related_rank']} of {b['other_tasks']} other tasks by Spearman with the target (1 = most "
                      f"correlated; median other task {b['median_spearman_other_tasks']:.2f}, the best, an ORACLE "
                      f"choice, {b['max_spearman_other_tasks']:.2f})"
                      for t, b in c["by_task"].items())
    ok = sum(bool(x) for x in c["history_check"])
    return ["", "## Ceiling: what the one earlier sweep could give at best", "",
            "`python experiments/sweeper_tabrepo_study.py ceiling` (no new sweep: the recorded table and this "
            "results.json; each run's history regenerated with the study's seed, identical to what metanas_warm "
            f"replayed in {ok} of {n} runs). Same bar (random's final best), nearest-of-104 rule and censoring "
            f"({c['censor']}) as above; TPE's median is {c['tpe_median_trials']:g}, so the goal needs a median of "
            f"<= {c['goal_bar_trials']:g} trials, i.e. the bar reached on the first trial (before any target result) "
            f"in at least {n // 2 + 1} of {n} runs.", "",
            f"- How related the history task is (errors over the 104 configurations): {pairs}.",
            f"- Target configurations at or below the bar: median {m['qualifying_of_104']:g} of 104.",
            f"- **ORACLE** (uses the target's values; not a method): the history's configurations replayed in the best "
            f"order chosen knowing the target need a median of {m['oracle_trials']:g} trial(s); the history holds a "
            f"configuration at or below the bar in {c['runs_history_holds_bar']} of {n} runs (it is a 30-trial random "
            f"sweep of the same space: this is coverage, which any random sweep has; what relatedness adds is the "
            f"order, next line).",
            f"- Replay in the history's own order (no target values; what warm-start replay can do): its distinct "
            f"recorded configurations best first need a median of {m['history_order_trials']:g} trials (the bar at the "
            f"first trial in {c['runs_history_order_at_1']} of {n} runs); the landed `replay_list` order needs "
            f"{m['replay_list_trials']:g} and hits the bar within its {c['replay']} replays in {c['runs_replay_hits']} "
            f"of {n} runs. The history's best configuration has a median normalised regret of "
            f"{m['history_best_regret_on_target']:.3f} on the target."]


def _replayed(res) -> list[str]:
    """metanas_warm's first 3 trials (the history's best configurations, replayed) on the target task."""
    logs = [log for k, log in res["trials"].items() if k.startswith("metanas_warm/")]
    if not logs:
        return []
    best3 = [min(t["regret"] for t in log[:3]) for log in logs]
    rand = [min(t["regret"] for t in res["trials"][k.replace("metanas_warm", "random", 1)])
            for k in res["trials"] if k.startswith("metanas_warm/") and k.replace("metanas_warm", "random", 1) in
            res["trials"]]
    hit = sum(b <= r + 1e-12 for b, r in zip(best3, rand))
    return [f"- metanas_warm's first 3 trials replay the history's best configurations; the best of them has a median "
            f"normalised regret of {float(np.median(best3)):.3f} on the target and matches random search's final best "
            f"in {hit} of {len(best3)} runs."]


def _shared(res) -> str:
    """How many of their first proposals TPE and GP share with random search (same seed, same stream)."""
    tr, out = res["trials"], []
    for m in ("tpe", "gp"):
        same = [sum(x["config"] == y["config"] for x, y in zip(log, tr[k.replace(m, "random", 1)]))
                for k, log in tr.items() if k.startswith(m + "/") and k.replace(m, "random", 1) in tr]
        if same:
            out.append(f"{m} {min(same)}-{max(same)}")
    return ("; seeded alike, they propose exactly random search's first configurations (shared per run: "
            + ", ".join(out) + "), so they reach random's final best whenever random found it that early") if out else ""


def versions():
    import importlib.metadata as md

    out = {}
    for p in ("jax", "jaxlib", "flax", "optax", "optuna", "torch", "hydra-core", "numpy"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    out["python"] = sys.version.split()[0]
    return out


def main(argv=None):
    a = parse(argv)
    out = Path(a.out)
    if a.replot:
        res = json.loads((out / "results.json").read_text())
        (out / "README.md").write_text(readme(res))
        return res
    if a.command == "ceiling":  # from the committed results.json and the recorded table: no new sweep
        res = json.loads((out / "results.json").read_text())
        res["ceiling"] = ceiling(res, load_tabrepo(a.data_dir))
        (out / "results.json").write_text(json.dumps(res, indent=1, default=str))
        (out / "README.md").write_text(readme(res))
        print(json.dumps({k: v for k, v in res["ceiling"].items() if k != "runs"}, indent=1))
        return res
    if a.tiny:
        a.seeds, a.trials, a.tasks = 2, 6, 1
    from metanas.hpo.warmstart import nearest_tasks

    from metanas.compilation_cache import configure

    configure("auto")  # the proposer's compiled programs are reused by a rerun
    tab = load_tabrepo(a.data_dir)
    table = Table(tab)
    space = make_space(tab)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    n_tasks = len(tab.task_names)
    targets = [i * (n_tasks // a.tasks) for i in range(a.tasks)]
    related = [int(nearest_tasks(tab.task_features[t], tab.task_features, 2)[1]) for t in targets]
    out.mkdir(parents=True, exist_ok=True)
    runs, t0 = {}, time.perf_counter()
    for t, rel in zip(targets, related):
        for s in range(a.first_seed, a.first_seed + a.seeds):
            hist_log = run("random", table, space, rel, s + 1000, 30)
            history = {f"task{tab.task_names[rel]}": [Record(c, e, "ok") for c, e, _ in hist_log]}
            for m in methods:
                ts = time.perf_counter()
                done = out / "runs" / f"{m}_{tab.task_names[t]}_{s}_{a.trials}.json"  # resumable: finished runs kept
                if done.exists():
                    runs[(m, t, s)] = [tuple(r) for r in json.loads(done.read_text())]
                else:
                    runs[(m, t, s)] = run(m, table, space, t, s, a.trials, history)
                    done.parent.mkdir(parents=True, exist_ok=True)
                    done.write_text(json.dumps(runs[(m, t, s)], default=str))
                print(f"task {tab.task_names[t]} seed {s} {m}: best regret {min(r for *_, r in runs[(m, t, s)]):.4f} "
                      f"({time.perf_counter() - ts:.1f} s)", flush=True)
    import os

    res = {"args": vars(a), "wall_s": time.perf_counter() - t0,
           "machine": f"shared 2-core CPU, load average {os.getloadavg()[0]:.1f} at the end",
           "task_names": [tab.task_names[t] for t in targets], "related_names": [tab.task_names[r] for r in related],
           "versions": versions(), "summary": summarise(runs, methods, a.trials), "design": DESIGN,
           "trials": {f"{m}/{tab.task_names[t]}/{s}": [{"config": c, "error": e, "regret": r} for c, e, r in log]
                      for (m, t, s), log in runs.items()}}
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    (out / "README.md").write_text(readme(res))
    print(readme(res))
    return res


if __name__ == "__main__":
    main()
