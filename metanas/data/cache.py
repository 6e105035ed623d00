"""Derived-data caches (e.g. resized Omniglot): safe for several processes building the same cache at once.

``write_cache`` writes to a temporary file with a unique name in the cache's folder and renames it over the
target (``os.replace``, atomic on POSIX): concurrent builders of a parallel or SLURM sweep each write their own
temporary file, the last rename wins, and a reader sees either no cache or a whole one. ``read_cache`` treats a
damaged cache (cut short, not an npz, missing the array) as absent: one warning line, and the caller rebuilds it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger("metanas")


def write_cache(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Save ``arrays`` as an uncompressed npz at ``path`` via a unique temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_cache(path: str | os.PathLike, key: str) -> np.ndarray | None:
    """Array ``key`` of the cache at ``path``, or None (with a one-line warning) when the file is damaged."""
    try:
        with np.load(path) as d:
            return np.asarray(d[key])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("cache %s is damaged (%s: %s); rebuilding it", path, type(e).__name__, str(e)[:120])
        return None
