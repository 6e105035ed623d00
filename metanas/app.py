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
import json
import platform
import re
import signal
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from metanas.run_store import Interrupted, check_stop
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


def prepare(cfg: DictConfig, overrides: list[str]) -> tuple[DictConfig, bool]:
    """Resume handling, debug=fast overrides and validation. Returns (cfg, resumed)."""
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
        cfg = OmegaConf.merge(OmegaConf.structured(import_target("metanas.config.Config")), loaded)
        cfg.resume = resume_dir
        resumed = True
        _apply_resume_overrides(cfg, overrides + _RESUME_OVERRIDES)
    else:
        apply_fast_overrides(cfg, overrides)
    validate(cfg)
    _check_meta_dataset_writable(cfg.meta_dataset)
    return cfg, resumed


_RESUME_OVERRIDES: list[str] = []  # set by main() from the command line of a resume
# top-level keys a resume takes from its command line; every other top-level key and group choice is the saved one
RESUME_HONOURED = ("meta_dataset", "progress", "data_dir", "objective", "checkpoint_every")


def _is_resume_override(arg: str) -> bool:
    key = arg.split("=", 1)[0]
    return "=" in arg and not arg.startswith(("resume=", "hydra.", "hydra/", "~", "+", "-")) and (
        "." in key or key in RESUME_HONOURED)


def _apply_resume_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """``resume=DIR key=value ...``: the saved config wins, except for the dotted keys given again (e.g. a smaller
    ``train.test_batch`` after running out of memory) and the top-level keys in ``RESUME_HONOURED`` (e.g.
    ``meta_dataset=null``). ``main`` names the others (``experiment=``, ``seed=`` ...) in one line as ignored."""
    keys = list(dict.fromkeys(o for o in overrides if _is_resume_override(o)))
    if keys:
        log.warning("resume: overriding the saved config with %s", " ".join(keys))
        for o in keys:
            key, value = o.split("=", 1)
            if OmegaConf.select(cfg, key, default="__missing__") == "__missing__":
                raise ConfigError(f"resume override '{key}' is not a key of the saved config in {cfg.resume}")
            OmegaConf.update(cfg, key, yaml.safe_load(value) if value else None, merge=False)


EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _install_signal_handlers() -> None:
    """SIGINT (Ctrl-C) and SIGTERM (SLURM, ``kill``): stop at the next step, a second one at once (``request_stop``)."""
    from metanas.run_store import request_stop

    default_hook = sys.unraisablehook

    def hook(u: Any) -> None:
        if isinstance(u.exc_value, Interrupted):  # raised where Python ignores it (a gc callback): check_stop()
            return  # raises it again at the next step
        if isinstance(u.exc_value, RuntimeError) and "Event loop is closed" in str(u.exc_value):
            return  # tensorstore's callbacks after a failed checkpoint read, already named in one warning line
        default_hook(u)

    sys.unraisablehook = hook
    try:
        for sig in EXIT_INTERRUPTED:
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, request_stop)
    except ValueError:  # not the main thread (a launcher's worker): keep the defaults
        pass


class _DeferSignals:
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
                   if not k.startswith(("fast.", "data_dir", "results_dir", "resume", "meta_dataset"))},
        "hardware": _device_kind(), "metrics": final, "wall_time_s": round(wall, 3),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    } | ctx.meta_record


_KEPT_ON_FAILED_RESUME = ("summary.json", "metrics.jsonl", "config.yaml")


def run_experiment(cfg: DictConfig, run_dir: Path, overrides: list[str] = ()) -> dict[str, Any]:
    """Run one experiment into ``run_dir``; returns the summary written there.

    Order of the records: the runner's work, then the meta-dataset record, then ``summary.json`` with
    ``status: ok``; so an ``ok`` summary always has its record. On resume the record is appended only if the
    meta-dataset has none for this run directory (a run killed between the two, or resumed after it finished).
    A resume of a finished (``ok``) run that fails or is interrupted keeps the finished run's summary.json,
    metrics.jsonl and config.yaml as they were; the failed attempt goes to ``resume_failed.json``.
    """
    from metanas.run_store import append_jsonl, atomic_write_json, atomic_write_text, plot_metrics
    from metanas.runners.context import RunContext

    cfg, resumed = prepare(cfg, list(overrides))
    _quiet_logs()
    _configure_devices(cfg)
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
        with _DeferSignals():
            try:
                ctx.close()
            except Exception as e:  # noqa: BLE001 - closing must not hide the run's outcome
                log.warning("closing checkpoints failed: %s", e)
            wall = time.perf_counter() - t0
            summary = {
                "experiment": cfg.name, "status": status, "error": error, "metrics": final, "seed": cfg.seed,
                "seeds": cfg.seeds, "metrics_per_seed": per_seed or None,
                "git_commit": _git_commit(), "jax_version": jax.__version__, "device": _device_kind(),
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


def _quiet_logs() -> None:
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
    # JAX probing for backends that are not there ("Unable to initialize backend 'tpu'") logs at INFO
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)


def _run_dir_of_job() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def task(cfg: DictConfig) -> float | None:
    """Hydra task function (one job). Returns ``metrics[cfg.objective]`` for sweepers (NaN if the job failed)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    _quiet_logs()
    run_dir = _run_dir_of_job()
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        summary = run_experiment(cfg, run_dir, list(HydraConfig.get().overrides.task))
        print(f"{summary['experiment']}: {summary['metrics']}  ->  {run_dir}")
    except Interrupted as e:
        print(f"metanas: interrupted ({signal.Signals(e.signum).name}); status 'interrupted' recorded in "
              f"{run_dir / 'summary.json'}; resume with: python -m metanas resume={run_dir}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED.get(e.signum, 130))
    except ConfigError as e:
        _fail(run_dir, multirun, f"config error: {e}", EXIT_CONFIG, resumed=bool(cfg.resume))
        return float("nan")
    except Exception as e:
        _fail(run_dir, multirun, f"{type(e).__name__}: {e}", EXIT_FAILED)
        return float("nan")
    if cfg.objective is None:
        return None
    if cfg.objective not in summary["metrics"]:
        msg = (f"objective={cfg.objective} is not a final metric of {cfg.name}; "
               f"choose one of {', '.join(summary['metrics'])}")
        if not multirun:
            log.warning("%s (objective is used only by sweepers)", msg)
            return None
        _abort_sweep(msg)
    return float(summary["metrics"][cfg.objective])


def _abort_sweep(message: str) -> None:
    """A sweep that cannot go on (every job would fail the same way): one line, and still a sweep_summary.json."""
    from hydra.core.hydra_config import HydraConfig

    from metanas.run_store import append_jsonl, atomic_write_json
    from metanas.sweep import summarize_sweep

    hc = HydraConfig.get()
    sweep_dir = Path(hc.sweep.dir)
    append_jsonl(sweep_dir / "failures.jsonl", {"job": hc.job.num, "overrides": list(hc.overrides.task),
                                                "error": message})
    summary = summarize_sweep(sweep_dir) | {"aborted": message}
    atomic_write_json(sweep_dir / "sweep_summary.json", summary)
    print(f"metanas: error: {message}; sweep stopped, see {sweep_dir / 'sweep_summary.json'}", file=sys.stderr)
    sys.exit(EXIT_CONFIG)


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

    log.disabled = True  # the run itself logs what prepare() says, once logging is set up
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        prepare(cfg, overrides)
    except Exception as e:
        GlobalHydra.instance().clear()
        print(f"metanas: error: {_one_line(e, overrides)}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    finally:
        log.disabled = False
    GlobalHydra.instance().clear()


def _print_job_config(args: list[str]) -> None:
    """``--cfg job [--resolve]``: the composed config as it will run (with ``debug=fast``'s overrides applied)."""
    from hydra import compose, initialize_config_dir

    overrides = [a for a in args if not a.startswith("-") and a not in ("job",)]
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        apply_fast_overrides(cfg, overrides)
    except Exception as e:
        print(f"metanas: error: {_one_line(e, overrides)}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    print(OmegaConf.to_yaml(cfg, resolve="--resolve" in args), end="")


def _split_resume_args(args: list[str]) -> tuple[list[str], list[str]]:
    """A resume keeps ``resume=``, ``hydra.*`` and flags for Hydra; dotted keys and ``RESUME_HONOURED`` go to the
    saved config; every other argument is ignored, named in one line."""
    global _RESUME_OVERRIDES
    _RESUME_OVERRIDES = [a for a in args if _is_resume_override(a)]
    keep = [a for a in args if a.startswith(("resume=", "hydra.", "hydra/", "-"))]
    ignored = [a for a in args if a not in keep and a not in _RESUME_OVERRIDES]
    return keep, ignored


def main() -> None:
    import hydra

    _install_signal_handlers()
    try:
        check_stop()  # a signal that came while Python was starting (see metanas/__main__.py)
        args = sys.argv[1:]
        multirun = any(a in ("-m", "--multirun") for a in args)
        ignored = []
        if not multirun and any(a.startswith("resume=") for a in args):
            args, ignored = _split_resume_args(args)
            sys.argv = sys.argv[:1] + args
        flags = [a for a in args if a.startswith("-")]
        cfg_flag = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--cfg", "-c")), None)
        if cfg_flag == "job" and not multirun:
            _print_job_config(args)
            return
        if not multirun and not flags:
            _precompose([a for a in args if not a.startswith("hydra.") and not a.startswith("hydra/")])
        if ignored:
            print(f"metanas: warning: resume ignores {' '.join(ignored)} (the saved config decides these; dotted "
                  f"keys and {', '.join(RESUME_HONOURED)} are applied)", file=sys.stderr)
        hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")(task)()
    except (KeyboardInterrupt, Interrupted) as e:  # before or between runs: nothing to record
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"metanas: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED.get(signum, 130))


if __name__ == "__main__":
    main()
