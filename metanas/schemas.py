"""Each experiment's ``train`` schema, registered in Hydra's ConfigStore as ``schema/<experiment>``.

Importing this module reads ``runner:`` from every ``conf/experiment/NAME.yaml``, imports that runner and stores
``metanas.config.schema_of(runner.train_type)`` (its typed ``train`` dataclass, as OmegaConf can check it) under
``schema/NAME``; each experiment lists ``/schema@train: NAME`` in its defaults, so a wrong type or an unknown key
in ``train`` is a composition error before anything runs. The app and ``metanas.experiment.compose_config`` import
it before composing. The schema classes are attributes of this module, so a composed config pickles (Hydra's
launchers ship configs to their workers) and unpickles wherever metanas is installed.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from metanas.config import _SCHEMAS, REPO_ROOT, import_target, schema_of


def _register() -> None:
    store = ConfigStore.instance()
    for f in sorted((REPO_ROOT / "conf" / "experiment").glob("*.yaml")):
        runner = OmegaConf.load(f).get("runner")
        train_type = getattr(import_target(str(runner)), "train_type", None) if runner else None
        if train_type is not None:
            store.store(group="schema", name=f.stem, node=schema_of(train_type))
    for schema in _SCHEMAS.values():  # nested schemas too
        globals()[schema.__name__] = schema


_register()
