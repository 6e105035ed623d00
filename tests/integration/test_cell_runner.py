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
