"""The runners' ``train:`` dataclasses check their declared ranges in ``__post_init__`` (``TrainBlock``), so a block
built in Python is refused as one built from a config."""

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from metanas.config import CONF_DIR, ConfigError, RangeError, TrainBlock, import_target
from metanas.runners.hpo import HPOTrain, MetaLearnerSampling
from metanas.runners.nas import NASTrain
from metanas.runners.transfer import TransNASTrain


def _train_types() -> set[type]:
    runners = {yaml.safe_load(p.read_text()).get("runner") for p in Path(CONF_DIR, "experiment").glob("*.yaml")}
    return {import_target(r).train_type for r in runners if r}


def _nested(cls: type) -> set[type]:
    hints = typing.get_type_hints(cls)
    inner = {hints[f.name] for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])}
    return {cls}.union(*(_nested(c) for c in inner))


def test_every_train_dataclass_and_nested_block_is_a_train_block():
    types = _train_types()
    assert len(types) >= 14  # each runner of conf/experiment declares one
    for cls in set().union(*map(_nested, types)):
        assert issubclass(cls, TrainBlock), f"{cls.__module__}.{cls.__qualname__} does not check its ranges"


def test_a_block_built_in_python_is_range_checked():
    assert NASTrain(search_steps=1).search_steps == 1
    with pytest.raises(RangeError, match=r"^'search_steps' = 0 is out of range; expected int >= 1$"):
        NASTrain(search_steps=0)
    with pytest.raises(RangeError, match=r"'tau_at\[1\]' = -1 is out of range; expected int elements >= 0"):
        TransNASTrain(tau_at=(5, -1))
    with pytest.raises(RangeError, match=r"'mix' = 1.5 is out of range; expected float in \[0, 1\]"):
        TransNASTrain(mix=1.5)
    with pytest.raises(RangeError, match="'chunk' = 0"):  # a nested block checks itself too
        MetaLearnerSampling(chunk=0)


def test_own_checks_still_run_after_the_ranges():
    with pytest.raises(ConfigError, match="train.objective and train.method are required"):
        HPOTrain()
    with pytest.raises(RangeError, match="'seeds' = 0"):  # the range first
        HPOTrain(seeds=0)
