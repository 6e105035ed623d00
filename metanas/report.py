"""Aggregate runs into a markdown table (mean ± std over seeds per setting) and a plot.

    python -m metanas.report results/multirun/<experiment>/<timestamp>   # a sweep
    python -m metanas.report results/runs/<experiment>                     # every run of an experiment

A *setting* is a run's command-line overrides minus ``seed=``; runs that differ only in the seed are
averaged; runs whose configs differ (e.g. the trials of an HPO run) are never pooled, their labels name the
keys that differ. Failed and interrupted runs are listed, never averaged. Writes ``report.md`` and ``report.png`` in
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


# config keys that do not change what a run computes (or that are the seed a setting averages over); `fast.` and
# `debug_mode` are in run stores saved when experiments carried `fast:` blocks
_NOT_SETTING = ("seed", "results_dir", "data_dir", "meta_dataset", "resume", "progress", "fast.", "debug_mode",
                "device.", "log_every", "checkpoint_every", "objective")


def _overrides(run: Path) -> str:
    f = run / ".hydra" / "overrides.yaml"
    try:
        overrides = yaml.safe_load(f.read_text()) if f.exists() else []
    except (OSError, yaml.YAMLError):
        overrides = []
    keep = [o for o in overrides or [] if not o.split("=")[0].lstrip("+~").startswith(("seed", "results_dir",
                                                                                        "meta_dataset", "hydra"))]
    return " ".join(sorted(keep))


def _flat(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out |= _flat(v, f"{prefix}{k}.")
    else:
        out[prefix[:-1]] = json.dumps(d, sort_keys=True) if isinstance(d, (list, dict)) else d
    return out


def _config(run: Path) -> dict:
    """The run's resolved config.yaml, flattened, without the keys that do not define a setting."""
    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return {k: v for k, v in _flat(cfg).items() if not k.startswith(_NOT_SETTING)}


def _settings(runs: list[tuple[Path, dict]]) -> dict[Path, str]:
    """A label per run: runs share a label exactly when they share experiment and config (all but the seed).

    The label is the run's command-line overrides; where that does not tell two configurations apart (trials of
    an HPO run, Optuna trials, runs without overrides) the config keys that differ within the experiment are added.
    """
    configs = {run: (s.get("experiment") or "?", _config(run)) for run, s in runs}
    groups: dict[tuple, list[Path]] = defaultdict(list)
    for run, (exp, c) in configs.items():
        groups[(exp, json.dumps(c, sort_keys=True, default=str))].append(run)
    by_exp: dict[str, list[tuple]] = defaultdict(list)
    for key in groups:
        by_exp[key[0]].append(key)
    base = {key: _overrides(groups[key][0]) or key[0] for key in groups}
    labels: dict[tuple, str] = {}
    for exp, keys in by_exp.items():
        cfgs = [configs[groups[k][0]][1] for k in keys]
        differ = sorted({k for c in cfgs for k in c if any(c.get(k) != o.get(k) for o in cfgs)})
        for key, c in zip(keys, cfgs):
            label = base[key]
            if sum(base[k] == label for k in groups) > 1:  # the overrides alone do not tell this setting apart
                if exp not in label.split("=")[-1].split():
                    label = f"{exp}: {label}" if label != exp else exp
                if differ:
                    label += " [" + " ".join(f"{k}={c.get(k)}" for k in differ) + "]"
            labels[key] = label
    return {run: labels[key] for key, rs in groups.items() for run in rs}


def aggregate(runs: list[Path]):
    """Returns ({setting: {metric: [values over seeds]}}, [(run, error) of failed runs], {setting: n seeds},
    [(run, resume hint) of interrupted runs]).

    ``n`` counts the seeds that produced values: a ``seeds=K`` run's ``metrics_per_seed`` lists, else 1 per run;
    a summary.json that cannot be read is listed with the failed runs, never dropped.
    """
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    failed, interrupted, counts, ok = [], [], defaultdict(int), []
    for run in runs:
        try:
            s = json.loads((run / "summary.json").read_text())
            if not isinstance(s, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            failed.append((str(run), f"summary.json cannot be read ({type(e).__name__}: {e})"))
            continue
        if s.get("status") == "interrupted":
            interrupted.append((str(run), s.get("error") or f"resume with: python -m metanas resume={run}"))
        elif s.get("status") != "ok":
            failed.append((str(run), s.get("error") or f"status {s.get('status')!r}"))
        else:
            ok.append((run, s))
    labels = _settings(ok)
    for run, s in ok:
        setting = labels[run]
        per_seed = {k: v for k, v in (s.get("metrics_per_seed") or {}).items() if isinstance(v, list)}
        counts[setting] += max((len(v) for v in per_seed.values()), default=1)
        for k, v in (s.get("metrics") or {}).items():
            values = per_seed.get(k, [v])  # a seeds=K run contributes K samples
            table[setting][k].extend(float(x) for x in values if isinstance(x, (int, float))
                                     and not isinstance(x, bool) and math.isfinite(x))
    return table, failed, counts, interrupted


def to_markdown(table, failed, counts, interrupted=()) -> str:
    metrics = sorted({m for per in table.values() for m in per})
    lines = ["| setting | n | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for setting in sorted(table):
        cells = []
        for m in metrics:
            v = np.asarray(table[setting].get(m, []))
            cells.append("—" if v.size == 0 else f"{v.mean():.4g} ± {v.std(ddof=1) if v.size > 1 else 0.0:.2g}")
        lines.append(f"| {setting} | {counts[setting]} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + ("\n\nmean ± std over seeds (sample std; 0 for a single seed); n: seeds with results "
                               "(from metrics_per_seed, else 1 per run).\n")
    if failed:
        text += f"\n{len(failed)} failed run(s):\n" + "".join(f"- `{r}`: {e}\n" for r, e in failed)
    if interrupted:
        text += (f"\n{len(interrupted)} interrupted run(s), not averaged:\n"
                 + "".join(f"- `{r}`: {e}\n" for r, e in interrupted))
    return text


def _bar_label(setting: str, settings: list[str]) -> str:
    """A setting's label without the words every setting shares (so bars differ by what differs), wrapped."""
    import textwrap

    shared = set.intersection(*(set(s.split()) for s in settings)) if len(settings) > 1 else set()
    words = [w for w in setting.split() if w not in shared] or setting.split()
    return "\n".join(textwrap.wrap(" ".join(words), 32, break_long_words=True)) or setting


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m metanas.report", description=__doc__.split("\n")[0])
    p.add_argument("dirs", nargs="+", type=Path, help="run, experiment or sweep directories")
    p.add_argument("--out", type=Path, default=None, help="where report.md/report.png go (default: first dir)")
    a = p.parse_args(argv)
    try:
        missing = [str(d) for d in a.dirs if not d.is_dir()]
        if missing:
            raise ReportError(f"not a directory: {', '.join(missing)}")
        table, failed, counts, interrupted = aggregate(find_runs(a.dirs))
    except ReportError as e:
        print(f"metanas.report: error: {e}", file=sys.stderr)
        return 2
    md = to_markdown(table, failed, counts, interrupted)
    out = a.out or a.dirs[0]
    atomic_write_text(out / "report.md", md)
    from metanas.plots import plot_report

    plot_report(table, out / "report.png", {s: _bar_label(s, sorted(table)) for s in table})
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
