"""``runner=metanas.runners.cell.run`` (one NB201 cell on real Omniglot, the HPO experiments' trial runner) trains
with the run's ``optimizer`` group at ``train.lr``, as ``collect`` does."""

import numpy as np

CELL = ("+train.cell={e0: nor_conv_1x1, e1: skip_connect, e2: nor_conv_1x1, e3: none, e4: nor_conv_1x1, "
        "e5: skip_connect}")  # debug=fast's ops


def test_cell_runner_trains_with_the_optimizer_group(tmp_path, data_dir):
    """The default composes to Adam, the optimizer the studies' direct calls get (``ADAM``, the same compiled
    program); ``optimizer=sgd`` trains with SGD (momentum 0.9) at the same ``train.lr``: other numbers."""
    from metanas.config import validate
    from metanas.experiment import compose_config
    from metanas.runners import cell
    from metanas.runners.context import RunContext

    def run(*extra):
        cfg = compose_config(["experiment=collect", "runner=metanas.runners.cell.run", "name=nb201_cell", CELL,
                              "debug=fast", f"data_dir={data_dir}", "meta_dataset=null", "progress=false", *extra])
        validate(cfg)
        return cfg, cell.run(cfg, RunContext(cfg, tmp_path / str(len(extra))))

    adam_cfg, adam = run()
    sgd_cfg, sgd = run("optimizer=sgd")
    assert cell.optimizer_key(adam_cfg.optimizer) == cell.ADAM
    assert cell.optimizer_key(sgd_cfg.optimizer) == (("_target_", "optax.sgd"), ("momentum", 0.9),
                                                     ("nesterov", False))
    assert adam.keys() == sgd.keys() and all(np.isfinite(adam["train_loss"] + sgd["train_loss"]))
    assert adam["train_loss"] != sgd["train_loss"]  # per seed; equal if the group were ignored


def test_cell_runner_refuses_a_nested_optimizer_argument_in_one_line():
    import pytest

    from metanas.config import ConfigError
    from metanas.runners import cell

    with pytest.raises(ConfigError, match=r"^optimizer: the cell runner takes scalar optimizer arguments only, got "
                                          r"\{'transforms': \[1, 2\]\}$"):
        cell.optimizer_key({"_target_": "optax.chain", "transforms": [1, 2], "learning_rate": 0.1})
    assert cell.optimizer_key(None) == cell.ADAM
    assert cell.optimizer_key({"_target_": "optax.sgd", "learning_rate": 0.1, "momentum": 0.9}) == (
        ("_target_", "optax.sgd"), ("momentum", 0.9))  # the learning rate is train.lr's, passed traced
