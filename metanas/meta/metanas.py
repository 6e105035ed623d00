"""MetaNAS (Elsken et al. 2020, "Meta-Learning of Neural Architectures for Few-Shot Learning"), Reptile variant.

The model is a DARTS supernet (``metanas.supernet.make_supernet``) and the meta-parameters are both its weights
and its architecture parameters: ``theta = {"w": weights, "alpha": alphas}``. Per task the inner loop runs DARTS-
style joint updates of ``w`` (``inner_opt``, ``inner_lr``) and ``alpha`` (Adam, ``alpha_lr``) on the support set;
the outer update is Reptile's ``theta <- theta + eps * (mean_t phi_t - theta)`` on both (Elsken et al. 2020,
Alg. 1 with Reptile as the meta-learner). Everything else (batching, persistent inner state, evaluation,
transductive flag) is ``Reptile``'s.

Differences from the paper: one inner optimiser step updates ``w`` and ``alpha`` on the same support batch
(the paper alternates, first order); one outer step size for both (the paper allows two).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import optax

from metanas.meta.reptile import Reptile


def supernet_apply(net):
    """``apply_fn(theta, x)`` for ``theta = {"w", "alpha"}``: softmax(alpha)-mixed supernet logits (batch-stat BN)."""

    def apply(theta, x):
        return net.apply(theta["w"], theta["alpha"], {}, x, True)[0]

    return apply


@dataclass(frozen=True)
class MetaNAS(Reptile):
    """Reptile on supernet weights and alphas. ``theta`` must be ``{"w": ..., "alpha": ...}`` (alpha may be ``{}``)."""

    alpha_lr: float = 3e-3  # inner Adam step size of alpha (beta1 0 like the weights' inner Adam)

    def inner_tx(self) -> optax.GradientTransformation:
        def labels(theta):
            return {"w": jax.tree.map(lambda _: "w", theta["w"]),
                    "alpha": jax.tree.map(lambda _: "alpha", theta["alpha"])}

        return optax.multi_transform({"w": Reptile.inner_tx(self),
                                      "alpha": optax.adam(self.alpha_lr, b1=0.0, b2=0.999, eps=1e-8)}, labels)
