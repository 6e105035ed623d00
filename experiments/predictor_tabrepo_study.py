"""Study (b): generalisation of the meta-learner to unseen tasks on TabRepo (REAL recorded LightGBM results).

Leave-tasks-out: the 73 OpenML tasks are split into 5 folds (2 shuffles); a predictor is trained on the 104 configs x
training tasks, with features = config hyperparameters (5, log-scaled) + the task's OpenML meta-features (13,
standardised), and ranks the 104 configs of each held-out task from its meta-features alone (no evaluation on it).

Per held-out task: Kendall tau between predicted score and the true error (sign flipped), and the normalised regret
(0 = the task's best config, 1 = its worst; ``metanas.benchmarks.tabrepo.normalized_regret``) of the top-1
recommendation and of the best of the top-5. Predictors:
- pairwise: the pairwise meta-learner, pairs only within a task, p = 2 - normalised regret (> 0, higher = better);
- mlp / ridge: pointwise regression on 1 - normalised regret;
- portfolio: "best on average": configs ordered by mean normalised regret over the training tasks (same for all tasks).

    .venv/bin/python experiments/predictor_tabrepo_study.py [--out results/predictor_tabrepo]

Needs the shared data (``$METANAS_DATA_DIR`` or ../shared/data). The HPO helper's warm-start study
(results/hpo_tabrepo/) uses the same loader for warm starting; this one is about ranking quality.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from metanas.benchmarks.tabrepo import fit_standardiser, load_tabrepo, normalized_regret
from metanas.config import default_data_dir
from metanas.predictors.pairwise import Pairwise
from metanas.predictors.pointwise import MLP, Ridge


def task_metrics(score: np.ndarray, nr: np.ndarray) -> dict[str, float]:
    order = np.argsort(-score, kind="stable")
    return {"kendall_tau": float(stats.kendalltau(score, -nr).statistic), "regret_top1": float(nr[order[0]]),
            "regret_top5": float(nr[order[:5]].min())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="results/predictor_tabrepo")
    args = ap.parse_args()
    t0 = time.perf_counter()
    tr = load_tabrepo(default_data_dir())
    nr = normalized_regret(tr.error)  # [T, C]
    T, C = nr.shape
    # raw [T*C, 18]; z-scored per fold with the TRAINING tasks' rows only (a held-out task never moves the scale)
    feats = np.concatenate([np.repeat(tr.task_features_raw, C, 0), np.tile(tr.config_features, (T, 1))], 1)
    task_of_row = np.repeat(np.arange(T), C)
    models = {"pairwise": Pairwise(steps=2000, ensemble=1), "mlp": MLP(steps=2000), "ridge": Ridge(lam=1.0)}

    def make(model, pairwise):
        def fit_score(key, x, y, group, n):
            params = model.fit(key, x, y, n, group) if pairwise else model.fit(key, x, y, n)
            return model.score(params, x)
        return jax.jit(fit_score)

    fns = {name: make(m, name == "pairwise") for name, m in models.items()}
    results: dict[str, list[dict]] = {name: [] for name in [*models, "portfolio"]}
    for rep in range(args.repeats):
        perm = np.random.default_rng([rep, 11]).permutation(T)
        for f in range(args.folds):
            test = np.sort(perm[f::args.folds])
            train = np.setdiff1d(np.arange(T), test)
            rows = np.concatenate([np.flatnonzero(np.isin(task_of_row, train)), np.flatnonzero(np.isin(task_of_row, test))])
            n = len(train) * C
            n_train_rows = len(train) * C
            x = fit_standardiser(feats[rows[:n_train_rows]]).apply(feats[rows])
            x, group = jnp.asarray(x), jnp.asarray(task_of_row[rows], jnp.int32)
            y_nr = nr.reshape(-1)[rows]
            for name, fn in fns.items():
                y = 2.0 - y_nr if name == "pairwise" else 1.0 - y_nr
                key = jax.random.PRNGKey(rep * 100 + f)
                score = np.asarray(fn(key, x, jnp.asarray(y, jnp.float32), group, n))[n:].reshape(len(test), C)
                for k, t in enumerate(test):
                    results[name].append({"task": tr.task_names[t], **task_metrics(score[k], nr[t])})
            avg = -nr[train].mean(0)
            for t in test:
                results["portfolio"].append({"task": tr.task_names[t], **task_metrics(avg, nr[t])})
            print(f"repeat {rep} fold {f} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    wall = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    json.dump(results, open(out / "per_task.json", "w"), indent=1)
    summary = {name: {m: (float(np.mean([r[m] for r in rs])), float(np.median([r[m] for r in rs])))
                      for m in ("kendall_tau", "regret_top1", "regret_top5")} for name, rs in results.items()}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, m in zip(axes, ("kendall_tau", "regret_top1", "regret_top5")):
        ax.boxplot([[r[m] for r in rs] for rs in results.values()], tick_labels=list(results), showmeans=True)
        ax.set_title(m + " per held-out task", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(f"TabRepo leave-tasks-out ({args.folds}-fold x {args.repeats}), 73 tasks x 104 LightGBM configs",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "tabrepo_generalisation.png", dpi=100)
    lines = ["# Ranking the configs of unseen tasks on TabRepo (real data)", "",
             f"Leave-tasks-out, {args.folds} folds x {args.repeats} shuffles over the 73 OpenML tasks (each task "
             f"held out {args.repeats} times); per held-out task the 104 LightGBM configs are ranked from the task's "
             "meta-features + the configs' hyperparameters. Regret is normalised per task (0 = its best config, "
             "1 = its worst). Mean (median) over all held-out task evaluations.", "",
             "Command: `.venv/bin/python experiments/predictor_tabrepo_study.py`  ",
             f"Machine: loaded shared 2-core CPU VM; wall time {wall:.0f} s.", "",
             "![tabrepo](tabrepo_generalisation.png)", "",
             "| predictor | Kendall tau | regret top-1 | regret best of top-5 |", "|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | " + " | ".join(f"{s[m][0]:.3f} ({s[m][1]:.3f})"
                                                 for m in ("kendall_tau", "regret_top1", "regret_top5")) + " |")
    lines += ["", "Notes: ridge is linear in [task features, config features], so it ranks the configs of every task "
              "the same way (a learned portfolio); only mlp and pairwise can make the ranking depend on the task.", ""]
    (out / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
