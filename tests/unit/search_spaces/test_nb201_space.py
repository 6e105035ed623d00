"""NB201Space: sampling, mutation, neighbours, encoding and string round-trips."""

from pathlib import Path

import jax
import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from metanas.search_spaces.nb201 import EDGES, NB201_OPS, NB201Space

SPACE = NB201Space()


def test_enumerate_is_all_distinct_cells_and_arch_code_is_its_row():
    archs = SPACE.enumerate()
    assert archs.shape == (15625, 6) and archs.dtype == np.int32
    assert len({tuple(a) for a in archs}) == 15625 == SPACE.size()
    np.testing.assert_array_equal(SPACE.arch_code(archs), np.arange(15625))


def test_encoding_is_injective_on_the_whole_space():
    enc = np.asarray(jax.jit(jax.vmap(SPACE.encode))(SPACE.enumerate()))
    assert enc.shape == (15625, 30) and enc.dtype == np.float32
    assert len(np.unique(enc, axis=0)) == 15625
    np.testing.assert_array_equal(enc.reshape(-1, 6, 5).sum(-1), 1.0)  # one op per edge


def test_sample_in_range_and_covers_ops(key):
    archs = np.asarray(jax.jit(jax.vmap(SPACE.sample))(jax.random.split(key, 2000)))
    assert archs.min() == 0 and archs.max() == 4
    assert len(np.unique(archs[:, 0])) == 5


def test_mutate_changes_exactly_one_edge(key):
    keys = jax.random.split(key, 500)
    archs = jax.vmap(SPACE.sample)(keys)
    mutated = np.asarray(jax.jit(jax.vmap(SPACE.mutate))(jax.random.split(keys[0], 500), archs))
    diff = (mutated != np.asarray(archs)).sum(1)
    np.testing.assert_array_equal(diff, 1)
    assert mutated.min() >= 0 and mutated.max() <= 4


def test_neighbours_are_all_single_edge_changes():
    arch = np.array([0, 1, 2, 3, 4, 0], np.int32)
    nbs = SPACE.neighbours(arch)
    assert nbs.shape == (6 * 4, 6)
    np.testing.assert_array_equal((nbs != arch).sum(1), 1)
    assert len({tuple(n) for n in nbs}) == 24


def test_string_round_trip_and_standard_format():
    arch = np.array([4, 2, 1, 2, 1, 1], np.int32)
    s = SPACE.to_string(arch)
    assert s == "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
    np.testing.assert_array_equal(SPACE.from_string(s), arch)
    for a in SPACE.enumerate()[::97]:
        np.testing.assert_array_equal(SPACE.from_string(SPACE.to_string(a)), a)
    # edge order of the string matches EDGES: (dst, src)
    assert [(dst, src) for dst in (1, 2, 3) for src in range(dst)] == list(EDGES)


@pytest.mark.parametrize("bad", ["", "|none~0|", "|none~0|+|none~0|none~1|+|none~0|none~1|bogus~2|",
                                 "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
                                 "none~0+|none~0|none~1|+|none~0|none~1|none~2|"])
def test_from_string_rejects_bad_strings_with_one_line(bad):
    with pytest.raises(ValueError) as e:
        SPACE.from_string(bad)
    assert "\n" not in str(e.value) and "NB201" in str(e.value)


def test_yaml_instantiates():
    cfg = OmegaConf.load(Path(__file__).resolve().parents[3] / "conf/search_space/nb201.yaml")
    space = instantiate(cfg)
    assert space == SPACE and space.ops == NB201_OPS
    hash(space)


def test_reference_metrics_are_the_table_accuracies_of_a_derived_cell():
    """What the NAS runner writes to genotype.json and reports for an NB201 cell: its 200-epoch NB201 accuracies
    (packaged table), found through the cell's string whatever the op order; none for a foreign op."""
    from metanas.benchmarks import reference_metrics
    from metanas.benchmarks.nb201 import DATASETS, load_tables

    tables, code = load_tables(None), 4321
    arch = SPACE.enumerate()[code]
    extra, acc = reference_metrics(SPACE, arch, None)
    assert extra == {"nb201_200ep_test_acc": acc} and len(acc) == 2 * len(DATASETS)
    assert acc["nb201_cifar10_test_acc"] == pytest.approx(float(tables.test_acc[code, 0]))
    rev = NB201Space(ops=NB201_OPS[::-1])
    assert reference_metrics(rev, rev.from_string(SPACE.to_string(arch)), None)[1] == acc
    foreign = NB201Space(ops=("none", "skip_connect", "conv_5x5"))
    assert reference_metrics(foreign, np.zeros(6, np.int32), None) == ({"nb201_200ep_test_acc": {}}, {})
    assert SPACE.describe(arch) == {}

