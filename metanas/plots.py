"""Every figure metanas writes, in one place (matplotlib, Agg backend; imported lazily by the callers); ``save`` is
the one tail every figure ends with (study scripts too).

- ``plot_metrics``: one PNG per phase of a run's ``metrics.jsonl`` (``<run>/plots/<phase>.png``), after every run.
- ``plot_report``: ``python -m metanas.report``'s bar chart (mean ± std over seeds per setting).
- ``plot_fits``: pre-/post-adaptation fits of 1-D regression tasks (``sinusoid_fits.png``, Finn et al. 2017 Fig. 2).
- ``plot_alphas``: softmax(α) per edge during a differentiable search (``alphas.png``).
- ``plot_regret_curves``: the TabRepo warm- vs cold-start regret curves (``warm_vs_cold.png``).
- ``plot_importance``: main-effect hyperparameter importance (``importance.png``).
- ``plot_curves``: best-found test accuracy vs queries of NB201 searches (``plots/search_curve.png``).
- ``plot_quality``: predictor quality vs number of training architectures (``plots/kendall_tau.png``).
- ``plot_budget_regret``: normalised regret vs budget with bands over seeds (``results/curves_taskset/regret.png``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (runs have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path, dpi: int = 100) -> None:
    """The one tail of every figure: tight layout, the folder made, ``path`` written at ``dpi``, the figure closed."""
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def plot_metrics(run_dir: Path) -> list[Path]:
    """One PNG per phase with a panel per numeric metric; returns the files written."""
    plt = pyplot()

    from metanas.run_store import MetricWriter

    rows = MetricWriter(run_dir).rows()
    by_phase: dict[str, list[dict]] = {}
    for row in rows:
        by_phase.setdefault(row["phase"], []).append(row)
    written = []
    for phase, prow in by_phase.items():
        keys = sorted({k for r in prow for k, v in r.items()
                       if k not in ("phase", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)})
        if not keys:
            continue
        n = len(keys)
        cols = min(n, 3)
        nrows = math.ceil(n / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
        for ax, k in zip(axes.flat, keys):
            pts = [(r["step"], r[k]) for r in prow if isinstance(r.get(k), (int, float))]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
            ax.set_title(k, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle(f"{run_dir.parent.name} / {phase}", fontsize=10)
        fig.tight_layout()
        out = Path(run_dir) / "plots" / f"{phase}.png"
        out.parent.mkdir(exist_ok=True)
        tmp = out.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=90)
        plt.close(fig)
        os.replace(tmp, out)
        written.append(out)
    return written


def plot_report(table: dict[str, dict[str, list[float]]], out: Path, labels: dict[str, str] | None = None) -> None:
    """Bars of mean ± std per setting (``table[setting][metric]`` = values over seeds); ``labels``: bar names."""
    plt = pyplot()

    metrics = sorted({m for per in table.values() for m in per})
    if not metrics:
        return
    settings = sorted(table)
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4, 1.2 * len(settings)) * len(metrics) ** 0.5 + 2, 3.2),
                             squeeze=False)
    for ax, m in zip(axes[0], metrics):
        vals = [np.asarray(table[s].get(m, [np.nan])) for s in settings]
        ax.bar(range(len(settings)), [v.mean() for v in vals],
               yerr=[v.std(ddof=1) if v.size > 1 else 0 for v in vals], capsize=3)
        ax.set_xticks(range(len(settings)), [(labels or {}).get(s, s) for s in settings], rotation=30, ha="right",
                      fontsize=7)
        ax.set_title(m, fontsize=9)
    save(fig, out, dpi=90)


def plot_fits(path: Path, algo, meta_params, apply_fn, loss, curves: Any, rng: np.random.Generator) -> None:
    """Pre- and post-adaptation fits on a few 1-D regression tasks (Finn et al. 2017, Fig. 2 style); ``curves``: a
    task family's ``metanas.data.tasks.Curves``."""
    import jax
    import jax.numpy as jnp

    plt = pyplot()

    lo, hi = curves.x_range
    grid = np.linspace(lo, hi, 200, dtype=np.float32)[:, None]
    n_tasks = len(curves.functions)
    fig, axes = plt.subplots(1, n_tasks, figsize=(4.5 * n_tasks, 3.5), squeeze=False)
    for i, (ax, f, title) in enumerate(zip(axes[0], curves.functions, curves.titles)):
        x = rng.uniform(lo, hi, (curves.shots, 1)).astype(np.float32)
        y = f(x)
        ax.plot(grid, f(grid), "r-", label="ground truth")
        ax.plot(grid, np.asarray(apply_fn(meta_params["theta"], grid)), ":", color="tab:green", label="pre-update")
        for steps, style in ((1, "--"), (10, "-")):
            params, _ = algo.adapt(meta_params, (jnp.asarray(x), jnp.asarray(y)), jax.random.PRNGKey(i),
                                   apply_fn=apply_fn, loss=loss, steps=steps)
            ax.plot(grid, np.asarray(apply_fn(params, grid)), style, color="tab:blue", alpha=0.6 + 0.04 * steps,
                    label=f"{steps} grad step{'s' if steps > 1 else ''}")
        ax.plot(x, y, "^", color="purple", label=f"{curves.shots} support points")
        ax.set_title(title)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{type(algo).__name__}: pre- and post-adaptation fits (synthetic {curves.name} tasks)")
    save(fig, path, dpi=100)


def plot_alphas(path, rows: list[dict], space) -> None:
    plt = pyplot()

    edges = sorted({k.split("/")[0] for k in rows[0] if "/" in k}, key=lambda s: (s.rstrip("0123456789"),
                                                                                   int(s.split("e")[-1])))
    cols = min(len(edges), 7)
    nrows = -(-len(edges) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.2 * nrows), squeeze=False, sharey=True)
    steps = [r["step"] for r in rows]
    for ax, e in zip(axes.flat, edges):
        for op in space.ops:
            ax.plot(steps, [r[f"{e}/{op}"] for r in rows], label=op)
        ax.set_title(e, fontsize=8)
    for ax in list(axes.flat)[len(edges):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=5)
    fig.suptitle("softmax(alpha) per edge during search")
    save(fig, path, dpi=80)


def plot_regret_curves(path: Path, curves: dict[str, np.ndarray], title: str) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for s, v in curves.items():
        ax.plot(np.arange(1, len(v) + 1), v, ls="-" if "+" in s else "--", label=s)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("full-evaluation equivalents")
    ax.set_ylabel("normalised regret (mean over seeds)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, path, dpi=100)


def plot_importance(scores: dict[str, float], path: str | Path, *, title: str = "hyperparameter importance") -> Path:
    plt = pyplot()

    rows = sorted(scores.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(5.5, 0.45 * len(rows) + 1.2))
    ax.barh([k for k, _ in rows], [v for _, v in rows], color="tab:blue")
    ax.set_xlabel("fraction of surrogate variance (main effect)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    path = Path(path)
    save(fig, path)
    return path


def plot_curves(curves: dict[str, np.ndarray], optimum: float, target: float, path: Path, title: str) -> None:
    """Best-found test accuracy vs queries: median line and 25-75% band per method."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        q = np.percentile(c, [25, 50, 75], axis=0)
        x = np.arange(1, c.shape[-1] + 1)
        ax.plot(x, q[1], label=f"{name} (median of {c.shape[0]})")
        ax.fill_between(x, q[0], q[2], alpha=0.2)
    ax.axhline(optimum, color="k", lw=0.8, ls=":", label=f"optimum {optimum:.2f}")
    ax.axhline(target, color="r", lw=0.8, ls="--", label=f"target {target:g}")
    ax.set_ylim(max(min(float(np.median(c[:, 0])) for c in curves.values()) - 1, optimum - 6), optimum + 0.3)
    ax.set_xlabel("queries (architectures evaluated)")
    ax.set_ylabel("test accuracy of best found (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    save(fig, path, dpi=100)


def plot_quality(table: dict, metric: str, path: Path, title: str) -> None:
    """Predictor quality vs training architectures: ``table[model][n][metric]`` per seed, mean ± sd per n."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 4))
    colors = plt.get_cmap("tab20").colors
    for i, (name, per_n) in enumerate(table.items()):
        ns = sorted(per_n)
        m = np.array([np.mean(per_n[n][metric]) for n in ns])
        s = np.array([np.std(per_n[n][metric]) for n in ns])
        ax.errorbar(ns, m, yerr=s, marker="os^v"[i % 4], ms=3, capsize=2, label=name, lw=1,
                    color=colors[(2 * i) % 20 + (i >= 10)])
    ax.set_xscale("log")
    ax.set_xlabel("training architectures n")
    ax.set_ylabel(f"{metric} on held-out cells (mean ± sd over seeds)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save(fig, path, dpi=100)


def plot_budget_regret(path: Path, budgets: np.ndarray, curves: dict[str, np.ndarray], title: str) -> None:
    """Regret vs budget: per method the mean over seeds of ``curves[name]`` [S, G] (already averaged over tasks)
    with a 25-75 % band over seeds (curves_taskset's ``regret.png``)."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for name, v in curves.items():
        v = np.asarray(v, np.float64)
        line, = ax.plot(budgets, v.mean(0), label=name, ls="-" if name.startswith("metanas") else "--")
        ax.fill_between(budgets, np.percentile(v, 25, 0), np.percentile(v, 75, 0), color=line.get_color(), alpha=0.12)
    ax.set_xlabel("budget (checkpoints)")
    ax.set_ylabel("normalised regret")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, path, dpi=100)


def plot_pred_vs_true(true, pred, measured, path: Path, title: str) -> None:
    """Predicted vs true cost of every measured cell of a held-out device (log-log), the k measured cells marked."""
    plt = pyplot()
    true, pred = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    m = np.isfinite(true) & np.isfinite(pred) & (pred > 0)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(true[m], pred[m], s=2, alpha=0.25, label=f"{int(m.sum())} cells")
    meas = np.asarray(measured)
    meas = meas[meas >= 0]
    ax.scatter(true[meas], pred[meas], s=30, c="r", marker="x", label=f"{len(meas)} measured")
    lo, hi = np.nanmin(true[m]), np.nanmax(true[m])
    ax.plot([lo, hi], [lo, hi], "k:", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    save(fig, path, dpi=100)


def plot_pareto(fronts: dict[str, np.ndarray], true_front: np.ndarray, path: Path, title: str) -> None:
    """Accuracy-latency fronts found by each method (one seed) beside the true front."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(true_front[:, 0], true_front[:, 1], where="post", color="k", lw=0.8, label="true front")
    for name, f in fronts.items():
        f = np.asarray(f)
        ax.step(f[:, 0], f[:, 1], where="post", marker=".", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    save(fig, path, dpi=100)
