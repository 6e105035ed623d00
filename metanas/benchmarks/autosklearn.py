"""auto-sklearn warm-start meta-data (one scenario): dataset meta-features + the best pipeline per dataset.

Host numpy only. Source and caveats: ``shared/data/autosklearn_metalearning/README.md`` (auto-sklearn 0.15,
BSD-3). Files read from ``<root>/<scenario>/``:

- ``feature_values.arff``: ``instance_id`` (dataset name), ``repetition``, 38 numeric meta-features (``?`` = NaN).
- ``algorithm_runs.arff``: ``instance_id, repetition, algorithm, <metric>, runstatus``; ``algorithm`` is a
  configuration id and the metric column holds the *loss* of that incumbent (1 - balanced accuracy).
- ``configurations.csv``: ``idx`` + one column per pipeline hyperparameter (empty = inactive).

This is one incumbent per dataset, not a dataset x config matrix. ``to_lightgbm`` maps the incumbents whose
classifier is ``gradient_boosting`` (scikit-learn's histogram GBM, the only LightGBM-like choice) onto
LightGBM hyperparameters; all other classifiers are not mappable and return ``None``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

SUBDIR = "autosklearn_metalearning"
DEFAULT_SCENARIO = "balanced_accuracy_multiclass.classification_dense"


class AutoSklearnError(ValueError):
    """Meta-data that cannot be read; the message names the file and what was expected."""


class AutoSklearnMeta(NamedTuple):
    dataset_names: list[str]  # [D]
    feature_names: list[str]  # [M] auto-sklearn meta-feature names (ClassEntropy, LogNumberOfInstances, ...)
    features: np.ndarray  # float64 [D, M] (NaN where not computed)
    best_config_id: list[str]  # [D] id into ``configs`` (NaN-free: datasets without a run are dropped)
    best_loss: np.ndarray  # float64 [D] loss of the incumbent (1 - balanced accuracy)
    configs: dict[str, dict[str, str]]  # id -> active hyperparameters (strings as in the CSV)


def read_arff(path: Path) -> tuple[list[str], list[list[str]]]:
    """Attribute names and data rows of a dense ARFF file (enough of the format for these files)."""
    if not path.is_file():
        raise AutoSklearnError(f"auto-sklearn meta-data file missing: {path} (expected the layout of "
                               f"shared/data/{SUBDIR}/<scenario>/)")
    names, rows, in_data = [], [], False
    with open(path) as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith("%"):
                continue
            if in_data:
                rows.append(next(csv.reader([s], skipinitialspace=True)))
            elif s.upper().startswith("@ATTRIBUTE"):
                names.append(s.split()[1].strip("'\""))
            elif s.upper().startswith("@DATA"):
                in_data = True
    if not in_data or not names:
        raise AutoSklearnError(f"{path}: not an ARFF file (needs @ATTRIBUTE lines and a @DATA section)")
    bad = [i for i, r in enumerate(rows) if len(r) != len(names)]
    if bad:
        raise AutoSklearnError(f"{path}: data row {bad[0] + 1} has {len(rows[bad[0]])} values; expected {len(names)}")
    return names, rows


def _num(v: str) -> float:
    return math.nan if v in ("?", "") else float(v)


def load_autosklearn(data_dir: str | Path, scenario: str = DEFAULT_SCENARIO) -> AutoSklearnMeta:
    """Load one scenario. ``data_dir``: the shared data dir, the ``autosklearn_metalearning`` folder, or a
    scenario folder itself (a user's own copy in auto-sklearn's layout)."""
    p = Path(data_dir)
    for cand in (p / SUBDIR / scenario, p / scenario, p):
        if (cand / "feature_values.arff").exists():
            root = cand
            break
    else:
        raise AutoSklearnError(f"no auto-sklearn scenario '{scenario}' under {p} (expected feature_values.arff, "
                               f"algorithm_runs.arff and configurations.csv in {p / SUBDIR / scenario})")
    fnames, frows = read_arff(root / "feature_values.arff")
    if fnames[:2] != ["instance_id", "repetition"]:
        raise AutoSklearnError(f"{root / 'feature_values.arff'}: first attributes are {fnames[:2]}; expected "
                               f"['instance_id', 'repetition']")
    try:
        feats = {r[0]: np.array([_num(v) for v in r[2:]]) for r in frows}
    except ValueError as e:
        raise AutoSklearnError(f"{root / 'feature_values.arff'}: non-numeric meta-feature value ({e})") from None
    rnames, rrows = read_arff(root / "algorithm_runs.arff")
    if rnames[:3] != ["instance_id", "repetition", "algorithm"] or len(rnames) < 5:
        raise AutoSklearnError(f"{root / 'algorithm_runs.arff'}: attributes {rnames}; expected instance_id, "
                               f"repetition, algorithm, <metric>, runstatus")
    best = {r[0]: (r[2], float(r[3])) for r in rrows if r[4] == "ok"}
    cfg_path = root / "configurations.csv"
    if not cfg_path.is_file():
        raise AutoSklearnError(f"auto-sklearn meta-data file missing: {cfg_path}")
    with open(cfg_path, newline="") as f:
        reader = csv.DictReader(f)
        if "idx" not in (reader.fieldnames or []):
            raise AutoSklearnError(f"{cfg_path}: no 'idx' column; expected idx + one column per hyperparameter")
        configs = {r["idx"]: {k: v for k, v in r.items() if k != "idx" and v != ""} for r in reader}
    names = [d for d in feats if d in best and best[d][0] in configs]
    return AutoSklearnMeta(names, fnames[2:], np.stack([feats[d] for d in names]), [best[d][0] for d in names],
                           np.array([best[d][1] for d in names]), configs)


def to_lightgbm(config: dict[str, str]) -> dict | None:
    """An auto-sklearn pipeline -> LightGBM hyperparameters, or None when its classifier has no LightGBM analogue.

    HistGradientBoosting -> LightGBM: learning_rate -> learning_rate, max_leaf_nodes -> num_leaves,
    min_samples_leaf -> min_data_in_leaf; no column subsampling or extremely-randomised splits there, so
    feature_fraction = 1.0 and extra_trees = False.
    """
    if config.get("classifier:__choice__") != "gradient_boosting":
        return None
    g = "classifier:gradient_boosting:"
    leaves = config.get(g + "max_leaf_nodes", "31")
    return {"learning_rate": float(config[g + "learning_rate"]),
            "num_leaves": 31 if leaves in ("None", "") else int(float(leaves)),
            "feature_fraction": 1.0, "min_data_in_leaf": int(float(config.get(g + "min_samples_leaf", "20"))),
            "extra_trees": False}


def metafeatures_from_openml(q: dict[str, float], problem_type: str, *,
                             train_fraction: float = 0.67) -> dict[str, float]:
    """The auto-sklearn meta-features that OpenML's basic qualities determine (others are not derivable).

    OpenML counts the target among the features (symbolic for classification, numeric for regression);
    auto-sklearn does not, so one is subtracted. auto-sklearn computed its meta-features on a training split
    holding ``train_fraction`` of the instances (yeast: 995 of 1484; checked on the 19 data sets in both
    TabRepo and this meta-data, where features, classes and feature types match exactly).
    """
    n = q["NumberOfInstances"] * train_fraction
    cls = problem_type != "regression"
    d = q["NumberOfFeatures"] - 1
    num = q["NumberOfNumericFeatures"] - (0 if cls else 1)
    cat = q["NumberOfSymbolicFeatures"] - (1 if cls else 0)
    k = q["NumberOfClasses"] if cls else math.nan
    out = {"NumberOfInstances": n, "LogNumberOfInstances": math.log(n), "NumberOfFeatures": d,
           "LogNumberOfFeatures": math.log(max(d, 1)), "NumberOfClasses": k, "NumberOfNumericFeatures": num,
           "NumberOfCategoricalFeatures": cat, "DatasetRatio": d / n, "LogDatasetRatio": math.log(max(d, 1) / n),
           "InverseDatasetRatio": n / max(d, 1), "LogInverseDatasetRatio": math.log(n / max(d, 1)),
           "RatioNumericalToNominal": num / cat if cat > 0 else 0.0,
           "RatioNominalToNumerical": cat / num if num > 0 else 0.0,
           "NumberOfMissingValues": q["NumberOfMissingValues"] * train_fraction,
           "PercentageOfMissingValues": q["NumberOfMissingValues"] / (q["NumberOfInstances"] * max(d, 1)),
           "NumberOfInstancesWithMissingValues": q["NumberOfInstancesWithMissingValues"] * train_fraction,
           "PercentageOfInstancesWithMissingValues": q["NumberOfInstancesWithMissingValues"] / q["NumberOfInstances"],
           "ClassProbabilityMax": q["MajorityClassSize"] / q["NumberOfInstances"] if cls else math.nan,
           "ClassProbabilityMin": q["MinorityClassSize"] / q["NumberOfInstances"] if cls else math.nan,
           "ClassProbabilityMean": 1.0 / k if cls and k > 0 else math.nan}
    return out
