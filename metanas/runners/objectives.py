"""Objectives for the HPO experiments (frozen dataclasses, instantiated from ``train.objective``).

- ``ExperimentObjective``: one evaluation = one full metanas run of another experiment with the overrides
  ``experiment=NAME <config> <fidelity_key>=<fidelity>``, composed by Hydra and run by
  ``metanas.experiment.run_experiment`` (in this process by default, which saves the ~5 s start-up of a new Python + JAX per
  trial; ``in_process: false`` launches ``python -m metanas`` instead). Every trial has its own run directory
  (config, metrics, summary) and meta-dataset record; the loss is ``metric`` of the trial's ``summary.json``.
  Works for any experiment; the fidelity knob is any numeric config key (``train.steps``, epochs, a data
  fraction).
- ``TabRepoTask``: one TabRepo task; evaluations are table look-ups (see ``metanas.hpo.simulation``).

Each says whether its evaluations are ``live`` (a callable that trains: the HPO runner's live study with trials,
resume and samplers) or recorded results (the TabRepo strategy comparison); the runner reads that, not the class.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from metanas.hpo.space import to_overrides


@dataclass(frozen=True)
class TrialResult:
    loss: float
    status: str  # "ok", "failed" or "pruned" (stopped early by the search's pruner: no final metric)
    run_dir: str | None
    wall_s: float
    error: str | None = None


@dataclass(frozen=True)
class ExperimentObjective:
    live: ClassVar[bool] = True  # objective(config, fidelity, ...) trains one trial
    experiment: str  # conf/experiment/<experiment>.yaml
    metric: str  # key of summary.json "metrics"
    fidelity_key: str  # dotted config key set to the fidelity, e.g. train.steps
    integer_fidelity: bool = True
    overrides: list[str] = field(default_factory=list)  # fixed extra overrides, e.g. [debug=fast]
    timeout_s: float = 600.0  # subprocess mode only
    in_process: bool = True
    maximize: bool = False  # true: the loss is -metric (e.g. accuracy)

    def __call__(self, config: dict[str, Any], fidelity: float, *, trial_dir: Path, seed: int,
                 meta_dataset: str | None, data_dir: str | None = None) -> TrialResult:
        """Train one trial into ``trial_dir``; ``data_dir`` (the search's own) is passed on to the trial."""
        fid = int(round(fidelity)) if self.integer_fidelity else float(fidelity)
        trial_dir = Path(trial_dir)
        inherited = [f"data_dir={data_dir}"] if data_dir else []
        args = [f"experiment={self.experiment}", *inherited, *self.overrides, *to_overrides(config),
                f"{self.fidelity_key}={fid}", f"seed={seed}", f"results_dir={trial_dir}",
                f"meta_dataset={meta_dataset if meta_dataset else 'null'}", "progress=false"]
        t0 = time.perf_counter()
        if self.in_process:
            err = _run_in_process(args, trial_dir / self.experiment)
        else:
            env = dict(os.environ, CI=os.environ.get("CI", "1"))
            try:
                proc = subprocess.run([sys.executable, "-m", "metanas", *args], capture_output=True, text=True,
                                      timeout=self.timeout_s, env=env)
                err = (proc.stderr.strip().splitlines() or [None])[-1] if proc.returncode else None
            except subprocess.TimeoutExpired:
                err = f"timeout after {self.timeout_s}s"
        wall = time.perf_counter() - t0
        summaries = sorted(trial_dir.glob("**/summary.json"))
        if not summaries:
            return TrialResult(math.inf, "failed", None, wall, err or "no summary.json written")
        summary = json.loads(summaries[-1].read_text())
        run_dir = str(summaries[-1].parent)
        if summary.get("status") == "ok" and summary.get("metrics", {}).get("pruned"):  # stopped by the search's pruner
            return TrialResult(math.inf, "pruned", run_dir, wall)
        if summary.get("status") != "ok" or self.metric not in summary.get("metrics", {}):
            err = summary.get("error") or f"metric '{self.metric}' not in summary metrics {list(summary['metrics'])}"
            return TrialResult(math.inf, "failed", run_dir, wall, err)
        value = float(summary["metrics"][self.metric])
        loss = -value if self.maximize else value
        return TrialResult(loss if math.isfinite(loss) else math.inf, "ok", run_dir, wall)


@dataclass(frozen=True)
class TabRepoTask:
    live: ClassVar[bool] = False  # evaluations are TabRepo's recorded errors (metanas.runners.hpo.run_tabrepo)
    task: str  # OpenML task id, e.g. "359983"
    noise: float = 0.1  # synthetic low-fidelity noise (regret units); full fidelity is the recorded error
    tabrepo_dir: str | None = None  # a TabRepo folder in the standard layout; null: <data_dir>/tabrepo_lightgbm


def _run_in_process(args: list[str], run_dir: Path) -> str | None:
    """Compose and run one experiment into ``run_dir``; returns an error line or None."""
    from metanas.experiment import compose_config, run_experiment

    try:
        overrides = [a for a in args if not a.startswith(("results_dir=", "progress="))] + ["progress=false"]
        run_experiment(compose_config(overrides), run_dir, overrides)
    except Exception as e:  # the trial fails, the search goes on (its summary.json records the error)
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return None
