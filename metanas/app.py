"""The Hydra application: ``python -m metanas experiment=NAME [overrides]`` (also the ``metanas`` script).

A single run composes the config once up front with Hydra's compose API, so every configuration error
(an unknown group option or key, a wrong type) is reported as one line with exit code 2 before any run
directory exists. Then Hydra runs ``task``, which writes the run store (see ``metanas.run_store``).
Under ``-m`` (multirun) each job validates itself; a failing job is recorded in its ``summary.json`` and
in the sweep's ``failures.jsonl`` and does not stop the other jobs.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from metanas.config import REPO_ROOT, ConfigError, apply_fast_overrides, import_target, register_configs, validate

log = logging.getLogger("metanas")
CONF_DIR = str(REPO_ROOT / "conf")
EXIT_CONFIG = 2
EXIT_FAILED = 1


def _run_dir_resolver(resume: str | None, default: str) -> str:
    return str(resume) if resume else default


def _if_resume_resolver(resume: str | None, if_resumed: str, otherwise: str) -> str:
    return if_resumed if resume else otherwise


OmegaConf.register_new_resolver("metanas.run_dir", _run_dir_resolver, replace=True)
OmegaConf.register_new_resolver("metanas.if_resume", _if_resume_resolver, replace=True)
register_configs()


def _one_line(exc: BaseException, overrides: list[str] | None = None) -> str:
    """Condense Hydra/OmegaConf messages (several lines, with hints) into one line naming what would be right."""
    skip = ("Set the environment variable", "Config search path", "provider=", "HYDRA_FULL_ERROR", "full_key:",
            "object_type=", "reference_type=", "To append to your config")
    out, options = [], []
    for chained in (exc, exc.__cause__):
        for ln in (ln.strip() for ln in str(chained or "").splitlines()):
            if not ln or any(s in ln for s in skip):
                continue
            if out and out[-1].startswith("Available options"):
                options.append(ln)
            else:
                out.append(ln)
    msg = " ".join(dict.fromkeys(out))
    if options:
        msg += " " + ", ".join(options)
    m = re.match(r"Could not override '([^']+)'", str(exc))
    if m and overrides is not None:  # an unknown key: list the keys that exist there
        valid = _valid_keys(m.group(1), [o for o in overrides if not o.startswith(m.group(1) + "=")])
        msg = f"unknown key '{m.group(1)}'" + (f"; valid keys there: {', '.join(valid)}" if valid else "")
    return msg


def _valid_keys(dotted: str, overrides: list[str]) -> list[str]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        parent = dotted.rpartition(".")[0]
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    except Exception:
        return []
    finally:
        GlobalHydra.instance().clear()


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _device_kind() -> str:
    import jax

    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '')}".rstrip(":") + f" x{jax.device_count()}"


def _configure_devices(cfg: DictConfig) -> None:
    """GPU memory sharing and multi-host init from ``cfg.device``; must run before JAX allocates."""
    dev = cfg.device
    if dev.preallocate is not None:
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = str(dev.preallocate).lower()
    if dev.mem_fraction is not None:
        os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = str(dev.mem_fraction)
    if dev.compilation_cache:
        import jax

        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(str(dev.compilation_cache)))
        if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:  # cache only programs worth it
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
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


def prepare(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, bool]:
    """Resume handling, debug=fast overrides and validation. Returns (cfg, resumed)."""
    resumed = False
    if cfg.resume:
        saved = Path(cfg.resume) / "config.yaml"
        if not saved.exists():
            raise ConfigError(f"resume={cfg.resume}: no config.yaml there; pass a run directory under results/runs/")
        resume_dir = cfg.resume
        cfg = OmegaConf.merge(OmegaConf.structured(import_target("metanas.config.Config")), OmegaConf.load(saved))
        cfg.resume = resume_dir
        resumed = True
        _apply_resume_overrides(cfg, overrides + _RESUME_OVERRIDES)
    else:
        apply_fast_overrides(cfg, overrides)
    validate(cfg)
    return cfg, resumed


_RESUME_OVERRIDES: list[str] = []  # set by main() from the command line of a resume


def _apply_resume_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """``resume=DIR key=value ...``: the saved config wins, except for the dotted keys given again (e.g. a smaller
    ``train.test_batch`` after running out of memory). Group choices (``experiment=``, ``debug=``) are ignored."""
    keys = [o for o in overrides if "=" in o and not o.startswith(("resume=", "hydra.", "~", "+"))
            and "." in o.split("=", 1)[0]]
    if keys:
        log.warning("resume: overriding the saved config with %s", " ".join(keys))
        for o in keys:
            key, value = o.split("=", 1)
            if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
                raise ConfigError(f"resume override '{key}' is not a key of the saved config in {cfg.resume}")
            OmegaConf.update(cfg, key, yaml.safe_load(value) if value else None, merge=False)


def run_experiment(cfg: DictConfig, run_dir: Path, overrides: list[str] = ()) -> dict[str, Any]:
    """Run one experiment into ``run_dir``; returns the summary written there."""
    from metanas.run_store import append_jsonl, atomic_write_json, atomic_write_text, plot_metrics
    from metanas.runners.context import RunContext

    cfg, resumed = prepare(cfg, list(overrides))
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
    _configure_devices(cfg)
    import jax

    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    ctx = RunContext(cfg, run_dir, resumed=resumed)
    runner = import_target(cfg.runner)
    t0 = time.perf_counter()
    status, error = "ok", None
    final: dict[str, Any] = {}
    per_seed: dict[str, list] = {}
    try:
        final = dict(runner(cfg, ctx) or {})
        per_seed = {k: list(v) for k, v in final.items() if isinstance(v, (list, tuple))}
        final = {k: (sum(v) / len(v) if k in per_seed else v) for k, v in final.items()}
    except Exception as e:  # recorded in summary.json; re-raised for a non-zero exit
        status, error = "failed", f"{type(e).__name__}: {e}"
        log.error("run failed: %s", error)
        log.debug("%s", traceback.format_exc())
        raise_after = e
    else:
        raise_after = None
    finally:
        ctx.close()
        wall = time.perf_counter() - t0
        summary = {
            "experiment": cfg.name, "status": status, "error": error, "metrics": final, "seed": cfg.seed,
            "seeds": cfg.seeds, "metrics_per_seed": per_seed or None,
            "git_commit": _git_commit(), "jax_version": jax.__version__, "device": _device_kind(),
            "python": platform.python_version(), "wall_time_s": round(wall, 3), "resumed": resumed,
            "run_dir": str(run_dir),
        }
        atomic_write_json(run_dir / "summary.json", summary)
        try:
            plot_metrics(run_dir)
        except Exception as e:  # a plot must never hide the run's own outcome
            log.warning("plotting failed: %s", e)
    if raise_after is not None:
        raise raise_after
    if cfg.meta_dataset:
        container = OmegaConf.to_container(cfg, resolve=True)
        record = {
            "experiment": cfg.name, "run_dir": str(run_dir), "seed": cfg.seed,
            "config": {k: v for k, v in _flatten(container).items()
                       if not k.startswith(("fast.", "data_dir", "results_dir", "resume", "meta_dataset"))},
            "hardware": _device_kind(), "metrics": final, "wall_time_s": summary["wall_time_s"],
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        } | ctx.meta_record
        append_jsonl(cfg.meta_dataset, record)
    log.info("run finished in %.1fs: %s", summary["wall_time_s"], run_dir)
    return summary


def _run_dir_of_job() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def task(cfg: DictConfig) -> float | None:
    """Hydra task function (one job). Returns ``metrics[cfg.objective]`` for sweepers (NaN if the job failed)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    run_dir = _run_dir_of_job()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        summary = run_experiment(cfg, run_dir, list(HydraConfig.get().overrides.task))
        print(f"{summary['experiment']}: {summary['metrics']}  ->  {run_dir}")
    except ConfigError as e:
        _fail(run_dir, multirun, f"config error: {e}", EXIT_CONFIG, resumed=bool(cfg.resume))
        return float("nan")
    except Exception as e:
        _fail(run_dir, multirun, f"{type(e).__name__}: {e}", EXIT_FAILED)
        return float("nan")
    if cfg.objective is None:
        return None
    if cfg.objective not in summary["metrics"]:
        raise ConfigError(f"objective={cfg.objective} is not a final metric of {cfg.name}; "
                          f"choose one of {', '.join(summary['metrics'])}")
    return float(summary["metrics"][cfg.objective])


def _fail(run_dir: Path, multirun: bool, message: str, code: int, *, resumed: bool = False) -> None:
    from metanas.run_store import append_jsonl

    if multirun:  # record and go on with the other points of the sweep
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        append_jsonl(Path(hc.sweep.dir) / "failures.jsonl",
                     {"job": hc.job.num, "overrides": list(hc.overrides.task), "error": message})
        log.error("job %s failed: %s", hc.job.num, message)
        return
    if code == EXIT_CONFIG and not resumed and not (run_dir / "checkpoints").exists():
        # a config error found by the runner before any work was saved: leave nothing behind
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"metanas: error: {message}", file=sys.stderr)
    sys.exit(code)


def _precompose(overrides: list[str]) -> None:
    """Compose and validate once, before Hydra creates a run directory; exit 2 with one line on error."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        if not cfg.resume:
            apply_fast_overrides(cfg, overrides)
            validate(cfg)
        elif not (Path(cfg.resume) / "config.yaml").exists():
            raise ConfigError(f"resume={cfg.resume}: no config.yaml there; pass a run directory under results/runs/")
    except Exception as e:
        GlobalHydra.instance().clear()
        print(f"metanas: error: {_one_line(e, overrides)}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    GlobalHydra.instance().clear()


def main() -> None:
    import hydra

    args = sys.argv[1:]
    if any(a.startswith("resume=") for a in args):  # dotted overrides apply to the saved config, not to a new compose
        global _RESUME_OVERRIDES
        _RESUME_OVERRIDES = [a for a in args if "=" in a and "." in a.split("=", 1)[0] and not a.startswith("hydra.")]
        args = [a for a in args if a not in _RESUME_OVERRIDES]
        sys.argv = sys.argv[:1] + args
    multirun = any(a in ("-m", "--multirun") for a in args)
    flags = [a for a in args if a.startswith("-")]
    if not multirun and not flags:
        _precompose([a for a in args if not a.startswith("hydra.") and not a.startswith("hydra/")])
    hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(task)()


if __name__ == "__main__":
    main()
