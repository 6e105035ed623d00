"""HardwareTable: one reader for any device file (names, units, keys), missing values never a cost or feasible."""

import csv

import numpy as np
import pytest

from metanas.benchmarks.hardware import HardwareDataError, HardwareTable, load_hw_bench
from metanas.search_spaces.nb201 import NB201Space


def _write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_user_file_with_other_names_and_units(tmp_path):
    space = NB201Space()
    archs = space.enumerate()[[0, 7, 42, 100]]
    strings = [space.to_string(a) for a in archs]
    _write(tmp_path / "mine.csv", ["cell", "phone_s", "chip_uJ"],
           [[strings[0], "0.002", "1500"], [strings[1], "-1", "7"], [strings[2], "", "8"], [strings[3], "0.0035", "-1"]])
    t = HardwareTable.from_csv(tmp_path / "mine.csv", key="cell",
                               columns={"phone_s": "phone_latency", "chip_uJ": "chip_energy"},
                               units={"phone_latency": "s", "chip_energy": "uJ"})
    codes = [int(space.arch_code(a)) for a in archs]
    lat, en = t.latency("phone"), t.column("chip_energy")
    np.testing.assert_allclose(lat[[codes[0], codes[3]]], [2.0, 3.5])  # seconds -> ms
    np.testing.assert_allclose(en[codes[:3]], [1.5, 0.007, 0.008])  # uJ -> mJ
    assert np.isnan(lat[codes[1]]) and np.isnan(lat[codes[2]]) and np.isnan(en[codes[3]])  # -1 / empty: missing
    assert np.isnan(np.delete(lat, codes)).all()  # cells absent from the file: not measured
    feas = t.feasible("phone_latency", 1e9)
    assert feas.sum() == 2 and not feas[codes[1]] and not feas[codes[2]]  # never feasible without a measurement
    assert t.without("phone_latency").names == ("chip_energy",)


def test_bad_device_files_are_one_clear_error(tmp_path):
    _write(tmp_path / "a.csv", ["net", "x"], [["(0, 0, 0, 0, 0, 0)", "1"]])
    with pytest.raises(HardwareDataError, match="not in the file"):
        HardwareTable.from_csv(tmp_path / "a.csv", columns={"y": "d_latency"})
    with pytest.raises(HardwareDataError, match="no key column"):
        HardwareTable.from_csv(tmp_path / "a.csv", key="arch")
    with pytest.raises(HardwareDataError, match="unknown unit"):
        HardwareTable.from_csv(tmp_path / "a.csv", columns={"x": "d_latency"}, units={"d_latency": "hours"})
    _write(tmp_path / "b.csv", ["net", "x"], [["(0, 0, 0, 0, 0, 0)", "fast"]])
    with pytest.raises(HardwareDataError, match=r"b.csv:2: column 'x' is 'fast'"):
        HardwareTable.from_csv(tmp_path / "b.csv")


def test_hw_nas_bench_through_the_same_reader(data_dir, tmp_path):
    t = load_hw_bench(str(data_dir), "cifar10")
    assert int(np.isnan(t.latency("edgetpu")).sum()) == 4699  # -1 in the file: not measured
    assert all(np.isfinite(t.latency(d)).all() for d in ("edgegpu", "raspi4", "pixel3", "eyeriss", "fpga"))
    # the same data under other names and in seconds reads back equal
    src = data_dir / "nasbench201" / "hw_cifar10.csv"
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    _write(tmp_path / "renamed.csv", ["cellnet", "fpga_s"],
           [[r["net"], repr(float(r["fpga_latency"]) / 1000)] for r in rows])
    with pytest.raises(HardwareDataError):  # the NASLib tuple needs key='net' ...
        HardwareTable.from_csv(tmp_path / "renamed.csv", columns={"fpga_s": "fpga_latency"})
    (tmp_path / "renamed2.csv").write_text((tmp_path / "renamed.csv").read_text().replace("cellnet", "net", 1))
    u = HardwareTable.from_csv(tmp_path / "renamed2.csv", columns={"fpga_s": "fpga_latency"},
                               units={"fpga_latency": "s"})
    np.testing.assert_allclose(u.latency("fpga"), t.latency("fpga"), rtol=1e-9)
