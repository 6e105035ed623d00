"""MetaNAS on Omniglot 5-way 1-shot at the CPU budget of ``metanas_omniglot``, beside a same-budget baseline.

Runs (or, with ``--search-run`` / ``--baseline-run``, reports finished runs of):

1. ``python -m metanas experiment=metanas_omniglot``: Reptile on the NB201 supernet's weights AND alphas, derive
   the genotype, meta-train the derived network from scratch, 600 meta-test tasks.
2. the baseline, same command with ``meta.alpha_lr=0``: the alphas stay at their initialisation (1e-3 * N(0, 1),
   i.e. a uniform op mixture) while the weights are meta-learned the same way; its "derived" genotype is the
   argmax of that random initialisation, i.e. a random NB201 cell, meta-trained and tested with the same budget.

Writes ``--out``/README.md (table, genotypes, commands, wall times, machine note), ``alphas.png`` (softmax(alpha)
per edge of both runs) and ``rows.json``. The Reptile / MAML CNN4 rows of results/meta_omniglot are quoted as a
reference (different network and budget).

usage: nice -n 19 python experiments/meta_metanas_study.py [--note "machine conditions"]
       python experiments/meta_metanas_study.py --search-run DIR --baseline-run DIR   (report only)
       python experiments/meta_metanas_study.py --search-run DIR --skip-baseline      (report one run)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from metanas.data.omniglot import OMNIGLOT_CHARS

EXPERIMENT = "metanas_omniglot"
BASELINE = ["meta.alpha_lr=0"]


def launch(results_dir: str, runs: list[list[str]]) -> list[Path]:
    """``python -m metanas experiment=metanas_omniglot OVERRIDES`` for each override list, side by side (two
    processes; the 2-core VM is shared anyway) -> their run dirs (found by each run's ``.hydra/overrides.yaml``)."""
    root = Path(results_dir) / EXPERIMENT
    before = set(root.glob("*"))
    cmds = [[sys.executable, "-m", "metanas", f"experiment={EXPERIMENT}", f"results_dir={results_dir}",
             "progress=false", *o] for o in runs]
    procs = []
    for cmd in cmds:
        procs.append(subprocess.Popen(cmd, text=True))
        time.sleep(5)  # distinct run-dir time stamps
    codes = [p.wait() for p in procs]
    out = []
    for cmd, code, o in zip(cmds, codes, runs):
        if code:
            sys.exit(f"{' '.join(cmd)} failed (exit {code})")
        mine = [d for d in sorted(set(root.glob("*")) - before)
                if set(o) <= set(yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()) or [])
                and bool(o) == any(x.startswith("meta.alpha_lr") for x in
                                   yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()) or [])]
        out.append(mine[-1])
    return out


def read_run(run: Path) -> dict:
    """A run's metrics, config, genotype and evaluations; an unfinished run (no summary.json) gets ``finished:
    False`` and the losses it has logged so far."""
    finished = (run / "summary.json").exists()
    summary = json.loads((run / "summary.json").read_text()) if finished else {"status": "ok", "metrics": {},
                                                                               "wall_time_s": float("nan")}
    if summary.get("status") != "ok":
        sys.exit(f"{run}: status {summary.get('status')}: {summary.get('error')}")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    geno = json.loads((run / "genotype.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    keep = [o for o in overrides if o.split("=")[0] not in ("experiment", "results_dir", "data_dir", "meta_dataset",
                                                            "progress", "resume")]
    return {"finished": finished, "logged": [(r["phase"], r["step"], r["loss"]) for r in rows if "loss" in r],
            "run": str(run), "command": " ".join(["python -m metanas", f"experiment={EXPERIMENT}", *keep]), "metrics": summary["metrics"], "wall_s": summary["wall_time_s"], "train": cfg["train"],
            "meta": cfg["meta"], "genotype": geno, "evals": [(r["phase"], r["step"], r["val_query_metric"])
                                                             for r in rows if "val_query_metric" in r]}


def reference_rows(runs_dir: Path) -> list[str]:
    """The CNN4 rows of results/meta_omniglot (newest finished run of each), for reference."""
    out = []
    for name in ("reptile_omniglot", "maml_omniglot"):
        done = []
        for s in sorted((runs_dir / name).glob("*/summary.json")):
            d = json.loads(s.read_text())
            if d.get("status") == "ok" and "test_acc" in d["metrics"]:
                done.append((s.parent, d))
        if not done:
            out.append(f"| {name} (CNN4, reference) | see results/meta_omniglot/README.md | | | | | |")
            continue
        run, d = done[-1]
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        m, t, task = d["metrics"], cfg["train"], cfg.get("task", {})
        n_val, n_train = task.get("n_val_chars", 0), task.get("n_train_chars", 1200)  # 1,200: the MAML split
        n_test = OMNIGLOT_CHARS - n_train
        wall = "resumed run: see results/meta_omniglot" if d.get("resumed") else f"{d['wall_time_s'] / 60:.1f}"
        split = (f"{n_train - n_val:,} / {n_val} / {n_test} characters" if n_val
                 else f"{n_train:,} train characters, no val split")
        out.append(f"| {name}: CNN4 {t['channels']} ch (reference; {split}) | "
                   f"{t['steps']} x {t['meta_batch']} | - | - | {100 * m['test_acc']:.2f} ± "
                   f"{100 * m['test_acc_ci95']:.2f} ({int(m['n_test_tasks'])}) | {100 * m['test_acc_pre_adapt']:.1f} | "
                   f"{wall} |")
    return out


def plot_alphas(path: Path, runs: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(5.2 * len(runs), 3.6), squeeze=False)
    for ax, (label, r) in zip(axes[0], runs.items()):
        a = np.asarray(r["genotype"]["alpha_softmax"])
        im = ax.imshow(a, cmap="viridis", vmin=0, vmax=max(0.4, float(a.max())))
        ax.set_xticks(range(a.shape[1]), r["genotype"]["ops"], rotation=35, ha="right", fontsize=7)
        ax.set_yticks(range(a.shape[0]), [f"edge {e}" for e in range(a.shape[0])], fontsize=7)
        for e, k in enumerate(r["genotype"]["indices"]):
            ax.add_patch(plt.Rectangle((k - 0.5, e - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        ax.set_title(label, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("softmax(alpha) per NB201 edge (red: derived op)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(runs: dict[str, dict], ref: list[str], note: str, total_s: float | None) -> str:
    s = next(iter(runs.values()))
    t, meta = s["train"], s["meta"]
    lines = [
        "# MetaNAS on Omniglot 5-way 1-shot at a CPU budget",
        "",
        "Made by `nice -n 19 python experiments/meta_metanas_study.py` (real Omniglot: MAML split, 1,100 meta-train / "
        "100 meta-validation / 423 meta-test characters, rotations as classes, 28x28). Test accuracy: mean over "
        f"{t['test_tasks']} meta-test tasks of the query accuracy after {meta['eval_inner_steps']} "
        "inner steps on the 5-image support set, ± 1.96 std / sqrt(n); non-transductive BN (each query image is "
        "scored with the support set as its batch). The in-training evaluations and val_acc read the validation "
        "split only.",
        "",
        f"Budget: NB201-cell supernet C={t['C']}, N={t['N']} (3 stages, 28 -> 14 -> 7), Reptile "
        f"{t['steps']} outer steps x meta-batch {t['meta_batch']} ({meta['inner_steps']} inner Adam steps on "
        f"batches of {meta['inner_batch']}, 10-shot support, inner lr {meta['inner_lr']}, alpha lr "
        f"{meta['alpha_lr']}, outer step 1 annealed to 0); derived network C={t['derived_C']}, N={t['derived_N']}, "
        f"{t['derived_steps']} steps of the same Reptile from scratch.",
        "",
        f"Machine: {note}",
        "",
        "| run | steps x meta-batch | supernet few-shot acc % (tasks) | derived genotype | derived net: test acc % "
        "± 95% CI (tasks) | before adaptation % | wall (min) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in runs.items():
        m = r["metrics"]
        if not r["finished"]:
            logged = ", ".join(f"{ph} step {st}: {loss:.3f}" for ph, st, loss in r["logged"])
            lines.append(f"| {label} | {r['train']['steps']} + {r['train']['derived_steps']} x "
                         f"{r['train']['meta_batch']} | not finished | `{r['genotype']['arch']}` | not finished "
                         f"(meta-training loss logged: {logged}) | - | - |")
            continue
        sup = (f"{100 * m['supernet_test_acc']:.2f} ± {100 * m['supernet_test_acc_ci95']:.2f} "
               f"({int(m['n_supernet_test_tasks'])})" if "supernet_test_acc" in m else "-")
        lines.append(f"| {label} | {r['train']['steps']} + {r['train']['derived_steps']} x {r['train']['meta_batch']}"
                     f" | {sup} | `{r['genotype']['arch']}` | **{100 * m['test_acc']:.2f} ± "
                     f"{100 * m['test_acc_ci95']:.2f}** ({int(m['n_test_tasks'])}) | "
                     f"{100 * m['test_acc_pre_adapt']:.1f} | {r['wall_s'] / 60:.1f} |")
    lines += ref
    lines += ["", "Per run (search / derived meta-training time, meta-validation accuracy of the derived network on "
              "train.eval_tasks tasks, last in-training validation evaluations):", ""]
    for label, r in runs.items():
        m = r["metrics"]
        if not r["finished"]:
            lines += [f"- **{label}**: `{r['command']}` -> `{r['run']}`: NOT FINISHED when this README was written"]
            continue
        val = (f"{100 * m['val_acc']:.2f} ± {100 * m['val_acc_ci95']:.2f} ({int(m['n_val_tasks'])} tasks)"
               if "val_acc" in m else "-")
        evals = ", ".join(f"{p} step {st}: {100 * v:.1f}" for p, st, v in r["evals"][-4:]) or "none"
        lines += [f"- **{label}**: `{r['command']}` -> `{r['run']}`",
                  f"  - search {m['search_time_s'] / 60:.1f} min, derived {m['derived_time_s'] / 60:.1f} min "
                  f"(meta-training only), total {r['wall_s'] / 60:.1f} min; val_acc {val}",
                  f"  - in-training validation (val_query_metric): {evals}"]
    if total_s is not None:
        lines += ["", f"Whole study ({len(runs)} run(s) side by side): {total_s / 60:.1f} min wall."]
    baseline = len(runs) > 1
    lines += [
        "",
        "![alphas](alphas.png)",
        "",
        ("How to read it: the baseline meta-learns the same supernet's weights with the alphas frozen at a near-"
        "uniform mixture, so its supernet row isolates what meta-learning the alphas adds, and its derived row is a "
        "random NB201 cell (the argmax of the random initialisation) given the same derived-network budget. " if baseline
         else "How to read it: no same-budget NAS baseline was run (`--skip-baseline`). ") + "The CNN4 "
        "rows are other networks at other budgets, quoted for scale only. One seed per run: differences within the "
        "95% CIs are not evidence either way. The paper (Elsken et al. 2020) searches the DARTS space with far "
        "larger budgets; its figures are not comparable to this CPU budget.",
        "",
        "Full length (GPU): the command in the header of conf/experiment/metanas_omniglot.yaml.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results-dir", default="results/runs")
    ap.add_argument("--out", default="results/meta_metanas")
    ap.add_argument("--search-run", help="a finished metanas_omniglot run (default: run one now)")
    ap.add_argument("--baseline-run", help="a finished meta.alpha_lr=0 run (default: run one now)")
    ap.add_argument("--skip-baseline", action="store_true", help="no meta.alpha_lr=0 run (CNN4 references only)")
    ap.add_argument("--note", default="not stated")
    ap.add_argument("overrides", nargs="*", help="extra overrides for both runs, e.g. train.steps=100")
    a = ap.parse_args()
    t0 = time.perf_counter()
    labels = ("MetaNAS (alphas meta-learned)", "baseline: alphas frozen at init (random derived cell)")
    labels = labels[:1] if a.skip_baseline else labels
    dirs, todo = {}, []
    for label, given, extra in zip(labels, (a.search_run, a.baseline_run), ([], BASELINE)):
        if given:
            dirs[label] = Path(given)
        else:
            todo.append((label, [*extra, *a.overrides]))
    for (label, _), d in zip(todo, launch(a.results_dir, [o for _, o in todo]) if todo else []):
        dirs[label] = d
    dirs = {label: dirs[label] for label in labels}
    total = None if (a.search_run and (a.baseline_run or a.skip_baseline)) else time.perf_counter() - t0
    runs = {label: read_run(d) for label, d in dirs.items()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_alphas(out / "alphas.png", runs)
    (out / "rows.json").write_text(json.dumps(runs, indent=1))
    (out / "README.md").write_text(render(runs, reference_rows(Path(a.results_dir)), a.note, total))
    print((out / "README.md").read_text())


if __name__ == "__main__":
    main()
