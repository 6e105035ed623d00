"""The run store: one directory per run, written atomically.

Layout of a run directory (``results/runs/<experiment>/<timestamp>/``)::

    config.yaml        the resolved config (what `resume=` reloads)
    metrics.jsonl      one JSON row per logged step: {"phase", "step", <metric>: float, ...}
    summary.json       final metrics, status, seed, git commit, jax version, device kind, wall time
    plots/<phase>.png  curves of every logged metric
    checkpoints/       orbax checkpoints, one sub-folder per phase
    <artifacts>        genotype.json, tables, figures written by the experiment

Every JSON/YAML file is written to a temporary file in the same directory and renamed over the target,
so a killed run never leaves a truncated file. ``metrics.jsonl`` is append-only; each row is written with
a single ``write`` call, and on resume rows past the restored checkpoint are dropped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("metanas")


class Interrupted(BaseException):
    """SIGINT/SIGTERM during a run; like KeyboardInterrupt it passes ``except Exception``."""

    def __init__(self, signum: int):
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_STOP: list[int] = []  # signals received, polled by check_stop() between steps


def note_stop(signum: int, frame: Any = None) -> None:
    """Start-up signal handler (``python -m metanas`` before its heavy imports): only remember the signal."""
    _STOP.append(signum)


def request_stop(signum: int, frame: Any = None) -> None:
    """Signal handler of a run: the first signal is remembered and the run stops at the next step boundary
    (``train_loop`` polls ``check_stop``), so it never lands inside a checkpoint write or a lock that a raise would
    leave held; a second signal raises ``Interrupted`` at once."""
    import os

    _STOP.append(signum)
    if len(_STOP) > 1:
        raise Interrupted(signum)
    os.write(2, b"metanas: stopping at the next step (send the signal again to stop now)\n")


def check_stop() -> None:
    """Raise ``Interrupted`` if a stop was requested (polled between steps)."""
    if _STOP:
        raise Interrupted(_STOP[-1])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file and ``os.replace`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a run's files get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_jsonable(obj: Any) -> Any:
    """Convert numpy / jax scalars and arrays, paths and tuples into plain JSON values."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (str, bool, int)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy / jax arrays and scalars
        return to_jsonable(obj.tolist())
    return str(obj)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def append_jsonl(path: str | os.PathLike, row: Mapping[str, Any], *,
                 unless_run_dir: str | os.PathLike | None = None) -> bool:
    """Append one JSON row with a single ``write`` under an exclusive lock (safe across processes of a sweep).

    Under the same lock: a last line without its final newline (a writer killed mid-append) is ended first, with a
    one-line warning, so the new row starts on a line of its own and the cut line stays where a reader names it.
    ``unless_run_dir``: skip the row (return False) when a row with that ``run_dir`` is already there (a resumed run
    whose record was written before it was stopped). Returns True when the row was appended.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(to_jsonable(row), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            n = os.pread(fd, size, 0).count(b"\n") + 1
            log.warning("%s: line %d has no final newline (a writer was stopped mid-line); ended it so the new row "
                        "starts on its own line", path, n)
            os.write(fd, b"\n")
        if unless_run_dir is not None and size:
            want = Path(unless_run_dir).resolve()
            for raw in os.pread(fd, os.fstat(fd).st_size, 0).splitlines():
                try:
                    r = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(r, dict) and r.get("run_dir") and Path(str(r["run_dir"])).resolve() == want:
                    return False
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"{path}: short write ({written} of {len(line)} bytes)")
        return True
    finally:
        os.close(fd)


class JsonlError(ValueError):
    """A JSON-lines file that cannot be read: names the file and the line."""


def read_jsonl(path: str | os.PathLike, *, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Read a JSON-lines file; a bad line or a row missing a ``required`` key raises ``JsonlError``."""
    rows = []
    required = tuple(required)
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise JsonlError(f"{path}:{lineno}: not valid JSON ({e.msg}); the file may be truncated") from None
            if not isinstance(row, dict):
                raise JsonlError(f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}")
            missing = [k for k in required if k not in row]
            if missing:
                raise JsonlError(f"{path}:{lineno}: missing key(s) {missing}; each row needs {list(required)}")
            rows.append(row)
    return rows


class MetricWriter:
    """Appends metric rows to ``metrics.jsonl``; rows are tagged with a phase and a step."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.jsonl"

    def write(self, phase: str, step: int, metrics: Mapping[str, Any]) -> None:
        row = {"phase": phase, "step": int(step)}
        for k, v in metrics.items():
            v = to_jsonable(v)
            row[k] = v
        append_jsonl(self.path, row)

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return read_jsonl(self.path, required=("phase", "step"))

    def truncate_after(self, phase: str, step: int) -> None:
        """Drop rows of ``phase`` logged after ``step`` (used when resuming from a checkpoint)."""
        if not self.path.exists():
            return
        keep, bad = [], []
        with open(self.path, errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError
                except ValueError:  # a row cut by a kill, or a damaged one: set aside, named in a warning
                    if line.strip():
                        bad.append((lineno, line))
                    continue
                if row.get("phase") == phase and row.get("step", -1) > step:
                    continue
                keep.append(json.dumps(row, sort_keys=True) + "\n")
        if bad:
            aside = self.path.with_name(self.path.name + ".damaged")
            with open(aside, "a") as f:
                f.writelines(line if line.endswith("\n") else line + "\n" for _, line in bad)
            log.warning("%s: dropped %d line(s) that are not valid JSON (line %s; a kill mid-write?), kept in %s",
                        self.path, len(bad), ", ".join(str(n) for n, _ in bad[:5]), aside.name)
        atomic_write_text(self.path, "".join(keep))
