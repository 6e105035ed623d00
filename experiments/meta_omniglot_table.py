"""Omniglot 5-way 1-shot table of the CPU-budget MAML / Reptile runs beside the papers' figures (MetaNAS:
experiments/meta_metanas_study.py -> results/meta_metanas).

``--run`` first runs both experiments at their configs' CPU budgets (``python -m metanas experiment=NAME``, the
settings are the defaults of ``conf/experiment/{maml,reptile}_omniglot.yaml``), one after the other (``--parallel``:
both at once), each under ``nice -n 19`` (``--nice``) and ``/usr/bin/time -v`` when that exists; the time report
(process CPU time, peak memory) is moved into the run directory as ``time_v.txt``; stdout / stderr go to
``--logs``. Extra ``key=value`` overrides after ``--`` are passed to both runs.

Then (or without ``--run``) reads the newest finished run of each experiment under ``--runs`` (``summary.json``,
``config.yaml``, ``.hydra/overrides.yaml``, ``metrics.jsonl``, ``time_v.txt``); a run that has not finished is
listed with its last logged evaluation (``val_query_metric`` on ``train.eval_tasks`` meta-validation tasks), marked
as such. Writes ``--out``/README.md: test accuracy ± 95% CI, the final meta-validation accuracy (what model
selection may read), the character split of each run, wall and CPU time.

usage: python experiments/meta_omniglot_table.py [--run [--parallel] [--nice 19] [--logs /tmp/meta_omniglot]]
                                                 [--only NAME] [--runs results/runs] [--out results/meta_omniglot]
                                                 [--note "machine conditions"] [-- key=value ...]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

EXPERIMENTS = ["maml_omniglot", "reptile_omniglot"]
PAPER = {  # 5-way 1-shot Omniglot, mean ± 95% CI as printed in the papers
    "maml_omniglot": "98.7 ± 0.4 (Finn et al. 2017, Table 1; 60k steps, meta-batch 32)",
    "reptile_omniglot": "95.39 ± 0.09; 97.68 ± 0.04 transductive (Nichol et al. 2018, Table 1; 100k steps)",
}
OMNIGLOT_CHARS = 1623


def newest_run(root: Path, name: str) -> Path | None:
    runs = sorted(p for p in (root / name).glob("*/") if (p / "config.yaml").exists())
    finished = [p for p in runs if (p / "summary.json").exists()
                and json.loads((p / "summary.json").read_text()).get("status") == "ok"]
    return (finished or runs or [None])[-1]


def resumed_wall_min(run: Path, summary: dict) -> float:
    """A resumed run: start (run dir name) to its last checkpoint's write time, plus the resumed process's wall."""
    start = datetime.strptime(run.name, "%Y-%m-%d_%H-%M-%S-%f").replace(tzinfo=timezone.utc)
    last = max((run / "checkpoints").glob("*/*"), key=lambda p: p.stat().st_mtime)
    return ((last.stat().st_mtime - start.timestamp()) + summary["wall_time_s"]) / 60


def evals(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] \
        if (run / "metrics.jsonl").exists() else []
    return [(r["step"], r["val_query_metric"]) for r in rows if "val_query_metric" in r]


def time_report(run: Path) -> dict | None:
    """User + system CPU seconds, wall and peak RSS from the run's ``/usr/bin/time -v`` report, if it has one."""
    f = run / "time_v.txt"
    if not f.exists():
        return None
    text = f.read_text()

    def num(label: str) -> float | None:
        m = re.search(rf"{re.escape(label)}:\s*([0-9.:]+)", text)
        return None if m is None else m.group(1)

    user, sys_, rss = num("User time (seconds)"), num("System time (seconds)"), num("Maximum resident set size (kbytes)")
    if user is None or sys_ is None:
        return None
    return {"cpu_s": float(user) + float(sys_), "rss_gb": float(rss) / 2**20 if rss else None}


def split_text(task: dict) -> str:
    n_train, n_val = int(task["n_train_chars"]), int(task["n_val_chars"])
    return (f"{n_train - n_val:,} / {n_val:,} / {OMNIGLOT_CHARS - n_train:,}" if n_val > 0
            else f"{n_train:,} / none / {OMNIGLOT_CHARS - n_train:,}")


def row(run: Path, name: str) -> dict:
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text()) or []
    keep = [o for o in overrides if o.split("=")[0] not in ("experiment", "results_dir", "data_dir", "meta_dataset",
                                                            "resume", "progress")]
    t, meta, task = cfg["train"], cfg["meta"], cfg["task"]
    out = {"name": name, "run": str(run), "command": " ".join(["python -m metanas", f"experiment={name}", *keep]),
           "steps": t["steps"], "meta_batch": t["meta_batch"], "algo": meta["_target_"].rsplit(".", 1)[-1],
           "transductive": meta.get("transductive"), "paper": PAPER[name], "split": split_text(task),
           "n_val_chars": int(task["n_val_chars"]), "evals": evals(run), "time": time_report(run),
           "settings": (f"inner steps {meta['inner_steps']} (validation / test {meta['eval_inner_steps']}), "
                        f"outer lr {cfg['optimizer']['learning_rate']:g}, train support / query per class "
                        f"{task['train_shots'] or task['shots']} / "
                        f"{task['queries'] if task['train_queries'] < 0 else task['train_queries']}"
                        + (", first order" if meta.get("first_order") else ""))}
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else None
    if summary and summary.get("status") == "ok":
        m = summary["metrics"]
        wall = f"{summary['wall_time_s'] / 60:.1f}"
        if summary.get("resumed"):
            out["resumed"] = True
            wall = f"{resumed_wall_min(run, summary):.1f} (resumed: training to the last checkpoint + final test)"
        out |= {"train_s": m.get("train_time_s", m.get("search_time_s", 0.0)), "finished": True,
                "acc": 100 * m["test_acc"], "ci": 100 * m["test_acc_ci95"], "pre": 100 * m["test_acc_pre_adapt"],
                "n": int(m["n_test_tasks"]), "wall_min": wall,
                "val": (100 * m["val_acc"], 100 * m["val_acc_ci95"], int(m["n_val_tasks"])) if "val_acc" in m else None,
                "extra": {k: v for k, v in m.items() if k.startswith(("supernet_", "official_"))}}
    else:
        out |= {"finished": False}
    return out


def render(rows: list[dict], note: str) -> str:
    splits = sorted({r["split"] for r in rows})
    lines = ["# Omniglot 5-way 1-shot: CPU-budget meta-learning runs", "",
             "Made by `python experiments/meta_omniglot_table.py` from the run directories listed below "
             "(real Omniglot, MAML's split, rotations as classes, 28x28). Accuracy is the mean over meta-test tasks "
             "of the query accuracy (15 queries per class) after adaptation, ± 1.96 std / sqrt(n).", "",
             f"Split (train / val / test characters): {', '.join(splits)}. "
             + ("Meta-training read the train characters only; the in-training evaluations (`val_query_metric`) and "
                "the final `val_acc` read the meta-validation characters; the meta-test characters were read once, "
                "at the end, for the figure below. The budget settings were chosen on meta-validation accuracy only "
                "(short probes; see the experiment headers)."
                if all(r["n_val_chars"] > 0 for r in rows) else
                "A run without validation characters (`task.n_val_chars=0`) meta-trained on all 1,200 characters "
                "and its in-training evaluations read the test split."), "",
             f"Machine: {note}", "",
             "| experiment | algorithm | steps x meta-batch | ours: test acc % ± 95% CI (tasks) | val acc % (tasks) | "
             "before adaptation % | paper | wall (min) | CPU (min) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bn = "transductive" if r["transductive"] else "non-transductive"
        cpu = f"{r['time']['cpu_s'] / 60:.1f}" if r["time"] else "-"
        if r["finished"]:
            ours = f"**{r['acc']:.2f} ± {r['ci']:.2f}** ({r['n']})"
            val = f"{r['val'][0]:.2f} ± {r['val'][1]:.2f} ({r['val'][2]})" if r["val"] else "-"
            pre, wall = f"{r['pre']:.1f}", r["wall_min"]
        else:
            le = r["evals"][-1] if r["evals"] else None
            ours = (f"not finished; last val eval {100 * le[1]:.1f} at step {le[0]}" if le else "not finished, no eval")
            val, pre, wall, cpu = "-", "-", "-", "-"
        lines.append(f"| {r['name']} | {r['algo']} ({bn} BN) | {r['steps']} x {r['meta_batch']} | {ours} | {val} | "
                     f"{pre} | {r['paper']} | {wall} | {cpu} |")
    lines += ["", "Wall: the run's own `wall_time_s` (start-up, data, compile, meta-training, validation and the "
              "600-task test). CPU: user + system time of the process (`/usr/bin/time -v`, both cores together).",
              "", "## Commands, settings and run directories", ""]
    for r in rows:
        lines.append(f"- `{r['command']}`  ->  `{r['run']}`")
        lines.append(f"  - split {r['split']}; {r['settings']}")
        if r.get("resumed"):
            lines.append("  - resumed once: `python -m metanas resume=RUN_DIR`")
        elif r.get("finished"):
            lines.append(f"  - meta-training time (train_time_s, in-training evaluations included): "
                         f"{r['train_s'] / 60:.1f} min")
        if r["time"] and r["time"].get("rss_gb"):
            lines.append(f"  - peak memory: {r['time']['rss_gb']:.1f} GB")
        if r["evals"]:
            lines.append("  - in-training val accuracy (`val_query_metric`, step: %): "
                         + ", ".join(f"{s}: {100 * v:.1f}" for s, v in r["evals"]))
        for k, v in r.get("extra", {}).items():
            lines.append(f"  - {k}: {v:.4f}" if isinstance(v, float) else f"  - {k}: {v}")
    lines += ["", "The budgets are far below the papers' (MAML 60k steps x 32 tasks, Reptile 100k x 5), so lower "
              "accuracy is expected; the full-length commands are in the headers of "
              "`conf/experiment/{maml,reptile,metanas}_omniglot.yaml`.", ""]
    return "\n".join(lines)


def launch(name: str, runs: Path, logs: Path, nice: int, extra: list[str]) -> tuple[subprocess.Popen, Path, float]:
    """Start ``python -m metanas experiment=name`` (nice'd, under /usr/bin/time -v when present)."""
    logs.mkdir(parents=True, exist_ok=True)
    timef = logs / f"{name}.time_v.txt"
    cmd = [sys.executable, "-m", "metanas", f"experiment={name}", f"results_dir={runs}", *extra]
    if Path("/usr/bin/time").exists():
        cmd = ["/usr/bin/time", "-v", "-o", str(timef), *cmd]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    with open(logs / f"{name}.log", "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    print(f"started {name} (pid {p.pid}): {' '.join(cmd)}", flush=True)
    return p, timef, time.time()


def attach_time_report(name: str, runs: Path, timef: Path, started: float) -> None:
    run = newest_run(runs, name)
    if run is not None and timef.exists() and run.stat().st_mtime >= started - 5:
        shutil.copy(timef, run / "time_v.txt")


def run_all(args, extra: list[str]) -> None:
    runs, logs = Path(args.runs), Path(args.logs)
    jobs = []
    for name in [args.only] if args.only else EXPERIMENTS:
        jobs.append((name, *launch(name, runs, logs, args.nice, extra)))
        if not args.parallel:
            rc = jobs[-1][1].wait()
            attach_time_report(name, runs, jobs[-1][2], jobs[-1][3])
            print(f"{name} exited {rc}", flush=True)
    if args.parallel:
        for name, p, timef, started in jobs:
            print(f"{name} exited {p.wait()}", flush=True)
            attach_time_report(name, runs, timef, started)


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="results/runs")
    ap.add_argument("--out", default="results/meta_omniglot")
    ap.add_argument("--note", default="not stated")
    ap.add_argument("--run", action="store_true", help="run both experiments first")
    ap.add_argument("--parallel", action="store_true", help="with --run: both at once")
    ap.add_argument("--nice", type=int, default=19)
    ap.add_argument("--logs", default="/tmp/meta_omniglot")
    ap.add_argument("--only", choices=EXPERIMENTS, help="with --run: run only this experiment (the table lists both)")
    args = ap.parse_args(argv)
    if args.run:
        run_all(args, extra)
    rows = [row(run, name) for name in EXPERIMENTS if (run := newest_run(Path(args.runs), name)) is not None]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(render(rows, args.note))
    print((out / "README.md").read_text())


if __name__ == "__main__":
    main()
