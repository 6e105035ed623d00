"""NB201 tables: the packaged table equals the CSVs, joins are consistent, bad files give one-line errors."""

import numpy as np
import pytest

from metanas.benchmarks import nb201
from metanas.search_spaces.nb201 import NB201Space

SPACE = NB201Space()


def test_packaged_table_matches_csv_and_published_maxima(data_dir):
    packaged, csv = nb201.load_tables(None), nb201.load_tables(str(data_dir))
    np.testing.assert_array_equal(packaged.test_acc, csv.test_acc)
    np.testing.assert_array_equal(packaged.lowfi_acc, csv.lowfi_acc)
    np.testing.assert_array_equal(packaged.valid_acc, csv.valid_acc)
    np.testing.assert_array_equal(packaged.valid_seeds, csv.valid_seeds)
    np.testing.assert_allclose(packaged.test_acc.max(0), [94.373, 73.513, 47.311], atol=1e-3)  # NB201 paper maxima
    assert sorted(packaged.nb201_index) == list(range(15625))


def test_lookup_by_arch_string():
    bench = nb201.NB201Benchmark(metric="test_acc")
    best = SPACE.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
    assert bench.lookup(best) == pytest.approx(94.3733, abs=1e-3)
    # a cell whose output is cut off by `none` edges is at chance level (10 classes)
    dead = SPACE.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert bench.lookup(dead) == pytest.approx(10.0, abs=0.5)
    np.testing.assert_array_equal(bench.lookup(np.stack([best, dead])), [bench.lookup(best), bench.lookup(dead)])


def test_low_fidelity_correlates_with_200_epochs():
    lo, hi = nb201.NB201Benchmark(metric="lowfi_val").table(), nb201.NB201Benchmark(metric="test_acc").table()
    assert np.corrcoef(lo, hi)[0, 1] > 0.85  # README: r = 0.90


def test_side_tables_join_on_arch(data_dir):
    d = str(data_dir)
    zc, cost = nb201.load_zero_cost(d), nb201.load_cost(d)
    ok = ~np.isnan(zc[:, 0])
    assert ok.sum() == 9445
    # NASLib's FLOPs (zc file, net tuples) and the official FLOPs (cost file, op names) agree after the join
    assert np.corrcoef(zc[ok, nb201.ZC_COLUMNS.index("flops")], cost[ok, 0])[0, 1] > 0.99
    hw = nb201.load_hw(d, "cifar10")
    assert hw.shape == (15625, 10) and np.isfinite(hw).all()
    # the HW rows (NB201 index order) line up with the cost rows (joined on op names): FPGA latency tracks FLOPs
    assert np.corrcoef(hw[:, nb201.HW_COLUMNS.index("fpga_latency")], cost[:, 0])[0, 1] > 0.85
    # a shuffled join would destroy that
    assert abs(np.corrcoef(np.random.default_rng(0).permutation(hw[:, 8]), cost[:, 0])[0, 1]) < 0.1


def test_imagenet_zero_cost_proxies_join_and_differ(data_dir):
    d = str(data_dir)
    c10, in16 = nb201.load_zero_cost(d), nb201.load_zero_cost(d, "ImageNet16-120")
    ok = ~np.isnan(in16[:, 0])
    assert ok.sum() == 9445 and (ok == ~np.isnan(c10[:, 0])).all()  # the same non-degenerate cells
    params = nb201.ZC_COLUMNS.index("params")  # 120 classes instead of 10: a bigger head, the same ranking
    assert (in16[ok, params] > c10[ok, params]).all() and np.corrcoef(in16[ok, params], c10[ok, params])[0, 1] > 0.99
    acc = nb201.NB201Benchmark(dataset="ImageNet16-120").table()
    synflow = nb201.ZC_COLUMNS.index("synflow")  # tracks that data set's accuracy (Pearson r 0.69)
    assert np.corrcoef(in16[ok, synflow], acc[ok])[0, 1] > 0.5
    with pytest.raises(nb201.NB201DataError, match="no zero-cost proxies for dataset 'cifar100'; available: cifar10"):
        nb201.load_zero_cost(d, "cifar100")


def test_missing_file_names_it(tmp_path):
    with pytest.raises(nb201.NB201DataError, match="nats_tss_test_acc_200ep.csv"):
        nb201.load_tables(str(tmp_path))


def test_truncated_or_malformed_file_names_file_and_line(tmp_path, data_dir):
    root = tmp_path / "nasbench201"
    root.mkdir()
    lines = (data_dir / "nasbench201" / nb201.ACC_FILE).read_text().splitlines()
    (root / nb201.ACC_FILE).write_text("\n".join(lines[:100]) + "\n")
    with pytest.raises(nb201.NB201DataError, match="99 distinct cells, expected 15625"):
        nb201.load_tables(str(tmp_path))
    bad = lines[:3] + [lines[3].replace("nor_conv", "conv", 1)]
    (root / nb201.ACC_FILE).write_text("\n".join(bad) + "\n")
    with pytest.raises(nb201.NB201DataError, match=r"nats_tss_test_acc_200ep.csv:4: bad NB201 arch string") as e:
        nb201.load_tables(str(tmp_path))
    assert "\n" not in str(e.value)


def test_validation_metric_is_the_default_and_matches_the_published_protocol():
    b = nb201.NB201Benchmark()
    assert b.metric == "valid_acc" and not b.oracle
    space = NB201Space()
    for dataset, (valid, test) in {"cifar10": (91.61, 94.37), "cifar100": (73.49, 73.51)}.items():
        bench = nb201.NB201Benchmark(dataset=dataset)
        best = int(np.argmax(bench.table()))
        # NB201 paper, Table 5 "optimal": the best cell by validation and its test accuracy
        assert bench.table()[best] == pytest.approx(valid, abs=0.01)
        assert bench.report_table()[best] == pytest.approx(test, abs=0.01)
    im = nb201.NB201Benchmark(dataset="ImageNet16-120")
    best = int(np.argmax(im.table()))
    assert im.report_table()[best] < im.report_table().max()  # here the best by validation is not the best by test
    assert space.to_string(space.enumerate()[int(np.argmax(b.table()))]).startswith("|nor_conv_3x3~0|")


def test_seed_draw_reads_one_trained_seed_per_cell(key):
    import jax

    b = nb201.NB201Benchmark(seed_draw=True)
    seeds = b.seed_tables()
    assert np.isnan(seeds[:, 2]).sum() == 7456 and not np.isnan(seeds[:, :2]).any()  # 2 or 3 seeds per cell
    np.testing.assert_allclose(np.nanmean(seeds, 1), b.table(), atol=1e-3)
    draws = np.stack([np.asarray(nb201.draw_table(k, seeds)) for k in jax.random.split(key, 4)])
    assert not np.isnan(draws).any()
    hits = (draws[..., None] == seeds[None]).any(-1)
    assert hits.all()  # every draw is one of that cell's seeds
    assert (draws[0] != draws[1]).mean() > 0.3  # and different searches draw differently
    with pytest.raises(ValueError, match="seed_draw=true needs metric=valid_acc and dataset=cifar10"):
        nb201.NB201Benchmark(dataset="cifar100", seed_draw=True)
    with pytest.raises(ValueError, match="benchmark.metric='val'; choose one of valid_acc, test_acc, lowfi_val"):
        nb201.NB201Benchmark(metric="val")
