"""JAX's persistent compilation cache, on by default in a per-user directory with a size bound.

A rerun of the same program loads its compiled executables from disk instead of recompiling them (time to the first
step). ``configure(setting)`` is called once per process before the first compilation (``metanas.experiment`` does
it from ``device.compilation_cache``):

- ``"auto"`` (the default): ``$METANAS_CACHE_DIR/jax``, else ``$XDG_CACHE_HOME/metanas/jax``, else
  ``~/.cache/metanas/jax``;
- a path: that directory (``~`` expanded);
- ``None`` / ``"null"`` / ``"off"`` / ``false``: off.

Precedence: ``METANAS_COMPILATION_CACHE`` in the environment decides over everything (``off``, ``0``, ``false``,
``none`` or empty: off, also for JAX's own variable; ``auto``; or a directory), so a caller can decide for a whole
process tree; then an explicit directory setting; then ``JAX_COMPILATION_CACHE_DIR`` (JAX's own variable: the test
suite sets one per session, ``''`` = off), which ``"auto"`` and ``None`` leave in effect; then the default.

The size bound (default 2 GiB, least recently used entries evicted) is JAX's ``jax_compilation_cache_max_size``;
``JAX_COMPILATION_CACHE_MAX_SIZE`` overrides it. JAX enforces it under a file lock (the ``filelock`` package); without
that package the cache stays on, unbounded, with a warning. Only programs that took at least ``min_compile_time_s``
(1 s; ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` overrides) to compile are written. A directory that cannot be
created turns the cache off with a warning: a cache never fails a run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("metanas")

ENV = "METANAS_COMPILATION_CACHE"
JAX_ENV = "JAX_COMPILATION_CACHE_DIR"
DEFAULT_MAX_BYTES = 2 << 30
_OFF = {"", "0", "off", "false", "no", "none", "null"}


def default_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The per-user cache directory: ``$METANAS_CACHE_DIR/jax``, ``$XDG_CACHE_HOME/metanas/jax`` or
    ``~/.cache/metanas/jax``."""
    env = os.environ if environ is None else environ
    if env.get("METANAS_CACHE_DIR"):
        return Path(env["METANAS_CACHE_DIR"]).expanduser() / "jax"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "metanas" / "jax"


def _off(setting) -> bool:
    return setting is None or setting is False or (isinstance(setting, str) and setting.strip().lower() in _OFF)


def resolve(setting: str | bool | None = "auto", environ: Mapping[str, str] | None = None) -> Path | None:
    """The directory metanas turns the cache on in for ``setting`` (None: it turns none on; JAX's own
    ``JAX_COMPILATION_CACHE_DIR`` then stays in effect unless ``METANAS_COMPILATION_CACHE`` is off). Pure; raises
    ValueError on a bad setting."""
    env = os.environ if environ is None else environ
    forced = ENV in env
    if forced:
        setting = env[ENV]
    if _off(setting):
        return None
    if setting is True or (isinstance(setting, str) and setting.strip().lower() == "auto"):
        return None if JAX_ENV in env and not forced else default_dir(env)  # the caller's own JAX cache wins
    if not isinstance(setting, (str, os.PathLike)):
        raise ValueError(f"device.compilation_cache={setting!r}: expected 'auto', a directory, or null (off)")
    return Path(os.path.expanduser(str(setting)))


def configure(setting: str | bool | None = "auto", *, max_bytes: int = DEFAULT_MAX_BYTES,
              min_compile_time_s: float = 1.0) -> str | None:
    """Turn JAX's persistent compilation cache on (or leave it off) for this process, by the precedence above;
    returns the directory in effect, or None when off. Call it before the first compilation."""
    path = resolve(setting)
    if path is None:
        if ENV in os.environ and _off(os.environ[ENV]):
            import jax

            jax.config.update("jax_enable_compilation_cache", False)  # also JAX's own variable's cache
            return None
        return os.environ.get(JAX_ENV) or None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.warning("compilation cache off: cannot create %s (%s)", path, e)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    size = int(os.environ.get("JAX_COMPILATION_CACHE_MAX_SIZE", max_bytes))
    try:
        import filelock  # noqa: F401  JAX needs it to evict under a lock
    except ImportError:
        log.warning("compilation cache %s has no size bound: `pip install filelock` to enforce %d bytes", path, size)
        size = -1
    jax.config.update("jax_compilation_cache_max_size", size)
    return str(path)
