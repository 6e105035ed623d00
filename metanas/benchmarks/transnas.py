"""TransNAS-Bench-101 micro (Duan et al., CVPR 2021) as packaged by NAS-Bench-Suite-Zero (host numpy only).

The same 711 cells of the micro space (a 4-node cell, 6 edges, 4 ops per edge) trained on 7 tasks of Taskonomy:
class_scene, class_object, autoencoder, normal, jigsaw, room_layout, segmentsemantic. File format (NASLib's
``zc_transbench101_micro.json``, see ``shared/data/nas_bench_suite_zero/README.md``)::

    {TASK: {"(e0, e1, e2, e3, e4, e5)": {"val_accuracy": float, PROXY: {"score": float, "time": s}, ...}}}

``load_transnas(path)`` reads that file, or a user's own file of the same shape: any task names, cell keys that are
int tuples of any (common) length with any choices per position, tasks that hold different subsets of cells (each
task uses the cells it has: NaN elsewhere; ``task_view`` gives a target's own cells as its candidates), proxies
optional.

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
PROXIES = ("epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacov", "l2_norm", "nwot", "params", "plain", "snip")


class TransNASDataError(ValueError):
    """A TransNAS file that cannot be read: names the file and what would be right."""


class TransNASData(NamedTuple):
    tasks: tuple[str, ...]  # [T]
    archs: np.ndarray  # int32 [N, K] the file's cell tuples (union over the tasks; K = 6 edges for TransNAS micro)
    x: np.ndarray  # float32 [N, D] one-hot of archs per position (``encode_cells``; [N, 24] for TransNAS micro)
    valid: np.ndarray  # float32 [T, N] validation metric, higher is better (lower_is_better negated; NaN: lacks)
    proxies: np.ndarray  # float32 [T, N, P] zero-cost proxy scores (NaN where missing)
    proxy_names: tuple[str, ...]  # [P]


def default_path(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / SUBDIR / FILE


def _score(v) -> float:
    if isinstance(v, dict):
        v = v.get("score")
    return float(v) if isinstance(v, (int, float)) else float("nan")


def _parse_key(k: str) -> list[int] | None:
    try:
        a = [int(v) for v in str(k).strip("()[] ").split(",") if v.strip() != ""]
    except ValueError:
        return None
    return a or None


def encode_cells(archs: np.ndarray) -> np.ndarray:
    """float32 [N, sum_p C_p]: one-hot of each position over the choices seen at that position (position-major).

    For the TransNAS micro space (6 positions x ops 0..3) this is the usual 24-wide one-hot; any tuple length and any
    number (or set) of choices per position work the same way."""
    archs = np.asarray(archs)
    cols = [(archs[:, p:p + 1] == np.unique(archs[:, p])[None]).astype(np.float32) for p in range(archs.shape[1])]
    return np.concatenate(cols, 1)


def load_transnas(path: str | os.PathLike, tasks: Sequence[str] | None = None,
                  lower_is_better: Sequence[str] = ()) -> TransNASData:
    """Read ``path`` (``default_path(data_dir)`` for the shared copy, or a user's file of the same shape).

    ``tasks``: which tasks (default: all in the file, in file order). A cell key is a tuple of ints of any length
    (the same length for every cell), with any choices per position; tasks may hold different subsets of cells
    (``valid`` is NaN where a task lacks a cell: each task uses the cells it has)."""
    path = Path(path)
    if not path.exists():
        raise TransNASDataError(f"TransNAS file {path} not found; give <data_dir>/{SUBDIR}/{FILE} or your own JSON "
                                f"of the form {{TASK: {{'(c0, .., cK)': {{'val_accuracy': float, ...}}}}}}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TransNASDataError(f"{path}: not valid JSON ({e}); expected {{TASK: {{CELL: {{'val_accuracy': ...}}}}}}")
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, dict) and v for v in raw.values()):
        raise TransNASDataError(f"{path}: expected a non-empty {{TASK: {{CELL: record}}}} mapping")
    tasks = tuple(raw) if tasks is None else tuple(tasks)
    missing = [t for t in tasks if t not in raw]
    if missing:
        raise TransNASDataError(f"{path}: task(s) {missing} not in the file; it has {list(raw)}")
    bad = [t for t in lower_is_better if t not in tasks]
    if bad:
        raise TransNASDataError(f"lower_is_better names task(s) {bad} not among {list(tasks)}")
    cells: dict[tuple, int] = {}  # parsed cell -> column, in first-appearance order over the tasks
    per_task = []
    for t in tasks:
        own = {}
        for k in raw[t]:
            a = _parse_key(k)
            if a is None:
                raise TransNASDataError(f"{path}: {t}: cell key {k!r} is not a tuple of ints such as '(0, 2, 1)'")
            own[tuple(a)] = k
            cells.setdefault(tuple(a), len(cells))
        per_task.append(own)
    lengths = {len(a) for a in cells}
    if len(lengths) != 1:
        raise TransNASDataError(f"{path}: cell keys have different lengths {sorted(lengths)}; every cell needs the "
                                f"same number of positions")
    archs = np.asarray(list(cells), np.int32)
    n = len(cells)
    valid = np.full((len(tasks), n), np.nan, np.float32)
    proxies = np.full((len(tasks), n, len(PROXIES)), np.nan, np.float32)
    for ti, (t, own) in enumerate(zip(tasks, per_task)):
        for a, k in own.items():
            ni = cells[a]
            rec = raw[t][k]
            v = rec.get("val_accuracy") if isinstance(rec, dict) else None
            if not isinstance(v, (int, float)) or not np.isfinite(v):
                raise TransNASDataError(f"{path}: {t} / {k}: needs a finite number 'val_accuracy', got {v!r:.40}")
            valid[ti, ni] = -v if t in lower_is_better else v
            for pi, p in enumerate(PROXIES):
                if p in rec:
                    proxies[ti, ni, pi] = _score(rec[p])
    for ti, t in enumerate(tasks):
        if np.isfinite(valid[ti]).sum() < 2:
            raise TransNASDataError(f"{path}: task {t!r} holds fewer than 2 cells; a task needs at least 2")
    return TransNASData(tasks, archs, encode_cells(archs), valid, proxies, PROXIES)


def task_view(data: TransNASData, target: int, sources: Sequence[int]):
    """The target's own cells as the candidates: (cells [Nt] column indices, x [Nt, D], source values [S, Nt]
    (NaN where a source lacks a cell), target values [Nt], target proxies [Nt, P]). The target is never a source."""
    if target in sources:
        raise ValueError(f"leave-one-task-out: target task {target} cannot be among its own source tasks "
                         f"{list(sources)}")
    cells = np.flatnonzero(np.isfinite(data.valid[target]))
    return (cells, data.x[cells], data.valid[np.asarray(list(sources))][:, cells], data.valid[target, cells],
            data.proxies[target, cells])


def top_cells(valid: np.ndarray, frac: float = 0.01) -> np.ndarray:
    """bool [..., N]: the round(frac * n) (at least 1) best of the n cells each task HOLDS (7 of 711 for 1 %; NaN =
    a cell the task lacks, never a top cell); ties at the threshold are all included."""
    valid = np.asarray(valid, np.float64)
    if valid.ndim > 1:
        return np.stack([top_cells(v, frac) for v in valid.reshape(-1, valid.shape[-1])]).reshape(valid.shape)
    known = np.isfinite(valid)
    k = max(1, int(round(frac * known.sum())))
    kth = np.sort(valid[known])[::-1][k - 1]
    return known & (np.where(known, valid, -np.inf) >= kth)


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
