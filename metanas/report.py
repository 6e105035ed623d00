"""Aggregate runs into a markdown table (mean ± std over seeds per setting) and a plot.

    python -m metanas.report results/multirun/<experiment>/<timestamp>   # a sweep
    python -m metanas.report results/runs/<experiment>                     # every run of an experiment

A *setting* is a run's command-line overrides minus ``seed=``; runs that differ only in the seed are
averaged. Failed runs are counted and listed, never averaged. Writes ``report.md`` and ``report.png`` in
the first directory given (or ``--out``) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from metanas.run_store import atomic_write_text


class ReportError(ValueError):
    pass


def find_runs(roots: list[Path]) -> list[Path]:
    runs = sorted({p.parent for r in roots for p in Path(r).rglob("summary.json")})
    if not runs:
        raise ReportError(f"no summary.json under {', '.join(map(str, roots))}; pass a run, experiment or sweep directory")
    return runs


def _setting(run: Path) -> str:
    f = run / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(f.read_text()) if f.exists() else []
    keep = [o for o in overrides or [] if not o.split("=")[0].lstrip("+~").startswith(("seed", "results_dir",
                                                                                        "meta_dataset", "hydra"))]
    return " ".join(sorted(keep)) or "(default)"


def aggregate(runs: list[Path]) -> tuple[dict[str, dict[str, list[float]]], list[tuple[str, str]], dict[str, int]]:
    """Returns ({setting: {metric: [values over seeds]}}, [(run, error) of failed runs], {setting: n_ok})."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    failed, counts = [], defaultdict(int)
    for run in runs:
        s = json.loads((run / "summary.json").read_text())
        if s.get("status") != "ok":
            failed.append((str(run), s.get("error") or "unknown error"))
            continue
        setting = _setting(run)
        counts[setting] += s.get("seeds") or 1
        per_seed = s.get("metrics_per_seed") or {}
        for k, v in (s.get("metrics") or {}).items():
            values = per_seed.get(k, [v])  # a seeds=K run contributes K samples
            table[setting][k].extend(float(x) for x in values if isinstance(x, (int, float))
                                     and not isinstance(x, bool) and math.isfinite(x))
    return table, failed, counts


def to_markdown(table, failed, counts) -> str:
    metrics = sorted({m for per in table.values() for m in per})
    lines = ["| setting | n | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for setting in sorted(table):
        cells = []
        for m in metrics:
            v = np.asarray(table[setting].get(m, []))
            cells.append("—" if v.size == 0 else f"{v.mean():.4g} ± {v.std(ddof=1) if v.size > 1 else 0.0:.2g}")
        lines.append(f"| {setting} | {counts[setting]} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n\nmean ± std over seeds (sample std; 0 for a single run).\n"
    if failed:
        text += f"\n{len(failed)} failed run(s):\n" + "".join(f"- `{r}`: {e}\n" for r, e in failed)
    return text


def plot(table, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        ax.set_xticks(range(len(settings)), [s[:30] for s in settings], rotation=30, ha="right", fontsize=7)
        ax.set_title(m, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m metanas.report", description=__doc__.split("\n")[0])
    p.add_argument("dirs", nargs="+", type=Path, help="run, experiment or sweep directories")
    p.add_argument("--out", type=Path, default=None, help="where report.md/report.png go (default: first dir)")
    a = p.parse_args(argv)
    try:
        missing = [str(d) for d in a.dirs if not d.is_dir()]
        if missing:
            raise ReportError(f"not a directory: {', '.join(missing)}")
        table, failed, counts = aggregate(find_runs(a.dirs))
    except ReportError as e:
        print(f"metanas.report: error: {e}", file=sys.stderr)
        return 2
    md = to_markdown(table, failed, counts)
    out = a.out or a.dirs[0]
    atomic_write_text(out / "report.md", md)
    plot(table, out / "report.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
