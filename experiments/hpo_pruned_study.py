"""Live pruning study: no pruning vs the curve meta-learner pruner vs Optuna's MedianPruner and HyperbandPruner,
real training on real data, equal trials -> results/hpo_pruned/ (README.md generated from results.json).

    .venv/bin/python experiments/hpo_pruned_study.py                 # the study (10 seeds x 30 trials x 4 methods)
    .venv/bin/python experiments/hpo_pruned_study.py --report        # README.md + plot again from results.json
    .venv/bin/python experiments/hpo_pruned_study.py --tiny --out /tmp/x   # a smoke run (seconds after compile)

Task (that of results/live_metalearner, task A): each trial trains ONE NB201 cell (6 categorical edges over 5 ops)
with a learning rate in [1e-3, 3e-2] (log) for 30 full-batch Adam steps (``metanas.runners.cell.cell_segments``: the
same training as ``cell_trainer``, cut into 10 segments of 3 steps) on REAL Omniglot (10 characters, 7x7 pixels,
12 drawers train / 5 validation / 3 test per character, ``data_seed=0``). After each segment the trial reports its
validation accuracy to Optuna (step = checkpoint 1..10) and asks whether to stop. Every method runs the same
configurations: Optuna's ``RandomSampler(seed)`` draws them independently of the results, and every trial of seed
s trains from PRNG key s. Selection is on validation accuracy among the FINISHED trials; the chosen configuration's
test accuracy is read once, at the end. Training steps are counted over all trials (pruned trials: the steps they
ran).

Methods: ``none`` (no pruning), ``metalearner`` (``metanas.optuna.MetaLearnerPruner``: the curve model of
``metanas.predictors.curves`` fitted on this study's finished and pruned curves plus the curves of a RELATED study,
``source``: random trials on other Omniglot characters, ``data_seed=1``; prunes when P(final val acc <= the
incumbent's) >= threshold), ``median`` (``optuna.pruners.MedianPruner()``, defaults) and ``hyperband``
(``optuna.pruners.HyperbandPruner(min_resource=1, max_resource=10, reduction_factor=3)``); ablation
``metalearner_cold``: the same pruner without the related study (``--methods ...,metalearner_cold`` adds it to a
finished run). The pruner's settings
(threshold, min_checkpoints) were fixed before the final run; ``--design`` runs the same comparison on a third
task (``data_seed=2``) and other seeds for choosing them.
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

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
METHODS = ("none", "metalearner", "median", "hyperband")  # and metalearner_cold (no related study), an ablation


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "results/hpo_pruned"))
    p.add_argument("--data-dir", default=str(REPO.parent / "shared/data"))
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--seed0", type=int, default=0, help="first seed of the run")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--steps", type=int, default=30, help="training steps of a finished trial")
    p.add_argument("--every", type=int, default=3, help="steps between checkpoints (reports)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-drawers", type=int, default=12)
    p.add_argument("--val-drawers", type=int, default=5)
    p.add_argument("--data-seed", type=int, default=0, help="the target task's characters")
    p.add_argument("--source-data-seed", type=int, default=1, help="the related study's characters")
    p.add_argument("--source-trials", type=int, default=40)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--threshold", type=float, default=0.99)
    p.add_argument("--min-checkpoints", type=int, default=2)
    p.add_argument("--min-std", type=float, default=0.06)
    p.add_argument("--tiny", action="store_true", help="1 seed, 5 trials, 6 steps, 5 classes, 8 source trials")
    p.add_argument("--report", action="store_true", help="only regenerate README.md and the plot from results.json")
    p.add_argument("--replay", default=None, help="design aid: replay pruner settings on RESULTS_JSON's none runs")
    return p.parse_args(argv)


def distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return {**{f"train.cell.e{i}": CategoricalDistribution(list(OPS)) for i in range(6)},
            "train.lr": FloatDistribution(1e-3, 3e-2, log=True)}


class SegmentTask:
    """Real training of one NB201 cell in segments: ``run(config, seed, report) -> (curve, test_acc, steps)``;
    ``report(k, val_acc) -> bool`` is asked after checkpoint k (1-based) and stops the run when it says True."""

    def __init__(self, a, data_seed):
        from metanas.runners.cell import cell_segments
        from metanas.runners.collect import omniglot_problem

        x, y, xh, yh = omniglot_problem(a.data_dir, a.classes, a.train_drawers, 7, data_seed)
        held = 20 - a.train_drawers
        d = np.arange(len(yh)) % held
        n_val = int((d < a.val_drawers).sum())
        self.data = (x, y, np.concatenate([xh[d < a.val_drawers], xh[d >= a.val_drawers]]),
                     np.concatenate([yh[d < a.val_drawers], yh[d >= a.val_drawers]]))
        self.init, self.advance = cell_segments(OPS, 6, 4, 1, a.classes, 1, a.every, n_val)
        self.checkpoints, self.every = a.steps // a.every, a.every
        self.name = f"omniglot-{a.classes}c-7px-d{data_seed}"

    def run(self, config, seed, report):
        import jax
        import jax.numpy as jnp

        arch = jnp.asarray([OPS.index(config[f"train.cell.e{i}"]) for i in range(6)], jnp.int32)
        lr = jnp.float32(config["train.lr"])
        x, y, xe, ye = self.data
        state = self.init(jax.random.PRNGKey(seed)[None], arch, lr, x)
        curve, test = [], math.nan
        for k in range(1, self.checkpoints + 1):
            state, m = self.advance(state, arch, lr, x, y, xe, ye)
            curve.append(float(np.asarray(m["val_acc"])[0]))
            test = float(np.asarray(m["test_acc"])[0])
            if k < self.checkpoints and report(k, curve[-1]):
                return curve, None, k * self.every
        return curve, test, self.checkpoints * self.every


def make_pruner(method, a, checkpoints, source_study):
    import optuna

    from metanas.optuna import MetaLearnerPruner

    if method == "none":
        return optuna.pruners.NopPruner()
    if method == "median":
        return optuna.pruners.MedianPruner()
    if method == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=checkpoints, reduction_factor=3)
    if method in ("metalearner", "metalearner_cold"):  # cold: no related study, this study's curves only
        return MetaLearnerPruner(history=[source_study] if method == "metalearner" else [], threshold=a.threshold,
                                 min_checkpoints=a.min_checkpoints, min_std=a.min_std)
    raise SystemExit(f"unknown method {method!r}; choose from {', '.join(METHODS)}")


def search(task, pruner, seed, n_trials):
    """One Optuna study (maximise validation accuracy) with ``pruner``: the trial log."""
    import optuna

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed),
                                pruner=pruner)
    log = []
    for _ in range(n_trials):
        trial = study.ask(distributions())

        def report(k, v, trial=trial):
            trial.report(v, k)
            return trial.should_prune()

        t0 = time.perf_counter()
        curve, test, steps = task.run(dict(trial.params), seed, report)
        if test is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, curve[-1])
        log.append({"config": dict(trial.params), "curve": curve, "status": "pruned" if test is None else "ok",
                    "test_acc": test, "steps": steps, "wall_s": time.perf_counter() - t0})
    return log, study


def source_study(a, seed=10_000):
    """The related study: random trials, full curves, on other characters (``source_data_seed``)."""
    import optuna

    task = SegmentTask(a, a.source_data_seed)
    log, study = search(task, optuna.pruners.NopPruner(), seed, a.source_trials)
    return log, study


def study_from_log(log):
    import optuna

    study = optuna.create_study(direction="maximize")
    for r in log:
        trial = optuna.trial.create_trial(
            params=r["config"], distributions=distributions(), value=r["curve"][-1] if r["status"] == "ok" else None,
            intermediate_values={k + 1: v for k, v in enumerate(r["curve"])},
            state=optuna.trial.TrialState.COMPLETE if r["status"] == "ok" else optuna.trial.TrialState.PRUNED)
        study.add_trial(trial)
    return study


def outcome(log, full_steps):
    """Chosen (best validation among finished trials; first on ties) config's val and test acc; steps spent."""
    done = [r for r in log if r["status"] == "ok"]
    best = max(done, key=lambda r: r["curve"][-1]) if done else None
    steps = np.cumsum([r["steps"] for r in log])
    curve, b = [], -math.inf
    for r in log:
        if r["status"] == "ok":
            b = max(b, r["curve"][-1])
        curve.append(b)
    return {"chosen_val": best["curve"][-1] if best else math.nan,
            "chosen_test": best["test_acc"] if best else math.nan,
            "steps": int(steps[-1]), "steps_frac": float(steps[-1] / (full_steps * len(log))),
            "pruned": int(sum(r["status"] == "pruned" for r in log)),
            "best_so_far": curve, "cum_steps": steps.tolist()}


def summarise(res, methods, seeds, full_steps):
    from metanas.stats import paired

    per = {m: [outcome(res["runs"][f"{m}/{s}"], full_steps) for s in seeds] for m in methods}
    rows = {}
    for m in methods:
        o = per[m]
        row = {k: [r[k] for r in o] for k in ("chosen_val", "chosen_test", "steps", "steps_frac", "pruned")}
        row |= {f"median_{k}": float(np.median(v)) for k, v in row.items()}
        row["mean_steps_frac"] = float(np.mean(row["steps_frac"]))
        if m != "none" and "none" in per:
            for k in ("chosen_test", "chosen_val"):
                row[f"paired_{k}"] = paired(row[k], [r[k] for r in per["none"]], lower_is_better=False)._asdict()
        if m == "metalearner" and "median" in per:  # the strongest simple pruner, same seeds
            row["vs_median"] = {k: paired(row[k], [r[k] for r in per["median"]], lower_is_better=k != "steps")._asdict()
                                for k in ("chosen_test", "chosen_val", "steps")}
        rows[m] = row
    return rows


def plot(res, methods, seeds, path, full_steps):
    from metanas.plots import pyplot, save

    fig, ax = pyplot().subplots(figsize=(6.4, 4))
    n = len(res["runs"][f"{methods[0]}/{seeds[0]}"])
    grid = np.linspace(0, full_steps * n, 200)
    for m in methods:
        cs = []
        for s in seeds:
            o = outcome(res["runs"][f"{m}/{s}"], full_steps)
            idx = np.searchsorted(o["cum_steps"], grid, side="right") - 1
            bs = np.asarray(o["best_so_far"], float)
            cs.append(np.where(idx >= 0, bs[np.maximum(idx, 0)], np.nan))
        cs = np.asarray(cs)
        cs = np.where(np.isfinite(cs), cs, np.nan)
        with np.errstate(all="ignore"):
            med = np.nanmedian(cs, 0)
            lo, hi = np.nanpercentile(cs, 25, 0), np.nanpercentile(cs, 75, 0)
        ax.plot(grid, med, label=m)
        ax.fill_between(grid, lo, hi, alpha=0.15)
    ax.set_xlabel("training steps spent (all trials)")
    ax.set_ylabel("best finished val. accuracy so far")
    ax.set_title("median over seeds; band: 25-75 %", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)


def design_lines(design):
    """The design table (``--replay`` on the design task's no-pruning runs), if one was written."""
    if not design:
        return []
    d = design["design_args"]
    lines = [f"**Design** (before the final run; task data_seed {d['data_seed']}, seeds {d['seed0']}.."
             f"{d['seed0'] + d['seeds'] - 1}, other characters than the final task's): the metalearner pruner's "
             f"threshold and min_std were chosen by replaying each setting on that task's no-pruning curves "
             f"(`--replay results/hpo_pruned/design/results.json`; a replayed decision is the live one, since every "
             f"method trains the same configurations). Chosen: the setting that lost no chosen validation accuracy "
             f"there, with the fewest steps among such.", "",
             "| threshold | min_std | steps / no pruning (mean) | chosen val acc lost (mean) |",
             "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['threshold']} | {r['min_std']} | {r['steps_frac_mean']:.3f} | {r['chosen_val_lost_mean']:.3f} |"
              for r in design["rows"]]
    return lines + [""]


def readme(res, rows, methods, seeds, partial):
    from metanas.stats import fmt, fmt_p

    a = res["args"]
    lines = ["# Live pruning: curve meta-learner vs Optuna's median and Hyperband pruners (real training)", "",
             "Generated by `experiments/hpo_pruned_study.py` from `results.json` (every trial's curve, status, steps).",
             *([f"**PARTIAL: {len(seeds)} of {a['seeds']} seeds finished for every method.**", ""] if partial else []),
             "    .venv/bin/python experiments/hpo_pruned_study.py            # the study",
             "    .venv/bin/python experiments/hpo_pruned_study.py --report   # README + plot from results.json", "",
             f"**Task** (results/live_metalearner's task A): one NB201 cell + learning rate per trial, {a['steps']} "
             f"full-batch Adam steps on real Omniglot ({a['classes']} characters, 7x7 px, data_seed {a['data_seed']}; "
             f"{a['train_drawers']} drawers train / {a['val_drawers']} validation / "
             f"{20 - a['train_drawers'] - a['val_drawers']} test), validation accuracy reported every {a['every']} "
             f"steps ({a['steps'] // a['every']} checkpoints). {a['trials']} trials per run, seeds "
             f"{seeds[0]}..{seeds[-1]}; the same configurations for every method (Optuna RandomSampler(seed)); "
             f"selection on validation among finished trials, test read once for the chosen one.", "",
             f"**metalearner**: `metanas.optuna.MetaLearnerPruner` (curve model of `metanas.predictors.curves`, "
             f"ensemble of 5), source curves = a related study ({a['source_trials']} random trials on "
             f"data_seed {a['source_data_seed']}), threshold {a['threshold']}, min_checkpoints "
             f"{a['min_checkpoints']}, min_std {a['min_std']}. **median**: `MedianPruner()` defaults. **hyperband**: "
             f"`HyperbandPruner(min_resource=1, max_resource={a['steps'] // a['every']}, reduction_factor=3)`."
             + (" **metalearner_cold** (ablation, run after the others on the same seeds): the metalearner pruner "
                "without the related study (this study's curves only)." if "metalearner_cold" in methods else ""),
             "",
             *design_lines(res.get("design")),
             "## Results (measured)", "",
             "| method | chosen config's test acc (median) | chosen val acc (median) | training steps (median) | "
             "steps / no pruning (mean) | pruned trials (median) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for m in methods:
        r = rows[m]
        lines.append(f"| {m} | {fmt(r['median_chosen_test'])} | {fmt(r['median_chosen_val'])} | "
                     f"{fmt(r['median_steps'])} | {r['mean_steps_frac']:.3f} | {fmt(r['median_pruned'])} |")
    lines += ["", "Paired against no pruning, per seed (metanas.stats.paired; wins = higher accuracy):", "",
              "| method | metric | median paired diff [95 % CI] | wins / ties / losses | Wilcoxon p |",
              "| --- | --- | --- | --- | --- |"]
    for m in methods:
        for k in ("chosen_test", "chosen_val"):
            p = rows[m].get(f"paired_{k}")
            if p:
                lines.append(f"| {m} | {k} | {fmt(p['median_diff'])} [{fmt(p['ci_low'])}, {fmt(p['ci_high'])}] | "
                             f"{p['wins']} / {p['ties']} / {p['losses']} | {fmt_p(p['p'])} |")
    vm = rows.get("metalearner", {}).get("vs_median")
    if vm:
        lines += ["", "metalearner against Optuna's MedianPruner, per seed (wins = higher accuracy / fewer steps):", "",
                  "| metric | median paired diff [95 % CI] | wins / ties / losses | Wilcoxon p |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {k} | {fmt(p['median_diff'])} [{fmt(p['ci_low'])}, {fmt(p['ci_high'])}] | "
                  f"{p['wins']} / {p['ties']} / {p['losses']} | {fmt_p(p['p'])} |" for k, p in vm.items()]
    ml = rows.get("metalearner")
    if ml and "paired_chosen_test" in ml:
        p = ml["paired_chosen_test"]
        not_worse = p["losses"] <= p["wins"] or p["p"] >= 0.05
        lines += ["", f"**Goal** (same final quality, paired test not worse, at <= 50 % of the steps): steps "
                  f"{ml['mean_steps_frac']:.3f} of no pruning "
                  f"({'met' if ml['mean_steps_frac'] <= 0.5 else 'NOT met'}); "
                  f"chosen test acc {p['wins']} / {p['ties']} / {p['losses']} wins/ties/losses vs no pruning, "
                  f"Wilcoxon p {fmt_p(p['p'])}, median diff {fmt(p['median_diff'])} "
                  f"({'not worse' if not_worse else 'WORSE'} by this test: no more losses than wins, or Wilcoxon "
                  f"p >= 0.05; with {len(seeds)} seeds this test has little power)."]
    lines += ["", "![best so far vs steps](best_so_far.png)", "",
              "Best finished validation accuracy against the training steps spent so far; a search that pruned "
              f"ends before {a['trials']} x {a['steps']} steps and its line is held flat after its last trial.", "",
              "## Caveats", "",
              "- 50 validation / 30 test images: accuracies move in steps of 0.02 / 0.033; differences of a few "
              "points are within noise.",
              "- A pruned trial is never chosen (its final value is unknown), so a pruner can only lose the best "
              "validation configuration that no pruning finds, never gain one; test accuracy can move either way.",
              "- Seeds where a pruner lost the best validation configuration that no pruning finds: " + ", ".join(
                  f"{m} {rows[m]['paired_chosen_val']['losses']} of {len(seeds)}" for m in methods
                  if "paired_chosen_val" in rows[m]) + ".",
              f"- Wall time {res.get('wall_s', math.nan):.0f} s on a shared, loaded 2-core CPU (not a benchmark).", ""]
    return "\n".join(lines)


def report(out, res, partial=False):
    a = res["args"]
    methods = [m for m in a["methods"].split(",") if m]
    seeds = [s for s in range(a["seed0"], a["seed0"] + a["seeds"]) if all(f"{m}/{s}" in res["runs"] for m in methods)]
    partial = partial or len(seeds) < a["seeds"]
    if not seeds:
        return None
    full = a["steps"]
    rows = summarise(res, methods, seeds, full)
    res["summary"] = {"seeds": seeds, "partial": partial, "methods": rows}
    design = out / "design" / "replay.json"
    if design.exists():
        res["design"] = json.loads(design.read_text())
    plot(res, methods, seeds, out / "best_so_far.png", full)
    (out / "README.md").write_text(readme(res, rows, methods, seeds, partial))
    return rows


def replay(a, path):
    """Design aid (``--replay RESULTS_JSON``): replay the metalearner pruner with each setting of a small grid on the
    full curves of the ``none`` runs there (same configurations and training in every method, so a replayed
    decision is the live one); prints the steps fraction and the chosen validation accuracy lost per setting, and
    writes them to replay.json beside RESULTS_JSON (the README's design table)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    res = json.loads(Path(path).read_text())
    src = study_from_log(res["source"])
    runs = {k: v for k, v in res["runs"].items() if k.startswith("none/")}
    every = res["args"]["every"]
    rows = []
    for threshold in (0.9, 0.95, 0.99):
        for min_std in (0.0, 0.03, 0.06):
            fr, lost = [], []
            for log in runs.values():
                pruner = make_pruner("metalearner", argparse.Namespace(threshold=threshold, min_std=min_std,
                                                                       min_checkpoints=a.min_checkpoints),
                                     len(log[0]["curve"]), src)
                study = optuna.create_study(direction="maximize", pruner=pruner)
                out = []
                for r in log:
                    study.enqueue_trial(r["config"])  # the replayed trial's parameters
                    trial = study.ask(distributions())
                    stop = None
                    for k, v in enumerate(r["curve"][:-1], 1):
                        trial.report(v, k)
                        if trial.should_prune():
                            stop = k
                            break
                    if stop is None:
                        study.tell(trial, r["curve"][-1])
                        out.append(dict(r))
                    else:
                        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                        out.append(dict(r, status="pruned", steps=stop * every, test_acc=None))
                o, base = outcome(out, res["args"]["steps"]), outcome(log, res["args"]["steps"])
                fr.append(o["steps_frac"])
                lost.append(base["chosen_val"] - o["chosen_val"])
            print(f"threshold {threshold} min_std {min_std}: steps frac mean {np.mean(fr):.3f}, chosen val lost "
                  f"mean {np.mean(lost):.3f} (per seed {[round(x, 3) for x in lost]})", flush=True)
            rows.append({"threshold": threshold, "min_std": min_std, "steps_frac_mean": float(np.mean(fr)),
                         "chosen_val_lost_mean": float(np.mean(lost)), "chosen_val_lost": lost})
    Path(path).with_name("replay.json").write_text(json.dumps({"design_args": res["args"], "rows": rows}, indent=1))


def main(argv=None):
    a = parse(argv)
    if a.tiny:
        a.seeds, a.trials, a.steps, a.every, a.classes, a.source_trials = 1, 5, 6, 2, 5, 8
    if a.replay:
        return replay(a, a.replay)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    res = json.loads(path.read_text()) if path.exists() else {}
    if a.report:
        if not res:
            raise SystemExit(f"{path} not found; run the study first")
        report(out, res)
        path.write_text(json.dumps(res, indent=1))
        return res
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    same = {"report": False, "methods": ""}  # more methods may be added to a finished run (same seeds, same trials)
    if res and res.get("args", {}) | same != vars(a) | same:
        raise SystemExit(f"{path} holds a run with other arguments ({res['args']}); use another --out")
    res = res or {"args": vars(a), "runs": {}, "wall_s": 0.0}
    known = res["args"]["methods"].split(",")
    res["args"]["methods"] = ",".join(known + [m for m in a.methods.split(",") if m and m not in known])
    t0 = time.perf_counter()
    if "source" not in res:
        log, _ = source_study(a)
        res["source"] = log
        path.write_text(json.dumps(res, indent=1))
    src = study_from_log(res["source"])
    task = SegmentTask(a, a.data_seed)
    methods = [m for m in a.methods.split(",") if m]
    for s in range(a.seed0, a.seed0 + a.seeds):
        for m in methods:
            if f"{m}/{s}" in res["runs"]:
                continue  # resumed: this (method, seed) finished before
            ts = time.perf_counter()
            log, _ = search(task, make_pruner(m, a, task.checkpoints, src), s, a.trials)
            res["runs"][f"{m}/{s}"] = log
            o = outcome(log, a.steps)
            print(f"seed {s} {m}: chosen val {o['chosen_val']:.3f} test {o['chosen_test']:.3f} steps "
                  f"{o['steps']} ({o['steps_frac']:.2f}) pruned {o['pruned']} ({time.perf_counter() - ts:.0f} s)",
                  flush=True)
            res["wall_s"] += time.perf_counter() - ts
            path.write_text(json.dumps(res, indent=1))
        report(out, res)
        path.write_text(json.dumps(res, indent=1))
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
    return res


if __name__ == "__main__":
    main()
