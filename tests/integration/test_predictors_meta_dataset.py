"""Per-run meta-dataset records of ordinary runs (dataset, split, arch / config features) -> predictor format."""

import json

import numpy as np
import pytest
from conftest import REPO, run_metanas
from omegaconf import OmegaConf

from metanas.predictors.encodings import NumericHP, encode_arch
from metanas.predictors.meta_dataset import MetaDatasetError, all_pairs, read_meta_dataset
from metanas.run_store import append_jsonl
from metanas.runners.context import RunContext
from metanas.search_spaces.nb201 import NB201Space

LR = NumericHP("optimizer.learning_rate", 1e-4, 1e-1, log=True)


def test_two_toy_runs_load_as_features_and_targets(tmp_path):
    p = run_metanas("-m", "experiment=toy_regression", "optimizer.learning_rate=1e-3,1e-2", "debug=fast",
                    f"hydra.sweep.dir={tmp_path}/sweep", f"meta_dataset={tmp_path}/meta.jsonl", cwd=REPO)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "meta.jsonl").read_text().splitlines()]
    assert [r["dataset"] for r in rows] == ["sinusoid_synthetic"] * 2
    assert rows[0]["split"] == rows[1]["split"] and rows[0]["split"].startswith("data-")  # same seed, same data
    md = read_meta_dataset(tmp_path / "meta.jsonl", "test_mse", experiment="toy_regression",
                           hparams=[LR])
    np.testing.assert_allclose(md.x[:, 0], [1 / 3, 2 / 3], atol=1e-5)  # log-scaled learning rates
    np.testing.assert_allclose(md.y, [r["metrics"]["test_mse"] for r in rows])
    assert md.groups == [("sinusoid_synthetic", rows[0]["split"])]
    assert len(all_pairs(md.group)[0]) == 2  # the two runs form a training pair
    with pytest.raises(Exception, match=r"meta.jsonl:1: missing key\(s\) \['encoding'\]"):
        read_meta_dataset(tmp_path / "meta.jsonl", "test_mse", experiment="toy_regression")  # no arch, no hparams


def _ctx(tmp_path, seed=0):
    cfg = OmegaConf.create({"progress": False, "seed": seed})
    return RunContext(cfg, tmp_path / f"run{seed}")


def test_record_dataset_sets_dataset_and_split(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.integers(0, 2, 50)
    a, b, c = _ctx(tmp_path, 0), _ctx(tmp_path, 1), _ctx(tmp_path, 2)
    a.record_dataset("d", x, y)
    a.record_dataset("other", x[:10], y[:10])  # the first data set recorded names the record
    b.record_dataset("d", x.copy(), y.copy())
    c.record_dataset("d", x + 1e-3, y)
    assert a.meta_record["dataset"] == "d" and set(a.meta_record["datasets"]) == {"d", "other"}
    assert a.meta_record["split"] == b.meta_record["split"] != c.meta_record["split"]
    d = _ctx(tmp_path, 3)
    d.record_dataset("d", x, y, split="val-fold2")
    assert d.meta_record["split"] == "val-fold2"


def test_arch_records_reencode_and_name_bad_lines(tmp_path):
    space = NB201Space()
    path = tmp_path / "m.jsonl"
    archs = space.enumerate()[[5, 900, 12000]]
    for i, a in enumerate(archs):  # what a NAS run appends: its derived arch + one-hot encoding
        append_jsonl(path, {"experiment": "darts_nb201", "dataset": "cifar10", "split": "data-x",
                            "arch": space.to_string(a), "encoding": np.asarray(space.encode(a)).tolist(),
                            "config": {"search.arch_lr": 10.0 ** -(i + 2)}, "metrics": {"acc": 0.5 + 0.1 * i}})
    arch_lr = NumericHP("search.arch_lr", 1e-4, 1e-1, log=True)
    md = read_meta_dataset(path, "acc", space=space, arch_encoding="path", hparams=[arch_lr])
    assert md.x.shape == (3, 4 + 16 + 64 + 1)
    np.testing.assert_array_equal(md.x[1, :-1], encode_arch(space, archs[1], "path"))
    np.testing.assert_allclose(md.x[:, -1], [2 / 3, 1 / 3, 0], atol=1e-5)
    plain = read_meta_dataset(path, "acc")  # the recorded one-hot encoding
    np.testing.assert_array_equal(plain.x[2], space.encode(archs[2]))
    append_jsonl(path, {"dataset": "cifar10", "split": "data-x", "arch": "|bogus~0|", "metrics": {"acc": 0.5}})
    with pytest.raises(MetaDatasetError, match=r"m.jsonl:4: 'arch' is not a NB201Space arch"):
        read_meta_dataset(path, "acc", space=space, arch_encoding="onehot")
    with pytest.raises(MetaDatasetError, match=r"m.jsonl:4: hparams need the run's flattened 'config'"):
        read_meta_dataset(path, "acc", hparams=[arch_lr])
    with pytest.raises(MetaDatasetError, match=r"m.jsonl:1: hyperparameter 'optimizer.learning_rate' missing"):
        read_meta_dataset(path, "acc", hparams=[LR])
