"""Config schema and start-up validation.

The root of the config is the ``Config`` dataclass (registered in Hydra's ConfigStore as ``base_config``),
so a wrong type or an unknown top-level key fails when Hydra composes. Component nodes (anything with a
``_target_``) are checked against the signature of their target: an unknown key names the valid keys, a
value of the wrong type names the expected type. Errors are ``ConfigError`` with a one-line message.
"""

from __future__ import annotations

import importlib
import inspect
import os
import types
import typing
import collections.abc
import dataclasses
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = str(REPO_ROOT / "conf")


class ConfigError(ValueError):
    """A config that cannot run; the message is one line naming the key and what would be right."""


def default_data_dir() -> str:
    """``$METANAS_DATA_DIR``, else ``../shared/data`` beside the repository checkout."""
    return os.environ.get("METANAS_DATA_DIR", str(REPO_ROOT.parent / "shared" / "data"))


@dataclass
class DeviceConfig:
    """Accelerator settings, applied before JAX allocates memory."""

    preallocate: Optional[bool] = None  # false: several jobs can share one GPU (XLA_PYTHON_CLIENT_PREALLOCATE)
    mem_fraction: Optional[float] = None  # cap per process (XLA_PYTHON_CLIENT_MEM_FRACTION), e.g. 0.3
    distributed: bool = False  # call jax.distributed.initialize() (multi-host; coordinator from the cluster env)
    # JAX's persistent compilation cache (metanas.compilation_cache): a rerun of the same program loads its compiled
    # executables instead of recompiling. "auto": a per-user directory (~/.cache/metanas/jax) with a 2 GiB bound;
    # a path: that directory; null: off (METANAS_COMPILATION_CACHE=off in the environment wins over everything)
    compilation_cache: Optional[str] = "auto"


@dataclass
class Config:
    """Top-level keys. Group nodes (``search_space`` …) are checked by ``validate`` against their targets."""

    name: str = "???"  # experiment name: results go to results_dir/name/<timestamp>
    runner: str = "???"  # dotted path of ``run(cfg, ctx) -> dict``
    seed: int = 0
    seeds: int = 1  # >1: experiments that support it run seeds seed..seed+K-1 as one jit(vmap(...)) program
    resume: Optional[str] = None  # a run directory to continue
    results_dir: str = "results/runs"
    data_dir: str = field(default_factory=default_data_dir)
    meta_dataset: Optional[str] = "results/meta_dataset.jsonl"  # every finished run appends a record; null: off
    objective: Optional[str] = None  # final metric a sweeper optimises (returned by the task), e.g. test_mse
    log_every: int = 10
    checkpoint_every: int = 100
    progress: Optional[bool] = None  # null: bars only on an interactive terminal outside CI
    # component groups, validated against their `_target_`
    search_space: Any = None
    search: Any = None
    meta: Any = None
    predictor: Any = None
    task: Any = None
    optimizer: Any = None
    benchmark: Any = None
    # experiment-specific settings (sizes, budgets, schedules)
    train: dict[str, Any] = field(default_factory=dict)
    # device / launcher settings
    device: DeviceConfig = field(default_factory=DeviceConfig)


def _run_dir_resolver(resume: str | None, default: str) -> str:
    return str(resume) if resume else default


def _if_resume_resolver(resume: str | None, if_resumed: str, otherwise: str) -> str:
    return if_resumed if resume else otherwise


def register_configs() -> None:
    """The schema (``base_config``) and the resolvers that ``conf/config.yaml`` uses; idempotent."""
    ConfigStore.instance().store(name="base_config", node=Config)
    OmegaConf.register_new_resolver("metanas.run_dir", _run_dir_resolver, replace=True)
    OmegaConf.register_new_resolver("metanas.if_resume", _if_resume_resolver, replace=True)


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether a config value fits an annotation (scalars and containers; other classes are not checked)."""
    if annotation in (inspect.Parameter.empty, Any):
        return True
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if annotation is type(None):
        return value is None
    if isinstance(value, str):  # a string only fits where a string is asked for
        return annotation is str
    if origin in (tuple, list, collections.abc.Sequence) or annotation in (tuple, list):
        return isinstance(value, (list, tuple, ListConfig))
    if origin is dict or annotation is dict:
        return isinstance(value, (dict, DictConfig))
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is bool:
        return isinstance(value, bool)
    return value is not None or annotation is None


def _type_name(annotation: Any) -> str:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def import_target(path: str) -> Any:
    module, _, attr = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"_target_ '{path}' cannot be imported ({e})") from None


def _check_target_node(node: DictConfig, where: str) -> None:
    target = import_target(node._target_)
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        hints = {}
    params = {n: p for n, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    for key in node.keys():
        key = str(key)
        if key.startswith("_"):
            continue
        if key not in params:
            if takes_kwargs:
                continue
            raise ConfigError(f"unknown key '{where}.{key}' for {node._target_}; valid keys: {', '.join(params)}")
        if OmegaConf.is_missing(node, key):
            raise ConfigError(f"'{where}.{key}' is required (???); set it, e.g. {where}.{key}=VALUE")
        value = node[key]
        ann = hints.get(key, params[key].annotation)
        if isinstance(ann, str):
            continue
        if isinstance(value, DictConfig) and "_target_" in value:
            continue
        if not _type_ok(value, ann):
            raise ConfigError(f"'{where}.{key}' = {value!r} has the wrong type; expected {_type_name(ann)}")


@dataclass(frozen=True)
class Range:
    """Allowed interval of a number (``lo``/``hi`` None: unbounded; ``*_open``: the bound itself is excluded)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v: float) -> bool:
        return ((self.lo is None or (v > self.lo if self.lo_open else v >= self.lo))
                and (self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)))

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


COUNT, NONNEG, POSITIVE = Range(1), Range(0), Range(0, lo_open=True)
# A train field's range is declared with its type: ``steps: Count = 600``; ``TrainBlock.__post_init__`` checks it
# (every element of a tuple too) and ``train_block`` names the dotted key in its one-line error.
Count = Annotated[int, COUNT]
Counts = Annotated[tuple[int, ...], COUNT]
NonNegInt = Annotated[int, NONNEG]
NonNeg = Annotated[float, NONNEG]
Positive = Annotated[float, POSITIVE]
Fraction = Annotated[float, Range(0, 1)]
# the top-level counts (``train.*`` ranges are declared on the fields, above)
TOP_LEVEL_RANGES: dict[str, Range] = {"seeds": COUNT, "log_every": COUNT, "checkpoint_every": COUNT}


def check_train(cfg: DictConfig) -> None:
    """Top-level counts, and what the ``train`` schema cannot say: ``train.source=meta_dataset`` needs a file. Types
    and unknown keys of ``train`` are the schema's (Hydra, at composition); its values' ranges ``train_block``'s."""
    for key, rng in TOP_LEVEL_RANGES.items():
        v = cfg.get(key)
        if _is_number(v) and v not in rng:
            raise ConfigError(f"'{key}' = {v!r} is out of range; expected an integer {rng}")
    train = cfg.get("train")
    if not isinstance(train, DictConfig):
        return
    source = train.get("source")
    if source == "meta_dataset" and not (train.get("meta_dataset") or cfg.get("meta_dataset")):
        raise ConfigError("train.source=meta_dataset reads train.meta_dataset, else the top-level meta_dataset, "
                          "and both are null; set one of them to a meta-dataset file")


# ---- typed train: blocks -----------------------------------------------------------------------------------------

_SCHEMAS: dict[type, type] = {}


def _schema_type(ann: Any) -> Any:
    """The OmegaConf-checkable form of a ``train`` field's annotation: scalars, Optional scalars, lists of scalars and
    nested dataclasses as they are; a ``Literal`` of strings as ``str`` (its choices are checked by ``train_block``);
    anything OmegaConf cannot express (tuples of tuples, unions of types, components) as ``Any``."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if ann in (int, float, str, bool):
        return ann
    if origin is typing.Literal:
        return str if all(isinstance(a, str) for a in args) else Any
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = _schema_type(rest[0]) if len(rest) == 1 else Any
        return Any if inner is Any else Optional[inner]
    if dataclasses.is_dataclass(ann):
        return schema_of(ann)
    if origin in (tuple, list, collections.abc.Sequence):
        elems = [a for a in args if a is not Ellipsis]
        if len(set(elems)) == 1 and elems[0] in (int, float, str, bool):
            return list[elems[0]]
        if len(set(elems)) == 1 and (elems[0] is dict or typing.get_origin(elems[0]) is dict):
            return list[Any]
    return Any


def _schema_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        schema = schema_of(type(value))
        return schema(**{f.name: _schema_default(getattr(value, f.name)) for f in dataclasses.fields(value)})
    if isinstance(value, tuple):
        return [_schema_default(v) for v in value]
    return value


def schema_of(train_type: type) -> type:
    """The config schema of a runner's ``train`` dataclass: a plain dataclass with the same fields and defaults, typed
    as far as OmegaConf can check (``_schema_type``). Registered in Hydra's ConfigStore, it makes a wrong type or an
    unknown key in ``train`` a composition error, before anything runs (``metanas.schemas``)."""
    if train_type in _SCHEMAS:
        return _SCHEMAS[train_type]
    hints = typing.get_type_hints(train_type)
    fields = []
    for f in dataclasses.fields(train_type):
        if f.default is not dataclasses.MISSING:
            d = _schema_default(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            d = _schema_default(f.default_factory())
        else:
            d = "???"
        mutable = isinstance(d, (list, dict)) or (dataclasses.is_dataclass(d) and not isinstance(d, type))
        fields.append((f.name, _schema_type(hints[f.name]),
                       field(default_factory=lambda d=d: d) if mutable else field(default=d)))
    name = f"{train_type.__module__.rsplit('.', 1)[-1]}_{train_type.__name__}"  # unique per dataclass
    schema = dataclasses.make_dataclass(name, fields)
    schema.__module__, schema.__qualname__ = "metanas.schemas", name  # pickled by reference: metanas.schemas.NAME
    _SCHEMAS[train_type] = schema
    return _SCHEMAS[train_type]

def takes_train(train_type: type) -> Callable[[F], F]:
    """``@takes_train(MetaTrain)`` on a runner: its ``train:`` block is that frozen dataclass. ``validate`` builds it
    (``train_block``) before the run directory exists, so an unknown key, a wrong type or a value out of range is one
    line; the runner builds it again and reads typed attributes. The dataclass holds the defaults of keys that an
    experiment's yaml leaves out."""
    def mark(runner: F) -> F:
        runner.train_type = train_type  # type: ignore[attr-defined]
        return runner

    return mark


class RangeError(ConfigError):
    """A field of a ``TrainBlock`` outside the range declared with its type; ``key`` is the field (``steps``,
    ``sizes[2]``), ``train_block`` prefixes its dotted place (``train.steps``)."""

    def __init__(self, key: str, value: Any, expects: str):
        self.key, self.value, self.expects = key, value, expects
        super().__init__(f"'{key}' = {value!r} is out of range; expected {expects}")

    def at(self, where: str) -> ConfigError:
        return ConfigError(f"'{where}.{self.key}' = {self.value!r} is out of range; expected {self.expects}")


@dataclass(frozen=True)
class TrainBlock:
    """Base of the runners' ``train:`` dataclasses and their nested blocks: ``__post_init__`` checks each field
    against the ``Range`` declared with its type (``steps: Count = 600``; each element of a tuple too), so a block
    is checked wherever it is built, from a config (``train_block``) or in Python. A subclass with checks of its
    own calls ``super().__post_init__()`` first."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        declared = typing.get_type_hints(type(self), include_extras=True)
        for f in dataclasses.fields(self):
            rng, value = _declared_range(declared[f.name]), getattr(self, f.name)
            if rng is None:
                continue
            if isinstance(value, (list, tuple)):  # each element, named by its index
                for i, item in enumerate(value):
                    if _is_number(item) and item not in rng:
                        kind = "int" if isinstance(item, int) else "float"
                        raise RangeError(f"{f.name}[{i}]", item, f"{kind} elements {rng}")
            elif _is_number(value) and value not in rng:
                raise RangeError(f.name, value, _type_name(hints[f.name]) + f" {rng}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _elements_ok(value: Any, annotation: Any) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if typing.get_origin(annotation) in (tuple, list) and len(args) == 1 and isinstance(value, (list, tuple)):
        return all(_type_ok(v, args[0]) for v in value)
    return True


def train_block(train_type: type[T], cfg: DictConfig) -> T:
    """``cfg.train`` as the runner's frozen dataclass ``train_type``: unknown keys, types (the annotations) and ranges
    (declared on the fields, also for tuple elements) fail with one ``ConfigError`` line. Lists become tuples;
    a mapping whose field is a dataclass is built the same way; components (``_target_``) and other mappings stay
    config nodes for ``hydra.utils.instantiate``."""
    node = cfg.get("train")
    return _build(train_type, node if isinstance(node, DictConfig) else OmegaConf.create({}), "train",
                  str(cfg.get("name")))


def _declared_range(annotation: Any) -> Range | None:
    """The ``Range`` an ``Annotated[...]`` annotation (also inside ``X | None``) declares, else None."""
    if typing.get_origin(annotation) is Annotated:
        return next((m for m in annotation.__metadata__ if isinstance(m, Range)), None)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next((r for r in map(_declared_range, typing.get_args(annotation)) if r is not None), None)
    return None


def train_ranges(train_type: type, prefix: str = "train") -> dict[str, Range]:
    """Dotted key -> the range declared on that field of ``train_type`` (nested dataclasses included): what
    ``train_block`` checks."""
    out: dict[str, Range] = {}
    declared = typing.get_type_hints(train_type, include_extras=True)
    for f in dataclasses.fields(train_type):
        if dataclasses.is_dataclass(declared[f.name]):  # a nested block (never Annotated)
            out |= train_ranges(declared[f.name], f"{prefix}.{f.name}")
        elif (rng := _declared_range(declared[f.name])) is not None:
            out[f"{prefix}.{f.name}"] = rng
    return out


def _build(cls: type[T], node: DictConfig, where: str, experiment: str) -> T:
    hints = typing.get_type_hints(cls)
    declared = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key in node.keys():
        key, at = str(key), f"{where}.{key}"
        if key not in fields:
            raise ConfigError(f"unknown key '{at}' for experiment {experiment}; valid keys there: {', '.join(fields)}")
        if OmegaConf.is_missing(node, key):
            raise ConfigError(f"'{at}' is required (???); set it, e.g. {at}=VALUE")
        raw, ann, f = node[key], hints[key], fields[key]
        if isinstance(raw, DictConfig) and dataclasses.is_dataclass(ann):
            kwargs[key] = _build(ann, raw, at, experiment)
            continue
        if isinstance(raw, DictConfig):
            kwargs[key] = raw  # a component or a mapping: instantiated / read by the runner
            continue
        value = OmegaConf.to_container(raw, resolve=True) if OmegaConf.is_config(raw) else raw
        default = f.default if f.default is not dataclasses.MISSING else None
        rng = _declared_range(declared[key])
        expects = _type_name(ann) + (f" {rng}" if rng is not None and ann in (int, float) else "")
        if typing.get_origin(ann) is typing.Literal and value not in typing.get_args(ann):
            raise ConfigError(f"'{at}' = {value!r} is not a choice; expected {expects} (default {default!r})")
        if not (_type_ok(value, ann) and _elements_ok(value, ann)):
            raise ConfigError(f"'{at}' = {value!r} has the wrong type; expected {expects} (default {default!r})")
        if isinstance(value, list):
            value = tuple(value)
        elif ann is float and isinstance(value, int):
            value = float(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)  # TrainBlock.__post_init__ checks the declared ranges
    except RangeError as e:
        raise e.at(where) from None
    except TypeError as e:  # a field without a default that the experiment does not set
        raise ConfigError(f"{where}: {e}; set it in conf/experiment/{experiment}.yaml") from None


def validate(cfg: DictConfig) -> None:
    """Check everything that Hydra's composition does not: targets, keys and types of components, ``train.*`` types
    and ranges."""
    if OmegaConf.is_missing(cfg, "runner"):
        raise ConfigError("no experiment selected; pass experiment=NAME (see conf/experiment/)")
    runner = import_target(cfg.runner)
    check_train(cfg)
    train_type = getattr(runner, "train_type", None)
    if train_type is not None:  # the runner's typed train: block (unknown keys, types, ranges, its own checks)
        train_block(train_type, cfg)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, DictConfig):
            if "_target_" in node:
                _check_target_node(node, where)
            for k in node.keys():
                if not OmegaConf.is_missing(node, k):
                    walk(node[k], f"{where}.{k}" if where else str(k))
        elif isinstance(node, ListConfig):
            for i, v in enumerate(node):
                walk(v, f"{where}[{i}]")

    walk(cfg, "")


register_configs()  # importing the schema makes conf/ composable (the tests and the library compose without the app)
