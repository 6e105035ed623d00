"""TransNAS-Bench-101 micro (Duan et al., CVPR 2021) as packaged by NAS-Bench-Suite-Zero (host numpy only).

The same 711 cells of the micro space (a 4-node cell, 6 edges, 4 ops per edge) trained on 7 tasks of Taskonomy:
class_scene, class_object, autoencoder, normal, jigsaw, room_layout, segmentsemantic. File format (NASLib's
``zc_transbench101_micro.json``, see ``shared/data/nas_bench_suite_zero/README.md``)::

    {TASK: {"(e0, e1, e2, e3, e4, e5)": {"val_accuracy": float, PROXY: {"score": float, "time": s}, ...}}}

``load_transnas(path)`` reads that file, or a user's own file in the same format (any task names, any number of
cells as long as every task holds the same cells; proxies optional).

Metrics and their scales. ``val_accuracy`` is each task's validation metric as NASLib reports it, already oriented
so that HIGHER IS BETTER: accuracy (%) for class_scene / class_object / jigsaw, SSIM-like in [0, 1] for autoencoder
and normal, a NEGATIVE loss for room_layout (-1.09 .. -0.61), ~92-95 for segmentsemantic. jigsaw has a collapsed
mode (many cells at 0.14 %). A user file whose metric is lower-is-better names those tasks in ``lower_is_better``
(the loader negates them). These raw values are what a search *queries* and what "top-1 %" is judged on.

The pairwise meta-learner needs a positive target whose ratios are comparable across tasks ((p_a - p_b) / p_b):
raw ratios are meaningless for a negative loss (room_layout), near 1 for segmentsemantic (range 3 %) and huge for
jigsaw (0.14 vs 95). ``pairwise_target`` therefore maps each task's KNOWN values (all 711 for a source task; only the
queried cells for the target, so nothing unqueried leaks) to normal scores of their ranks (ties averaged) and
returns ``exp(scale * score)``: positive, monotone in the metric, invariant to the metric's sign, offset and unit,
robust to the jigsaw outliers, and log(1 + t) = scale * (score_a - score_b). ``scale`` = 0.1 puts the log-ratios in
the range of NB201 accuracy ratios (a spread of ~0.1), the regime the pairwise loss's defaults (rank temperature
0.05) were set in; it was fixed a priori, not tuned on the TransNAS tasks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from scipy.stats import norm, rankdata

SUBDIR = "nas_bench_suite_zero"
FILE = "zc_transbench101_micro.json"
TASKS = ("class_scene", "class_object", "autoencoder", "normal", "jigsaw", "room_layout", "segmentsemantic")
NUM_EDGES = 6
NUM_OPS = 4
PROXIES = ("epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacov", "l2_norm", "nwot", "params", "plain", "snip")


class TransNASDataError(ValueError):
    """A TransNAS file that cannot be read: names the file and what would be right."""


class TransNASData(NamedTuple):
    tasks: tuple[str, ...]  # [T]
    archs: np.ndarray  # int32 [N, 6] op index per edge (the file's tuple)
    x: np.ndarray  # float32 [N, 24] one-hot of archs (edge-major)
    valid: np.ndarray  # float32 [T, N] validation metric, higher is better (lower_is_better tasks negated)
    proxies: np.ndarray  # float32 [T, N, P] zero-cost proxy scores (NaN where missing)
    proxy_names: tuple[str, ...]  # [P]


def default_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / SUBDIR / FILE


def _score(v) -> float:
    if isinstance(v, dict):
        v = v.get("score")
    return float(v) if isinstance(v, (int, float)) else float("nan")


def load_transnas(path: str | os.PathLike, tasks: Sequence[str] | None = None,
                  lower_is_better: Sequence[str] = ()) -> TransNASData:
    """Read ``path`` (``default_path(data_dir)`` for the shared copy, or a user's file of the same format).

    ``tasks``: which tasks (default: all in the file, in file order). Every task must hold the same arch keys."""
    path = Path(path)
    if not path.exists():
        raise TransNASDataError(f"TransNAS file {path} not found; give <data_dir>/{SUBDIR}/{FILE} or your own JSON "
                                f"of the form {{TASK: {{'(e0,..,e5)': {{'val_accuracy': float, ...}}}}}}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TransNASDataError(f"{path}: not valid JSON ({e}); expected {{TASK: {{ARCH: {{'val_accuracy': ...}}}}}}")
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, dict) and v for v in raw.values()):
        raise TransNASDataError(f"{path}: expected a non-empty {{TASK: {{ARCH: record}}}} mapping")
    tasks = tuple(raw) if tasks is None else tuple(tasks)
    missing = [t for t in tasks if t not in raw]
    if missing:
        raise TransNASDataError(f"{path}: task(s) {missing} not in the file; it has {list(raw)}")
    bad = [t for t in lower_is_better if t not in tasks]
    if bad:
        raise TransNASDataError(f"lower_is_better names task(s) {bad} not among {list(tasks)}")
    keys = list(raw[tasks[0]])
    for t in tasks[1:]:
        if set(raw[t]) != set(keys):
            raise TransNASDataError(f"{path}: task {t!r} holds other cells than {tasks[0]!r}; every task must hold "
                                    f"the same arch keys")
    archs = []
    for k in keys:
        try:
            a = [int(s) for s in k.strip("()[] ").split(",")]
        except ValueError:
            a = []
        if len(a) != NUM_EDGES or not all(0 <= o < NUM_OPS for o in a):
            raise TransNASDataError(f"{path}: arch key {k!r} is not a tuple of {NUM_EDGES} ops in 0..{NUM_OPS - 1}")
        archs.append(a)
    archs = np.asarray(archs, np.int32)
    valid = np.zeros((len(tasks), len(keys)), np.float32)
    proxies = np.full((len(tasks), len(keys), len(PROXIES)), np.nan, np.float32)
    for ti, t in enumerate(tasks):
        for ni, k in enumerate(keys):
            rec = raw[t][k]
            v = rec.get("val_accuracy") if isinstance(rec, dict) else None
            if not isinstance(v, (int, float)) or not np.isfinite(v):
                raise TransNASDataError(f"{path}: {t} / {k}: needs a finite number 'val_accuracy', got {v!r:.40}")
            valid[ti, ni] = -v if t in lower_is_better else v
            for pi, p in enumerate(PROXIES):
                if p in rec:
                    proxies[ti, ni, pi] = _score(rec[p])
    x = np.eye(NUM_OPS, dtype=np.float32)[archs].reshape(len(keys), NUM_EDGES * NUM_OPS)
    return TransNASData(tasks, archs, x, valid, proxies, PROXIES)


def top_cells(valid: np.ndarray, frac: float = 0.01) -> np.ndarray:
    """bool [..., N]: the round(frac * N) (at least 1) best cells of each task (7 of 711 for 1 %); ties at the
    threshold are all included."""
    n = valid.shape[-1]
    k = max(1, int(round(frac * n)))
    kth = -np.sort(-valid, -1)[..., k - 1: k]
    return valid >= kth


def pairwise_target(values: np.ndarray, known: np.ndarray | None = None, scale: float = 0.1) -> np.ndarray:
    """exp(scale * normal score of the rank among the ``known`` entries) per row of ``values`` [..., N] (numpy).

    Entries outside ``known`` get 1.0 (they are never used). See the module docstring for why."""
    values = np.asarray(values, np.float64)
    known = np.ones(values.shape, bool) if known is None else np.asarray(known, bool)
    out = np.ones(values.shape, np.float32)
    flat_v, flat_k, flat_o = values.reshape(-1, values.shape[-1]), known.reshape(-1, values.shape[-1]), \
        out.reshape(-1, values.shape[-1])
    for v, k, o in zip(flat_v, flat_k, flat_o):
        m = int(k.sum())
        if m:
            o[k] = np.exp(scale * norm.ppf((rankdata(v[k]) - 0.5) / m))
    return out
