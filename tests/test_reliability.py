"""Every failure leaves a true record (issue 17): validation before anything is written, resume that never loses a
finished run, interrupts recorded as such, honest reports, concurrent writers, and fault injection.

``pytest tests/test_reliability.py -m slow -s`` also runs the kill test; with ``METANAS_FAULT_FIGURES=FILE`` the
fault-injection tests add their counts (kills tried, files damaged, concurrent writers) to FILE as JSON lines.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from conftest import REPO, run_metanas
from metanas.app import CONF_DIR
from metanas.config import TRAIN_RANGES, ConfigError, apply_fast_overrides, validate

EXPERIMENTS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))


def _figure(name: str, **counts) -> None:
    """Record a fault-injection figure (see the module docstring)."""
    out = os.environ.get("METANAS_FAULT_FIGURES")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"test": name, **counts}) + "\n")


def _compose(overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _leaves(node: DictConfig, where: str = "train"):
    """(dotted key, value) of every train.* value outside components (``_target_`` nodes)."""
    if "_target_" in node:
        return
    for k in node:
        v = node[k]
        if isinstance(v, DictConfig):
            yield from _leaves(v, f"{where}.{k}")
        else:
            yield f"{where}.{k}", (OmegaConf.to_container(v) if OmegaConf.is_config(v) else v)


def _wrong_type(value):
    """A value of another type than ``value`` (None means 'any': no wrong type)."""
    if isinstance(value, bool):
        return "perhaps"
    if isinstance(value, (int, float)):
        return "abc"
    if isinstance(value, str):
        return 7
    if isinstance(value, list):
        return "abc"
    return None


def _out_of_range(rng):
    if rng.lo is not None:
        return rng.lo if rng.lo_open else rng.lo - 1
    return rng.hi if rng.hi_open else rng.hi + 1


# ---- 1. validation of train.* before anything is written -----------------------------------------------------

@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_wrong_type_or_out_of_range_train_value_is_rejected(experiment):
    """Property over every train.* key of every experiment (composed with debug=fast): a value of another type, and
    a value just outside the declared range, fail validation naming the key; the defaults themselves pass."""
    cfg = _compose([f"experiment={experiment}", "debug=fast"])
    apply_fast_overrides(cfg)
    validate(cfg)
    rnd = random.Random(experiment)
    tried = 0
    for key, value in _leaves(cfg.train):
        leaf = key.rsplit(".", 1)[-1]
        bad = [_wrong_type(value)]
        if leaf in TRAIN_RANGES and isinstance(value, (int, float, list)) and not isinstance(value, bool):
            b = _out_of_range(TRAIN_RANGES[leaf])
            bad.append([b] * max(1, len(value)) if isinstance(value, list) else
                       (int(b) if isinstance(value, int) and float(b).is_integer() else b))
        if isinstance(value, float) and rnd.random() < 0.5:
            bad.append(True)  # a bool is not a number here
        for b in bad:
            if b is None:
                continue
            c = cfg.copy()
            OmegaConf.update(c, key, b, merge=False)
            with pytest.raises(ConfigError, match=r"^'" + key.replace(".", r"\.")):
                validate(c)
            tried += 1
    assert tried > 0 or not list(_leaves(cfg.train))


@pytest.mark.parametrize("override,expected", [
    ("train.steps=abc", "'train.steps' = 'abc' has the wrong type; expected int >= 1"),
    ("train.steps=0", "'train.steps' = 0 is out of range; expected int >= 1"),
    ("seeds=0", "'seeds' = 0 is out of range"),
])
def test_bad_train_value_exits_2_before_a_run_directory_exists(tmp_path, override, expected):
    p = run_metanas("experiment=toy_regression", override, f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("metanas: error:") and expected in lines[0], p.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_late_read_train_value_is_checked_before_meta_training(tmp_path):
    p = run_metanas("experiment=maml_sinusoid", "train.test_tasks=abc", f"results_dir={tmp_path}/runs",
                    f"meta_dataset={tmp_path}/meta.jsonl", cwd=tmp_path, timeout=60)
    assert p.returncode == 2 and "'train.test_tasks' = 'abc'" in p.stderr and list(tmp_path.iterdir()) == []


def test_meta_dataset_source_without_a_meta_dataset_is_one_line():
    cfg = _compose(["experiment=predictor_nb201", "meta_dataset=null", "train.source=meta_dataset"])
    with pytest.raises(ConfigError, match="train.source=meta_dataset reads train.meta_dataset"):
        validate(cfg)
