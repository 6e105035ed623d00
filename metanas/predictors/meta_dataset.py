"""The learner meta-dataset: one JSON line per trained architecture / configuration.

Record schema (``REQUIRED`` keys; ``collect`` writes these, and any run store record can add them)::

    {"dataset": "omniglot-20way", "split": "val-seed0",      # pairs are only formed within (dataset, split)
     "encoding": [0.0, 1.0, ...],                             # float features (arch + hparams + settings)
     "metrics": {"val_acc": 0.61, ...},                       # the target metric must be > 0
     "wall_time_s": 3.2, ...}                                 # anything else is kept but not used

Reading goes through ``metanas.run_store.read_jsonl``: a truncated line or a missing key raises ``JsonlError``
naming the file and the line; a wrong-typed field raises ``MetaDatasetError`` the same way.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from metanas.run_store import JsonlError, read_jsonl

REQUIRED = ("dataset", "split", "encoding", "metrics")


class MetaDatasetError(JsonlError):
    """A meta-dataset row with a wrong schema; the message names file and line."""


class MetaDataset(NamedTuple):
    x: np.ndarray  # float32 [N, D] encodings
    y: np.ndarray  # float32 [N] target metric (> 0)
    group: np.ndarray  # int32 [N] id of (dataset, split); pairs are drawn within a group
    groups: list[tuple[str, str]]  # [G] (dataset, split) of each group id
    records: list[dict]  # [N] the raw rows


def _line_numbers(path) -> list[int]:
    with open(path) as f:
        return [i for i, line in enumerate(f, 1) if line.strip()]


def read_meta_dataset(path: str | os.PathLike, metric: str, experiment: str | None = None) -> MetaDataset:
    """Load ``path``; every row needs ``REQUIRED`` keys, a numeric encoding of one length and ``metrics[metric] > 0``.

    ``experiment``: use only rows whose ``experiment`` field equals it (the run store's meta-dataset mixes the
    per-run records of every experiment with the per-architecture records of ``collect``); others are skipped.
    """
    if not os.path.exists(path):
        raise MetaDatasetError(f"meta-dataset {path} not found; run `python -m metanas experiment=collect` "
                               f"or point train.meta_dataset at a JSON-lines file with keys {list(REQUIRED)}")
    all_rows = read_jsonl(path)
    all_lines = _line_numbers(path)
    rows, lines = [], []
    for row, lineno in zip(all_rows, all_lines):
        if experiment is not None and row.get("experiment") != experiment:
            continue
        missing = [k for k in REQUIRED if k not in row]
        if missing:
            raise JsonlError(f"{path}:{lineno}: missing key(s) {missing}; each row needs {list(REQUIRED)}")
        rows.append(row)
        lines.append(lineno)
    xs, ys, gid, groups = [], [], [], {}
    for row, lineno in zip(rows, lines):
        enc = row["encoding"]
        if not isinstance(enc, list) or not enc or not all(isinstance(v, (int, float)) for v in enc):
            raise MetaDatasetError(f"{path}:{lineno}: 'encoding' must be a non-empty list of numbers")
        if xs and len(enc) != len(xs[0]):
            raise MetaDatasetError(f"{path}:{lineno}: 'encoding' has length {len(enc)}, expected {len(xs[0])} "
                                   f"as on line {lines[0]}")
        m = row["metrics"]
        if not isinstance(m, dict) or not isinstance(m.get(metric), (int, float)) or not m[metric] > 0:
            raise MetaDatasetError(f"{path}:{lineno}: 'metrics' needs a number {metric!r} > 0 "
                                   f"(the pairwise target divides by it), got {m!r:.80}")
        key = (str(row["dataset"]), str(row["split"]))
        gid.append(groups.setdefault(key, len(groups)))
        xs.append(enc)
        ys.append(m[metric])
    if not rows:
        which = f" with experiment={experiment!r}" if experiment is not None else ""
        raise MetaDatasetError(f"meta-dataset {path} has no rows{which}; run `python -m metanas experiment=collect`")
    return MetaDataset(np.asarray(xs, np.float32), np.asarray(ys, np.float32), np.asarray(gid, np.int32),
                       list(groups), rows)


def all_pairs(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j), i != j, of every ordered pair inside one group."""
    i, j = np.nonzero((group[:, None] == group[None, :]) & ~np.eye(len(group), dtype=bool))
    return i.astype(np.int32), j.astype(np.int32)
