"""Running one experiment into a run directory: the library side of ``python -m metanas``.

``run_experiment(cfg, run_dir, overrides)`` validates the composed config (``prepare``: resume, start-up checks),
runs the experiment's runner with a ``RunContext``, and writes the run store in this order: the runner's work, the
meta-dataset record, then ``summary.json``. ``compose_config`` composes ``conf/`` inside or outside a running Hydra
app. The command line (``metanas.app``) and the in-process HPO objective
(``metanas.runners.objectives``) both call these; nothing here reads ``sys.argv`` or exits the process.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import subprocess
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from metanas.config import CONF_DIR, REPO_ROOT, ConfigError, import_target, validate
from metanas.run_store import Interrupted, check_stop

log = logging.getLogger("metanas")


def compose_config(overrides: list[str]) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides`` inside or outside a running Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import metanas.schemas  # noqa: F401 - each experiment's train schema in ConfigStore

    if GlobalHydra.instance().is_initialized():  # inside @hydra.main: its config loader is the metanas conf/
        return compose(config_name="config", overrides=overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def quiet_logs() -> None:
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
    # JAX probing for backends that are not there ("Unable to initialize backend 'tpu'") logs at INFO
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _hardware_info() -> dict[str, Any]:
    from metanas.runners.context import hardware_info

    return hardware_info()


def device_kind() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '')}".rstrip(":") + f" x{jax.device_count()}"


def configure_devices(cfg: DictConfig) -> None:
    """GPU memory sharing and multi-host init from ``cfg.device``; must run before JAX allocates."""
    dev = cfg.device
    if dev.preallocate is not None:
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = str(dev.preallocate).lower()
    if dev.mem_fraction is not None:
        os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = str(dev.mem_fraction)
    from metanas.compilation_cache import configure as configure_compilation_cache

    configure_compilation_cache(dev.compilation_cache)  # "auto": per-user dir, 2 GiB bound; null: off
    if dev.distributed:
        import jax

        jax.distributed.initialize()


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out |= _flatten(v, f"{prefix}{k}.")
    elif isinstance(d, (str, int, float, bool)) or d is None:
        out[prefix[:-1]] = d
    return out



def prepare(cfg: DictConfig, overrides: Sequence[str], resume_overrides: Sequence[str] = ()
            ) -> tuple[DictConfig, bool]:
    """Resume handling and validation. Returns (cfg, resumed).

    ``resume_overrides``: on a resume, the dotted keys and ``RESUME_HONOURED`` keys of the command line (the
    command line hands them over because Hydra's own overrides of a resume hold only ``resume=``)."""
    resumed = False
    if cfg.resume:
        saved = Path(cfg.resume) / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"resume={cfg.resume}: no config.yaml there; pass a run directory under results/runs/")
        resume_dir = cfg.resume
        try:
            loaded = OmegaConf.load(saved)
        except Exception as e:  # noqa: BLE001 - a damaged config.yaml: one line naming it
            raise ConfigError(f"resume={resume_dir}: {saved} cannot be read ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); it is the run's config, restore it "
                              f"or start a new run") from None
        if isinstance(loaded, DictConfig):  # saved when experiments had `fast:` blocks: their sizes are in it already
            for key in ("fast", "debug_mode"):
                loaded.pop(key, None)
        cfg = OmegaConf.merge(OmegaConf.structured(import_target("metanas.config.Config")), loaded)
        cfg.resume = resume_dir
        resumed = True
        _apply_resume_overrides(cfg, [*overrides, *resume_overrides])
    validate(cfg)
    _check_meta_dataset_writable(cfg.meta_dataset)
    return cfg, resumed



# top-level keys a resume takes from its command line; every other top-level key and group choice is the saved one
RESUME_HONOURED = ("meta_dataset", "progress", "data_dir", "objective", "checkpoint_every")


def is_resume_override(arg: str) -> bool:
    key = arg.split("=", 1)[0]
    return "=" in arg and not arg.startswith(("resume=", "hydra.", "hydra/", "~", "+", "-")) and (
        "." in key or key in RESUME_HONOURED)


def _apply_resume_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """``resume=DIR key=value ...``: the saved config wins, except for the dotted keys given again (e.g. a smaller
    ``train.test_batch`` after running out of memory) and the top-level keys in ``RESUME_HONOURED`` (e.g.
    ``meta_dataset=null``). The command line names the others (``experiment=``, ``seed=`` ...) in one line as
    ignored."""
    keys = list(dict.fromkeys(o for o in overrides if is_resume_override(o)))
    if keys:
        log.warning("resume: overriding the saved config with %s", " ".join(keys))
        for o in keys:
            key, value = o.split("=", 1)
            if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
                raise ConfigError(f"resume override '{key}' is not a key of the saved config in {cfg.resume}")
            OmegaConf.update(cfg, key, yaml.safe_load(value) if value else None, merge=False)



class DeferSignals:
    """Hold SIGINT/SIGTERM while the run's records are written, so a second Ctrl-C cannot cut them in half."""

    def __enter__(self):
        self.pending: list[int] = []
        self.old = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, lambda signum, frame: self.pending.append(signum))
        except ValueError:
            pass
        return self

    def __exit__(self, *exc):
        for sig, old in self.old.items():
            signal.signal(sig, old)
        return False


def _read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        s = json.loads((run_dir / "summary.json").read_text())
        return s if isinstance(s, dict) else None
    except (OSError, ValueError):
        return None


def _check_meta_dataset_writable(path: str | None) -> None:
    """One line before the run when the meta-dataset cannot be appended to (a folder, a path under a file, no
    write permission), instead of a finished run whose record cannot be written."""
    if not path:
        return
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"meta_dataset={path} is a directory; pass a .jsonl file path (or meta_dataset=null)")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    target = p if p.exists() else parent
    if not parent.is_dir():
        raise ConfigError(f"meta_dataset={path}: {parent} is not a directory; pass a writable .jsonl path "
                          f"(or meta_dataset=null)")
    if not os.access(target, os.W_OK):
        raise ConfigError(f"meta_dataset={path} is not writable; pass a writable .jsonl path (or meta_dataset=null)")


def _meta_record(cfg: DictConfig, run_dir: Path, final: dict, wall: float, ctx: Any) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=True)
    return {
        "experiment": cfg.name, "run_dir": str(run_dir), "seed": cfg.seed,
        "config": {k: v for k, v in _flatten(container).items()
                   if not k.startswith(("data_dir", "results_dir", "resume", "meta_dataset"))},
        "hardware": device_kind(), "hardware_info": _hardware_info(), "metrics": final, "wall_time_s": round(wall, 3),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    } | ctx.meta_record


_KEPT_ON_FAILED_RESUME = ("summary.json", "metrics.jsonl", "config.yaml")


def run_experiment(cfg: DictConfig, run_dir: Path, overrides: Sequence[str] = (), *,
                   resume_overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run one experiment into ``run_dir``; returns the summary written there.

    Order of the records: the runner's work, then the meta-dataset record, then ``summary.json`` with
    ``status: ok``; so an ``ok`` summary always has its record. On resume the record is appended only if the
    meta-dataset has none for this run directory (a run killed between the two, or resumed after it finished).
    A resume of a finished (``ok``) run that fails or is interrupted keeps the finished run's summary.json,
    metrics.jsonl and config.yaml as they were; the failed attempt goes to ``resume_failed.json``.
    """
    from metanas.plots import plot_metrics
    from metanas.run_store import append_jsonl, atomic_write_json, atomic_write_text
    from metanas.runners.context import RunContext

    cfg, resumed = prepare(cfg, list(overrides), resume_overrides)
    quiet_logs()
    configure_devices(cfg)
    import jax

    run_dir.mkdir(parents=True, exist_ok=True)
    previous = _read_summary(run_dir) if resumed else None
    finished_before = previous is not None and previous.get("status") == "ok"
    kept = {n: (run_dir / n).read_bytes() for n in _KEPT_ON_FAILED_RESUME
            if finished_before and (run_dir / n).exists()}
    if resumed and previous is None and (run_dir / "summary.json").exists():
        log.warning("resume: %s/summary.json cannot be read (damaged?); it is rewritten when this resume ends", run_dir)
    if finished_before:
        log.warning("resume: %s already finished (summary.json ok); it is kept unless this resume succeeds", run_dir)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    ctx = RunContext(cfg, run_dir, resumed=resumed)
    runner = import_target(cfg.runner)
    t0 = time.perf_counter()
    status, error = "ok", None
    final: dict[str, Any] = {}
    per_seed: dict[str, list] = {}
    raise_after: BaseException | None = None
    try:
        final = dict(runner(cfg, ctx) or {})
        per_seed = {k: list(v) for k, v in final.items() if isinstance(v, (list, tuple))}
        final = {k: (sum(v) / len(v) if k in per_seed else v) for k, v in final.items()}
        check_stop()
        if cfg.meta_dataset:
            record = _meta_record(cfg, run_dir, final, time.perf_counter() - t0, ctx)
            try:
                appended = append_jsonl(cfg.meta_dataset, record, unless_run_dir=run_dir if resumed else None)
            except OSError as e:
                raise OSError(f"the run finished but its meta-dataset record could not be appended to "
                              f"{cfg.meta_dataset}: {e}") from None
            if not appended:
                log.info("meta-dataset %s already has the record of %s; not appended again", cfg.meta_dataset, run_dir)
    except (KeyboardInterrupt, Interrupted) as e:
        signum = getattr(e, "signum", signal.SIGINT)
        status = "interrupted"
        error = f"interrupted by {signal.Signals(signum).name}; resume with: python -m metanas resume={run_dir}"
        raise_after = Interrupted(signum)
    except Exception as e:  # recorded in summary.json; re-raised for a non-zero exit
        status, error = "failed", f"{type(e).__name__}: {e}"
        log.error("run failed: %s", error)
        log.debug("%s", traceback.format_exc())
        raise_after = e
    finally:
        with DeferSignals():
            try:
                ctx.close()
            except Exception as e:  # noqa: BLE001 - closing must not hide the run's outcome
                log.warning("closing checkpoints failed: %s", e)
            wall = time.perf_counter() - t0
            summary = {
                "experiment": cfg.name, "status": status, "error": error, "metrics": final, "seed": cfg.seed,
                "seeds": cfg.seeds, "metrics_per_seed": per_seed or None,
                "git_commit": _git_commit(), "jax_version": jax.__version__, "device": device_kind(), "hardware_info": _hardware_info(),
                "python": platform.python_version(), "wall_time_s": round(wall, 3), "resumed": resumed,
                "run_dir": str(run_dir),
            }
            if finished_before and status != "ok":
                for name, data in kept.items():
                    atomic_write_text(run_dir / name, data.decode())
                atomic_write_json(run_dir / "resume_failed.json", summary)
                log.warning("resume %s (%s); the finished run's summary.json, metrics.jsonl and config.yaml are kept "
                            "as they were, this attempt is in resume_failed.json", status, error)
            else:
                atomic_write_json(run_dir / "summary.json", summary)
            try:
                plot_metrics(run_dir)
            except Exception as e:  # a plot must never hide the run's own outcome
                log.warning("plotting failed: %s", e)
    if raise_after is not None:
        raise raise_after
    log.info("run finished in %.1fs: %s", summary["wall_time_s"], run_dir)
    return summary
