"""Live study of train.sampler=metalearner: meta-learner sampler vs random search vs GP-EI vs Optuna TPE, real
training on real data -> results/live_metalearner/.

    .venv/bin/python experiments/live_metalearner_study.py                  # the study (5 seeds x 30 trials)
    .venv/bin/python experiments/live_metalearner_study.py --tiny --out /tmp/x   # a seconds-long smoke run

Each trial trains ONE NB201 cell (an architecture: 6 categorical edges over 5 ops) with a learning rate (log
float) on a small REAL Omniglot problem (``metanas.runners.cell``: collect's 1-stage NB201 skeleton, C=4, N=1,
full-batch Adam; 10 characters, 12 drawers train / 5 validation / 3 test per character, 7x7 pixels). Every method
selects on the VALIDATION accuracy; the test accuracy of each run's chosen configuration (best validation) is
read once, at the end. Task A: characters of ``data_seed=0``. Task B (related: other characters, same
alphabet set, same image size): ``data_seed=1``, where the meta-learner sampler also runs warm, with every
task-A trial of every method and seed in the meta-dataset (``meta_dataset.jsonl``, read by
``metanas.hpo.metalearner.load_records``; task-A rows form their own pair groups).

Methods (each with its library defaults, same number of trials): ``random`` (``RandomSampler``), ``gp_ei``
(``ModelBasedSampler``: GP + EI among 256 random candidates, 25 % random, model from 4 points), ``tpe``
(``optuna.samplers.TPESampler``, 10 random start-up trials), ``metalearner`` (``MetaLearnerSampler``: pairwise
ensemble of 3, 65,536 candidates per round in one jitted program, beta=0.5, model from 3 points) and, on task B,
``metalearner_warm``. A run = (method, seed); every trial of seed s trains from PRNG key s, so within a seed equal
configurations give equal accuracies and the methods face the same noise.
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

from metanas.hpo.metalearner import MetaLearnerSampler, load_records  # noqa: E402
from metanas.hpo.samplers import ModelBasedSampler, RandomSampler  # noqa: E402
from metanas.hpo.schedulers import RandomSearch  # noqa: E402
from metanas.hpo.space import space_from_config  # noqa: E402

OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
EXPERIMENT = "live_cell"


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "results/live_metalearner"))
    p.add_argument("--data-dir", default=str(REPO.parent / "shared/data"))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--train-drawers", type=int, default=12, help="of 20 per character; the rest: val then test")
    p.add_argument("--val-drawers", type=int, default=5)
    p.add_argument("--steps", type=int, default=30, help="training steps per trial")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--candidates", type=int, default=65536)
    p.add_argument("--methods", default="random,gp_ei,tpe,metalearner")
    p.add_argument("--tiny", action="store_true", help="1 seed, 4 trials, 3 steps, 5 classes, 1024 candidates")
    p.add_argument("--replot", action="store_true",
                   help="only recompute the tables and redraw the plots from the trials in OUT/results.json")
    return p.parse_args(argv)


def make_space(ops=OPS):
    return space_from_config([{"name": f"train.cell.e{i}", "type": "categorical", "choices": list(ops)}
                              for i in range(6)] + [
        {"name": "train.lr", "type": "float", "low": 1e-3, "high": 3e-2, "log": True}])


class CellTask:
    """evaluate(config, seed) -> {val_acc, test_acc}: real training of one NB201 cell (cached compile)."""

    def __init__(self, data_dir, data_seed, classes, steps, val_drawers=3, train_drawers=15):
        from metanas.runners.cell import cell_trainer
        from metanas.runners.collect import omniglot_problem

        x, y, xh, yh = omniglot_problem(data_dir, classes, train_drawers, 7, data_seed)
        held = 20 - train_drawers
        d = np.arange(len(yh)) % held
        self.n_val = int((d < val_drawers).sum())
        self.x, self.y = x, y
        self.xe = np.concatenate([xh[d < val_drawers], xh[d >= val_drawers]])
        self.ye = np.concatenate([yh[d < val_drawers], yh[d >= val_drawers]])
        self.train = cell_trainer(tuple(OPS), 6, 4, 1, classes, 1, steps, self.n_val)
        self.name = f"omniglot-{classes}c-7px-d{data_seed}"
        self.data_seed = data_seed

    def __call__(self, config, seed):
        import jax
        import jax.numpy as jnp

        arch = jnp.asarray([OPS.index(config[f"train.cell.e{i}"]) for i in range(6)], jnp.int32)
        out = self.train(jax.random.PRNGKey(seed)[None], arch, jnp.float32(config["train.lr"]), self.x, self.y,
                         self.xe, self.ye)
        return {k: float(np.asarray(v)[0]) for k, v in out.items()}


def run_method(method, task, space, seed, n_trials, candidates, records=None):
    """[(config, val_acc, test_acc, wall_s)] of one search (selection on val_acc only)."""
    log = []

    def evaluate(config, fidelity):
        t0 = time.perf_counter()
        m = task(config, seed)
        log.append((config, m["val_acc"], m["test_acc"], time.perf_counter() - t0))
        return -m["val_acc"]

    rng = np.random.default_rng([seed, 17])
    if method == "tpe":
        import optuna
        from optuna import distributions as od

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        dists = {p.name: (od.CategoricalDistribution(list(p.choices)) if p.type == "categorical"
                          else od.FloatDistribution(p.low, p.high, log=p.log)) for p in space.params}
        study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
        for _ in range(n_trials):
            trial = study.ask(dists)
            study.tell(trial, evaluate(dict(trial.params), 1.0))
        return log
    if method == "random":
        propose = RandomSampler(space)
    elif method == "gp_ei":
        propose = ModelBasedSampler(space)
    elif method in ("metalearner", "metalearner_warm"):
        propose = MetaLearnerSampler(space, records=records if method == "metalearner_warm" else None,
                                     maximize=True, n_candidates=candidates, chunk=min(candidates, 8192), beta=0.5)
    else:
        raise SystemExit(f"unknown method {method!r}; choose from random, gp_ei, tpe, metalearner")
    RandomSearch(n_trials=n_trials, max_fidelity=1.0).run(propose, evaluate, rng)
    return log


def trials_to_reach(curve, target):
    hit = np.nonzero(np.asarray(curve) >= target - 1e-9)[0]
    return int(hit[0]) + 1 if len(hit) else math.inf


def summarise(runs, task_name):
    """Per method: median best val, trials to the best val any method found (per seed), chosen test acc."""
    seeds = sorted({s for (_, s) in runs})
    methods = list(dict.fromkeys(m for (m, _) in runs))
    target = {s: max(max(v for _, v, _, _ in runs[(m, s)]) for m in methods) for s in seeds}
    rand = {s: max(v for _, v, _, _ in runs[("random", s)]) for s in seeds} if ("random", seeds[0]) in runs else None
    rows = {}
    for m in methods:
        best, ttr, test, ttrand = [], [], [], []
        for s in seeds:
            log = runs[(m, s)]
            curve = np.maximum.accumulate([v for _, v, _, _ in log])
            best.append(float(curve[-1]))
            ttr.append(trials_to_reach(curve, target[s]))
            if rand:
                ttrand.append(trials_to_reach(curve, rand[s]))
            test.append(max(log, key=lambda r: r[1])[2])  # the chosen (best-val) configuration's test acc
        rows[m] = {"best_val_median": float(np.median(best)), "trials_to_best_median": float(np.median(ttr)),
                   "reached_best": int(sum(math.isfinite(t) for t in ttr)),
                   "chosen_test_median": float(np.median(test)),
                   "trials_to_random_best_median": float(np.median(ttrand)) if rand else math.nan,
                   "best_val": best, "trials_to_best": ttr, "trials_to_random_best": ttrand, "chosen_test": test}
    return {"task": task_name, "target_per_seed": target, "methods": rows}


def plot(runs, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4))
    for m in dict.fromkeys(m for (m, _) in runs):
        curves = np.array([np.maximum.accumulate([v for _, v, _, _ in runs[(mm, s)]]) for (mm, s) in runs if mm == m])
        med = np.median(curves, 0)
        ax.plot(np.arange(1, len(med) + 1), med, label=m)
        ax.fill_between(np.arange(1, len(med) + 1), curves.min(0), curves.max(0), alpha=0.15)
    ax.set_xlabel("trials")
    ax.set_ylabel("best val. accuracy so far")
    ax.set_title(title + "\n(median over seeds; band: min-max)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(summary):
    lines = [f"Task {summary['task']}: target = best validation accuracy any method found, per seed",
             "(inf: not reached within the budget); random's best = random search's best val after all trials, per seed",
             "", "| method | best val (median) | trials to target (median) | seeds reaching target | "
             "trials to random's best (median) | chosen config's test acc (median) |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for m, r in summary["methods"].items():
        lines.append(f"| {m} | {r['best_val_median']:.3f} | {r['trials_to_best_median']:g} | {r['reached_best']} | "
                     f"{r.get('trials_to_random_best_median', math.nan):g} | {r['chosen_test_median']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    a = parse(argv)
    if a.tiny:
        a.seeds, a.trials, a.steps, a.classes, a.candidates = 1, 4, 3, 5, 1024
    out = Path(a.out)
    if a.replot:
        saved = json.loads((out / "results.json").read_text())
        for label, r in saved["results"].items():
            runs = {(k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1])): [(t["config"], t["val_acc"], t["test_acc"],
                                                                        t["wall_s"]) for t in log]
                    for k, log in r["trials"].items()}
            r["summary"] = summarise(runs, r["summary"]["task"])
            plot(runs, out / f"best_so_far_task{label}.png", f"task {r['summary']['task']}, NB201 cell + lr")
        (out / "results.json").write_text(json.dumps(saved, indent=1))
        (out / "tables.md").write_text("\n".join(table(r["summary"]) for r in saved["results"].values())
                                       + f"\nwall time {saved['wall_s']:.0f} s; args {saved['args']}\n")
        return saved["results"]
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "meta_dataset.jsonl"
    meta.unlink(missing_ok=True)
    space = make_space()
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    t0 = time.perf_counter()
    results = {}
    for label, data_seed, extra in (("A", 0, []), ("B", 1, ["metalearner_warm"] if "metalearner" in methods else [])):
        task = CellTask(a.data_dir, data_seed, a.classes, a.steps, a.val_drawers, a.train_drawers)
        records = None
        if extra:
            records = load_records(meta, space, metric="val_acc", maximize=True, experiment=EXPERIMENT)
        runs = {}
        for m in methods + extra:
            for s in range(a.seeds):
                ts = time.perf_counter()
                runs[(m, s)] = run_method(m, task, space, s, a.trials, a.candidates, records)
                print(f"task {label} {m} seed {s}: best val {max(v for _, v, _, _ in runs[(m, s)]):.3f} "
                      f"({time.perf_counter() - ts:.1f} s)", flush=True)
                if label == "A":  # task A's trials become meta-dataset records for task B
                    from metanas.run_store import append_jsonl

                    for c, v, _, w in runs[(m, s)]:
                        append_jsonl(meta, {"experiment": EXPERIMENT, "dataset": task.name, "split": f"seed{s}",
                                            "config": c, "metrics": {"val_acc": v}, "wall_time_s": w,
                                            "method": m, "run_dir": f"live_metalearner/{label}/{m}/{s}"})
        summary = summarise(runs, f"{label} ({task.name})")
        results[label] = {"summary": summary, "trials": {f"{m}/{s}": [
            {"config": c, "val_acc": v, "test_acc": t, "wall_s": w} for c, v, t, w in log]
            for (m, s), log in runs.items()}}
        if records is not None:
            results[label]["warm_records"] = len(records.configs)
        plot(runs, out / f"best_so_far_task{label}.png", f"task {label}: {task.name}, NB201 cell + lr, real training")
        print(table(summary), flush=True)
    wall = time.perf_counter() - t0
    (out / "results.json").write_text(json.dumps({"args": vars(a), "wall_s": wall, "results": results}, indent=1))
    (out / "tables.md").write_text("\n".join(table(r["summary"]) for r in results.values())
                                   + f"\nwall time {wall:.0f} s; args {vars(a)}\n")
    print(f"wrote {out} in {wall:.0f} s")
    return results


if __name__ == "__main__":
    main()
