"""TabRepo (early 2022 release): 73 OpenML tasks x 104 LightGBM configs, a complete error matrix.

Host numpy only, never traced. Source and column meanings: ``shared/data/tabrepo_lightgbm/README.md``
(Salinas & Erickson, "TabRepo", AutoML-Conf 2024). Files read from ``root``:

- ``results_ranked_by_dataset_valid.csv``: one row per (task, config); ``dataset`` is the OpenML task id.
  There is no fold column in this file: each (task, config) has one ``metric_error`` (the fold-level rows
  ``<tid>_<fold>`` exist only in the AutoML-systems file, which this loader does not read).
- ``configs_lightgbm.json``: the hyperparameters of each config; keys a config omits take AutoGluon's
  LightGBM defaults (``LIGHTGBM_DEFAULTS``).
- ``task_metadata_new_and_old.csv``: OpenML qualities per task id.

A user's own copy in the same layout loads by passing its directory (``train.tabrepo_dir`` in the HPO
experiments); a user's own task results can also be given as single files (``results=``, ``metadata=``,
``configs=``: any file not given is taken from ``data_dir``), e.g. new tasks' results on the shared configs.

Meta-feature standardisation: ``task_features`` is z-scored with the statistics of ``train_tasks`` only (default:
all loaded tasks -- for exploration; a leave-tasks-out study passes its training tasks, or standardises
``task_features_raw`` itself with ``fit_standardiser(train rows).apply``), so a held-out or new task never moves
the training tasks' scale.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

RESULTS_FILE = "results_ranked_by_dataset_valid.csv"
CONFIGS_FILE = "configs_lightgbm.json"
META_FILE = "task_metadata_new_and_old.csv"
SUBDIR = "tabrepo_lightgbm"

# AutoGluon's LightGBM default (config c1 = AutoGluon default, per the data README): learning_rate 0.05 is
# AutoGluon's own default; the others are LightGBM's library defaults (num_leaves 31, feature_fraction 1.0,
# min_data_in_leaf 20, extra_trees false).
LIGHTGBM_DEFAULTS = {"learning_rate": 0.05, "num_leaves": 31, "feature_fraction": 1.0, "min_data_in_leaf": 20,
                     "extra_trees": False}
# Encoding of config_features: log for scale-like positive hyperparameters, linear for fractions, 0/1 for bools.
CONFIG_FEATURE_NAMES = ("log_learning_rate", "log_num_leaves", "feature_fraction", "log_min_data_in_leaf",
                        "extra_trees")
QUALITY_COLUMNS = ("NumberOfInstances", "NumberOfFeatures", "NumberOfClasses", "NumberOfNumericFeatures",
                   "NumberOfSymbolicFeatures", "NumberOfMissingValues", "NumberOfInstancesWithMissingValues",
                   "MajorityClassSize", "MinorityClassSize")
PROBLEM_TYPES = ("binary", "multiclass", "regression")
TASK_FEATURE_NAMES = ("log_instances", "log_features", "log1p_classes", "frac_numeric_features",
                      "frac_symbolic_features", "frac_instances_with_missing", "log1p_missing_values",
                      "majority_class_frac", "minority_class_frac", "log_instances_per_feature",
                      *(f"is_{p}" for p in PROBLEM_TYPES))


class TabRepoError(ValueError):
    """A TabRepo directory that cannot be read; the message names the file and what was expected."""


class TabRepo(NamedTuple):
    task_names: list[str]  # [T] OpenML task ids as strings (sorted numerically)
    config_names: list[str]  # [C] "LightGBM_c1" .. "LightGBM_r100" (file order)
    config_features: np.ndarray  # float32 [C, F]: CONFIG_FEATURE_NAMES encoding of each config
    task_features: np.ndarray  # float32 [T, G]: TASK_FEATURE_NAMES, z-scored with the train_tasks' statistics
    error: np.ndarray  # float32 [T, C]: test error in the task's metric (lower is better)
    train_time: np.ndarray  # float32 [T, C]: training seconds
    problem_type: list[str]  # [T] binary / multiclass / regression
    dataset_names: list[str]  # [T] OpenML dataset name of each task
    hyperparameters: list[dict]  # [C] raw hyperparameters with defaults filled in
    config_feature_names: tuple[str, ...]  # [F]
    task_feature_names: tuple[str, ...]  # [G]
    task_features_raw: np.ndarray  # float32 [T, G]: before standardisation
    openml_qualities: dict[str, np.ndarray]  # {OpenML quality column: float64 [T]} as in the file (NaN = empty)


def _need(path: Path) -> Path:
    if not path.is_file():
        raise TabRepoError(f"TabRepo file missing: {path} (expected the layout of shared/data/{SUBDIR}/: "
                           f"{RESULTS_FILE}, {CONFIGS_FILE}, {META_FILE})")
    return path


def resolve_root(data_dir: str | Path) -> Path:
    """``data_dir`` may be the shared data directory (holding ``tabrepo_lightgbm/``) or the folder itself."""
    p = Path(data_dir)
    return p / SUBDIR if (p / SUBDIR).is_dir() and not (p / RESULTS_FILE).exists() else p


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    with open(_need(path), newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise TabRepoError(f"{path}: missing column(s) {missing}; expected columns including {list(required)}")
        return list(reader)


def _float(value: str, path: Path, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise TabRepoError(f"{path}: {what} = {value!r} is not a number") from None


def encode_config(hp: dict) -> np.ndarray:
    """One LightGBM config -> float32 [F] in ``CONFIG_FEATURE_NAMES`` order."""
    return np.array([math.log(hp["learning_rate"]), math.log(hp["num_leaves"]), hp["feature_fraction"],
                     math.log(hp["min_data_in_leaf"]), float(bool(hp["extra_trees"]))], np.float32)


def _task_features(m: dict[str, str], problem: str, path: Path) -> list[float]:
    def q(col: str, empty: float = 0.0) -> float:
        return empty if m[col] == "" else _float(m[col], path, f"{col} of task {m['tid']}")

    n, d = q("NumberOfInstances"), q("NumberOfFeatures")
    if n <= 0 or d <= 0:
        raise TabRepoError(f"{path}: task {m['tid']} has NumberOfInstances={n}, NumberOfFeatures={d}; both must be > 0")
    classification = problem != "regression"
    return [math.log(n), math.log(d), math.log1p(q("NumberOfClasses")), q("NumberOfNumericFeatures") / d,
            q("NumberOfSymbolicFeatures") / d, q("NumberOfInstancesWithMissingValues") / n,
            math.log1p(q("NumberOfMissingValues")),
            q("MajorityClassSize") / n if classification else 0.0,
            q("MinorityClassSize") / n if classification else 0.0,
            math.log(n / d), *(float(problem == p) for p in PROBLEM_TYPES)]


class Standardiser(NamedTuple):
    """Column z-scoring with fixed statistics (fit on training tasks only); a constant column becomes 0."""
    mean: np.ndarray  # [G]
    scale: np.ndarray  # [G] (1 where the training column is constant)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.scale).astype(np.float32)


def fit_standardiser(train_rows: np.ndarray) -> Standardiser:
    """Statistics of the TRAINING tasks' raw meta-features [n, G] only."""
    x = np.asarray(train_rows, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise TabRepoError(f"fit_standardiser needs a non-empty [tasks, features] matrix, got shape {x.shape}")
    sd = x.std(0)
    return Standardiser(x.mean(0), np.where(sd > 0, sd, 1.0))


def standardise(x: np.ndarray, train: np.ndarray | list | None = None) -> np.ndarray:
    """Column z-scores of ``x`` with the statistics of the rows ``train`` (indices or a bool mask; None: all)."""
    x = np.asarray(x)
    return fit_standardiser(x if train is None else x[np.asarray(train)]).apply(x)


def load_tabrepo(data_dir: str | Path | None = None, *, results: str | Path | None = None,
                 configs: str | Path | None = None, metadata: str | Path | None = None,
                 train_tasks: list[str] | None = None) -> TabRepo:
    """Load the complete task x config matrix. ``data_dir``: shared data dir or a TabRepo folder; ``results``,
    ``configs``, ``metadata``: single files in TabRepo's format that replace the folder's (a user's own tasks need
    no folder when all three are given). ``train_tasks``: task ids whose statistics standardise ``task_features``
    (default: all loaded tasks)."""
    if data_dir is None and None in (results, configs, metadata):
        raise TabRepoError("load_tabrepo needs data_dir (a TabRepo folder or the shared data dir) or all three files "
                           f"results= ({RESULTS_FILE} format), configs= ({CONFIGS_FILE}), metadata= ({META_FILE})")
    root = resolve_root(data_dir) if data_dir is not None else None
    if root is not None and not root.is_dir():
        raise TabRepoError(f"TabRepo directory not found: {root} (pass the shared data dir or a folder with "
                           f"{RESULTS_FILE}, {CONFIGS_FILE}, {META_FILE})")
    res_path, cfg_path, meta_path = (Path(f) if f is not None else root / name for f, name in
                                     ((results, RESULTS_FILE), (configs, CONFIGS_FILE), (metadata, META_FILE)))
    rows = _read_csv(res_path, ("dataset", "framework", "problem_type", "metric_error", "time_train_s"))
    try:
        configs = json.loads(_need(cfg_path).read_text())
    except json.JSONDecodeError as e:
        raise TabRepoError(f"{cfg_path}: not valid JSON ({e.msg}); expected {{config_name: {{hyperparameters: ...}}}}")
    meta = {m["tid"]: m for m in _read_csv(meta_path, ("tid", "name", "NumberOfInstances", "NumberOfFeatures"))}

    config_names = list(configs)
    task_names = sorted({r["dataset"] for r in rows}, key=lambda t: (len(t), t))
    ti = {t: i for i, t in enumerate(task_names)}
    ci = {c: j for j, c in enumerate(config_names)}
    error = np.full((len(task_names), len(config_names)), np.nan, np.float32)
    time_ = np.full_like(error, np.nan)
    problem = [""] * len(task_names)
    for r in rows:
        if r["framework"] not in ci:
            raise TabRepoError(f"{res_path}: config {r['framework']!r} is not in {cfg_path.name}")
        i, j = ti[r["dataset"]], ci[r["framework"]]
        error[i, j] = _float(r["metric_error"], res_path, f"metric_error of {r['dataset']}/{r['framework']}")
        time_[i, j] = _float(r["time_train_s"], res_path, f"time_train_s of {r['dataset']}/{r['framework']}")
        problem[i] = r["problem_type"]
    holes = np.argwhere(np.isnan(error))
    if len(holes):
        t, c = holes[0]
        raise TabRepoError(f"{res_path}: the task x config matrix is incomplete ({len(holes)} missing, e.g. task "
                           f"{task_names[t]} x {config_names[c]}); every task needs a row for every config")
    bad = [p for p in problem if p not in PROBLEM_TYPES]
    if bad:
        raise TabRepoError(f"{res_path}: problem_type {bad[0]!r}; expected one of {PROBLEM_TYPES}")

    hps = []
    for name in config_names:
        given = {k: v for k, v in configs[name].get("hyperparameters", {}).items() if k in LIGHTGBM_DEFAULTS}
        hps.append(LIGHTGBM_DEFAULTS | given)
    missing_meta = [t for t in task_names if t not in meta]
    if missing_meta:
        raise TabRepoError(f"{meta_path}: no row for task id(s) {missing_meta[:5]}; every task in {RESULTS_FILE} "
                           f"needs its OpenML qualities")
    raw = np.array([_task_features(meta[t], problem[ti[t]], meta_path) for t in task_names], np.float32)
    if train_tasks is not None:
        unknown = [t for t in train_tasks if t not in ti]
        if unknown or not train_tasks:
            raise TabRepoError(f"train_tasks {unknown[:5] or '[]'} not among the loaded tasks; give a non-empty list "
                               f"of task ids from {res_path.name}")
    train = None if train_tasks is None else [ti[t] for t in train_tasks]
    return TabRepo(
        task_names=task_names, config_names=config_names,
        config_features=np.stack([encode_config(h) for h in hps]), task_features=standardise(raw, train),
        error=error, train_time=time_, problem_type=problem, dataset_names=[meta[t]["name"] for t in task_names],
        hyperparameters=hps, config_feature_names=CONFIG_FEATURE_NAMES, task_feature_names=TASK_FEATURE_NAMES,
        task_features_raw=raw,
        openml_qualities={c: np.array([_float(meta[t][c], meta_path, f"{c} of task {t}") if meta[t][c] != "" else
                                 np.nan for t in task_names])
                          for c in QUALITY_COLUMNS})


def normalized_regret(error: np.ndarray) -> np.ndarray:
    """Per-task min-max normalised error [T, C] in [0, 1]: 0 = best config of the task, 1 = worst.

    Makes tasks with different metrics (1-AUC, log loss, RMSE) comparable; the common choice in TabRepo
    and in the warm-starting literature (e.g. Feurer et al. 2015, "average distance to the minimum").
    """
    lo, hi = error.min(1, keepdims=True), error.max(1, keepdims=True)
    return (error - lo) / np.where(hi > lo, hi - lo, 1.0)
