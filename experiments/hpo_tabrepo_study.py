"""Leave-tasks-out study on TabRepo: warm vs cold start for random search, successive halving and a
meta-learner-guided search, plus auto-sklearn's meta-data as the anchor and hyperparameter importance.

    .venv/bin/python experiments/hpo_tabrepo_study.py            # full study -> results/hpo_tabrepo/
    .venv/bin/python experiments/hpo_tabrepo_study.py --tasks 6 --seeds 2 --out /tmp/s   # smoke run

Protocol: the 73 tasks are split into 5 folds; for each test task every meta-data source (k-NN past tasks,
the meta-learner) is built from the other 4 folds only. Each strategy runs for ``budget`` full-evaluation
equivalents on the test task; we record the true normalised regret (0 = best of the 104 configs, 1 = worst)
of the incumbent after each unit of budget, averaged over tasks and seeds. See ``metanas/hpo/simulation.py`` for
the (synthetic) low-fidelity model used by successive halving.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from metanas.benchmarks.autosklearn import load_autosklearn, metafeatures_from_openml, to_lightgbm
from metanas.benchmarks.tabrepo import encode_config, load_tabrepo, normalized_regret
from metanas.config import default_data_dir
from metanas.hpo.importance import importance_table, main_effect_importance
from metanas.plots import plot_importance
from metanas.hpo.schedulers import SuccessiveHalving
from metanas.hpo.surrogate import rff_predict
from metanas.hpo.simulation import (STRATEGIES, autosklearn_warm_configs, average_rank_configs, fit_meta_learner,
                                    knn_warm_configs, rank_targets, snap_to_configs, strategy_curves)

LABELS = {
    "random": "random search (cold)", "random+knn": "random search + k-NN warm start",
    "random+avg": "random search + average-rank portfolio (task-agnostic)",
    "sh": "successive halving (cold)", "sh+knn": "successive halving + k-NN warm start",
    "bo": "GP-EI BO (cold)", "bo+meta": "meta-learner-guided (GP-EI, meta prior)",
    "random+askl": "anchor: auto-sklearn meta-data warm start", "default+random": "AutoGluon default (c1) first",
}


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--out", default="results/hpo_tabrepo")
    p.add_argument("--tasks", type=int, default=0, help="use only the first N tasks (0 = all)")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--budget", type=int, default=32)
    p.add_argument("--k", type=int, default=5, help="warm-start configs from the k nearest past tasks")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--noise", type=float, default=0.1, help="synthetic low-fidelity noise (regret units)")
    return p.parse_args(argv)


def main(argv=None):
    a = parse(argv)
    t0 = time.perf_counter()
    tr = load_tabrepo(a.data_dir)
    askl = load_autosklearn(a.data_dir)
    regret = normalized_regret(tr.error.astype(np.float64))
    ranks = rank_targets(regret)
    T = len(tr.task_names) if a.tasks == 0 else min(a.tasks, len(tr.task_names))
    best = regret.argmin(1)
    folds = np.array_split(np.random.default_rng(0).permutation(len(tr.task_names)), a.folds)
    cf = tr.config_features.astype(np.float64)
    mapped_hp = [to_lightgbm(askl.configs[c]) for c in askl.best_config_id]
    mapped = [None if h is None else snap_to_configs(h, cf, encode_config) for h in mapped_hp]
    sh = SuccessiveHalving(n_configs=27, min_fidelity=1 / 9, max_fidelity=1.0, eta=3)
    seeds = list(range(a.seeds))
    curves = {s: [] for s in STRATEGIES}
    askl_visited, tasks_used = [], []
    for fold in folds:
        test = [int(t) for t in fold if t < T]
        if not test:
            continue
        past = np.array([t for t in range(len(tr.task_names)) if t not in set(fold.tolist())])
        meta = fit_meta_learner(tr.task_features, cf, ranks, past, seed=0)
        avg = average_rank_configs(regret, past, a.k)
        for t in test:
            knn = knn_warm_configs(tr.task_features, best, t, past, a.k)
            q = {c: float(tr.openml_qualities[c][t]) for c in tr.openml_qualities}
            mf = metafeatures_from_openml(q, tr.problem_type[t])
            warm_askl, visited = autosklearn_warm_configs(mf, askl.dataset_names, askl.features, askl.feature_names,
                                                          mapped, a.k, exclude_names=[tr.dataset_names[t]])
            askl_visited.append(visited)
            prior = meta(tr.task_features[t])
            for s in STRATEGIES:
                curves[s].append(strategy_curves(s, regret=regret, config_features=cf, target=t, seeds=seeds,
                                                 budget=a.budget, knn=knn, meta_prior=prior, askl=warm_askl, avg=avg,
                                                 default=tr.config_names.index("LightGBM_c1"), sh=sh,
                                                 noise=a.noise))
            tasks_used.append(t)
        print(f"fold done: {len(tasks_used)}/{T} tasks, {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    cur = {s: np.stack(v) for s, v in curves.items()}  # [tasks, seeds, budget]

    # hyperparameter importance from the meta-learner fitted on all tasks
    all_tasks = np.arange(len(tr.task_names))
    from metanas.hpo.surrogate import fit_rff_ridge

    G = tr.task_features.shape[1]
    x = np.concatenate([np.repeat(tr.task_features, len(cf), 0), np.tile(cf, (len(all_tasks), 1))], 1)
    model = fit_rff_ridge(x, ranks.reshape(-1), seed=0, num_features=512, lengthscale=4.0, l2=1e-3)
    r2 = 1 - np.mean((rff_predict(model, x) - ranks.reshape(-1)) ** 2) / np.var(ranks)
    groups = [(n, slice(G + j, G + j + 1)) for j, n in enumerate(tr.config_feature_names)]
    groups.append(("(all task meta-features)", slice(0, G)))
    rng = np.random.default_rng(0)
    bg = x[rng.choice(len(x), 1500, replace=False)]
    imp = main_effect_importance(lambda z: rff_predict(model, z), bg, groups, max_values=24)
    write(a, tr, cur, imp, r2, askl_visited, mapped, tasks_used, time.perf_counter() - t0)


def write(a, tr, cur, imp, r2, askl_visited, mapped, tasks_used, wall):
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    budgets = [b for b in (1, 2, 4, 8, 16, 32, 64) if b <= a.budget]
    n_tasks, n_seeds = cur["random"].shape[:2]
    rows = []
    for s in STRATEGIES:
        per_task = np.nanmean(cur[s], axis=1)  # [tasks, budget]
        mean, se = np.nanmean(per_task, 0), np.nanstd(per_task, 0) / np.sqrt(per_task.shape[0])
        area = float(np.nanmean(per_task))
        rows.append((s, mean, se, area))
    lines = [
        "# TabRepo leave-tasks-out study: warm vs cold start",
        "",
        "Command: `" + " ".join([".venv/bin/python experiments/hpo_tabrepo_study.py", *sys.argv[1:]]) + "`  ",
        f"{n_tasks} tasks x {n_seeds} seeds, {a.folds}-fold leave-tasks-out, k={a.k}, budget {a.budget} "
        f"full-evaluation equivalents; wall time {wall:.0f} s on a shared 2-core CPU (noisy).",
        "",
        "Mean normalised regret of the incumbent (0 = best of the 104 LightGBM configs on that task, 1 = worst),",
        "averaged over tasks and seeds; +- is the standard error over tasks. Lower is better. "
        "`area` = mean over budgets 1..B.",
        "",
        "| strategy | " + " | ".join(f"@{b}" for b in budgets) + " | area |",
        "| --- | " + " | ".join("---:" for _ in budgets) + " | ---: |",
    ]
    for s, mean, se, area in rows:
        cells = [f"{mean[b - 1]:.3f} +- {se[b - 1]:.3f}" if np.isfinite(mean[b - 1]) else "n/a" for b in budgets]
        lines.append(f"| {LABELS[s]} | " + " | ".join(cells) + f" | {area:.3f} |")
    pairs = [("random", "random+knn"), ("random", "random+avg"), ("random+avg", "random+knn"),
             ("random", "random+askl"), ("random", "default+random"), ("sh", "sh+knn"), ("bo", "bo+meta"),
             ("random+avg", "bo+meta")]
    lines += ["", "Paired per task (each task's curve averaged over seeds first): difference of `area` "
              "(warm - cold; negative = warm better) with its standard error over tasks, the share of tasks "
              "where the warm start has the lower area, and the same at 4 evaluations.", "",
              "| cold | warm | area diff | tasks warm better | @4 diff | tasks warm better @4 |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for c, w in pairs:
        pc, pw = np.nanmean(cur[c], 1), np.nanmean(cur[w], 1)  # [tasks, budget]
        da = np.nanmean(pw, 1) - np.nanmean(pc, 1)
        d4 = pw[:, 3] - pc[:, 3] if a.budget >= 4 else np.full(len(pw), np.nan)
        lines.append(f"| {c} | {w} | {da.mean():+.3f} +- {da.std() / np.sqrt(len(da)):.3f} | "
                     f"{np.mean(da < 0):.0%} | {np.nanmean(d4):+.3f} | {np.mean(d4 < 0):.0%} |")
    np.savez_compressed(out / "curves.npz", **{s: v for s, v in cur.items()},
                        tasks=np.array([tr.task_names[t] for t in tasks_used]))
    n_map = sum(m is not None for m in mapped)
    lines += [
        "",
        "Notes (honest caveats):",
        "- Real data: every full-fidelity value is TabRepo's recorded test error of that config on that task.",
        "- `curves.npz` holds every curve [tasks, seeds, budget] per strategy, to re-analyse without re-running.",
        f"- Successive halving (27 configs, eta=3, fidelities 1/9, 1/3, 1) needs a low-fidelity signal TabRepo does "
        f"not have: a **synthetic** noise model `regret + {a.noise} * (1 - r) * N(0,1)` stands in for it. Its rows "
        "show the scheduler working, not a measured multi-fidelity gain; SH's incumbent before its first "
        "full-fidelity result is its best low-fidelity config.",
        "- k-NN warm start: best config of each of the k nearest past tasks (z-scored OpenML qualities, "
        "Euclidean). The meta-learner is RFF ridge regression on (task meta-features ++ config encoding) -> "
        f"per-task rank of the config, refit per fold on past tasks only (train R^2 on all tasks: {r2:.2f}). "
        "The average-rank portfolio (same k configs for every task, best mean rank on past tasks) is the "
        "task-agnostic baseline that meta-feature-based warm starts must beat.",
        f"- Anchor (auto-sklearn meta-data): {n_map} of {len(mapped)} auto-sklearn incumbents are "
        "HistGradientBoosting and map onto LightGBM (learning_rate, max_leaf_nodes -> num_leaves, "
        "min_samples_leaf -> min_data_in_leaf; feature_fraction=1, extra_trees=false), then snap to the nearest "
        "of the 104 configs; the other classifiers (random forest, SVM, MLP, ...) are not mappable and are "
        f"skipped (median {int(np.median(askl_visited))} nearest data sets visited to collect k configs). "
        "Distance: L1 on min-max-scaled auto-sklearn meta-features that OpenML qualities determine (counts, "
        "ratios, missing values, class probabilities); entropy, skewness, kurtosis and landmarkers are not "
        "derivable from TabRepo and are left out. auto-sklearn's meta-data is for classification "
        "(balanced accuracy); for TabRepo's regression tasks the nearest data sets are matched anyway. "
        "A data set with the same name as the test task is excluded.",
        "- bo (cold): GP-EI on the 5-d config encoding after 3 random evaluations; bo+meta: the same GP with the "
        "meta-learner as prior mean, whose ranking picks the first evaluations.",
        "",
        "![regret curves](curves.png)",
        "",
        "## Hyperparameter importance (meta-learner fitted on all 73 tasks)",
        "",
        "fANOVA-style main effects estimated on the RFF-ridge surrogate (Monte Carlo over 1500 background "
        "(task, config) rows): share of the surrogate's variance explained by each input alone. The target is "
        "the per-task rank, whose mean is the same for every task, so the task meta-features can only act "
        "through interactions (their main effect is ~0 by construction); the remainder of the variance is in "
        "interactions.",
        "",
        importance_table(imp),
        "![importance](importance.png)",
    ]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    plot(out / "curves.png", rows, a.budget)
    plot_importance(imp, out / "importance.png", title="TabRepo LightGBM: main-effect importance")
    (out / "results.json").write_text(json.dumps({
        "tasks": [tr.task_names[t] for t in tasks_used], "seeds": n_seeds, "budget": a.budget, "k": a.k,
        "noise": a.noise, "mean_regret": {s: [None if not np.isfinite(v) else float(v) for v in mean]
                                           for s, mean, _, _ in rows},
        "area": {s: area for s, _, _, area in rows}, "importance": imp, "surrogate_train_r2": float(r2),
    }, indent=1))
    print("\n".join(lines[8:8 + len(rows) + 2]))


def plot(path, rows, budget):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    b = np.arange(1, budget + 1)
    styles = {"random": ("tab:blue", "--"), "random+knn": ("tab:blue", "-"), "random+avg": ("tab:purple", "-"), "sh": ("tab:orange", "--"),
              "sh+knn": ("tab:orange", "-"), "bo": ("tab:green", "--"), "bo+meta": ("tab:green", "-"),
              "random+askl": ("tab:red", "-"), "default+random": ("tab:gray", ":")}
    for s, mean, se, _ in rows:
        c, ls = styles[s]
        ax.plot(b, mean, color=c, ls=ls, label=LABELS[s])
        ax.fill_between(b, mean - se, mean + se, color=c, alpha=0.08)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("full-evaluation equivalents")
    ax.set_ylabel("normalised regret (mean over tasks, seeds)")
    ax.set_title("TabRepo LightGBM, leave-tasks-out: warm (solid) vs cold (dashed)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
