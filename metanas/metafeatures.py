"""Dataset meta-features for learning across tasks (host numpy; pure functions of the data and a seed).

Names and definitions follow auto-sklearn's meta-features (Feurer et al. 2015, ``autosklearn/metalearning/
metafeatures/metafeatures.py``) where they overlap, so features computed here are comparable with the
auto-sklearn meta-data in ``shared/data/autosklearn_metalearning``:

- simple: NumberOfInstances / Features / Classes and their logs, DatasetRatio, missing-value counts;
- class statistics: ClassEntropy (bits), ClassProbabilityMin / Max / Mean / STD;
- statistical: Skewness* and Kurtosis* (min / max / mean / std over numeric features; scipy's biased
  estimators, Fisher kurtosis, as auto-sklearn);
- landmarkers (Pfahringer et al. 2000) on a stratification-free random subsample of at most ``subsample``
  rows with 2-fold cross-validation: Landmark1NN (1-nearest-neighbour accuracy on standardised features),
  LandmarkLinear (accuracy of a least-squares linear classifier on one-hot targets, ridge 1e-3), and
  LandmarkMajority (majority-class accuracy, the floor the other two should beat). For regression targets
  the landmarkers report R^2 instead and the class statistics are omitted.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


class MetaFeatureError(ValueError):
    """Input that meta-features cannot be computed from; one line naming what was wrong."""


def _summary(prefix: str, v: np.ndarray) -> dict[str, float]:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {f"{prefix}{s}": math.nan for s in ("Min", "Max", "Mean", "STD")}
    return {f"{prefix}Min": float(v.min()), f"{prefix}Max": float(v.max()), f"{prefix}Mean": float(v.mean()),
            f"{prefix}STD": float(v.std())}


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mu[None]) / sd[None], (test - mu[None]) / sd[None]


def _one_nn(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray) -> np.ndarray:
    d2 = (xte ** 2).sum(1)[:, None] - 2 * xte @ xtr.T + (xtr ** 2).sum(1)[None, :]
    return ytr[np.argmin(d2, axis=1)]


def _linear(xtr: np.ndarray, ttr: np.ndarray, xte: np.ndarray, l2: float = 1e-3) -> np.ndarray:
    a = np.concatenate([xtr, np.ones((len(xtr), 1))], 1)
    w = np.linalg.solve(a.T @ a + l2 * len(xtr) * np.eye(a.shape[1]), a.T @ ttr)
    return np.concatenate([xte, np.ones((len(xte), 1))], 1) @ w


def landmarkers(x: np.ndarray, y: np.ndarray, *, classification: bool, seed: int, subsample: int) -> dict[str, float]:
    """2-fold CV scores of 1-NN, a linear model and the majority class (R^2 for regression) on a subsample."""
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))[:subsample]
    x, y = np.nan_to_num(x[idx]), y[idx]
    half = len(x) // 2
    folds = [(np.arange(half), np.arange(half, len(x))), (np.arange(half, len(x)), np.arange(half))]
    scores: dict[str, list[float]] = {"Landmark1NN": [], "LandmarkLinear": [], "LandmarkMajority": []}
    for tr, te in folds:
        xtr, xte = _standardise(x[tr], x[te])
        if classification:
            classes, yi = np.unique(y, return_inverse=True)
            ytr, yte = yi[tr], yi[te]
            onehot = np.eye(len(classes))[ytr]
            scores["Landmark1NN"].append(float(np.mean(_one_nn(xtr, ytr, xte) == yte)))
            scores["LandmarkLinear"].append(float(np.mean(np.argmax(_linear(xtr, onehot, xte), 1) == yte)))
            scores["LandmarkMajority"].append(float(np.mean(yte == np.bincount(ytr).argmax())))
        else:
            ytr, yte = y[tr].astype(np.float64), y[te].astype(np.float64)
            var = np.var(yte) if np.var(yte) > 0 else 1.0
            r2 = lambda p: 1.0 - float(np.mean((p - yte) ** 2) / var)  # noqa: E731
            scores["Landmark1NN"].append(r2(_one_nn(xtr, ytr, xte)))
            scores["LandmarkLinear"].append(r2(_linear(xtr, ytr[:, None], xte)[:, 0]))
            scores["LandmarkMajority"].append(r2(np.full_like(yte, ytr.mean())))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def compute_metafeatures(x: np.ndarray, y: np.ndarray, *, classification: bool = True, seed: int = 0,
                         subsample: int = 1000) -> dict[str, float]:
    """Meta-features of a table ``x`` [N, D] (numeric; NaN = missing) with targets ``y`` [N].

    Returns a flat ``{name: float}`` (NaN where a feature does not apply), ready to store with a run.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y)
    if x.ndim != 2:
        raise MetaFeatureError(f"x must be a 2-D table [instances, features], got shape {x.shape}")
    if y.shape != (x.shape[0],):
        raise MetaFeatureError(f"y must have shape ({x.shape[0]},) to match x {x.shape}, got {y.shape}")
    n, d = x.shape
    if n < 4 or d < 1:
        raise MetaFeatureError(f"need at least 4 instances and 1 feature, got {n} x {d}")
    miss = np.isnan(x)
    out = {"NumberOfInstances": float(n), "LogNumberOfInstances": math.log(n), "NumberOfFeatures": float(d),
           "LogNumberOfFeatures": math.log(d), "DatasetRatio": d / n, "LogDatasetRatio": math.log(d / n),
           "NumberOfMissingValues": float(miss.sum()), "PercentageOfMissingValues": float(miss.mean()),
           "NumberOfInstancesWithMissingValues": float(miss.any(1).sum()),
           "PercentageOfInstancesWithMissingValues": float(miss.any(1).mean())}
    if classification:
        _, counts = np.unique(y, return_counts=True)
        p = counts / counts.sum()
        out |= {"NumberOfClasses": float(len(counts)), "ClassEntropy": float(stats.entropy(p, base=2)),
                "ClassProbabilityMin": float(p.min()), "ClassProbabilityMax": float(p.max()),
                "ClassProbabilityMean": float(p.mean()), "ClassProbabilitySTD": float(p.std())}
    varying = np.nanstd(x, 0) > 0
    with np.errstate(all="ignore"):
        sk = np.array([stats.skew(c[~np.isnan(c)]) for c in x[:, varying].T])
        ku = np.array([stats.kurtosis(c[~np.isnan(c)]) for c in x[:, varying].T])
    out |= _summary("Skewness", sk) | _summary("Kurtosis", ku)
    out |= landmarkers(x, y, classification=classification, seed=seed, subsample=subsample)
    return out
