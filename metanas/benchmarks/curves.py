"""Learning-curve tables: one adapter that every curve searcher and every library baseline reads.

A ``CurveTable`` holds, for T tasks that share one set of N configurations, the validation curve of every
(task, config) at L checkpoints (lower is better: a loss or an error), the test value reported at the end, the cost of
each checkpoint and DPL's keep mask. Sources:

- ``load_taskset(dir)``: TaskSet as packaged by DPL (Kadra et al., NeurIPS 2023; ``shared/data/taskset_dpl``): 12
  IMDB RNN tasks x 1000 Adam configs x 51 checkpoints of validation loss. Any folder of JSON files of the same shape
  (``[{"hp": {...}, "valid": {"loss": [L floats]}, "test": {"loss": [...]}}, ...]``, one file per task, the same
  configs in the same order in every file) is read the same way: that is the user-file format.
  Filtering is DPL's ``TaskSet.filter_curves`` (benchmarks/taskset.py of releaunifreiburg/DPL): a config is kept
  when its curve has no NaN and every value is below the smallest (over checkpoints) 95 % quantile (over configs) of
  the task's curves. Features are DPL's: log of learning_rate, epsilon, l1, l2, linear_decay, exponential_decay;
  beta1 and beta2 as they are; then min-max scaled to [0, 1] over the N configs. Budget unit: one checkpoint
  ("epoch" in DPL's protocol), so a full curve costs L = 51.
- ``load_nb201_fidelities(data_dir)``: NAS-Bench-201, the three data sets as tasks, fidelities 12 and 200 epochs:
  validation error (100 - accuracy, %) after 12 epochs (``minibench_12ep_accs.csv``) and 200 epochs (x-valid seed
  mean), the 200-epoch test error as the reported value. The 12-epoch value comes from NB201's separate 12-epoch
  schedule, not from the first 12 epochs of the 200-epoch run, so a 200-epoch result is a new run: the cost of
  checkpoint 1 is the full 200 epochs (no freeze-thaw discount). Cost in epochs (12, 200) or in training seconds
  (those epochs x CIFAR-10 seconds per epoch from ``nb201_cifar10_cost_metrics_15625.csv``, the only per-cell time in
  the shared data; used for every data set, named as such).

``leave_one_task_out(table, target)`` returns (sources, target) as separate tables; the target's curves never enter
the sources (naming the target as a source raises).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

TASKSET_DIR = "taskset_dpl"
TASKSET_HPS = ("learning_rate", "beta1", "beta2", "epsilon", "l1", "l2", "linear_decay", "exponential_decay")
TASKSET_LOG = (True, False, False, True, True, True, True, True)  # DPL's log_indicator


class CurveDataError(ValueError):
    """A curve file that cannot be read: names the file and what would be right."""


class CurveTable(NamedTuple):
    tasks: tuple[str, ...]  # T task names
    x: np.ndarray  # float32 [N, D] config features in [0, 1] (shared by every task)
    valid: np.ndarray  # float32 [T, N, L] validation curve (lower is better); NaN where the run diverged
    test: np.ndarray  # float32 [T, N] reported value of a config (at the final checkpoint); NaN if unknown
    keep: np.ndarray  # bool [T, N] configs kept by the filter (only these are searched and scored)
    budgets: np.ndarray  # float32 [L] training epochs at each checkpoint
    cost: np.ndarray  # float32 [T, N, L] cost of reaching checkpoint l from checkpoint l - 1 (l = 0: from nothing)

    @property
    def n_checkpoints(self) -> int:
        return self.valid.shape[-1]

    def task(self, name_or_index) -> int:
        if isinstance(name_or_index, (int, np.integer)):
            if not 0 <= int(name_or_index) < len(self.tasks):
                raise CurveDataError(f"task index {name_or_index} out of range; {len(self.tasks)} tasks")
            return int(name_or_index)
        if name_or_index in self.tasks:
            return self.tasks.index(name_or_index)
        hits = [i for i, t in enumerate(self.tasks) if str(name_or_index) in t]
        if len(hits) == 1:
            return hits[0]
        raise CurveDataError(f"task {name_or_index!r} not found (or ambiguous); tasks: {', '.join(self.tasks)}")

    def subset(self, idx) -> "CurveTable":
        idx = np.asarray(idx, int)
        return CurveTable(tuple(self.tasks[i] for i in idx), self.x, self.valid[idx], self.test[idx], self.keep[idx],
                          self.budgets, self.cost[idx])


def dpl_keep(valid: np.ndarray) -> np.ndarray:
    """DPL's filter for one task [N, L]: no NaN and every value < min over checkpoints of the 95 % quantile."""
    v = np.asarray(valid, np.float64)
    q = np.nanquantile(v, 0.95, axis=0).min()
    return ~np.isnan(v).any(1) & np.all(np.nan_to_num(v, nan=np.inf) < q, axis=1)


def scale_features(raw: np.ndarray, log: tuple[bool, ...]) -> np.ndarray:
    """log (where ``log``) then min-max to [0, 1] per column (a constant column becomes 0)."""
    z = np.asarray(raw, np.float64).copy()
    for j, lg in enumerate(log):
        if lg:
            z[:, j] = np.log(np.maximum(z[:, j], 1e-12))
    lo, hi = z.min(0), z.max(0)
    return ((z - lo) / np.where(hi > lo, hi - lo, 1.0)).astype(np.float32)


def _read_curve_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
    try:
        recs = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CurveDataError(f"{path}: not a readable JSON file ({e}); expected a list of "
                             '{"hp": {...}, "valid": {"loss": [...]}} records') from None
    if not isinstance(recs, list) or not recs:
        raise CurveDataError(f"{path}: expected a non-empty JSON list of records, got {type(recs).__name__}")
    try:
        names = tuple(sorted(recs[0]["hp"]))
        hp = np.array([[float(r["hp"][k]) for k in names] for r in recs], np.float64)
        val = np.array([r["valid"]["loss"] for r in recs], np.float64)
        test = np.array([r["test"]["loss"][-1] if "test" in r else np.nan for r in recs], np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise CurveDataError(f"{path}: record without hp / valid.loss of equal length ({e!r}); expected "
                             '{"hp": {name: number}, "valid": {"loss": [L numbers]}} for every record') from None
    if val.ndim != 2:
        raise CurveDataError(f"{path}: valid.loss curves of different lengths; every curve needs the same L points")
    return hp, val, test, names


def load_taskset(data_dir: str | Path, tasks: list[str] | None = None) -> CurveTable:
    """TaskSet (or any folder of files of its shape): ``data_dir`` is the shared data folder (holding
    ``taskset_dpl/``) or the folder of JSON files itself. ``tasks``: file stems (default: every ``*.json``)."""
    root = Path(data_dir)
    root = root / TASKSET_DIR if (root / TASKSET_DIR).is_dir() else root
    files = sorted(root.glob("*.json"))
    if tasks is not None:
        want = set(tasks)
        files = [f for f in files if f.stem in want]
        if len(files) != len(want):
            raise CurveDataError(f"{root}: tasks {sorted(want - {f.stem for f in files})} not found")
    if not files:
        raise CurveDataError(f"no curve files (*.json) in {root}; point data_dir at shared/data (holding "
                             f"{TASKSET_DIR}/) or at a folder of TaskSet-shaped JSON files")
    hp0, vals, tests, keeps, names0 = None, [], [], [], None
    for f in files:
        hp, val, test, names = _read_curve_file(f)
        if hp0 is None:
            hp0, names0 = hp, names
        elif names != names0 or hp.shape != hp0.shape or not np.allclose(hp, hp0, equal_nan=True):
            raise CurveDataError(f"{f}: its configs differ from {files[0].name}'s; every task file must list the same "
                                 "configs in the same order")
        if val.shape[1] != (vals[0].shape[1] if vals else val.shape[1]):
            raise CurveDataError(f"{f}: {val.shape[1]} checkpoints, {files[0].name} has {vals[0].shape[1]}")
        vals.append(val)
        tests.append(test)
        keeps.append(dpl_keep(val))
    log = tuple(TASKSET_LOG[TASKSET_HPS.index(n)] if n in TASKSET_HPS else False for n in names0)
    x = scale_features(hp0, log)
    valid = np.stack(vals).astype(np.float32)
    t, n, L = valid.shape
    return CurveTable(tuple(f.stem for f in files), x, valid, np.stack(tests).astype(np.float32), np.stack(keeps),
                      np.arange(1, L + 1, dtype=np.float32), np.ones((t, n, L), np.float32))


def load_nb201_fidelities(data_dir: str | Path, cost: str = "epochs") -> CurveTable:
    """NB201 (15,625 cells) with checkpoints at 12 and 200 epochs, tasks = cifar10, cifar100, ImageNet16-120;
    values = validation error (%), ``test`` = 200-epoch test error (%). ``cost``: ``epochs`` (12, then a 200-epoch run)
    or ``seconds`` (those epochs x CIFAR-10 training seconds per epoch of the cell); see the module docstring."""
    from metanas.benchmarks.nb201 import DATASETS, load_cost, load_tables
    from metanas.search_spaces.nb201 import NB201Space

    if cost not in ("epochs", "seconds"):
        raise CurveDataError(f"cost={cost!r}; choose epochs or seconds")
    t = load_tables(str(data_dir))
    space = NB201Space()
    codes = np.asarray(space.enumerate())  # [N, 6] op index per edge
    x = np.eye(len(space.ops), dtype=np.float32)[codes].reshape(len(codes), -1)  # one-hot per edge [N, 30]
    lo = np.stack([t.lowfi_acc[:, 2 * d + 1] for d in range(3)])  # [3, N] 12-epoch val acc
    hi = t.valid_acc.T  # [3, N] 200-epoch x-valid acc
    valid = np.stack([100.0 - lo, 100.0 - hi], -1).astype(np.float32)  # [3, N, 2]
    test = (100.0 - t.test_acc.T).astype(np.float32)
    budgets = np.array([12.0, 200.0], np.float32)
    per = np.broadcast_to(budgets, valid.shape).astype(np.float32)  # two separate runs: 12, then 200 epochs
    if cost == "seconds":
        per = per * load_cost(str(data_dir))[None, :, 3:4]
    keep = ~np.isnan(valid).any(-1)
    return CurveTable(DATASETS, x, valid, test, keep, budgets, np.ascontiguousarray(per, np.float32))


def leave_one_task_out(table: CurveTable, target, sources=None) -> tuple[CurveTable, CurveTable]:
    """(sources, target): the target's curves are never among the sources; naming it as a source raises."""
    ti = table.task(target)
    src = [i for i in range(len(table.tasks)) if i != ti] if sources is None else [table.task(s) for s in sources]
    if ti in src:
        raise CurveDataError(f"leave-one-task-out: target task {table.tasks[ti]!r} cannot be among its own sources")
    if not src:
        raise CurveDataError("meta-training needs at least one source task")
    return table.subset(src), table.subset([ti])


def regret_bounds(valid: np.ndarray, keep: np.ndarray) -> tuple[float, float]:
    """(best, worst) over the kept configs of one task [N, L]: DPL's min over all curve points and max over them."""
    v = np.asarray(valid, np.float64)[np.asarray(keep, bool)]
    return float(v.min()), float(v.max())


def normalised_regret(incumbent, best: float, worst: float):
    """(incumbent - best) / (worst - best) (DPL's normalised regret; lower is better). No incumbent yet (inf) is
    censored at 1, the worst kept value's regret, for every method alike."""
    return np.minimum((np.asarray(incumbent, np.float64) - best) / (worst - best), 1.0)
