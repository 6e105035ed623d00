"""MetaNAS on few-shot images (Elsken et al. 2020): meta-learn a supernet's weights and alphas, derive, evaluate.

1. ``search``: the supernet of ``cfg.search_space`` (``metanas.supernet.make_supernet``; NB201 or toy cells,
   ``train.C`` channels, ``train.N`` cells per stage) is meta-trained with ``cfg.meta`` (``MetaNAS``: Reptile on
   ``{"w": weights, "alpha": alphas}``) for ``train.steps`` outer steps. Then it is evaluated few-shot as is
   (adapt weights and alphas on each support set, accuracy on the query set): ``supernet_test_acc``.
   The in-training evaluation (``train.eval_every``) reads the meta-validation split (``runners.meta.eval_split``).
2. ``derive``: the genotype of the meta-learned alphas (``metanas.supernet.derive``), one per task family,
   written to ``genotype.json`` with the alphas' softmax.
3. ``derived``: the discrete network (``make_derived``, ``train.derived_C`` / ``train.derived_N``) is meta-trained
   from scratch with the same algorithm for ``train.derived_steps`` steps and evaluated on ``train.test_tasks``
   meta-test tasks: ``test_acc`` ± 95% CI (and ``val_acc`` on ``train.eval_tasks`` meta-validation tasks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import hydra
import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from omegaconf import DictConfig

from metanas.config import Count, takes_train, train_block
from metanas.data.tasks import TaskFamily
from metanas.meta.base import LOSSES
from metanas.meta.metanas import supernet_apply
from metanas.runners.context import RunContext, require_one_seed
from metanas.runners.meta import MetaLoop, eval_split, final_val, make_sampler, meta_test, meta_train, summarize_test

log = logging.getLogger("metanas")


@dataclass(frozen=True)
class MetaNASTrain(MetaLoop):
    """``train:`` of ``metanas_omniglot``: the meta-learning loop's keys plus the supernet and derived network."""

    C: Count = 8  # supernet channels
    N: Count = 1  # cells per stage
    stages: Count | None = None  # None: the search space's default
    derived_C: Count = 8
    derived_N: Count = 1
    derived_steps: Count = 150  # meta-training steps of the derived network
    supernet_test_tasks: Count = 50  # meta-test tasks of the supernet as is (0: skip)


@takes_train(MetaNASTrain)
def run(cfg: DictConfig, ctx: RunContext) -> dict[str, float]:
    require_one_seed(cfg)  # no vmap over seeds here: seeds>1 is one line, not a mislabelled run
    from metanas.supernet import derive, make_derived, make_supernet

    t = train_block(MetaNASTrain, cfg)
    space = hydra.utils.instantiate(cfg.search_space)
    algo = hydra.utils.instantiate(cfg.meta)
    family: TaskFamily = hydra.utils.instantiate(cfg.task)
    if not family.classification:
        raise ValueError(f"metanas needs an image classification task, got task loss '{family.loss}'")
    loss = LOSSES[family.loss]
    sample = make_sampler(cfg, family)
    split = eval_split(family)
    sample_x = jnp.zeros((2, *family.input_shape), jnp.float32)
    k_init, k_train, k_eval, k_dinit, k_dtrain = jax.random.split(ctx.key, 5)

    # 1. meta-learn weights and alphas of the supernet
    net = make_supernet(space, C=t.C, N=t.N, num_classes=family.num_outputs, stages=t.stages)
    w, alphas, _ = net.init(k_init, sample_x)
    apply_fn = supernet_apply(net)
    state, last, search_time = meta_train(ctx, "search", cfg, t, algo, {"w": w, "alpha": alphas}, apply_fn, loss,
                                          sample, k_train, k_eval, steps=t.steps, split=split)
    out = {"search_train_loss": float(last.get("loss", np.nan)), "search_time_s": search_time}
    if t.supernet_test_tasks > 0:
        r = meta_test(cfg, t, algo, state.params, apply_fn, loss, sample, k_eval, t.supernet_test_tasks, 104_729,
                      split="test")
        out |= summarize_test(r, "acc", prefix="supernet_test")

    # 2. derive the genotype of this task family
    meta_alpha = jax.device_get(state.params["theta"]["alpha"])
    arch = derive(space, meta_alpha)
    genotype = {"arch": space.to_string(arch), "indices": np.asarray(arch).tolist(), "ops": list(space.ops),
                "alpha_softmax": jax.tree.map(
                    lambda a: scipy.special.softmax(np.asarray(a), axis=-1).round(4).tolist(), meta_alpha)}
    ctx.save_json("genotype.json", genotype)
    ctx.meta_record |= {"arch": genotype["arch"], "encoding": np.asarray(space.encode(arch)).tolist(),
                        "meta_algorithm": type(algo).__name__, "task_family": type(family).__name__}
    log.info("derived genotype: %s", genotype["arch"])

    # 3. meta-train the derived network from scratch and evaluate it few-shot
    dnet = make_derived(space, arch, C=t.derived_C, N=t.derived_N, num_classes=family.num_outputs,
                        stages=t.stages)
    dw, _, _ = dnet.init(k_dinit, sample_x)
    d_apply = supernet_apply(dnet)  # alpha is {} for a derived network
    dstate, dlast, derived_time = meta_train(ctx, "derived", cfg, t, algo, {"w": dw, "alpha": {}}, d_apply, loss,
                                             sample, k_dtrain, k_eval, steps=t.derived_steps, split=split)
    out |= final_val(cfg, t, algo, dstate.params, d_apply, loss, sample, k_eval, split, "acc")
    r = meta_test(cfg, t, algo, dstate.params, d_apply, loss, sample, k_eval, t.test_tasks, 104_729, split="test")
    out |= summarize_test(r, "acc") | {"derived_train_loss": float(dlast.get("loss", np.nan)),
                                        "derived_time_s": derived_time}
    ctx.log("meta_test", t.steps + t.derived_steps, out)
    return out
