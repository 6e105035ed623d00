"""The learner meta-dataset: one JSON line per trained architecture / configuration.

Record schema (``REQUIRED`` keys; ``collect`` writes these, and any run store record can add them)::

    {"dataset": "omniglot-20way", "split": "val-seed0",      # pairs are only formed within (dataset, split)
     "encoding": [0.0, 1.0, ...],                             # float features (arch + hparams + settings)
     "metrics": {"val_acc": 0.61, ...},                       # the target metric must be > 0
     "wall_time_s": 3.2,                                      # measured cost of the run
     "hardware_info": {"backend": "cpu", "device_kind": "cpu", "device_count": 1, "cpu_count": 2,
                       "peak_host_memory_mb": 812.0, ...}, ...} # anything else is kept but not used

The target ``metric`` may name any metric of ``metrics`` (accuracy, latency, energy, ...) or a cost field of the row
(``wall_time_s``, ``hardware_info.peak_host_memory_mb``): the meta-learner predicts whichever is named.

Where the features come from (``read_meta_dataset``): the row's ``encoding`` (default); or, with ``arch_encoding``
and ``space``, its ``arch`` string re-encoded with ``encodings.encode_arch`` (so one table can be read with any
encoding); plus, with ``hparams``, ``encodings.encode_hparams`` of its flattened ``config`` (e.g.
``NumericHP("optimizer.learning_rate", 1e-4, 1e-1, log=True)``). Every finished metanas run appends such a row
(``metanas.experiment``): ``dataset`` and ``split`` come from ``RunContext.record_dataset`` (split = a fingerprint of
the recorded data unless the runner names one), NAS runs add the derived ``arch`` and its one-hot ``encoding``, and
``config`` holds the run's flattened config; so ordinary runs load into the same (x, y, group) format.

Reading goes through ``metanas.run_store.read_jsonl``: a truncated line or a missing key raises ``JsonlError``
naming the file and the line; a wrong-typed field raises ``MetaDatasetError`` the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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


def _features(row: dict, path, lineno: int, space, arch_encoding, hparams) -> list[float]:
    from metanas.predictors.encodings import encode_arch, encode_hparams

    if arch_encoding is not None:
        if not isinstance(row.get("arch"), str):
            raise MetaDatasetError(f"{path}:{lineno}: arch_encoding={arch_encoding!r} needs an 'arch' string "
                                   f"(a run that derives an architecture records it), got {row.get('arch')!r:.60}")
        try:
            arch = space.from_string(row["arch"])
        except ValueError as e:
            raise MetaDatasetError(f"{path}:{lineno}: 'arch' is not a {type(space).__name__} arch: {e}") from None
        feats = np.asarray(encode_arch(space, arch, arch_encoding)).tolist()
    elif "encoding" in row or not hparams:
        feats = row["encoding"]
        if not isinstance(feats, list) or not feats or not all(isinstance(v, (int, float)) for v in feats):
            raise MetaDatasetError(f"{path}:{lineno}: 'encoding' must be a non-empty list of numbers")
    else:
        feats = []
    if hparams:
        cfg = row.get("config")
        if not isinstance(cfg, dict):
            raise MetaDatasetError(f"{path}:{lineno}: hparams need the run's flattened 'config' dict")
        try:
            feats = list(feats) + encode_hparams(hparams, cfg).tolist()
        except (ValueError, TypeError) as e:
            raise MetaDatasetError(f"{path}:{lineno}: {e}") from None
    return feats


def target_value(row: dict, metric: str):
    """The named target of a row: ``metrics[metric]`` (accuracy, latency, energy, ...), else a top-level field such
    as ``wall_time_s``, else a dotted path into the row (``hardware_info.peak_host_memory_mb``); None if absent."""
    m = row.get("metrics")
    if isinstance(m, dict) and metric in m:
        return m[metric]
    node = row
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def read_meta_dataset(path: str | os.PathLike, metric: str, experiment: str | None = None, *, space=None,
                      arch_encoding: str | None = None, hparams: Sequence | None = None) -> MetaDataset:
    """Load ``path``; every row needs ``REQUIRED`` keys, features of one length and ``metrics[metric] > 0``.

    ``experiment``: use only rows whose ``experiment`` field equals it (the run store's meta-dataset mixes the
    per-run records of every experiment with the per-architecture records of ``collect``); others are skipped.
    ``arch_encoding`` + ``space``: features from the row's ``arch`` string instead of its ``encoding``.
    ``hparams`` (``NumericHP`` / ``CategoricalHP`` over flattened config keys): appended from the row's ``config``;
    a row without ``encoding`` then has these features alone.
    """
    if arch_encoding is not None and space is None:
        raise ValueError(f"read_meta_dataset(arch_encoding={arch_encoding!r}) needs the search space of the archs")
    if not os.path.exists(path):
        raise MetaDatasetError(f"meta-dataset {path} not found; run `python -m metanas experiment=collect` "
                               f"or point train.meta_dataset at a JSON-lines file with keys {list(REQUIRED)}")
    required = tuple(k for k in REQUIRED if k != "encoding" or (arch_encoding is None and not hparams))
    all_rows = read_jsonl(path)
    all_lines = _line_numbers(path)
    rows, lines = [], []
    for row, lineno in zip(all_rows, all_lines):
        if experiment is not None and row.get("experiment") != experiment:
            continue
        missing = [k for k in required if k not in row]
        if missing:
            raise JsonlError(f"{path}:{lineno}: missing key(s) {missing}; each row needs {list(required)}")
        rows.append(row)
        lines.append(lineno)
    xs, ys, gid, groups = [], [], [], {}
    for row, lineno in zip(rows, lines):
        enc = _features(row, path, lineno, space, arch_encoding, hparams)
        if xs and len(enc) != len(xs[0]):
            what = "'encoding'" if "encoding" in required else "features"
            raise MetaDatasetError(f"{path}:{lineno}: {what} has length {len(enc)}, expected {len(xs[0])} "
                                   f"as on line {lines[0]}")
        value = target_value(row, metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise MetaDatasetError(f"{path}:{lineno}: 'metrics' (or the row) needs a number {metric!r} > 0 "
                                   f"(the pairwise target divides by it), got {row['metrics']!r:.80}")
        key = (str(row["dataset"]), str(row["split"]))
        gid.append(groups.setdefault(key, len(groups)))
        xs.append(enc)
        ys.append(value)
    if not rows:
        which = f" with experiment={experiment!r}" if experiment is not None else ""
        raise MetaDatasetError(f"meta-dataset {path} has no rows{which}; run `python -m metanas experiment=collect`")
    return MetaDataset(np.asarray(xs, np.float32), np.asarray(ys, np.float32), np.asarray(gid, np.int32),
                       list(groups), rows)


def all_pairs(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (i, j), i != j, of every ordered pair inside one group."""
    i, j = np.nonzero((group[:, None] == group[None, :]) & ~np.eye(len(group), dtype=bool))
    return i.astype(np.int32), j.astype(np.int32)
