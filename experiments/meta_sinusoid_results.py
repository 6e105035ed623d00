"""MAML sinusoid regression (SYNTHETIC tasks, Finn et al. 2017 Sec. 5.1): table + pre/post-adaptation plot.

Reads the newest finished ``maml_sinusoid`` run under ``--runs`` and writes ``--out``/README.md and
``--out``/sinusoid_fits.png (copied from the run).

usage: python -m metanas experiment=maml_sinusoid   then   python experiments/meta_sinusoid_results.py [--note ...]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="results/runs")
    ap.add_argument("--out", default="results/meta_sinusoid")
    ap.add_argument("--note", default="not stated")
    args = ap.parse_args()
    runs = [p for p in sorted(Path(args.runs, "maml_sinusoid").glob("*/")) if (p / "summary.json").exists()
            and json.loads((p / "summary.json").read_text())["status"] == "ok"]
    if not runs:
        raise SystemExit(f"no finished maml_sinusoid run under {args.runs}; run: python -m metanas experiment=maml_sinusoid")
    run = runs[-1]
    s = json.loads((run / "summary.json").read_text())
    m = s["metrics"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "sinusoid_fits.png", out / "sinusoid_fits.png")
    text = f"""# MAML on sinusoid regression (synthetic tasks)

Command: `python -m metanas experiment=maml_sinusoid` (MLP 40-40 ReLU, K = 10, 1 inner step lr 0.01 in training,
meta-batch 25, Adam 1e-3, 10,000 steps; the paper trains 70,000). Made by `python experiments/meta_sinusoid_results.py`
from `{run}`.

Machine: {args.note}. Wall time {s['wall_time_s'] / 60:.1f} min.

| query MSE over {int(m['n_test_tasks'])} meta-test tasks (K = 10) | value |
|---|---|
| before adaptation (meta-learned init) | {m['test_mse_pre_adapt']:.3f} |
| after 10 inner SGD steps | **{m['test_mse']:.3f} ± {m['test_mse_ci95']:.3f}** (95% CI) |
| support loss before / after adaptation | {m['test_support_loss_before']:.3f} / {m['test_support_loss_after']:.4f} |

![pre- and post-adaptation fits](sinusoid_fits.png)

The plot follows Finn et al. 2017, Fig. 2: the meta-learned initialisation (pre-update, dotted) and the fits after
1 and 10 gradient steps on the 10 support points.
"""
    (out / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
