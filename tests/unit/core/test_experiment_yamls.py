"""Each default is written once: an experiment's ``train:`` block holds only what differs from its runner's dataclass
(the schema ``/schema@train`` merges the rest in when Hydra composes; ``--cfg job`` shows every key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from metanas.config import import_target, schema_of

EXPERIMENT_DIR = Path(__file__).resolve().parents[3] / "conf" / "experiment"
EXPERIMENTS = sorted(EXPERIMENT_DIR.glob("*.yaml"))


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type (1 is not 1.0, not True), containers element by element."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b


def repeated_defaults(train: DictConfig, default: DictConfig, prefix: str = "train.") -> list[str]:
    """Dotted keys of a yaml's ``train`` whose value, once merged into the schema (as Hydra composes it), is the
    schema's default: leaving them out composes the same config. Blocks that are dataclasses are searched key by key;
    other mappings (components) are compared whole."""
    merged = OmegaConf.to_container(OmegaConf.merge(default, train), resolve=False)
    defaults = OmegaConf.to_container(default, resolve=False)
    out = []
    for key in map(str, train.keys()):
        if isinstance(train[key], DictConfig) and isinstance(default[key], DictConfig) \
                and OmegaConf.get_type(default[key]) is not dict:  # a nested dataclass block
            out += repeated_defaults(train[key], default[key], f"{prefix}{key}.")
        elif _same(merged[key], defaults[key]):
            out.append(prefix + key)
    return out


def _schema_default(yaml: DictConfig) -> DictConfig:
    return OmegaConf.structured(schema_of(import_target(yaml.runner).train_type))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_experiment_train_sets_only_what_differs_from_its_dataclass(path):
    yaml = OmegaConf.load(path)
    assert isinstance(yaml.get("train"), DictConfig), f"{path.name}: no train: block"
    repeated = repeated_defaults(yaml.train, _schema_default(yaml))
    assert not repeated, (f"conf/experiment/{path.name} repeats its train dataclass's defaults; delete "
                          f"{', '.join(repeated)} (the schema supplies them)")


def test_a_repeated_default_is_found():
    yaml = OmegaConf.load(EXPERIMENT_DIR / "search_nb201.yaml")
    default = _schema_default(yaml)
    train = OmegaConf.merge(yaml.train, {"budget": int(default.budget), "beta": 0, "init": int(default.init) + 1,
                                         "trust": {"folds": int(default.trust.folds)}})
    assert repeated_defaults(train, default) == ["train.budget", "train.beta", "train.trust.folds"]
