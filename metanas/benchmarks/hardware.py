"""Hardware cost tables: latency / energy of every cell of a finite space on one or more devices (host numpy).

One reader for every device file: ``HardwareTable.from_csv(path, columns={file column: name}, units={name: unit})``.
A row is keyed by the cell (``key="net"``: the NASLib / HW-NAS-Bench tuple; ``key="arch"``: an NB201 arch string;
any other name: a column of arch strings under that name); the table is in ``NB201Space.enumerate()`` order (row =
``space.arch_code(arch)``). Values are converted to the canonical unit of their kind (latency: ms, energy: mJ) with
``units``; a value in ``missing`` (default ``-1``), an empty field, a non-positive or non-finite number is **not
measured**: NaN in the table, never a cost, never feasible (``feasible`` is False there), left out of every fit and
every rank correlation. Cells absent from the file are NaN as well.

``load_hw_bench(data_dir, dataset)``: HW-NAS-Bench (Li et al., ICLR 2021; ``shared/data/nasbench201/hw_*.csv``),
six devices' latency (edge GPU, Raspberry Pi 4, Edge TPU, Pixel 3, Eyeriss, FPGA) and three devices' energy, at the
input size of ``dataset``; ``edgetpu_latency`` is ``-1`` (not measured) for 4,699 cells.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metanas.benchmarks.nb201 import DATASETS, NB201DataError, _net_to_string, resolve_root
from metanas.search_spaces.nb201 import NB201Space

# unit -> factor to the canonical unit of its kind
LATENCY_UNITS = {"ms": 1.0, "s": 1e3, "us": 1e-3, "ns": 1e-6}
ENERGY_UNITS = {"mJ": 1.0, "J": 1e3, "uJ": 1e-3}
HW_DEVICES = ("edgegpu", "raspi4", "edgetpu", "pixel3", "eyeriss", "fpga")
HW_ENERGY_DEVICES = ("edgegpu", "eyeriss", "fpga")


class HardwareDataError(NB201DataError):
    """A device file that cannot be read: names the file (and line) and what would be right."""


def _factor(name: str, unit) -> float:
    if isinstance(unit, (int, float)) and not isinstance(unit, bool):
        if not unit > 0:
            raise HardwareDataError(f"units[{name!r}]={unit}: a conversion factor must be > 0")
        return float(unit)
    table = ENERGY_UNITS if name.endswith("energy") else LATENCY_UNITS
    if unit not in table:
        raise HardwareDataError(f"units[{name!r}]={unit!r}: unknown unit; use one of {', '.join(table)} "
                                f"or a number (factor to {'mJ' if table is ENERGY_UNITS else 'ms'})")
    return table[unit]


@dataclass(frozen=True, eq=False)
class HardwareTable:
    """``values[i, j]``: metric ``names[j]`` of cell i (enumerate order) in ms / mJ; NaN = not measured."""

    names: tuple[str, ...]
    values: np.ndarray  # float64 [N, M]
    source: str = ""

    def __post_init__(self):
        if self.values.ndim != 2 or self.values.shape[1] != len(self.names):
            raise HardwareDataError(f"{self.source}: values {self.values.shape} do not match {len(self.names)} names")

    def column(self, name: str) -> np.ndarray:
        """float64 [N] of one metric (NaN = not measured)."""
        if name not in self.names:
            raise HardwareDataError(f"{self.source}: no column {name!r}; columns: {', '.join(self.names)}")
        return self.values[:, self.names.index(name)]

    def latency(self, device: str) -> np.ndarray:
        return self.column(f"{device}_latency")

    def measured(self, name: str) -> np.ndarray:
        """bool [N]: cells with a measurement of ``name``."""
        return np.isfinite(self.column(name))

    def feasible(self, name: str, budget: float) -> np.ndarray:
        """bool [N]: measured and ``<= budget``; a cell without a measurement is never feasible."""
        v = self.column(name)
        return np.isfinite(v) & (np.nan_to_num(v, nan=np.inf) <= budget)

    def without(self, *names: str) -> HardwareTable:
        """The table without the columns ``names`` (a held-out device's columns are dropped before meta-training)."""
        keep = [j for j, n in enumerate(self.names) if n not in names]
        return HardwareTable(tuple(self.names[j] for j in keep), self.values[:, keep], self.source)

    @classmethod
    def from_csv(cls, path: str | Path, *, columns: Mapping[str, str] | None = None,
                 units: Mapping[str, object] | None = None, key: str = "net",
                 missing: tuple[float, ...] = (-1.0,)) -> HardwareTable:
        """Read a user's device file. ``columns``: file column -> canonical name (``<device>_latency`` /
        ``<device>_energy``); None keeps every column but ``key`` under its own name. ``units``: canonical name ->
        unit of the file (``s``, ``ms``, ``us``, ``J``, ``mJ`` or a factor); default ms / mJ."""
        path = Path(path)
        if not path.exists():
            raise HardwareDataError(f"device file {path} not found; pass a CSV with a {key!r} column and one "
                                    "column per device metric")
        space = NB201Space()
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = list(reader.fieldnames or [])
            if key not in fields:
                raise HardwareDataError(f"{path}: no key column {key!r}; columns are {fields} (key='net' for a "
                                        "NASLib tuple, key='arch' or the column of NB201 arch strings)")
            mapping = dict(columns) if columns is not None else {c: c for c in fields if c != key}
            absent = [c for c in mapping if c not in fields]
            if absent:
                raise HardwareDataError(f"{path}: column(s) {absent} not in the file; it has {fields}")
            names = tuple(mapping.values())
            unknown_units = sorted(set(units or {}) - set(names))
            if unknown_units:
                raise HardwareDataError(f"{path}: units for {unknown_units}, which are not columns {list(names)}")
            factor = np.array([_factor(n, (units or {}).get(n, 1.0)) for n in names])
            values = np.full((space.size(), len(names)), np.nan)
            seen = np.zeros(space.size(), bool)
            for i, row in enumerate(reader):
                line = i + 2
                try:
                    arch = space.from_string(_net_to_string(row[key]) if key == "net" else row[key])
                    code = int(space.arch_code(arch))
                except (ValueError, IndexError, KeyError) as e:
                    raise HardwareDataError(f"{path}:{line}: {key}={row[key]!r} is not a cell ({e})") from None
                if seen[code]:
                    raise HardwareDataError(f"{path}:{line}: cell {row[key]} appears twice")
                seen[code] = True
                for j, c in enumerate(mapping):
                    values[code, j] = _value(path, line, c, row[c], missing)
        if not seen.any():
            raise HardwareDataError(f"{path}: no rows")
        return cls(names, values * factor[None, :], str(path))


def _value(path, line, col, text, missing) -> float:
    if text is None or text.strip() == "":
        return math.nan
    try:
        v = float(text)
    except ValueError:
        raise HardwareDataError(f"{path}:{line}: column {col!r} is {text!r}, expected a number "
                                f"(or one of {list(missing)} / empty for not measured)") from None
    if v in missing or not math.isfinite(v) or v <= 0:
        return math.nan
    return v


@functools.lru_cache(maxsize=8)
def load_hw_bench(data_dir: str, dataset: str = "cifar10") -> HardwareTable:
    """HW-NAS-Bench latency (ms) and energy (mJ) on the six devices at ``dataset``'s input size."""
    if dataset not in DATASETS:
        raise HardwareDataError(f"dataset={dataset!r}; choose one of {', '.join(DATASETS)}")
    cols = {f"{d}_latency": f"{d}_latency" for d in HW_DEVICES} | {f"{d}_energy": f"{d}_energy"
                                                                     for d in HW_ENERGY_DEVICES}
    return HardwareTable.from_csv(resolve_root(data_dir) / f"hw_{dataset}.csv", columns=cols, key="net")
