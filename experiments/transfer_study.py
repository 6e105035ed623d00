"""Transfer study: leave-one-task-out search with a pre-trained pairwise meta-learner -> results/transfer/.

    python experiments/transfer_study.py transnas [--seeds 20] [--data-dir ../shared/data]
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


def run_transnas(args) -> None:
    import jax

    from metanas.benchmarks.transnas import default_path, load_transnas
    from metanas.search.transfer import TransferSearch, transnas_study
    from metanas.predictors.pairwise import Pairwise

    path = args.file or default_path(args.data_dir)
    data = load_transnas(path)
    t0 = time.time()
    res = transnas_study(jax.random.PRNGKey(args.seed), data.x, data.valid, search=TransferSearch(**SEARCH),
                         predictor=Pairwise(**PREDICTOR), seeds=args.seeds, configs=CONFIGS,
                         nested_seeds=args.nested_seeds, nested_budget=args.nested_budget,
                         log=lambda m: print(f"[{time.time() - t0:.0f}s] {m}", flush=True))
    res.update(tasks=list(data.tasks), predictor=PREDICTOR, search=SEARCH, seeds=args.seeds,
               nested_seeds=args.nested_seeds, nested_budget=args.nested_budget, file=str(path),
               wall_s=time.time() - t0, machine=f"{platform.processor() or platform.machine()}, "
                                                f"{__import__('os').cpu_count()} CPUs (shared)",
               command=" ".join(["python"] + sys.argv))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "transnas.json").write_text(json.dumps(res, indent=1))
    print(f"wrote {OUT / 'transnas.json'} in {time.time() - t0:.0f} s")


def _med(v):
    return float(np.median(v))


def report_transnas() -> str:
    r = json.loads((OUT / "transnas.json").read_text())
    tasks, budget = r["tasks"], r["search"]["budget"]
    cap = lambda q: f"{q:g}" if q <= budget else f">{budget}"  # noqa: E731
    lines = ["| held-out task | transfer (median) | from scratch | random | zero-shot z-score order | "
             "zero-shot pairwise (median) | nested choice |", "|---|---|---|---|---|---|---|"]
    tr_m, sc_m, z_m, ok_s, ok_z = [], [], [], [], []
    for t, name in enumerate(tasks):
        x = r["targets"][str(t)]
        a, b, c = _med(x["transfer"]), _med(x["scratch"]), _med(x["random"])
        z, zp = x["zero_shot_zscore"], _med(x["zero_shot_pairwise"])
        tr_m.append(a), sc_m.append(b), z_m.append(z)
        ok_s.append(a < b), ok_z.append(a <= z + 2)
        cfg = r["configs"][r["choice"][str(t)]]
        lines.append(f"| {name} | {cap(a)} | {cap(b)} | {c:g} | {z} | {zp:g} | #{r['choice'][str(t)]}: "
                     + ", ".join(f"{k} {v:g}" for k, v in cfg.items()) + " |")  # bools print 1/0
    lines.append(f"| **mean** | **{np.mean(tr_m):.1f}** | {np.mean(sc_m):.1f} (capped at {budget + 1}) | | "
                 f"{np.mean(z_m):.1f} | | |")
    lines += ["", f"Goal mean <= 12: {'MET' if np.mean(tr_m) <= 12 else 'NOT met'} ({np.mean(tr_m):.1f}); "
              f"fewer than from scratch on every task: {'MET' if all(ok_s) else 'NOT met'} "
              f"({sum(ok_s)}/7); within 2 queries of the zero-shot z-score order on every task: "
              f"{'MET' if all(ok_z) else 'NOT met'} ({sum(ok_z)}/7).", ""]
    lines += ["Kendall tau of the target's ranking of all 711 cells (mean over seeds):", "",
              "| held-out task | z-score order | transfer @0 | @10 | @20 | scratch @10 | @20 |",
              "|---|---|---|---|---|---|---|"]
    for t, name in enumerate(tasks):
        x = r["targets"][str(t)]
        f = lambda v: "—" if v is None else f"{np.mean(v):.3f}"  # noqa: E731
        lines.append(f"| {name} | {x['tau_zscore']:.3f} | {f(x['tau_transfer']['0'])} | {f(x['tau_transfer']['10'])}"
                     f" | {f(x['tau_transfer']['20'])} | {f(x['tau_scratch']['10'])} | {f(x['tau_scratch']['20'])} |")
    plot_transnas(r)
    lines += ["", "![queries to a top-1 % cell per held-out task](transnas_queries.png)"]
    return "\n".join(lines)


def plot_transnas(r) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = r["tasks"]
    fig, ax = plt.subplots(figsize=(8, 4))
    w = 0.2
    for i, (k, lab) in enumerate([("transfer", "transfer"), ("scratch", "from scratch"), ("random", "random")]):
        med = [_med(r["targets"][str(t)][k]) for t in range(len(tasks))]
        ax.bar(np.arange(len(tasks)) + (i - 1.5) * w, med, w, label=f"{lab} (median of {r['seeds']} seeds)")
    ax.bar(np.arange(len(tasks)) + 1.5 * w, [r["targets"][str(t)]["zero_shot_zscore"] for t in range(len(tasks))],
           w, label="zero-shot z-score order")
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=20, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("queries to a top-1 % cell (7 of 711)")
    ax.set_title("TransNAS-Bench-101 micro, each task held out (pre-trained on the other six)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(OUT / "transnas_queries.png", dpi=100)
    plt.close(fig)


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
                             predictor=Pairwise(**PREDICTOR), seeds=args.seeds, top=16,
                             log=lambda m: print(f"[{time.time() - t0:.0f}s] {m}", flush=True))
    res.update(tasks=names, metric=args.nb201_metric, search=NB201_SEARCH, predictor=PREDICTOR, seeds=args.seeds,
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
    for title, name, fn in (("## TransNAS-Bench-101 micro (the test of transfer)", "transnas.json", report_transnas),
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
    p.add_argument("what", choices=["transnas", "tabrepo", "nb201", "report"])
    p.add_argument("--nb201-metric", default="valid_acc", help="queried NB201 metric (a validation metric)")
    p.add_argument("--tabrepo-dir", default=None, help="your own TabRepo-layout folder")
    p.add_argument("--knn-k", type=int, nargs="+", default=[4, 8, 16, 32, 1000],
                   help="candidate k of the k-NN warm start, chosen per fold on its training tasks (1000: all)")
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--file", default=None, help="your own TransNAS-format JSON instead of the shared one")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--nested-seeds", type=int, default=2)
    p.add_argument("--nested-budget", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.what == "transnas":
        run_transnas(args)
    elif args.what == "tabrepo":
        run_tabrepo(args)
    elif args.what == "nb201":
        run_nb201(args)
    else:
        print(write_readme().read_text())


if __name__ == "__main__":
    main()
