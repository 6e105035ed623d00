"""Host loops: the only place that calls ``jax.jit``. One module per experiment family."""

from metanas.runners.context import NonFiniteLossError, RunContext, train_loop

__all__ = ["NonFiniteLossError", "RunContext", "train_loop"]
