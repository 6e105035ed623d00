"""Sweep bookkeeping: a Hydra callback that writes ``sweep_summary.json`` when a multirun ends.

Each job of a sweep writes its own ``summary.json``; a job that fails (non-finite loss, bad value in one
sweep point) also appends a row to the sweep's ``failures.jsonl`` and the other jobs go on (see
``metanas.app.task``). At the end, ``sweep_summary.json`` lists every job with its overrides, status and
final metrics, so one file says which points failed and why.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from metanas.run_store import atomic_write_json, read_jsonl

log = logging.getLogger("metanas")


def summarize_sweep(sweep_dir: Path) -> dict[str, Any]:
    jobs = []
    for summary in sorted(sweep_dir.glob("*/summary.json"), key=lambda p: int(p.parent.name)
                          if p.parent.name.isdigit() else 0):
        s = json.loads(summary.read_text())
        overrides = summary.parent / ".hydra" / "overrides.yaml"
        import yaml

        jobs.append({"job": summary.parent.name, "status": s["status"], "error": s["error"],
                     "metrics": s["metrics"],
                     "overrides": yaml.safe_load(overrides.read_text()) if overrides.exists() else None})
    seen = {j["job"] for j in jobs}
    failures = sweep_dir / "failures.jsonl"
    for row in read_jsonl(failures) if failures.exists() else []:
        if str(row["job"]) not in seen:  # failed before writing a summary (e.g. a bad value in this point)
            jobs.append({"job": str(row["job"]), "status": "failed", "error": row["error"], "metrics": {},
                         "overrides": row["overrides"]})
    failed = [j for j in jobs if j["status"] != "ok"]
    return {"jobs": len(jobs), "ok": len(jobs) - len(failed), "failed": len(failed), "results": jobs}


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.exists():
            return
        summary = summarize_sweep(sweep_dir)
        atomic_write_json(sweep_dir / "sweep_summary.json", summary)
        msg = f"sweep finished: {summary['ok']}/{summary['jobs']} jobs ok -> {sweep_dir / 'sweep_summary.json'}"
        (log.warning if summary["failed"] else log.info)(msg)
        for j in summary["results"]:
            if j["status"] != "ok":
                log.warning("  job %s %s failed: %s", j["job"], j["overrides"], j["error"])
