"""Host loops, one module per experiment family: each builds its pure step, jits it once and drives it
(``docs/design.md``: where ``jax.jit`` is called)."""

from metanas.runners.context import NonFiniteLossError, RunContext, train_loop

__all__ = ["NonFiniteLossError", "RunContext", "train_loop"]
