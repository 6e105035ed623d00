"""What an experiment sees of the run store: ``RunContext`` and the generic host loop ``train_loop``.

An experiment is a function ``run(cfg, ctx) -> dict[str, float]`` named by ``runner:`` in its config.
It builds its pure step function, jits it once, and drives it with ``train_loop`` (or its own loop that
uses ``ctx.restore`` / ``ctx.save`` / ``ctx.log`` the same way). Everything host-side lives here:
checkpoints (orbax), metric rows, progress bars, the non-finite-loss guard.

Determinism contract for resume: a step must depend only on ``(state, step)``. Draw per-step randomness
with ``jax.random.fold_in(key, step)`` or ``np.random.default_rng([seed, step])``, never from a generator
whose state lives outside the checkpointed ``state``. Then a run killed at any point and resumed ends
with bitwise the same metrics as an uninterrupted one on CPU.
"""

from __future__ import annotations

import gc
import logging
import os
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import jax
import numpy as np
from omegaconf import DictConfig

from metanas.run_store import Interrupted, MetricWriter, atomic_write_json, atomic_write_text, check_stop  # noqa: F401

log = logging.getLogger("metanas")


class _ReportedDamage(logging.Filter):
    """Drops log records about checkpoints already reported as damaged (one warning line each): orbax's abandoned
    read tasks of such a checkpoint otherwise surface later as asyncio's "Task exception was never retrieved"
    tracebacks. Records about anything else pass."""

    def __init__(self):
        super().__init__()
        self.paths: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p in message for p in self.paths)


_REPORTED_DAMAGE = _ReportedDamage()

State = TypeVar("State")


def require_one_seed(cfg: DictConfig) -> None:
    """Guard of runners that do not vmap over seeds: ``seeds > 1`` is a config error (one line), not a silent
    single-seed run recorded as several."""
    if cfg.seeds != 1:
        from metanas.config import ConfigError

        raise ConfigError(f"seeds={cfg.seeds}: experiment {cfg.name} runs one seed per run; sweep seeds instead, "
                          f"e.g. python -m metanas -m experiment={cfg.name} seed=0,1,2")


class NonFiniteLossError(RuntimeError):
    """Raised by ``train_loop`` when the watched loss becomes NaN or inf."""


def progress_disable(setting: bool | None) -> bool | None:
    """tqdm's ``disable`` for the ``progress`` setting: explicit, else tqdm's own ``None`` (shown only on a
    terminal), and off under CI."""
    if setting is not None:
        return not setting
    return True if os.environ.get("CI") else None


class RunContext:
    """Host-side services for one run. Created by the app; experiments never build paths themselves."""

    def __init__(self, cfg: DictConfig, run_dir: Path, *, resumed: bool = False):
        self.cfg = cfg
        self.run_dir = Path(run_dir).resolve()
        self.resumed = resumed
        self.metrics = MetricWriter(self.run_dir)
        self.meta_record: dict[str, Any] = {}  # extra fields for the meta-dataset record (encoding, meta-features)
        self._managers: dict[str, Any] = {}
        self._progress_disable = progress_disable(cfg.progress)

    # ---- randomness ---------------------------------------------------------------------------
    @property
    def key(self) -> jax.Array:
        """The run's root PRNG key, from ``cfg.seed``. Split or fold it; never reuse it directly twice."""
        return jax.random.PRNGKey(self.cfg.seed)

    # ---- files ----------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.run_dir / name

    def save_json(self, name: str, obj: Any) -> Path:
        atomic_write_json(self.path(name), obj)
        return self.path(name)

    def save_text(self, name: str, text: str) -> Path:
        atomic_write_text(self.path(name), text)
        return self.path(name)

    def log(self, phase: str, step: int, metrics: Mapping[str, Any]) -> None:
        self.metrics.write(phase, step, metrics)

    def record_dataset(self, name: str, x: Any, y: Any, *, classification: bool = True,
                       max_rows: int = 2000, split: str | None = None) -> dict[str, float]:
        """Meta-features of a data set the run uses (``x`` [N, ...] flattened to a table, ``y`` [N]).

        Stored in ``metafeatures.json`` and in the run's meta-dataset record (``datasets.<name>``). The first data
        set recorded is the record's ``metafeatures``, ``dataset`` (its name) and ``split``: ``split`` if given,
        else ``data_fingerprint(x, y)``, so two runs share a split exactly when they recorded the same rows (the
        predictors pair runs only within one (dataset, split); pass ``split`` when the evaluation data can differ
        for the same recorded rows). A subsample of ``max_rows`` rows (fixed seed) keeps this cheap for image sets.
        """
        from metanas.metafeatures import compute_metafeatures

        x = np.asarray(x).reshape(len(x), -1)
        y = np.asarray(y).reshape(-1)
        n = len(x)
        if len(x) > max_rows:
            idx = np.random.default_rng(0).choice(len(x), max_rows, replace=False)
            x, y = x[idx], y[idx]
        mf = compute_metafeatures(x, y, classification=classification, seed=self.cfg.seed)
        datasets = self.meta_record.setdefault("datasets", {})
        datasets[name] = mf
        self.meta_record.setdefault("metafeatures", mf)
        self.meta_record.setdefault("dataset", name)
        self.meta_record.setdefault("split", split if split is not None else data_fingerprint(x, y, n))
        self.save_json("metafeatures.json", datasets)
        return mf

    def progress(self, total: int, *, initial: int = 0, desc: str = ""):
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, disable=self._progress_disable,
                    dynamic_ncols=True, leave=False)

    # ---- checkpoints (orbax) --------------------------------------------------------------------
    def _manager(self, phase: str):
        if phase not in self._managers:
            import orbax.checkpoint as ocp

            self._managers[phase] = ocp.CheckpointManager(
                self.run_dir / "checkpoints" / phase,
                options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False,
                                                     create=True),
            )
        return self._managers[phase]

    def restore(self, phase: str, template: State, *, max_step: int | None = None) -> tuple[State, int]:
        """Newest intact checkpoint of ``phase`` as ``(state, step)``, or ``(template, 0)`` when there is none.

        A checkpoint that cannot be restored (a damaged file, a partial copy without its ``default/`` folder) is
        named in a one-line warning and moved to ``damaged_checkpoints/<phase>/<step>`` (kept, never deleted);
        the next older one is tried. Rows of ``metrics.jsonl`` logged after the restored step are dropped, so the
        resumed run rewrites them exactly as the uninterrupted run would have.
        """
        import orbax.checkpoint as ocp

        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        for step in sorted(self._manager(phase).all_steps(), reverse=True):
            if max_step is not None and step > max_step:
                continue
            mngr = self._manager(phase)
            step_dir = self.run_dir / "checkpoints" / phase / str(step)
            why = None if (step_dir / "default").is_dir() else "no default/ folder (a partial copy?)"
            if why is None:
                try:
                    restored = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
                except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: fall back to an older one
                    why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:160]
            if why is None:
                restored = jax.tree.unflatten(jax.tree.structure(template), jax.tree.leaves(restored))
                self.metrics.truncate_after(phase, step)
                log.info("resumed phase %r from checkpoint at step %d", phase, step)
                return restored, int(step)
            self._quarantine(phase, step, why)
        self.metrics.truncate_after(phase, -1)
        return template, 0

    def _quarantine(self, phase: str, step: int, why: str) -> None:
        import shutil

        src = self.run_dir / "checkpoints" / phase / str(step)
        dst = self.run_dir / "damaged_checkpoints" / phase / str(step)
        _REPORTED_DAMAGE.paths.append(f"{src}/")
        logging.getLogger("asyncio").addFilter(_REPORTED_DAMAGE)  # idempotent
        gc.collect()  # orbax's failed read tasks are reported (and dropped) now, not at some later collection
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(src, dst)
        older = [s for s in self._manager(phase).all_steps() if s < step]
        self._managers.pop(phase).close()  # a fresh manager forgets the moved step
        log.warning("checkpoint %s step %d is damaged (%s); moved to %s; %s", phase, step, why,
                    dst.relative_to(self.run_dir),
                    f"falling back to step {max(older)}" if older else "no older checkpoint: phase starts again")

    def save(self, phase: str, step: int, state: Any) -> None:
        import orbax.checkpoint as ocp

        mngr = self._manager(phase)
        if mngr.latest_step() == step:
            return
        mngr.save(step, args=ocp.args.StandardSave(state), force=True)
        mngr.wait_until_finished()

    def close(self) -> None:
        for m in self._managers.values():
            m.close()
        self._managers.clear()


def data_fingerprint(x: np.ndarray, y: np.ndarray, n: int | None = None) -> str:
    """``"data-<12 hex>"``: sha1 of the rows' bytes, shapes and dtypes (and the full size ``n`` they came from)."""
    import hashlib

    h = hashlib.sha1(repr((x.shape, x.dtype.str, y.shape, y.dtype.str, n)).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return "data-" + h.hexdigest()[:12]


def _finite(x: Any) -> bool:
    return bool(np.all(np.isfinite(np.asarray(x))))


def scalars(x: Any) -> float | list[float]:
    """A metric as a float, or a list of floats for a per-seed vector (``seeds=K`` runs)."""
    a = np.asarray(x, dtype=np.float64)
    return a.item() if a.size == 1 else a.reshape(-1).tolist()


def train_loop(
    ctx: RunContext,
    phase: str,
    state: State,
    step_fn: Callable[[State, int], tuple[State, Mapping[str, Any]]],
    num_steps: int,
    *,
    log_every: int | None = None,
    checkpoint_every: int | None = None,
    loss_key: str | None = "loss",
    eval_fn: Callable[[State, int], Mapping[str, Any]] | None = None,
    eval_every: int | None = None,
) -> tuple[State, dict[str, float]]:
    """Run ``state, metrics = step_fn(state, step)`` for steps ``1..num_steps`` with resume.

    - restores the latest checkpoint of ``phase`` (so a finished phase is skipped on resume);
    - stops with ``NonFiniteLossError`` naming the step when ``metrics[loss_key]`` is not finite,
      keeping the last good checkpoint on disk;
    - logs a row every ``log_every`` steps (and ``eval_fn``'s metrics every ``eval_every`` steps);
    - checkpoints every ``checkpoint_every`` steps and at the end.

    Returns the final state and the last logged metrics (floats; lists of floats for per-seed vectors).
    """
    cfg = ctx.cfg
    log_every = log_every or cfg.log_every
    checkpoint_every = checkpoint_every or cfg.checkpoint_every
    template = state
    state, start = ctx.restore(phase, template)
    last: dict[str, float] = {}
    if start >= num_steps:
        rows = [r for r in ctx.metrics.rows() if r["phase"] == phase]
        if rows and rows[-1]["step"] == num_steps:  # the last step is always logged
            last = {k: v for r in rows for k, v in r.items() if k not in ("phase", "step")}
            return state, last
        # finished, but metrics.jsonl lost its final row(s) (damaged file): redo the last stretch, which
        # rewrites those rows exactly, rather than report the metrics of an earlier step as final
        log.warning("metrics.jsonl has no final row of phase %r (damaged?); re-running its last steps from the "
                    "previous checkpoint", phase)
        state, start = ctx.restore(phase, template, max_step=num_steps - 1)
    bar = ctx.progress(num_steps, initial=start, desc=phase)
    try:
        for step in range(start + 1, num_steps + 1):
            check_stop()
            new_state, metrics = step_fn(state, step)
            if loss_key is not None and not _finite(metrics[loss_key]):
                value = next(v for v in np.asarray(metrics[loss_key]).reshape(-1) if not np.isfinite(v))
                raise NonFiniteLossError(
                    f"{loss_key} became {value} at step {step} of phase '{phase}'; "
                    f"stopped, last good checkpoint kept under {ctx.run_dir / 'checkpoints' / phase}")
            state = new_state
            row = None
            if step % log_every == 0 or step == num_steps:
                row = {k: scalars(v) for k, v in metrics.items()}
            if eval_fn is not None and eval_every and (step % eval_every == 0 or step == num_steps):
                row = (row or {}) | {k: scalars(v) for k, v in eval_fn(state, step).items()}
            if row is not None:
                ctx.log(phase, step, row)
                last = row
                bar.set_postfix({k: f"{np.mean(v):.4g}" for k, v in list(row.items())[:3]}, refresh=False)
            if step % checkpoint_every == 0 or step == num_steps:
                ctx.save(phase, step, state)
            bar.update(1)
    finally:
        bar.close()
    return state, last


def hardware_info() -> dict[str, Any]:
    """What a run trained on and what it used: backend, device kind and count, host CPU cores, and the peak memory
    (host resident set; the accelerator's peak bytes where the backend reports them)."""
    import resource

    import jax

    d = jax.devices()[0]
    info: dict[str, Any] = {"backend": d.platform, "device_kind": getattr(d, "device_kind", d.platform),
                            "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
                            "machine": platform.machine(),
                            "peak_host_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    try:
        stats = d.memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        stats = {}
    if "peak_bytes_in_use" in stats:
        info["peak_device_memory_mb"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
    return info
