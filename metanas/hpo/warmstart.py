"""Warm start: the best configurations of the k past tasks most similar by dataset meta-features.

Feurer, Springenberg & Hutter (2015), "Initializing Bayesian hyperparameter optimization via meta-learning":
distance between data sets = a p-norm over (scaled) meta-features; the search starts from the best known
configurations of the nearest ones. Past tasks come either from a benchmark table (TabRepo) or from the run
store: every HPO run appends its data set's meta-features and its incumbent to the meta-dataset
(``results/meta_dataset.jsonl``), and ``past_tasks_from_run_store`` reads them back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np


class PastTasks(NamedTuple):
    names: list[str]  # [P]
    features: np.ndarray  # float64 [P, G] meta-features (NaN where unknown)
    best_configs: list[Any]  # [P] best configuration of each task (ranked lists allowed: see ranked_configs)
    best_losses: np.ndarray  # [P]
    feature_names: list[str]  # [G]


def scale_features(past: np.ndarray, query: np.ndarray,
                   how: Literal["zscore", "minmax"] = "zscore") -> tuple[np.ndarray, np.ndarray]:
    """Scale columns with statistics of ``past`` (the query is scaled the same way); NaN -> column mean (0)."""
    past, query = np.asarray(past, np.float64), np.asarray(query, np.float64)
    if how == "zscore":
        lo, span = np.nanmean(past, 0), np.nanstd(past, 0)
    else:
        lo, span = np.nanmin(past, 0), np.nanmax(past, 0) - np.nanmin(past, 0)
    lo, span = np.nan_to_num(lo), np.where(np.nan_to_num(span) > 0, np.nan_to_num(span), 1.0)
    fill = 0.0 if how == "zscore" else 0.5
    return np.nan_to_num((past - lo) / span, nan=fill), np.nan_to_num((query - lo) / span, nan=fill)


def nearest_tasks(query: np.ndarray, past: np.ndarray, k: int, *, p: float = 2.0,
                  exclude: Sequence[int] = ()) -> np.ndarray:
    """Indices [min(k, P)] of the past rows closest to ``query`` [G] in the p-norm (ties: lower index)."""
    d = np.sum(np.abs(np.asarray(past) - np.asarray(query)[None]) ** p, axis=1) ** (1.0 / p)
    d[list(exclude)] = np.inf
    order = np.argsort(d, kind="stable")
    return order[:min(k, int(np.isfinite(d).sum()))]


def warm_start_configs(query: np.ndarray, past: PastTasks, k: int, *, p: float = 2.0,
                       scale: Literal["zscore", "minmax"] = "zscore", exclude: Sequence[int] = ()) -> list[Any]:
    """Best configurations of the ``k`` nearest past tasks, nearest first, duplicates dropped."""
    ps, qs = scale_features(past.features, query, scale)
    out, keys = [], set()
    for i in nearest_tasks(qs, ps, len(past.names), p=p, exclude=exclude):
        c = past.best_configs[i]
        key = repr(sorted(c.items())) if isinstance(c, Mapping) else repr(c)
        if key not in keys:
            out.append(c)
            keys.add(key)
        if len(out) == k:
            break
    return out


def past_tasks_from_run_store(meta_dataset: str | Path, feature_names: Sequence[str] | None = None, *,
                              exclude_task: str | None = None) -> PastTasks:
    """Past HPO runs from the meta-dataset JSONL: rows with ``metafeatures`` and ``hpo.best_config``.

    Several runs on the same task keep the best. ``feature_names`` defaults to the names every row has.
    """
    from metanas.run_store import read_jsonl

    path = Path(meta_dataset)
    if not path.is_file():
        raise FileNotFoundError(f"meta-dataset {path} not found; run HPO experiments first (each appends its "
                                f"meta-features and incumbent there) or point train.warm_start.meta_dataset to one")
    best: dict[str, dict] = {}
    for r in read_jsonl(path):
        h, mf = r.get("hpo"), r.get("metafeatures")
        if not isinstance(h, dict) or not isinstance(mf, dict) or "best_config" not in h:
            continue
        task = str(h.get("task", r.get("run_dir")))
        if task == exclude_task or not math.isfinite(float(h.get("best_loss", math.inf))):
            continue
        if task not in best or h["best_loss"] < best[task]["hpo"]["best_loss"]:
            best[task] = r
    if not best:
        raise ValueError(f"meta-dataset {path} holds no HPO run with meta-features and a best config")
    rows = list(best.values())
    if feature_names is None:
        common = set.intersection(*(set(r["metafeatures"]) for r in rows))
        feature_names = sorted(k for k in common if isinstance(rows[0]["metafeatures"][k], (int, float)))
    feats = np.array([[float(r["metafeatures"].get(k, math.nan)) for k in feature_names] for r in rows])
    return PastTasks([str(r["hpo"].get("task")) for r in rows], feats, [r["hpo"]["best_config"] for r in rows],
                     np.array([float(r["hpo"]["best_loss"]) for r in rows]), list(feature_names))
